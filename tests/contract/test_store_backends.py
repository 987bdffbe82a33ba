"""The job store's contract, on SQLite and on a real PostgreSQL: the same tests for both."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator

import anyio
import pytest

from mcp_audio.config import ServerSettings
from mcp_audio.core.errors import KeyInUse
from mcp_audio.core.job import IDEMPOTENCY_TTL_S, IdempotencyKey
from mcp_audio.core.results import JobResult
from mcp_audio.core.voices import SavedVoice
from mcp_audio.store import Job, JobStore, open_store
from tests.conftest import on_backend
from tests.pg_harness import PgServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def backend(settings: ServerSettings, database_url: str | None) -> ServerSettings:
    return on_backend(settings, database_url)


@pytest.fixture
async def store(backend: ServerSettings) -> AsyncIterator[JobStore]:
    opened = await open_store(backend)
    yield opened
    await opened.close()


async def new_job(
    store: JobStore,
    owner: str | None = "a",
    principal: str = "local",
    key: IdempotencyKey | None = None,
    now: float | None = None,
) -> Job:
    return await store.create_job(
        idempotency=key,
        now=now,
        tool="lyria2_music",
        provider="fal",
        endpoint="fal-ai/lyria2",
        body={"prompt": "calm"},
        options={"save_as": "x"},
        estimated_cost_usd=0.1,
        owner=owner,
        principal=principal,
    )


async def test_a_job_round_trips_with_its_json_and_exact_times(store: JobStore) -> None:
    job = await new_job(store)
    stored = await store.get_job(job.id)
    assert stored == job  # every column, times to the microsecond (not a 4-byte REAL)
    await store.record_submission(job.id, "req-1", {"request_id": "req-1"})
    await store.record_progress(job.id, "running", None, [f"line {n}" for n in range(30)])
    done = await store.complete(job.id, JobResult(files=[], output={"ok": True}), owner="a")
    assert done.state == "completed" and done.result == JobResult(files=[], output={"ok": True})
    assert done.upstream_id == "req-1" and done.handle == {"request_id": "req-1"}
    assert done.logs == [f"line {n}" for n in range(10, 30)]  # the last LOG_TAIL lines
    assert done.lease_owner is None and done.finished_at is not None


async def test_jobs_are_listed_newest_first_per_principal_and_state(store: JobStore) -> None:
    first, second = await new_job(store), await new_job(store, principal="token:b")
    await store.fail(first.id, "broke", owner="a")
    assert [job.id for job in await store.list_jobs()] == [second.id, first.id]
    assert [job.id for job in await store.list_jobs(principal="token:b")] == [second.id]
    assert [job.id for job in await store.list_jobs(states=["failed"])] == [first.id]
    assert await store.get_job(second.id, "local") is None and await store.get_job(second.id, "token:b") is not None


async def test_a_final_transition_applies_once_and_only_for_the_lease_holder(store: JobStore) -> None:
    job = await new_job(store, owner="a")
    assert (await store.fail(job.id, "not yours", owner="b")).state == "queued"
    assert (await store.complete(job.id, JobResult(files=[], output={}), owner="a")).state == "completed"
    assert (await store.cancel(job.id, "too late")).state == "completed"
    assert (await store.mark_unknown(job.id, "too late")).error is None


async def test_a_lease_is_its_owners_heartbeat_claimed_when_it_stops(store: JobStore) -> None:
    await store.heartbeat("a", "host-a", 1, 30)
    job, *others = [await new_job(store, owner="a") for _ in range(3)]
    assert not await store.claim(job.id, "b")  # a's heartbeat is live
    assert {j.id for j in await store.leased_by_others("b")} == {job.id, *(j.id for j in others)}
    assert await store.live_replicas("b") == [("a", "host-a", 1)] and await store.live_replicas("a") == []
    assert await store.unfinished_jobs(unleased_only=True) == []
    await store.heartbeat("b", "host-b", 2, 30)
    assert await store.claim(job.id, "b", taking_over="a")  # a is known to be dead
    assert await store.held("a") == {j.id for j in others} and await store.held("b") == {job.id}
    await store.release("b")
    assert [j.id for j in await store.unfinished_jobs(unleased_only=True)] == [job.id]
    assert [r[0] for r in await store.live_replicas("x")] == ["a"]  # b's heartbeat went with it
    await store.heartbeat("c", "host-c", 3, 0.01)
    assert await store.claim(job.id, "c")
    await anyio.sleep(0.05)
    assert await store.claim(job.id, "d")  # c's heartbeat expired
    await store.cancel(job.id, "stop")
    assert not await store.claim(job.id, "e") and await store.held("d") == set()


async def test_a_heartbeat_keeps_every_job_without_touching_their_rows(store: JobStore) -> None:
    await store.heartbeat("a", "host-a", 1, 0.3)
    jobs = [await new_job(store, owner="a") for _ in range(50)]
    before = {j.id: await store.get_job(j.id) for j in jobs}
    for _ in range(4):  # 0.6 s in all: past the first heartbeat's expiry
        await anyio.sleep(0.15)
        await store.heartbeat("a", "host-a", 1, 0.3)
    assert await store.unfinished_jobs(unleased_only=True) == [] and not await store.claim(jobs[0].id, "b")
    assert {j.id: await store.get_job(j.id) for j in jobs} == before  # no job row was written
    await anyio.sleep(0.4)  # a stops beating
    assert len(await store.unfinished_jobs(unleased_only=True)) == 50 and await store.claim(jobs[0].id, "b")


async def test_only_one_of_many_concurrent_claims_wins(backend: ServerSettings) -> None:
    setup = await open_store(backend)
    job = await new_job(setup, owner=None)
    stores = [await open_store(backend) for _ in range(6)]  # as many processes
    wins: list[str] = []
    for n, opened in enumerate(stores):
        await opened.heartbeat(f"owner-{n}", "host", n, 30)

    async def claim(n: int) -> None:  # each store on its own connection (SQLite: its own thread)
        if await stores[n].claim(job.id, f"owner-{n}"):
            wins.append(f"owner-{n}")

    async with anyio.create_task_group() as tg:
        for n in range(len(stores)):
            tg.start_soon(claim, n)
    stored = await setup.get_job(job.id)
    assert len(wins) == 1 and stored is not None and stored.lease_owner == wins[0]
    for opened in [setup, *stores]:
        await opened.close()


async def test_concurrent_jobs_with_one_idempotency_key_make_one(backend: ServerSettings) -> None:
    stores = [await open_store(backend) for _ in range(6)]  # as many processes
    key = IdempotencyKey.of("k-1", "lyria2_music", {"prompt": "calm"})
    made: list[str] = []
    refused: list[KeyInUse] = []

    async def create(opened: JobStore) -> None:
        try:
            made.append((await new_job(opened, key=key)).id)
        except KeyInUse as exc:
            refused.append(exc)

    async with anyio.create_task_group() as tg:
        for opened in stores:
            tg.start_soon(create, opened)
    assert len(made) == 1 and len(refused) == 5
    assert {exc.job_id for exc in refused} == set(made) and {exc.request_hash for exc in refused} == {key.request_hash}
    assert len(await stores[0].list_jobs()) == 1  # no job row for the refused ones
    assert await stores[0].keyed_job("local", "k-1") == (made[0], key.request_hash)
    for opened in stores:
        await opened.close()


async def test_an_idempotency_key_is_per_principal_and_lasts_a_day(store: JobStore) -> None:
    key = IdempotencyKey.of("k", "lyria2_music", {"prompt": "calm"})
    start = time.time()
    first = await new_job(store, key=key, now=start)
    theirs = await new_job(store, key=key, principal="token:b", now=start)  # another caller's key
    with pytest.raises(KeyInUse):
        await new_job(store, key=key, now=start + IDEMPOTENCY_TTL_S - 1)
    assert await store.keyed_job("local", "k", now=start + IDEMPOTENCY_TTL_S - 1) == (first.id, key.request_hash)
    assert await store.keyed_job("local", "k", now=start + IDEMPOTENCY_TTL_S + 1) is None  # expired
    later = await new_job(store, key=key, now=start + IDEMPOTENCY_TTL_S + 1)  # names a new call
    assert len({first.id, theirs.id, later.id}) == 3
    assert await store.keyed_job("local", "k", now=start + IDEMPOTENCY_TTL_S + 2) == (later.id, key.request_hash)
    assert await store.keyed_job("token:b", "k", now=start + IDEMPOTENCY_TTL_S + 2) is None  # purged with it


async def test_uploads_and_voices_are_replaced_not_duplicated(store: JobStore) -> None:
    await store.save_upload("abc", "fal", "https://cdn/1")
    await store.save_upload("abc", "fal", "https://cdn/2")
    assert (
        await store.find_upload("abc", "fal", 60) == "https://cdn/2" and await store.find_upload("abc", "x", 60) is None
    )
    job = await new_job(store, principal="token:b")
    await store.save_voice(SavedVoice(name="Narrator", family="f", provider="fal", fields={"v": 1}), job_id=job.id)
    await store.save_voice(SavedVoice(name="Narrator", family="f", provider="fal", fields={"v": 2}), job_id=job.id)
    assert await store.find_voice("Narrator") is None  # the job's principal owns it
    assert await store.list_voices("token:b") == [
        SavedVoice(name="Narrator", family="f", provider="fal", fields={"v": 2})
    ]
    assert await store.voice_names("f", "token:b") == ["Narrator"]


async def test_concurrent_charges_never_pass_the_limits(backend: ServerSettings) -> None:
    stores = [await open_store(backend) for _ in range(4)]
    outcomes: list[bool] = []

    async def spend(opened: JobStore) -> None:
        for _ in range(10):
            outcomes.append((await opened.charge("token:b", 0.1, limit_usd=1.0, server_limit_usd=5.0))[0])

    async with anyio.create_task_group() as tg:
        for opened in stores:
            tg.start_soon(spend, opened)
    assert outcomes.count(True) == 10 and await stores[0].spent("token:b") == pytest.approx(1.0)
    assert (await stores[0].charge("token:c", 4.5, limit_usd=None, server_limit_usd=5.0))[0] is False  # server total
    for opened in stores:
        await opened.close()


async def test_a_waiter_wakes_when_another_process_changes_the_row(store: JobStore, backend: ServerSettings) -> None:
    job = await new_job(store)
    other = await open_store(backend)
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.listen)
        await anyio.sleep(0.3)  # listening
        started = time.monotonic()
        async with anyio.create_task_group() as waiters:
            waiters.start_soon(store.changed, job.id)
            await anyio.sleep(0.05)
            await other.complete(job.id, JobResult(files=[], output={}), owner="a")
        woke = time.monotonic() - started
        tg.cancel_scope.cancel()
    await other.close()
    # PostgreSQL pushes (well before its 5 s fallback poll); SQLite polls every 0.25 s.
    assert woke < 1.0, woke


async def test_replicas_starting_at_once_migrate_once(pg_server: PgServer) -> None:
    import psycopg

    from mcp_audio.store.postgres import MIGRATIONS as PG_MIGRATIONS
    from mcp_audio.store.postgres import PostgresJobStore

    name = f"bare_{time.monotonic_ns()}"
    with psycopg.connect(pg_server.url("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # empty: no schema yet
    url = pg_server.url(name)
    errors: list[BaseException] = []
    opened: list[JobStore] = []

    async def start() -> None:
        try:
            store = PostgresJobStore(url)
            await store.open()  # migrates, on a thread of its own: the five race for real
            opened.append(store)
        except BaseException as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(start)
    assert errors == [] and len(opened) == 5
    with psycopg.connect(url) as db:
        names = [row[0] for row in db.execute("SELECT name FROM _migrations ORDER BY name").fetchall()]
        assert names == [name for name, _ in PG_MIGRATIONS]  # each applied once
    await new_job(opened[0])
    for store in opened:
        await store.close()


async def test_a_lost_postgresql_connection_is_replaced_on_the_next_call(pg_url: str, pg_server: PgServer) -> None:
    import psycopg

    from mcp_audio.store.postgres import PostgresJobStore

    store = PostgresJobStore(pg_url)
    await store.open()
    job = await new_job(store)
    database = pg_url.split("/")[3].split("?")[0]
    with psycopg.connect(pg_server.url("postgres"), autocommit=True) as admin:  # as a restart or failover does
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s", (database,)
        ).fetchone()
    assert killed is not None and killed[0] >= 1
    assert await store.get_job(job.id) == job  # reconnected, once, transparently
    await store.close()


async def test_a_stopped_listener_closes_its_connection_whenever_it_is_stopped(pg_url: str) -> None:
    import psycopg

    from mcp_audio.store.postgres import PostgresJobStore

    store = PostgresJobStore(pg_url)
    await store.open()
    delays = random.Random(7)
    for _ in range(30):  # stopped while connecting, while sending LISTEN, while waiting for a change
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.listen)
            await anyio.sleep(delays.uniform(0, 0.04))
            tg.cancel_scope.cancel()
    await store.close()
    listening = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'"
    with psycopg.connect(pg_url, autocommit=True) as admin:
        with anyio.fail_after(5):
            while admin.execute(listening).fetchone() != (0,):  # a closed backend takes a moment to go
                await anyio.sleep(0.05)


async def test_the_rate_limit_window_is_shared_by_every_store_on_one_database(
    store: JobStore, backend: ServerSettings
) -> None:
    other = await open_store(backend)  # another process, or another replica
    try:
        assert await store.count_call("alice", 3, 60.0, now=1000.0) is None
        assert await other.count_call("alice", 3, 60.0, now=1010.0) is None
        assert await store.count_call("alice", 3, 60.0, now=1020.0) is None
        assert await other.count_call("alice", 3, 60.0, now=1030.0) == pytest.approx(30.0)  # the first leaves at 1060
        assert await store.count_call("bob", 3, 60.0, now=1030.0) is None  # each caller has its own window
        assert await store.count_call("alice", 3, 60.0, now=1060.5) is None  # the refused call was not counted
        assert await other.count_call("alice", 3, 60.0, now=1061.0) == pytest.approx(
            9.0
        )  # the one at 1010 leaves at 1070
    finally:
        await other.close()


async def test_a_heartbeat_does_not_wait_behind_a_busy_pool(settings: ServerSettings, pg_url: str) -> None:
    # A replica busy with many jobs has every pooled connection in use: its lease must still be
    # renewed in time, or another replica takes its jobs over while it lives.
    import psycopg

    from mcp_audio.store.postgres import SPEND_LOCK

    store = await open_store(on_backend(settings, pg_url).model_copy(update={"database_pool": 1}))
    try:
        with psycopg.connect(pg_url, autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", (SPEND_LOCK,))  # another replica's spend write
            async with anyio.create_task_group() as group:
                # This store's only pooled connection now waits on that lock, inside a transaction.
                group.start_soon(store.count_call, "caller", 10, 60.0, time.time())
                await anyio.sleep(0.5)
                with anyio.fail_after(3):
                    await store.heartbeat("busy", "host-a", 1, 30)
                live = await anyio.to_thread.run_sync(
                    lambda: other.execute("SELECT owner FROM replicas WHERE expires > %s", (time.time(),)).fetchall()
                )
                other.execute("SELECT pg_advisory_unlock(%s)", (SPEND_LOCK,))
    finally:
        await store.close()
    assert [row[0] for row in live] == ["busy"]


async def test_a_pool_that_stays_busy_says_so_and_starts_nothing(pg_url: str) -> None:
    import psycopg

    from mcp_audio.store import is_outage
    from mcp_audio.store.postgres import SPEND_LOCK, PostgresJobStore

    store = PostgresJobStore(pg_url, pool_size=1, wait_s=1.0)
    await store.open()
    try:
        with psycopg.connect(pg_url, autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", (SPEND_LOCK,))
            async with anyio.create_task_group() as group:
                group.start_soon(store.count_call, "caller", 10, 60.0, time.time())  # holds the only connection
                await anyio.sleep(0.3)
                with pytest.raises(Exception) as raised:
                    await new_job(store)
                other.execute("SELECT pg_advisory_unlock(%s)", (SPEND_LOCK,))
            jobs = other.execute("SELECT count(*) FROM jobs").fetchone()
    finally:
        await store.close()
    assert is_outage(raised.value)  # retryable: the caller is told to try again
    assert "this server's 1 job database connection(s) stayed busy for 1 s (MCP_AUDIO_DATABASE_POOL)" in str(
        raised.value
    )
    assert jobs == (0,)
