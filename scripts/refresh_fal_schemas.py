"""Snapshot fal's published input/output JSON Schemas for every fal endpoint we call.

Usage: python scripts/refresh_fal_schemas.py PATH_TO_FAL_JS_GIT_DIR [--out FILE]

PATH is a clone (or bare mirror) of github.com/fal-ai/fal-js. Nothing of fal-js is copied here:
the generated files it holds are read as data and reduced to JSON Schema facts (types, enums,
ranges, defaults, required, short descriptions), written to mcp_audio/sandbox/fal_schemas.json
with the commit, date and path each endpoint came from. Which files, best first:

1. "jsonschema": libs/schemas/src/<category>/endpoint-schema-map.ts + schemas.gen.ts (fal's
   OpenAPI schemas, self-contained with `$defs`; pull request #212). Object literals, evaluated
   by node after the TypeScript-only `as const` is removed.
2. "zod": libs/types/src/<category>/endpoint-schema.ts + zod.gen.ts (also under
   libs/client/src/types/), evaluated by node against a small stand-in for `z` defined below
   that records JSON Schema instead of validating.
3. "typescript": libs/client/src/types/endpoints.ts (types only: no ranges; defaults are read
   from the "Default value: `...`" comments), parsed here.

For each endpoint the newest commit (by committer date, over every ref of the clone) holding it
in the best available format is taken: fal drops endpoints from its newest listings, and older
commits still hold them. Needs git and node on PATH.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "mcp_audio" / "sandbox" / "fal_schemas.json"

# Endpoints we call or will call; every fal endpoint named in manifests/*.toml is added to these.
ENDPOINTS = [
    "fal-ai/qwen-3-tts/text-to-speech/1.7b",
    "fal-ai/qwen-3-tts/text-to-speech/0.6b",
    "fal-ai/qwen-3-tts/clone-voice/1.7b",
    "fal-ai/qwen-3-tts/clone-voice/0.6b",
    "fal-ai/whisper",
    "fal-ai/wizper",
    "fal-ai/speech-to-text/turbo/stream",
    "fal-ai/elevenlabs/tts/multilingual-v2",
    "fal-ai/elevenlabs/tts/turbo-v2.5",
    "fal-ai/elevenlabs/tts/eleven-v3",
    "fal-ai/elevenlabs/speech-to-text",
    "fal-ai/elevenlabs/speech-to-text/scribe-v2",
    "fal-ai/elevenlabs/sound-effects",
    "fal-ai/elevenlabs/audio-isolation",
    "fal-ai/lyria2",
    "fal-ai/minimax-music",
    "fal-ai/minimax-music/v2",
    "CassetteAI/music-generator",
    "cassetteai/sound-effects-generator",
    "fal-ai/diffrhythm",
    "fal-ai/yue",
    "fal-ai/ace-step",
    "fal-ai/ace-step/prompt-to-audio",
    "fal-ai/ace-step/audio-inpaint",
    "fal-ai/ace-step/audio-outpaint",
    "fal-ai/ace-step/audio-to-audio",
    "fal-ai/mmaudio-v2/text-to-audio",
    # planned
    "fal-ai/elevenlabs/text-to-dialogue/eleven-v3",
    "fal-ai/minimax/speech-2.8-hd",
    "fal-ai/minimax/speech-2.8-turbo",
    "fal-ai/kokoro/american-english",
    "fal-ai/qwen-3-tts/voice-design/1.7b",
    "fal-ai/minimax/voice-design",
    "fal-ai/minimax/voice-clone",
    "fal-ai/elevenlabs/voice-changer",
    "fal-ai/elevenlabs/dubbing",
    "nvidia/nemotron-asr-multilingual/asr",
    "fal-ai/audio-understanding",
    "fal-ai/elevenlabs/music",
    "fal-ai/minimax-music/v2.6",
    "fal-ai/lyria3",
    "fal-ai/lyria3/pro",
    "fal-ai/stable-audio-25/text-to-audio",
    "fal-ai/elevenlabs/sound-effects/v2",
    "mirelo-ai/sfx-v1.5/video-to-audio",
    "fal-ai/demucs",
    "fal-ai/sam-audio/separate",
    "fal-ai/deepfilternet3",
    "fal-ai/ffmpeg-api/merge-audios",
    # issue 23: the rest of fal's audio catalog
    "fal-ai/gemini-3.1-flash-tts",
    "xai/tts/v1",
    "fal-ai/bytedance/seed-speech/tts/v2",
    "alibaba/qwen-audio-3-tts",
    "fal-ai/inworld-tts",
    "fal-ai/maya",
    "fal-ai/chatterbox/text-to-speech/multilingual",
    "fal-ai/dia-tts",
    "fal-ai/dia-tts/voice-clone",
    "fal-ai/vibevoice",
    "fal-ai/vibevoice/7b",
    "fal-ai/index-tts-2/text-to-speech",
    "fal-ai/chatterbox/speech-to-speech",
    "resemble-ai/chatterboxhd/speech-to-speech",
    "fal-ai/stable-audio-3/medium/text-to-audio",
    "fal-ai/stable-audio-3/medium/audio-to-audio",
    "fal-ai/stable-audio-3/medium/audio-inpainting",
    "fal-ai/stable-audio-3/medium/audio-outpainting",
    "fal-ai/stable-audio-3/small/music/text-to-audio",
    "fal-ai/stable-audio-3/small/music/audio-to-audio",
    "fal-ai/stable-audio-3/small/music/audio-inpainting",
    "fal-ai/stable-audio-3/small/music/audio-outpainting",
    "fal-ai/stable-audio-3/small/sfx/text-to-audio",
    "fal-ai/stable-audio-3/small/sfx/audio-to-audio",
    "fal-ai/stable-audio-3/small/sfx/audio-inpainting",
    "fal-ai/stable-audio-3/small/sfx/audio-outpainting",
    "sonilo/v1.1/text-to-music",
    "sonilo/v1.1/text-to-sound-effects",
    "bytedance/seed-audio-1.0",
    "mirelo-ai/sfx1.6/text-to-audio",
    "mirelo-ai/sfx1.6/extend-audio",
    "mirelo-ai/sfx1.6/inpaint-audio",
    "fal-ai/hunyuan-video-foley",
    "fal-ai/kling-video/video-to-audio",
    "fal-ai/thinksound",
    "sonilo/v1.1/video-to-music",
    "fal-ai/sam-audio/span-separate",
    "fal-ai/sam-audio/visual-separate",
    "fal-ai/silero-vad",
    "fal-ai/cohere-transcribe",
]

# What a snapshot keeps of a schema; everything else (examples, titles, UI hints) is dropped.
KEEP = {
    "type", "properties", "required", "items", "enum", "const", "default", "description",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "pattern", "format", "minItems", "maxItems", "uniqueItems",
    "additionalProperties", "anyOf", "oneOf", "allOf", "$ref", "$defs", "nullable",
    "prefixItems", "minProperties", "maxProperties",
}  # fmt: skip
DESCRIPTION_CHARS = 160


# --- git ---------------------------------------------------------------------------------------


class Git:
    def __init__(self, git_dir: Path) -> None:
        self.git_dir = git_dir

    def run(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(["git", f"--git-dir={self.git_dir}", *args], capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def commits(self, *paths: str) -> list[tuple[str, str]]:
        """(sha, committer date) of every commit on any ref touching `paths`, newest first."""
        out = self.run("log", "--all", "--no-merges", "--format=%H %ct %cI", "--", *paths)
        rows = [line.split(" ") for line in out.splitlines() if line]
        rows.sort(key=lambda r: (-int(r[1]), r[0]))
        return [(r[0], r[2]) for r in rows]

    def files(self, commit: str, pattern: re.Pattern[str]) -> list[str]:
        out = self.run("ls-tree", "-r", "--name-only", commit, "--", "libs")
        return [p for p in out.splitlines() if pattern.fullmatch(p)]

    def show(self, commit: str, path: str) -> str | None:
        done = subprocess.run(
            ["git", f"--git-dir={self.git_dir}", "show", f"{commit}:{path}"], capture_output=True, check=False
        )
        return done.stdout.decode("utf-8") if done.returncode == 0 else None  # None: blob absent


# --- node evaluation of generated object literals ------------------------------------------------

# A stand-in for zod's `z` that builds JSON Schema as the generated code calls it. Our own code.
_NODE = r"""
const vm = require("vm");
const job = JSON.parse(require("fs").readFileSync(0, "utf8"));
class S {
  constructor(js, opt) { this.js = js; this.opt = !!opt; }
  with(extra, opt) { return new S(Object.assign({}, this.js, extra), opt === undefined ? this.opt : opt); }
  optional() { return this.with({}, true); }
  nullish() { return new S({ anyOf: [this.js, { type: "null" }] }, true); }
  nullable() { return new S({ anyOf: [this.js, { type: "null" }] }, this.opt); }
  default(v) { return this.with({ default: v }, true); }
  register(_r, meta) { return this.with(meta || {}); }
  describe(d) { return this.with({ description: d }); }
  meta(m) { return this.with(m || {}); }
  int() { return this.with({ type: "integer" }); }
  gte(v) { return this.with({ minimum: v }); }
  lte(v) { return this.with({ maximum: v }); }
  gt(v) { return this.with({ exclusiveMinimum: v }); }
  lt(v) { return this.with({ exclusiveMaximum: v }); }
  bound(v, lo) {
    const t = this.js.type;
    const key = t === "string" ? (lo ? "minLength" : "maxLength")
      : t === "array" ? (lo ? "minItems" : "maxItems") : (lo ? "minimum" : "maximum");
    return this.with({ [key]: v });
  }
  min(v) { return this.bound(v, true); }
  max(v) { return this.bound(v, false); }
  length(v) { return this.bound(v, true).bound(v, false); }
  regex(r) { return this.with({ pattern: r.source }); }
  url() { return this.with({ format: "uri" }); }
  passthrough() { return this.with({ additionalProperties: true }); }
  strict() { return this.with({ additionalProperties: false }); }
  strip() { return this; }
}
const isUnknown = (s) => Object.keys(s.js).length === 0;
const z = {
  globalRegistry: {},
  string: () => new S({ type: "string" }),
  number: () => new S({ type: "number" }),
  int: () => new S({ type: "integer" }),
  boolean: () => new S({ type: "boolean" }),
  null: () => new S({ type: "null" }),
  unknown: () => new S({}),
  any: () => new S({}),
  never: () => new S({ not: {} }),
  literal: (v) => new S({ const: v }),
  enum: (vs) => new S({ type: typeof vs[0] === "number" ? "number" : "string", enum: vs }),
  array: (s) => new S({ type: "array", items: s.js }),
  tuple: (ss) => new S(ss.length ? { type: "array", prefixItems: ss.map((s) => s.js) } : { type: "array" }),
  record: (_k, v) => new S({ type: "object", additionalProperties: (v || _k).js }),
  lazy: (f) => f(),
  optional: (s) => s.optional(),
  nullable: (s) => s.nullable(),
  nullish: (s) => s.nullish(),
  // hey-api renders OpenAPI's {"type": "null"} branch of a nullable as z.unknown()
  union: (ss) => new S({ anyOf: ss.map((s) => (isUnknown(s) ? { type: "null" } : s.js)) }),
  object: (shape) => {
    const properties = {}, required = [];
    for (const [k, s] of Object.entries(shape)) { properties[k] = s.js; if (!s.opt) required.push(k); }
    const js = { type: "object", properties };
    if (required.length) js.required = required;
    return new S(js);
  },
};
const ctx = vm.createContext({ z });
vm.runInContext(job.code, ctx, { filename: job.filename });
const out = {};
for (const name of job.names) {
  const v = vm.runInContext(`typeof ${name} === "undefined" ? undefined : ${name}`, ctx);
  out[name] = v instanceof Object && v.js ? v.js : v;
}
process.stdout.write(JSON.stringify(out));
"""


def _strip_module(code: str) -> str:
    code = re.sub(r"^import[^;]*;\s*$", "", code, flags=re.M)
    code = re.sub(r"^export (const|let) ", r"var ", code, flags=re.M)
    code = re.sub(r"^export type [^;]*;\s*$", "", code, flags=re.M)
    return re.sub(r"\}\s+as\s+const\s*;", "};", code)


def node_eval(code: str, names: list[str], filename: str) -> dict[str, Any]:
    job = json.dumps({"code": _strip_module(code), "names": names, "filename": filename})
    done = subprocess.run(["node", "-e", _NODE], input=job, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"node could not evaluate {filename}: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# --- TypeScript types (endpoints.ts) -------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<ws>\s+)|(?P<doc>/\*.*?\*/)|(?P<line>//[^\n]*)|(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    |(?P<num>-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)|(?P<id>[A-Za-z_$][\w$]*)|(?P<punct>[{}()\[\]<>;:?|&,=.])""",
    re.S | re.X,
)


