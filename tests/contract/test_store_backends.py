"""The job store's contract, on SQLite and on a real PostgreSQL: the same tests for both."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import anyio
import pytest

from mcp_audio.config import ServerSettings
from mcp_audio.core.results import JobResult
from mcp_audio.core.voices import SavedVoice
from mcp_audio.store import Job, JobStore, open_store
from tests.conftest import on_backend
from tests.pg_harness import PgServer


@pytest.fixture
def backend(settings: ServerSettings, database_url: str | None) -> ServerSettings:
    return on_backend(settings, database_url)


@pytest.fixture
def store(backend: ServerSettings) -> Iterator[JobStore]:
    opened = open_store(backend)
    yield opened
    opened.close()


def new_job(store: JobStore, owner: str | None = "a", principal: str = "local") -> Job:
    return store.create_job(
        tool="lyria2_music",
        provider="fal",
        endpoint="fal-ai/lyria2",
        body={"prompt": "calm"},
        options={"save_as": "x"},
        estimated_cost_usd=0.1,
        owner=owner,
        principal=principal,
    )


def test_a_job_round_trips_with_its_json_and_exact_times(store: JobStore) -> None:
    job = new_job(store)
    stored = store.get_job(job.id)
    assert stored == job  # every column, times to the microsecond (not a 4-byte REAL)
    store.record_submission(job.id, "req-1", {"request_id": "req-1"})
    store.record_progress(job.id, "running", None, [f"line {n}" for n in range(30)])
    done = store.complete(job.id, JobResult(files=[], output={"ok": True}), owner="a")
    assert done.state == "completed" and done.result == JobResult(files=[], output={"ok": True})
    assert done.upstream_id == "req-1" and done.handle == {"request_id": "req-1"}
    assert done.logs == [f"line {n}" for n in range(10, 30)]  # the last LOG_TAIL lines
    assert done.lease_owner is None and done.finished_at is not None


def test_jobs_are_listed_newest_first_per_principal_and_state(store: JobStore) -> None:
    first, second = new_job(store), new_job(store, principal="token:b")
    store.fail(first.id, "broke", owner="a")
    assert [job.id for job in store.list_jobs()] == [second.id, first.id]
    assert [job.id for job in store.list_jobs(principal="token:b")] == [second.id]
    assert [job.id for job in store.list_jobs(states=["failed"])] == [first.id]
    assert store.get_job(second.id, "local") is None and store.get_job(second.id, "token:b") is not None


def test_a_final_transition_applies_once_and_only_for_the_lease_holder(store: JobStore) -> None:
    job = new_job(store, owner="a")
    assert store.fail(job.id, "not yours", owner="b").state == "queued"
    assert store.complete(job.id, JobResult(files=[], output={}), owner="a").state == "completed"
    assert store.cancel(job.id, "too late").state == "completed"
    assert store.mark_unknown(job.id, "too late").error is None


def test_a_lease_is_its_owners_heartbeat_claimed_when_it_stops(store: JobStore) -> None:
    store.heartbeat("a", "host-a", 1, 30)
    job, *others = [new_job(store, owner="a") for _ in range(3)]
    assert not store.claim(job.id, "b")  # a's heartbeat is live
    assert {j.id for j in store.leased_by_others("b")} == {job.id, *(j.id for j in others)}
    assert store.live_replicas("b") == [("a", "host-a", 1)] and store.live_replicas("a") == []
    assert store.unfinished_jobs(unleased_only=True) == []
    store.heartbeat("b", "host-b", 2, 30)
    assert store.claim(job.id, "b", taking_over="a")  # a is known to be dead
    assert store.held("a") == {j.id for j in others} and store.held("b") == {job.id}
    store.release("b")
    assert [j.id for j in store.unfinished_jobs(unleased_only=True)] == [job.id]
    assert [r[0] for r in store.live_replicas("x")] == ["a"]  # b's heartbeat went with it
    store.heartbeat("c", "host-c", 3, 0.01)
    assert store.claim(job.id, "c")
    time.sleep(0.05)
    assert store.claim(job.id, "d")  # c's heartbeat expired
    store.cancel(job.id, "stop")
    assert not store.claim(job.id, "e") and store.held("d") == set()


def test_a_heartbeat_keeps_every_job_without_touching_their_rows(store: JobStore) -> None:
    store.heartbeat("a", "host-a", 1, 0.3)
    jobs = [new_job(store, owner="a") for _ in range(50)]
    before = {j.id: store.get_job(j.id) for j in jobs}
    for _ in range(4):  # 0.6 s in all: past the first heartbeat's expiry
        time.sleep(0.15)
        store.heartbeat("a", "host-a", 1, 0.3)
    assert store.unfinished_jobs(unleased_only=True) == [] and not store.claim(jobs[0].id, "b")
    assert {j.id: store.get_job(j.id) for j in jobs} == before  # no job row was written
    time.sleep(0.4)  # a stops beating
    assert len(store.unfinished_jobs(unleased_only=True)) == 50 and store.claim(jobs[0].id, "b")


def test_only_one_of_many_concurrent_claims_wins(backend: ServerSettings) -> None:
    setup = open_store(backend)
    job = new_job(setup, owner=None)
    stores = [open_store(backend) for _ in range(6)]  # as many processes
    wins: list[str] = []
    barrier = threading.Barrier(len(stores))

    def claim(n: int) -> None:
        stores[n].heartbeat(f"owner-{n}", "host", n, 30)
        barrier.wait()
        if stores[n].claim(job.id, f"owner-{n}"):
            wins.append(f"owner-{n}")

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(wins) == 1 and setup.get_job(job.id).lease_owner == wins[0]  # type: ignore[union-attr]
    for opened in [setup, *stores]:
        opened.close()


def test_uploads_and_voices_are_replaced_not_duplicated(store: JobStore) -> None:
    store.save_upload("abc", "fal", "https://cdn/1")
    store.save_upload("abc", "fal", "https://cdn/2")
    assert store.find_upload("abc", "fal", 60) == "https://cdn/2" and store.find_upload("abc", "x", 60) is None
    job = new_job(store, principal="token:b")
    store.save_voice(SavedVoice(name="Narrator", family="f", provider="fal", fields={"v": 1}), job_id=job.id)
    store.save_voice(SavedVoice(name="Narrator", family="f", provider="fal", fields={"v": 2}), job_id=job.id)
    assert store.find_voice("Narrator") is None  # the job's principal owns it
    assert store.list_voices("token:b") == [SavedVoice(name="Narrator", family="f", provider="fal", fields={"v": 2})]
    assert store.voice_names("f", "token:b") == ["Narrator"]


def test_concurrent_charges_never_pass_the_limits(backend: ServerSettings) -> None:
    stores = [open_store(backend) for _ in range(4)]
    outcomes: list[bool] = []

    def spend(opened: JobStore) -> None:
        for _ in range(10):
            outcomes.append(opened.charge("token:b", 0.1, limit_usd=1.0, server_limit_usd=5.0)[0])

    threads = [threading.Thread(target=spend, args=(opened,)) for opened in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(True) == 10 and stores[0].spent("token:b") == pytest.approx(1.0)
    assert stores[0].charge("token:c", 4.5, limit_usd=None, server_limit_usd=5.0)[0] is False  # server total
    for opened in stores:
        opened.close()


@pytest.mark.anyio
async def test_a_waiter_wakes_when_another_process_changes_the_row(store: JobStore, backend: ServerSettings) -> None:
    job = new_job(store)
    other = open_store(backend)
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.listen)
        await anyio.sleep(0.3)  # listening
        started = time.monotonic()
        async with anyio.create_task_group() as waiters:
            waiters.start_soon(store.changed, job.id)
            await anyio.sleep(0.05)
            other.complete(job.id, JobResult(files=[], output={}), owner="a")
        woke = time.monotonic() - started
        tg.cancel_scope.cancel()
    other.close()
    # PostgreSQL pushes (well before its 5 s fallback poll); SQLite polls every 0.25 s.
    assert woke < 1.0, woke


def test_replicas_starting_at_once_migrate_once(pg_server: PgServer) -> None:
    import psycopg

    from mcp_audio.store.postgres import MIGRATIONS as PG_MIGRATIONS
    from mcp_audio.store.postgres import PostgresJobStore

    name = f"bare_{time.monotonic_ns()}"
    with psycopg.connect(pg_server.url("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # empty: no schema yet
    url = pg_server.url(name)
    errors: list[BaseException] = []
    opened: list[JobStore] = []

    def start() -> None:
        try:
            opened.append(PostgresJobStore(url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(opened) == 5
    with psycopg.connect(url) as db:
        names = [row[0] for row in db.execute("SELECT name FROM _migrations ORDER BY name").fetchall()]
        assert names == [name for name, _ in PG_MIGRATIONS]  # each applied once
    new_job(opened[0])
    for store in opened:
        store.close()


def test_a_lost_postgresql_connection_is_replaced_on_the_next_call(pg_url: str, pg_server: PgServer) -> None:
    import psycopg

    from mcp_audio.store.postgres import PostgresJobStore

    store = PostgresJobStore(pg_url)
    job = new_job(store)
    database = pg_url.split("/")[3].split("?")[0]
    with psycopg.connect(pg_server.url("postgres"), autocommit=True) as admin:  # as a restart or failover does
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s", (database,)
        ).fetchone()
    assert killed is not None and killed[0] >= 1
    assert store.get_job(job.id) == job  # reconnected, once, transparently
    store.close()


@pytest.mark.anyio
async def test_a_stopped_listener_closes_its_connection_whenever_it_is_stopped(pg_url: str) -> None:
    import psycopg

    from mcp_audio.store.postgres import PostgresJobStore

    store = PostgresJobStore(pg_url)
    delays = random.Random(7)
    for _ in range(30):  # stopped while connecting, while sending LISTEN, while waiting for a change
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.listen)
            await anyio.sleep(delays.uniform(0, 0.04))
            tg.cancel_scope.cancel()
    store.close()
    listening = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'"
    with psycopg.connect(pg_url, autocommit=True) as admin:
        with anyio.fail_after(5):
            while admin.execute(listening).fetchone() != (0,):  # a closed backend takes a moment to go
                await anyio.sleep(0.05)


def test_the_rate_limit_window_is_shared_by_every_store_on_one_database(
    store: JobStore, backend: ServerSettings
) -> None:
    other = open_store(backend)  # another process, or another replica
    try:
        assert store.count_call("alice", 3, 60.0, now=1000.0) is None
        assert other.count_call("alice", 3, 60.0, now=1010.0) is None
        assert store.count_call("alice", 3, 60.0, now=1020.0) is None
        assert other.count_call("alice", 3, 60.0, now=1030.0) == pytest.approx(30.0)  # the first leaves at 1060
        assert store.count_call("bob", 3, 60.0, now=1030.0) is None  # each caller has its own window
        assert store.count_call("alice", 3, 60.0, now=1060.5) is None  # the refused call was not counted
        assert other.count_call("alice", 3, 60.0, now=1061.0) == pytest.approx(9.0)  # the one at 1010 leaves at 1070
    finally:
        other.close()
