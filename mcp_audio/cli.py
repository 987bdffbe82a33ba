"""`mcp-audio`: serve (stdio by default, or streamable HTTP), list tools, call one, list and wait on jobs.

A thin reader of the catalog and the server: errors become one line on stderr and exit 1
here, and nowhere else. stdout carries only the MCP protocol (serve) or the requested data:
listings are a table, or JSON lines (one object a line) with --json; `call` and `wait` print
the result as one JSON object.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, ParamSpec

from mcp_audio import __version__

_P = ParamSpec("_P")


def _start_up_unscanned(main: Callable[_P, int]) -> Callable[_P, int]:
    """No garbage collection while the process builds what it keeps for life (modules, models, the
    catalog): scanning that heap as it grows only costs time, and a full scan of it used to fall in
    the first tools/list answer. Commands turn collection back on when start-up ends (`_started`)."""

    @functools.wraps(main)
    def unscanned(*args: _P.args, **kwargs: _P.kwargs) -> int:
        gc.disable()
        try:
            return main(*args, **kwargs)
        finally:
            gc.enable()

    return unscanned


def _started(*, serving: bool) -> None:
    """Start-up is over: a server sets what it built aside for good (never scanned again), then
    collection resumes as usual."""
    if serving:
        gc.freeze()
    gc.enable()


@_start_up_unscanned
def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `mcp-audio tools | head -1`: the reader left; that is not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail again
        os.close(devnull)
        return 0


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv) if argv else NO_ARGUMENTS
    from pydantic import ValidationError

    from mcp_audio.config import ENV_NAMES, Settings
    from mcp_audio.core.errors import McpAudioError

    try:
        settings = Settings()
    except ValidationError as exc:
        for err in exc.errors():
            name = ENV_NAMES.get(str(err["loc"][0]), str(err["loc"][0])) if err["loc"] else "settings"
            print(f"mcp-audio: invalid setting {name}: {err['msg']}", file=sys.stderr)
        return 1
    _configure_logging(settings.secrets(), args.verbose, settings.log_format)
    try:
        command = args.command or "serve"
        if command == "jobs" and args.sandbox:  # listing reads the sandbox's folders; no fake is needed
            from mcp_audio.sandbox.run import sandbox_folders

            return _run(command, args, settings.model_copy(update=sandbox_folders(settings)))
        if getattr(args, "sandbox", False):
            from mcp_audio.sandbox.run import sandboxed

            with sandboxed(settings) as sandbox:
                return _run(command, args, sandbox)
        return _run(command, args, settings)
    except McpAudioError as exc:
        print(f"mcp-audio: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _run(command: str, args: argparse.Namespace, settings: Any) -> int:
    if command != "serve":
        _started(serving=False)
    if command == "serve":
        return _serve(
            settings,
            http=getattr(args, "http", False),
            host=getattr(args, "host", "127.0.0.1"),
            port=getattr(args, "port", 8765),
            no_auth=getattr(args, "no_auth", False),
        )
    if command == "tokens":
        return _tokens(settings, args)
    if command == "tools":
        return _tools(args.tool, as_json=args.json, as_markdown=args.markdown)
    if command == "call":
        return _call(settings, args.tool, args.json, args.wait)
    if command == "wait":
        return _wait(settings, args.job_id, args.timeout)
    if command == "jobs":
        return _jobs(settings, args.status, args.limit, as_json=args.json)
    if command == "doctor":
        return _doctor(settings)
    return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcp-audio", description="MCP server for audio generation and understanding.")
    parser.add_argument("--version", action="version", version=f"mcp-audio {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (stderr)")
    sub = parser.add_subparsers(dest="command")
    defaults = argparse.ArgumentDefaultsHelpFormatter
    serve = sub.add_parser("serve", help="run the MCP server (default: stdio)", formatter_class=defaults)
    serve.add_argument("--http", action="store_true", help="serve streamable HTTP at /mcp instead of stdio")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP bind address")
    serve.add_argument("--port", type=_port, default=8765, help="HTTP port")
    sandbox_help = "use built-in loopback fakes of every upstream: try it all with no key, nothing leaves the machine"
    serve.add_argument("--sandbox", action="store_true", help=sandbox_help)
    serve.add_argument(
        "--no-auth",
        action="store_true",
        help="serve a non-loopback --host with no token and no OAuth issuer (only behind something that "
        "authenticates callers)",
    )
    tokens = sub.add_parser("tokens", help="bearer tokens for HTTP mode: add, list, revoke")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True)
    add = tokens_sub.add_parser("add", help="create a token for caller NAME; printed once, on the last line")
    add.add_argument("name")
    add.add_argument("--max-spend-usd", type=_dollars, default=None, help="this caller's spend cap (kept)")
    listed = tokens_sub.add_parser("list", help="the tokens' names, creation times and caps (never the tokens)")
    listed.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    revoke = tokens_sub.add_parser("revoke", help="revoke NAME's token; a running server refuses it at once")
    revoke.add_argument("name")
    tools = sub.add_parser("tools", help="list the tools, their upstream endpoints and prices; or one tool's arguments")
    tools.add_argument("tool", nargs="?", help="show this tool's arguments: types, defaults, allowed values")
    tools.add_argument("--json", action="store_true", help="JSON lines (one tool a line), with input schemas")
    tools.add_argument("--markdown", action="store_true", help="a Markdown table (as in the README)")
    call = sub.add_parser("call", help="run one tool as an agent would; result JSON on stdout")
    call.add_argument("tool")
    call.add_argument("--json", default="{}", help="the tool's arguments as a JSON object")
    call.add_argument(
        "--wait",
        type=float,
        default=None,
        help="seconds to wait for an upstream job before printing its handle (default MCP_AUDIO_WAIT_S); "
        "a local tool's job runs in this process, so it is always waited for",
    )
    call.add_argument("--sandbox", action="store_true", help=sandbox_help)
    doctor = sub.add_parser("doctor", help="check keys, upstream reachability and folders (keys are never shown)")
    doctor.add_argument("--sandbox", action="store_true", help=sandbox_help)
    jobs = sub.add_parser("jobs", help="list recent jobs", formatter_class=defaults)
    jobs.add_argument("--status", default=None, choices=JOB_STATES, help="only jobs in this state")
    jobs.add_argument("--limit", type=_positive, default=20, help="how many, newest first")
    jobs.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    jobs.add_argument("--sandbox", action="store_true", help="the jobs `--sandbox` runs made (kept apart)")
    wait = sub.add_parser("wait", help="wait for a job to finish; its result JSON on stdout", formatter_class=defaults)
    wait.add_argument("job_id")
    wait.add_argument("--timeout", type=_seconds, default=600.0, help="seconds to wait before giving up (exit 3)")
    wait.add_argument("--sandbox", action="store_true", help="a job `--sandbox` started")
    return parser


# What parsing no arguments gives (how MCP clients start a stdio server), without building every
# subcommand's parser first (~5 ms of each start); tests/e2e/test_cli.py holds the two equal.
NO_ARGUMENTS = argparse.Namespace(verbose=False, command=None)
JOB_STATES = ("queued", "running", "completed", "failed", "cancelled", "unknown")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _seconds(text: str) -> float:
    import math

    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more, not {text}")
    return value


def _dollars(text: str) -> float:
    import math

    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of US dollars, 0 or more, not {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, not {value}")
    return value


def _configure_logging(secrets: list[str], verbose: bool, log_format: str = "text") -> None:
    from mcp_audio.core.logs import JsonFormatter
    from mcp_audio.core.redaction import RedactingFilter

    handler = logging.StreamHandler(sys.stderr)  # never stdout: it is the protocol channel
    text = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(JsonFormatter() if log_format == "json" else text)
    handler.addFilter(RedactingFilter(secrets))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True)
    for noisy in ("httpx", "httpcore", "mcp", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)


def _serve(settings: Any, *, http: bool, host: str, port: int, no_auth: bool = False) -> int:
    from mcp_audio.server import build_server

    if not http:
        server = build_server(settings, transport="stdio")
        _started(serving=True)
        return _serve_stdio(server)
    from mcp_audio.deploy.app import plan_exposure, serve_http

    exposure = plan_exposure(settings, host, port, no_auth=no_auth)  # refuses an unsafe bind before anything is built
    from mcp_audio.server.state import Runtime

    runtime = Runtime()  # /healthz asks it whether /mcp can serve
    server = build_server(settings, transport="http", runtime=runtime)
    _started(serving=True)
    callers = [f"{len(exposure.tokens.entries())} token(s)"] + (
        ["OAuth " + exposure.oauth.issuer] if exposure.oauth else []
    )
    print(f"mcp-audio: serving streamable HTTP at http://{host}:{port}/mcp ({', '.join(callers)})", file=sys.stderr)
    serve_http(settings, server, host, port, no_auth=no_auth, serving=runtime.problem)
    return 0


WAITING = (
    "mcp-audio: waiting for an MCP client on stdin. This is a stdio server: an MCP client starts it "
    "itself. Add `mcp-audio serve` to your client's MCP servers (README: Claude Desktop, Cursor), try "
    "it with `npx @modelcontextprotocol/inspector mcp-audio serve --sandbox`, or serve HTTP with "
    "`mcp-audio serve --http`. Ctrl-C stops it."
)


def _serve_stdio(server: Any) -> int:
    """Serve stdio until the client leaves or Ctrl-C; a second Ctrl-C exits at once.

    The SDK reads stdin in a worker thread that only a line or end of file wakes, so on a
    terminal stdin is read here instead, by waiting on the descriptor, which a stop cancels.
    """
    import signal

    import anyio
    from mcp.server.stdio import stdio_server

    on_terminal = sys.stdin.isatty()
    if on_terminal:
        print(WAITING, file=sys.stderr, flush=True)

    async def serve() -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        with anyio.CancelScope() as scope:
            stops = 0

            def on_interrupt(signum: int, frame: object) -> None:
                nonlocal stops
                stops += 1
                if stops > 1:
                    os._exit(130)  # pressed again: whatever the shutdown waits on, stop now
                print("mcp-audio: stopping (Ctrl-C again to force)", file=sys.stderr, flush=True)
                loop.call_soon_threadsafe(scope.cancel)

            previous = signal.signal(signal.SIGINT, on_interrupt)
            try:
                stdin = _TerminalLines(sys.stdin.fileno()) if on_terminal else None
                async with stdio_server(stdin=stdin) as (read_stream, write_stream):  # type: ignore[arg-type]
                    lowlevel = server._lowlevel_server  # what MCPServer.run_stdio_async runs, with our stdin
                    await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
            finally:
                signal.signal(signal.SIGINT, previous)
        if scope.cancelled_caught:
            raise KeyboardInterrupt

    anyio.run(serve)
    return 0


class _TerminalLines:
    """Lines typed on a terminal, read as they become readable, so a stop can cancel the wait."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pending = b""
        self._ended = False

    def __aiter__(self) -> _TerminalLines:
        return self

    async def __anext__(self) -> str:
        import anyio

        while b"\n" not in self._pending and not self._ended:
            await anyio.wait_readable(self._fd)
            chunk = os.read(self._fd, 65536)  # readable: returns what is there without blocking
            self._ended = not chunk  # Ctrl-D
            self._pending += chunk
        if not self._pending:
            raise StopAsyncIteration
        line, newline, self._pending = self._pending.partition(b"\n")
        return (line + newline).decode("utf-8", errors="replace")