def _tokens(text: str, start: int) -> Iterator[tuple[str, str]]:
    pos = start
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"cannot tokenize TypeScript at {text[pos : pos + 40]!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind in ("ws", "line"):
            continue
        yield kind, m.group()


def _doc_text(doc: str) -> str:
    lines = [re.sub(r"^\s*\*\s?", "", line) for line in doc[3:-2].splitlines()]
    return " ".join(line.strip() for line in lines if line.strip())


class TsTypes:
    """The `export type X = ...;` declarations of one endpoints.ts, turned into JSON Schema."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.decls = {m[1]: m.end() for m in re.finditer(r"^export type (\w+)\s*=", text, re.M)}
        self.endpoint_map: dict[str, tuple[str, str]] = {}
        for m in re.finditer(r'^\s+"([^"]+)": \{\s*input: (\w+);\s*output: (\w+);\s*\};', text, re.M):
            self.endpoint_map[m[1].lower()] = (m[2], m[3])

    def schema(self, name: str) -> dict[str, Any]:
        defs: dict[str, Any] = {}
        root = self._named(name, defs, top=True)
        while set(root) == {"$ref"}:  # `type B = A;`: the schema of A itself
            root = dict(defs[root["$ref"].rsplit("/", 1)[1]])
        if defs:
            root["$defs"] = defs
        return root

    def _named(self, name: str, defs: dict[str, Any], top: bool = False) -> dict[str, Any]:
        if name in ("string",):
            return {"type": "string"}
        if name == "number":
            return {"type": "number"}
        if name == "boolean":
            return {"type": "boolean"}
        if name in ("null", "undefined", "void"):
            return {"type": "null"}
        if name in ("any", "unknown", "object", "Blob") or (name == "File" and name not in self.decls):
            return {}  # Blob and the DOM's File: what `string | Blob | File` (a file input) allows besides a URL
        if name not in self.decls:
            raise ValueError(f"TypeScript type {name} is not declared")
        if top:
            return self._parse_decl(name, defs)
        if name not in defs:
            defs[name] = {}  # placeholder against cycles
            defs[name] = self._parse_decl(name, defs)
        return {"$ref": f"#/$defs/{name}"}

    def _parse_decl(self, name: str, defs: dict[str, Any]) -> dict[str, Any]:
        toks = list(self._decl_tokens(self.decls[name]))
        parser = _TsParser(toks, lambda n: self._named(n, defs))
        out = parser.type_()
        if parser.i != len(toks):
            raise ValueError(f"unparsed tokens in {name}: {toks[parser.i : parser.i + 5]}")
        return out

    def _decl_tokens(self, start: int) -> Iterator[tuple[str, str]]:
        depth = 0
        for kind, tok in _tokens(self.text, start):
            if kind == "punct" and tok in "{(<[":
                depth += 1
            elif kind == "punct" and tok in "})>]":
                depth -= 1
            elif kind == "punct" and tok == ";" and depth == 0:
                return
            yield kind, tok


class _TsParser:
    def __init__(self, toks: list[tuple[str, str]], named: Any) -> None:
        self.toks = toks
        self.i = 0
        self.named = named

    def peek(self) -> str | None:
        while self.i < len(self.toks) and self.toks[self.i][0] == "doc":
            self.i += 1
        return self.toks[self.i][1] if self.i < len(self.toks) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        self.peek()
        kind, tok = self.toks[self.i]
        if expected is not None and tok != expected:
            raise ValueError(f"expected {expected!r}, got {tok!r}")
        self.i += 1
        return kind, tok

    def type_(self) -> dict[str, Any]:
        if self.peek() == "|":
            self.take()
        members = [self.postfix()]
        while self.peek() == "|":
            self.take()
            members.append(self.postfix())
        return _union(members)

    def postfix(self) -> dict[str, Any]:
        out = self.primary()
        while self.peek() == "[":
            self.take("[")
            self.take("]")
            out = {"type": "array", "items": out}
        return out

    def primary(self) -> dict[str, Any]:
        kind, tok = self.take()
        if kind == "str":
            return {"const": json.loads(tok) if tok[0] == '"' else tok[1:-1]}
        if kind == "num":
            return {"const": json.loads(tok)}
        if tok in ("true", "false"):
            return {"const": tok == "true"}
        if tok == "(":
            out = self.type_()
            self.take(")")
            return out
        if tok == "{":
            return self.object_()
        if kind == "id":
            if self.peek() == "<":
                self.take("<")
                args = [self.type_()]
                while self.peek() == ",":
                    self.take()
                    args.append(self.type_())
                self.take(">")
                if tok == "Array":
                    return {"type": "array", "items": args[0]}
                if tok == "Record":
                    return {"type": "object", "additionalProperties": args[-1]}
                raise ValueError(f"unsupported generic {tok}")
            result: dict[str, Any] = self.named(tok)
            return result
        raise ValueError(f"unexpected TypeScript token {tok!r}")

    def object_(self) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        required: list[str] = []
        while True:
            doc = None
            while self.i < len(self.toks) and self.toks[self.i][0] == "doc":
                doc = self.toks[self.i][1]
                self.i += 1
            if self.peek() == "}":
                self.take()
                break
            kind, key = self.take()
            if kind == "str":
                key = json.loads(key)
            optional = self.peek() == "?"
            if optional:
                self.take()
            self.take(":")
            prop = self.type_()
            if self.peek() in (";", ","):
                self.take()
            if doc:
                text = _doc_text(doc)
                m = re.search(r"\s*Default value: `(.*)`\s*$", text)
                if m:
                    text = text[: m.start()]
                    try:
                        default = json.loads(m[1])
                    except ValueError:
                        default = None
                    if default is not None and default != "null":
                        prop = {**prop, "default": default}
                if text:
                    prop = {**prop, "description": text}
            properties[key] = prop
            if not optional:
                required.append(key)
        out: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            out["required"] = required
        return out


def _union(members: list[dict[str, Any]]) -> dict[str, Any]:
    if any(m == {} for m in members) and any(m.get("type") == "string" for m in members):
        members = [m for m in members if m != {}]  # `string | Blob | File`: a file URL
    if any(m.get("$ref") == "#/$defs/File" for m in members) and any(m.get("type") == "string" for m in members):
        members = [m for m in members if m.get("$ref") != "#/$defs/File"]
    if len(members) == 1:
        return members[0]
    if all("const" in m and len(m) == 1 for m in members):
        values = [m["const"] for m in members]
        kinds = {type(v).__name__ for v in values}
        kind = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(kinds.pop(), "")
        return {"type": kind, "enum": values} if len(kinds) == 0 and kind else {"enum": values}
    return {"anyOf": members}


# --- sources -------------------------------------------------------------------------------------


@dataclass
class Found:
    """An endpoint's schemas as found so far: each part may come from a different source."""

    parts: dict[str, tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=dict)  # part: (schema, source)
    notes: list[str] = field(default_factory=list)

    def complete(self) -> bool:
        return len(self.parts) == 2


