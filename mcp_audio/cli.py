"""`mcp-audio`: serve (stdio by default, or streamable HTTP), list tools, call one, list jobs.

A thin reader of the catalog and the server: errors become one line on stderr and exit 1
here, and nowhere else. stdout carries only the MCP protocol (serve) or the requested data.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import logging
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
    _configure_logging(settings.secrets(), args.verbose)
    try:
        command = args.command or "serve"
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
    if command == "jobs":
        return _jobs(settings, args.status, args.limit)
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
    tokens_sub.add_parser("list", help="the tokens' names, creation times and caps (never the tokens)")
    revoke = tokens_sub.add_parser("revoke", help="revoke NAME's token; a running server refuses it at once")
    revoke.add_argument("name")
    tools = sub.add_parser("tools", help="list the tools, their upstream endpoints and prices; or one tool's arguments")
    tools.add_argument("tool", nargs="?", help="show this tool's arguments: types, defaults, allowed values")
    tools.add_argument("--json", action="store_true", help="machine-readable output, with input schemas")
    tools.add_argument("--markdown", action="store_true", help="a Markdown table (as in the README)")
    call = sub.add_parser("call", help="run one tool as an agent would; result JSON on stdout")
    call.add_argument("tool")
    call.add_argument("--json", default="{}", help="the tool's arguments as a JSON object")
    call.add_argument("--wait", type=float, default=None, help="seconds to wait for the job (default MCP_AUDIO_WAIT_S)")
    call.add_argument("--sandbox", action="store_true", help=sandbox_help)
    doctor = sub.add_parser("doctor", help="check keys, upstream reachability and folders (keys are never shown)")
    doctor.add_argument("--sandbox", action="store_true", help=sandbox_help)
    jobs = sub.add_parser("jobs", help="list recent jobs", formatter_class=defaults)
    jobs.add_argument("--status", default=None, choices=JOB_STATES, help="only jobs in this state")
    jobs.add_argument("--limit", type=_positive, default=20, help="how many, newest first")
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


def _configure_logging(secrets: list[str], verbose: bool) -> None:
    from mcp_audio.core.redaction import RedactingFilter

    handler = logging.StreamHandler(sys.stderr)  # never stdout: it is the protocol channel
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True)
    for noisy in ("httpx", "httpcore", "mcp", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)


def _serve(settings: Any, *, http: bool, host: str, port: int, no_auth: bool = False) -> int:
    from mcp_audio.server import build_server

    if not http:
        server = build_server(settings, transport="stdio")
        _started(serving=True)
        server.run("stdio")
        return 0
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
        for entry in tokens.entries():
            print(json.dumps(entry.summary() | {"spent_usd": round(totals.get(entry.name, 0.0), 6)}))
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
    if tool is not None:
        capability = catalog.get(tool)
        if capability is None:
            raise InvalidArguments(f"no tool named {tool!r}; `mcp-audio tools` lists them")
        chosen = [capability]
    if as_json:
        entries = catalog_entries(chosen)
        for entry, cap in zip(entries, chosen, strict=True):
            entry["input_schema"] = cap.input_schema
        print(json.dumps(entries, indent=2))
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


async def _call_async(settings: Any, tool: str, arguments: dict[str, Any]) -> int:
    from mcp import Client
    from tqdm import tqdm

    from mcp_audio.server import build_server

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

    try:
        async with Client(build_server(settings)) as client:
            result = await client.call_tool(tool, arguments, progress_callback=on_progress)
    finally:
        status.close()
    if result.structured_content is not None:
        print(json.dumps(result.structured_content, indent=2))
    else:
        texts = [getattr(item, "text", "") for item in result.content]
        (print if not result.is_error else lambda text: print(text, file=sys.stderr))("\n".join(texts))
    return 1 if result.is_error else 0


def _doctor(settings: Any) -> int:
    import anyio

    from mcp_audio.doctor import render, run_checks

    checks = anyio.run(run_checks, settings)
    print(render(checks))
    return 1 if any(check.status == "fail" for check in checks) else 0


def _jobs(settings: Any, status: str | None, limit: int) -> int:
    import anyio

    from mcp_audio.server.render import job_summary
    from mcp_audio.store import Job, open_store

    async def listed() -> list[Job]:
        store = await open_store(settings)
        try:
            return await store.list_jobs(states=[status] if status else None, limit=limit)
        finally:
            await store.close()

    for job in anyio.run(listed):
        print(json.dumps(job_summary(job)))
    return 0