def _tokens(settings: Any, args: argparse.Namespace) -> int:
    from mcp_audio.store.tokens import open_tokens

    tokens = open_tokens(settings)
    try:
        return _token_command(settings, tokens, args)
    finally:
        tokens.close()


def _token_command(settings: Any, tokens: Any, args: argparse.Namespace) -> int:
    if args.tokens_command == "add":
        token = tokens.add(args.name, args.max_spend_usd)
        print(f"mcp-audio: token for {args.name!r}; it is shown only now, store it:", file=sys.stderr)
        print(token)
    elif args.tokens_command == "list":
        import anyio

        from mcp_audio.store import open_store

        async def spent() -> dict[str, float]:
            store = await open_store(settings)
            try:
                return {entry.name: await store.spent(entry.principal) for entry in tokens.entries()}
            finally:
                await store.close()

        totals = anyio.run(spent)
        rows = [entry.summary() | {"spent_usd": round(totals.get(entry.name, 0.0), 6)} for entry in tokens.entries()]
        _print_rows(rows, as_json=args.json)
    else:
        tokens.revoke(args.name)
        print(f"mcp-audio: revoked {args.name!r}; a running server refuses it from its next request", file=sys.stderr)
    return 0


def _tools(tool: str | None, *, as_json: bool, as_markdown: bool) -> int:
    from mcp_audio.catalog import load_catalog
    from mcp_audio.core.errors import InvalidArguments
    from mcp_audio.server.resources import catalog_entries, tools_markdown

    catalog = load_catalog()
    chosen = list(catalog.capabilities.values())
    if tool is not None and tool in catalog.families and not as_json:
        print(_family_text(catalog.families[tool]))
        return 0
    if tool is not None:
        capability = catalog.get(tool)
        if capability is None:
            raise InvalidArguments(f"no tool named {tool!r}; `mcp-audio tools` lists them")
        chosen = [capability]
    if as_json:
        entries = catalog_entries(chosen, catalog.families.values())
        for entry, cap in zip(entries, chosen, strict=True):
            entry["input_schema"] = cap.input_schema
            print(json.dumps(entry))
        return 0
    if tool is not None:
        print(_arguments_text(chosen[0]))
        return 0
    if as_markdown:
        print(tools_markdown(catalog), end="")
        return 0
    rows = [("TOOL", "KIND", "UPSTREAM ENDPOINT(S)", "PRICE")]
    for cap in catalog.capabilities.values():
        price = cap.spec.price.describe() if cap.spec.price else "-"
        rows.append((cap.name, cap.spec.kind, ", ".join(cap.spec.all_endpoints), price))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3])
    return 0