def _dangling(schema: dict[str, Any]) -> list[str]:
    defs = schema.get("$defs") or {}
    refs = set(re.findall(r'"#/\$defs/([^"]+)"', json.dumps(schema)))
    return sorted(refs - set(defs))


def record(
    found: dict[str, Found], ours: str, values: dict[str, Any], names: tuple[str, str], src: dict[str, Any]
) -> None:
    """Take the parts of `ours` still missing from `values`; refuse a schema whose $refs dangle."""
    entry = found.setdefault(ours, Found())
    for part, name in zip(("input", "output"), names, strict=True):
        schema = values.get(name)
        if part in entry.parts or schema is None:
            continue
        dangling = _dangling(schema)
        if dangling:
            entry.notes.append(
                f"{part} in {src['kind']} {src['commit'][:10]} {src['path']} skipped: $ref to missing "
                + ", ".join(f"$defs/{d}" for d in dangling)
            )
            continue
        entry.parts[part] = (schema, src)


def _pending(wanted: dict[str, str], found: dict[str, Found]) -> dict[str, str]:
    return {k: v for k, v in wanted.items() if v not in found or not found[v].complete()}


def find_jsonschema(git: Git, wanted: dict[str, str], found: dict[str, Found]) -> None:
    map_file = re.compile(r"libs/schemas/src/[\w-]+/endpoint-schema-map\.ts")
    entry = re.compile(r'^  "([^"]+)": \{\s*input: (\w+),\s*output: (\w+),?\s*\},?', re.M)
    for commit, date in git.commits("libs/schemas/src"):
        for path in git.files(commit, map_file):
            text = git.show(commit, path)
            if text is None or "= {" not in text:
                continue
            value = text[text.rindex("= {") :]
            pending = _pending(wanted, found)
            hits = [(m[1], m[2], m[3]) for m in entry.finditer(value) if m[1].lower() in pending]
            if not hits:
                continue
            gen_path = path.replace("endpoint-schema-map.ts", "schemas.gen.ts")
            _record_hits(git, (commit, date), gen_path, "jsonschema", hits, wanted, found)


