"""Run the official MCP conformance suite (npm `@modelcontextprotocol/conformance`) against
`mcp-audio serve --http --sandbox`, and say of each server scenario whether it passed, failed,
or does not apply to this server, and why.

Many scenarios call the suite's own fixture tools, prompts and resources (`test_image_content`,
`test://static-text`...), which only the suite's reference server has: those are listed as not
applying. Every other scenario must pass; the exit status is 1 when one does not.

Usage: python scripts/conformance.py [--suite active|all] [--version 0.1.16] [--keep DIR]

Needs node and npm (the package is installed once under ~/.cache/mcp-audio/conformance). The
suite wants Node 22 for one call (`fs.globSync`, used only when it aggregates result files);
on an older Node a small loader hook supplies it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGE = "@modelcontextprotocol/conformance"
VERSION = "0.1.16"
CACHE = Path.home() / ".cache" / "mcp-audio" / "conformance"

_FIXTURE = "needs the suite's fixture {what}; mcp-audio's are generated from its manifests"
_TOOLS = {
    "tools-call-simple-text": "test_simple_text",
    "tools-call-error": "test_error_handling",
    "tools-call-image": "test_image_content",
    "tools-call-audio": "test_audio_content",
    "tools-call-embedded-resource": "test_embedded_resource",
    "tools-call-mixed-content": "test_multiple_content_types",
    "tools-call-with-logging": "test_tool_with_logging",
    "tools-call-with-progress": "test_tool_with_progress",
    "tools-call-sampling": "test_sampling",
    "tools-call-elicitation": "test_elicitation",
    "elicitation-sep1034-defaults": "test_elicitation_sep1034_defaults",
    "elicitation-sep1330-enums": "test_elicitation_sep1330_enums",
    "json-schema-2020-12": "json_schema_2020_12_tool",
}
_RESOURCES = {
    "resources-read-text": "test://static-text",
    "resources-read-binary": "test://static-binary",
    "resources-templates-read": "test://template/{id}/data",
}
_PROMPTS = {
    "prompts-get-simple": "test_simple_prompt",
    "prompts-get-with-args": "test_prompt_with_arguments",
    "prompts-get-embedded-resource": "test_prompt_with_embedded_resource",
    "prompts-get-with-image": "test_prompt_with_image",
}
# Scenario -> why it does not apply to this server. Listed whatever the suite says: two of
# them "pass" only because calling a tool that does not exist is answered with an error text.
NOT_APPLICABLE = {
    **{name: _FIXTURE.format(what=f"tool `{tool}`") for name, tool in _TOOLS.items()},
    **{name: _FIXTURE.format(what=f"resource `{uri}`") for name, uri in _RESOURCES.items()},
    **{name: _FIXTURE.format(what=f"prompt `{prompt}`") for name, prompt in _PROMPTS.items()},
    "server-sse-polling": "needs the suite's fixture tool `test_reconnection` and SSE resumption (an event store), "
    "which the server does not keep: a long job is followed through get_job or MCP tasks instead",
}

# fs.globSync for Node < 22, injected into the suite's bundle by a module loader hook.
_HOOKS = """export async function load(url, context, nextLoad) {
  const result = await nextLoad(url, context);
  if (!url.includes("/@modelcontextprotocol/conformance/dist/")) return result;
  let source = String(result.source);
  const found = source.match(/import\\{([^}]*)\\}from"fs"/);
  const named = found && found[1].match(/globSync as (\\w+)/);
  if (named) {
    const rest = found[1].split(",").filter((part) => !part.startsWith("globSync")).join(",");
    const shim = new URL("./glob.mjs", import.meta.url);
    source = source.replace(found[0], `import{${rest}}from"fs";import{globSync as ${named[1]}}from"${shim}"`);
  }
  return { ...result, source };
}
"""
_GLOB = """import { readdirSync } from "fs";
import { basename } from "path";
// The one pattern shape the suite uses: "**/<file name>".
export function globSync(pattern, { cwd = "." } = {}) {
  const name = basename(pattern);
  return readdirSync(cwd, { recursive: true }).map(String).filter((path) => basename(path) === name);
}
"""
_REGISTER = 'import { register } from "node:module";\nregister("./hooks.mjs", import.meta.url);\n'


def install(version: str) -> tuple[Path, dict[str, str]]:
    """The suite's CLI, installed with npm once per version; and the environment to run it in."""
    home = CACHE / version
    cli = home / "node_modules" / ".bin" / "conformance"
    if not cli.exists():
        home.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--prefix", str(home), "--no-audit", "--no-fund", f"{PACKAGE}@{version}"],
            check=True,
            stdout=sys.stderr,
        )
    env = dict(os.environ)
    major = int(
        subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout[1:].split(".")[0]
    )
    if major < 22:
        shim = home / "shim"
        shim.mkdir(exist_ok=True)
        for name, text in (("hooks.mjs", _HOOKS), ("glob.mjs", _GLOB), ("register.mjs", _REGISTER)):
            (shim / name).write_text(text)
        env["NODE_OPTIONS"] = f"{env.get('NODE_OPTIONS', '')} --import {shim / 'register.mjs'}".strip()
    return cli, env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(folder: Path, port: int) -> subprocess.Popen[bytes]:
    """`mcp-audio serve --http --sandbox` on loopback, with its own data: no key, nothing leaves."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_AUDIO_", "FAL_", "EIGEN_", "VOICE_API_"))}
    env |= {"MCP_AUDIO_DATA_DIR": str(folder / "data"), "MCP_AUDIO_OUTPUT_DIR": str(folder / "out")}
    command = [sys.executable, "-m", "mcp_audio", "serve", "--http", "--sandbox", "--port", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=(folder / "server.log").open("wb"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server stopped at start-up; see {folder / 'server.log'}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not listen within 60 s")


def outcomes(results: Path) -> dict[str, tuple[int, int, list[str]]]:
    """Scenario -> (checks passed, checks failed, failure messages), from the suite's checks.json files."""
    found: dict[str, tuple[int, int, list[str]]] = {}
    for checks in sorted(results.glob("*/checks.json")):
        name = re.sub(r"^server-|-\d{4}-\d\d-\d\dT[\d-]+Z$", "", checks.parent.name)
        passed, failed, messages = 0, 0, []
        for check in json.loads(checks.read_text()):
            if check.get("status") == "SUCCESS":
                passed += 1
            elif check.get("status") == "FAILURE":
                failed += 1
                messages.append(f"{check.get('id')}: {check.get('errorMessage', '')}"[:240])
        found[name] = (passed, failed, messages)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=["active", "all"], default="all", help="all includes pending scenarios")
    parser.add_argument("--version", default=VERSION, help="the conformance package version")
    parser.add_argument("--keep", type=Path, help="keep the suite's results and the server log in this folder")
    args = parser.parse_args()
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise SystemExit("node and npm are needed to run the conformance suite")
    cli, env = install(args.version)
    folder = Path(tempfile.mkdtemp(prefix="mcp-audio-conformance-")) if args.keep is None else args.keep
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = serve(folder, port)
    try:
        command = [str(cli), "server", "--url", f"http://127.0.0.1:{port}/mcp", "--suite", args.suite]
        subprocess.run([*command, "-o", str(folder / "results")], env=env, capture_output=True, timeout=900)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    failing = 0
    for name, (passed, failed, messages) in outcomes(folder / "results").items():
        if name in NOT_APPLICABLE:
            said = "passed" if failed == 0 and passed > 0 else "failed"
            print(f"n/a       {name}: {NOT_APPLICABLE[name]} (the suite says: {said})")
        elif failed == 0 and passed > 0:
            print(f"pass      {name}")
        else:
            failing += 1
            print(f"FAIL      {name}: " + "; ".join(messages or ["no check passed"]))
    kept = args.keep is not None or failing > 0
    print(f"{failing} applicable scenario(s) failing" + (f"; results in {folder / 'results'}" if kept else ""))
    if not kept:
        shutil.rmtree(folder, ignore_errors=True)
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