def _family_text(family: Any) -> str:
    """A family tool: what it is for, and each `model` choice with the tool that runs it (whose
    arguments `mcp-audio tools <that tool>` shows)."""
    lines = [f"{family.name}: {family.spec.description}", "model:"]
    for choice, member in family.members.items():
        fixed = f" ({member.capability.spec.endpoint_input} {member.fixed})" if member.fixed else ""
        default = ", the default" if choice == family.default else ""
        lines.append(f"  {choice}{default}: {member.capability.name}{fixed}")
    call = f"mcp-audio call {family.name} --json '{{\"model\": ...}}'"
    lines.append(f"Arguments of a model: mcp-audio tools <its tool>; call: {call}")
    return "\n".join(lines)


def _arguments_text(capability: Any) -> str:
    """A tool's arguments as a person reads them: name, type, required or default, allowed values."""
    from mcp_audio.catalog import text_limit

    lines = [f"{capability.name}: {capability.spec.title}", capability.spec.description.strip(), "", "Arguments:"]
    for spec in capability.spec.inputs:
        kind = f"list of {spec.items}" if spec.type == "array" else spec.type
        details = ["required"] if spec.required else ([f"default {spec.default!r}"] if spec.default is not None else [])
        if spec.enum is not None:
            details.append("one of " + ", ".join(repr(value) for value in spec.enum))
        bounds = [(">=", spec.minimum), ("<=", spec.maximum), (">", spec.exclusive_minimum)]
        details.extend(f"{sign} {value:g}" for sign, value in bounds if value is not None)
        if (limit := text_limit(spec)) is not None:
            details.append(f"at most {limit} characters")
        for model, rule in (spec.per_model or {}).items():
            if rule.required:
                details.append(f"{model}: required")
            if rule.max_length is not None:
                details.append(f"{model}: at most {rule.max_length}")
        if spec.file is not None:
            details.append(f"{spec.file} file: a local path, https URL or data: URI")
        where = "advanced." if spec.advanced else ""
        lines.append(f"  {where}{spec.name} ({kind}{'; ' + '; '.join(details) if details else ''}): {spec.description}")
    return "\n".join(lines)