def _record_hits(
    git: Git,
    at: tuple[str, str],
    gen_path: str,
    kind: str,
    hits: list[tuple[str, str, str]],
    wanted: dict[str, str],
    found: dict[str, Found],
) -> None:
    """Evaluate the generated file's named schemas for `hits` (id, input name, output name) and record them."""
    commit, date = at
    code = git.show(commit, gen_path)
    if code is None:
        return
    names = sorted({n for _, i, o in hits for n in (i, o)})
    values = node_eval(code, names, gen_path)
    for fal_id, i, o in hits:
        src = {"commit": commit, "date": date, "path": gen_path, "kind": kind, "id": fal_id}
        record(found, wanted[fal_id.lower()], values, (i, o), src)


def find_zod(git: Git, wanted: dict[str, str], found: dict[str, Found]) -> None:
    map_file = re.compile(r"libs/(?:types/src|client/src/types)/[\w-]+/endpoint-schema\.ts")
    entry = re.compile(r'endpoint: z\.literal\("([^"]+)"\),\s*input: (\w+),\s*output: (\w+),')
    for commit, date in git.commits("libs/types/src", "libs/client/src/types"):
        if not _pending(wanted, found):
            return
        for path in git.files(commit, map_file):
            text = git.show(commit, path)
            if text is None:
                continue
            pending = _pending(wanted, found)
            hits = [(m[1], m[2], m[3]) for m in entry.finditer(text) if m[1].lower() in pending]
            if not hits:
                continue
            gen_path = path.replace("endpoint-schema.ts", "zod.gen.ts")
            _record_hits(git, (commit, date), gen_path, "zod", hits, wanted, found)