def _call(settings: Any, tool: str, raw_arguments: str, wait: float | None) -> int:
    import anyio

    from mcp_audio.core.errors import InvalidArguments

    try:
        arguments = json.loads(raw_arguments)
    except json.JSONDecodeError as exc:
        raise InvalidArguments(f"--json is not valid JSON: {exc}") from exc
    if not isinstance(arguments, dict):
        raise InvalidArguments("--json must be a JSON object of the tool's arguments")
    if wait is not None:
        settings = settings.model_copy(update={"wait_s": wait})
    return anyio.run(_call_async, settings, tool, arguments)


def _wait(settings: Any, job_id: str, timeout: float) -> int:
    import anyio

    return anyio.run(_call_async, settings, "get_job", {"job_id": job_id}, timeout)


UNFINISHED = ("queued", "running")
GET_JOB_MAX_WAIT_S = 600  # get_job's own bound on wait_s


def _unlisted_tool_note(record: logging.LogRecord) -> bool:
    """Drops the SDK client's warning that a tool it did not see in tools/list has no output
    schema to check: a model's own tool (`call kokoro_tts`) is callable, listed by its family."""
    return "not listed by server" not in record.getMessage()


async def _call_async(settings: Any, tool: str, arguments: dict[str, Any], wait_for: float | None = None) -> int:
    """Call `tool`; with `wait_for` (get_job), wait up to that long; a local tool's job is always waited for.

    Exit 0 when the job completed (or the tool answered at once), 1 on an error or a failed
    job, 3 when it is still running (its handle is printed; `mcp-audio wait` waits on).
    """
    import time

    from mcp import Client
    from tqdm import tqdm

    from mcp_audio.catalog import load_catalog
    from mcp_audio.server import build_server

    capability = load_catalog().get(tool)
    local = capability is not None and capability.upstream.local

    # A terminal gets one live status line; a pipe or log file gets one line per event.
    live = sys.stderr.isatty()
    status = tqdm(
        total=None, bar_format="{desc} [{elapsed}]", file=sys.stderr, desc=f"{tool}: starting", disable=not live
    )

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if live:
            status.set_description_str(f"{tool}: {message or progress}")
        else:
            print(f"{tool}: {message or progress}", file=sys.stderr, flush=True)

    deadline = None if wait_for is None else time.monotonic() + wait_for
    outcome = "failed"
    sdk_client_log = logging.getLogger("client")
    sdk_client_log.addFilter(_unlisted_tool_note)
    try:
        async with Client(build_server(settings)) as client:
            if deadline is None:
                result = await client.call_tool(tool, arguments, progress_callback=on_progress)
            else:
                result = await client.call_tool(tool, arguments | {"wait_s": 0}, progress_callback=on_progress)
            while not result.is_error and _status(result) in UNFINISHED:
                # A local job runs in this process and ends with it: wait for it whatever --wait says.
                left = GET_JOB_MAX_WAIT_S if deadline is None else deadline - time.monotonic()
                if left <= 0 or not (local or deadline is not None):
                    break
                job_id = (result.structured_content or {})["job_id"]
                wait_s = min(left, GET_JOB_MAX_WAIT_S)
                result = await client.call_tool(
                    "get_job", {"job_id": job_id, "wait_s": wait_s}, progress_callback=on_progress
                )
        status_now = _status(result)
        outcome = "error" if result.is_error else ("done" if status_now is None else status_now)
    finally:
        sdk_client_log.removeFilter(_unlisted_tool_note)
        if live:  # the live line's last word is the outcome
            status.set_description_str(f"{tool}: {'done' if outcome == 'completed' else outcome}")
        status.close()
    if result.structured_content is not None:
        print(json.dumps(result.structured_content, indent=2))
    else:
        texts = [getattr(item, "text", "") for item in result.content]
        (print if not result.is_error else lambda text: print(text, file=sys.stderr))("\n".join(texts))
    if outcome in UNFINISHED:
        job_id = (result.structured_content or {}).get("job_id")
        print(f"mcp-audio: job {job_id} is still {outcome}; `mcp-audio wait {job_id}` waits for it", file=sys.stderr)
        return 3
    if not live:
        print(f"{tool}: {'done' if outcome == 'completed' else outcome}", file=sys.stderr, flush=True)
    return 1 if result.is_error or outcome in ("failed", "cancelled", "unknown") else 0