def find_typescript(git: Git, wanted: dict[str, str], found: dict[str, Found]) -> None:
    path = "libs/client/src/types/endpoints.ts"
    for commit, date in git.commits(path):
        missing = _pending(wanted, found)
        if not missing:
            return
        text = git.show(commit, path)
        if text is None or not any(f'"{k}"' in text.lower() for k in missing):
            continue
        types = TsTypes(text)
        for key, ours in missing.items():
            if key in types.endpoint_map:
                i, o = types.endpoint_map[key]
                src = {"commit": commit, "date": date, "path": path, "kind": "typescript", "id": ours}
                record(found, ours, {i: types.schema(i), o: types.schema(o)}, (i, o), src)


def _top(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema and schema["$ref"].startswith("#/$defs/"):
        schema = (schema.get("$defs") or {}).get(schema["$ref"][8:], {}) | {"$defs": schema.get("$defs")}
    return schema


def compare_with_newest_types(git: Git, wanted: dict[str, str], found: dict[str, Found]) -> None:
    """Note where fal's newest TypeScript types name other fields than the schema taken.

    The JSON Schemas (with ranges) may be older than the newest types; a field added or dropped
    since is worth knowing even though its ranges are not published.
    """
    path = "libs/client/src/types/endpoints.ts"
    todo = {k: v for k, v in wanted.items() if v in found and found[v].complete()}
    for commit, date in git.commits(path):
        if not todo:
            return
        text = git.show(commit, path)
        if text is None or not any(f'"{k}"' in text.lower() for k in todo):
            continue
        types = TsTypes(text)
        for key, ours in list(todo.items()):
            if key not in types.endpoint_map:
                continue
            del todo[key]
            entry = found[ours]
            names = types.endpoint_map[key]
            for part, name in zip(("input", "output"), names, strict=True):
                schema, src = entry.parts[part]
                if src["commit"] == commit:
                    continue
                try:
                    newer, taken = _top(types.schema(name)), _top(schema)
                except ValueError as exc:
                    entry.notes.append(f"{part}: newer types ({commit[:10]} {path}) not read: {exc}")
                    continue
                new_props, old_props = set(newer.get("properties", {})), set(taken.get("properties", {}))
                changes = []
                if new_props - old_props:
                    changes.append(f"adds {', '.join(sorted(new_props - old_props))}")
                if old_props - new_props:
                    changes.append(f"drops {', '.join(sorted(old_props - new_props))}")
                new_req, old_req = set(newer.get("required", [])), set(taken.get("required", []))
                if new_req != old_req:
                    changes.append(f"requires {', '.join(sorted(new_req)) or 'nothing'}")
                if changes:
                    entry.notes.append(f"{part}: newer types ({commit[:10]} {date[:10]} {path}) " + "; ".join(changes))
                if part == "input":
                    _merge_defaults(taken, newer, f"{commit[:10]} {date[:10]} {path}", entry.notes)


def _merge_defaults(taken: dict[str, Any], newer: dict[str, Any], where: str, notes: list[str]) -> None:
    """Defaults the newer types document but the schema taken lacks (generated zod drops enum defaults)."""
    props = taken.get("properties", {})
    for name, prop in sorted(newer.get("properties", {}).items()):
        if name not in props or "default" not in prop:
            continue
        ours = props[name].get("default")
        if ours is None:
            props[name]["default"] = prop["default"]
            notes.append(f"input.{name}: default {json.dumps(prop['default'])} from newer types ({where})")
        elif ours != prop["default"] and not (_number(ours) and _number(prop["default"]) and ours == prop["default"]):
            notes.append(f"input.{name}: newer types ({where}) say default {json.dumps(prop['default'])}")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- reduction -----------------------------------------------------------------------------------


def _trim_description(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= DESCRIPTION_CHARS:
        return text
    cut = text[:DESCRIPTION_CHARS]
    stop = cut.rfind(". ")
    return cut[: stop + 1] if stop >= 60 else cut.rstrip() + "…"


def reduce_schema(node: Any, in_properties: bool = False) -> Any:
    """Keep the validating keywords and short descriptions; drop examples, titles, UI hints."""
    if isinstance(node, list):
        return [reduce_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    if in_properties:  # a map of names to schemas: keep every name
        return {key: reduce_schema(value) for key, value in node.items()}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in KEEP:
            continue
        if key == "description":
            if isinstance(value, str) and value.strip():
                out[key] = _trim_description(value)
        elif key in ("properties", "$defs"):
            out[key] = reduce_schema(value, in_properties=True)
        elif key in ("default", "enum", "const"):
            out[key] = value
        else:
            out[key] = reduce_schema(value)
    return _flat_any_of(out)


def _flat_any_of(node: dict[str, Any]) -> dict[str, Any]:
    """anyOf[anyOf[X, null], null] -> anyOf[X, null]; anyOf[string, string] -> string."""
    if "anyOf" not in node:
        return node
    members: list[Any] = []
    for member in node["anyOf"]:
        inner = member["anyOf"] if isinstance(member, dict) and set(member) == {"anyOf"} else [member]
        for m in inner:
            if m not in members:
                members.append(m)
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    if len(members) == 1 and isinstance(members[0], dict) and not set(members[0]) & set(rest):
        return {**rest, **members[0]}
    return {**rest, "anyOf": members}


def _used_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop `$defs` entries that nothing references."""
    defs = schema.get("$defs")
    if not defs:
        return schema
    used: set[str] = set()
    todo = [json.dumps({k: v for k, v in schema.items() if k != "$defs"})]
    while todo:
        for name in re.findall(r'"#/\$defs/([^"]+)"', todo.pop()):
            if name not in used and name in defs:
                used.add(name)
                todo.append(json.dumps(defs[name]))
    out = {k: v for k, v in schema.items() if k != "$defs"}
    if used:
        out["$defs"] = {k: defs[k] for k in sorted(used)}
    return out


def manifest_endpoints() -> list[str]:
    out: list[str] = []
    for path in sorted((ROOT / "manifests").glob("*.toml")):
        data = tomllib.loads(path.read_text("utf-8"))
        if data.get("provider") != "fal":
            continue
        for tool in data.get("tools", []):
            if tool.get("endpoint"):
                out.append(tool["endpoint"])
            out.extend((tool.get("endpoints") or {}).values())
    return out


def build(git_dir: Path) -> dict[str, Any]:
    git = Git(git_dir)
    endpoints = sorted(set(ENDPOINTS) | set(manifest_endpoints()), key=str.lower)
    wanted = {e.lower(): e for e in endpoints}
    found: dict[str, Found] = {}
    find_jsonschema(git, wanted, found)
    find_zod(git, wanted, found)
    find_typescript(git, wanted, found)
    compare_with_newest_types(git, wanted, found)
    missing = [e for e in endpoints if e not in found or not found[e].complete()]
    if missing:
        print(f"not found in any commit: {', '.join(missing)}", file=sys.stderr)
    head = git.run("rev-parse", "HEAD", check=False).strip()
    result: dict[str, Any] = {
        "generated_from": {
            "repository": "https://github.com/fal-ai/fal-js",
            "head": head,
            "script": "scripts/refresh_fal_schemas.py",
            "note": (
                "fal's published input/output schemas, reduced to validating keywords and short descriptions. "
                "Per endpoint, `source` (and `output_source` when the output came from elsewhere) gives the "
                "commit (newest holding it), its committer date, the file and "
                "its kind: jsonschema (fal's OpenAPI JSON Schema), zod (generated zod, read back as JSON Schema; "
                "a z.unknown() branch of a union is read as null) or typescript (types only: no ranges, defaults "
                "from comments). Refresh: python scripts/refresh_fal_schemas.py PATH_TO_FAL_JS_GIT_DIR"
            ),
            "missing": missing,
        },
        "endpoints": {},
    }
    for endpoint in endpoints:
        if endpoint in missing:
            continue
        f = found[endpoint]
        (inp, in_src), (out, out_src) = f.parts["input"], f.parts["output"]
        entry: dict[str, Any] = {
            "input": _used_defs(reduce_schema(inp)),
            "output": _used_defs(reduce_schema(out)),
            "source": in_src,
        }
        if out_src != in_src:
            entry["output_source"] = out_src
        if f.notes:
            entry["notes"] = f.notes
        result["endpoints"][endpoint] = entry
    return result


def dump(snapshot: dict[str, Any]) -> str:
    """One endpoint per line: deterministic, sorted keys, and a diff names the endpoint that changed."""
    compact = {"separators": (",", ":"), "sort_keys": True, "ensure_ascii": False}
    lines = ['{"endpoints":{']
    items = sorted(snapshot["endpoints"].items())
    for n, (endpoint, entry) in enumerate(items):
        comma = "," if n < len(items) - 1 else ""
        lines.append(f"{json.dumps(endpoint)}:{json.dumps(entry, **compact)}{comma}")  # type: ignore[arg-type]
    lines.append(f'}},"generated_from":{json.dumps(snapshot["generated_from"], **compact)}}}')  # type: ignore[arg-type]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("git_dir", type=Path, help="a clone or mirror of github.com/fal-ai/fal-js (its .git)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    snapshot = build(args.git_dir)
    text = dump(snapshot)
    json.loads(text)
    args.out.write_text(text, "utf-8")
    print(f"{args.out}: {len(snapshot['endpoints'])} endpoints, {len(text.encode()):,} bytes")


if __name__ == "__main__":
    main()