def _status(result: Any) -> str | None:
    status = (result.structured_content or {}).get("status")
    return status if isinstance(status, str) else None


def _doctor(settings: Any) -> int:
    import anyio

    from mcp_audio.doctor import render, run_checks

    checks = anyio.run(run_checks, settings)
    print(render(checks))
    return 1 if any(check.status == "fail" for check in checks) else 0


def _jobs(settings: Any, status: str | None, limit: int, *, as_json: bool) -> int:
    import anyio

    from mcp_audio.server.render import job_summary
    from mcp_audio.store import Job, open_store

    async def listed() -> list[Job]:
        store = await open_store(settings)
        try:
            return await store.list_jobs(states=[status] if status else None, limit=limit)
        finally:
            await store.close()

    rows = [job_summary(job) for job in anyio.run(listed)]
    columns = ("job_id", "tool", "status", "created_at", "duration_s", "error")
    _print_rows(rows, as_json=as_json, columns=columns)
    return 0


def _print_rows(rows: list[dict[str, Any]], *, as_json: bool, columns: tuple[str, ...] | None = None) -> None:
    """JSON lines with --json; otherwise a table with a header (the columns, or every key seen)."""
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    if columns is None:
        columns = tuple(dict.fromkeys(key for row in rows for key in row))
    if not rows:
        print("(none)", file=sys.stderr)
        return
    table = [[column.upper() for column in columns]]
    table += [["-" if row.get(column) is None else str(row[column]) for column in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
