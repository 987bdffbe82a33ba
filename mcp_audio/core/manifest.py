"""The manifest format: what a file under manifests/ may say, as pydantic models.

A manifest describes capabilities, never code. Every model forbids unknown keys so a typo in
a manifest fails at start-up with its file and field named, instead of being ignored.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

InputType = Literal["string", "integer", "number", "boolean", "array", "object"]
Kind = Literal["tts", "clone", "stt", "music", "sfx", "edit", "post"]
ADVANCED_GROUP = "advanced"  # the optional object holding the inputs marked `advanced = true`
PriceUnit = Literal["request", "1000_characters", "input_minute", "second", "output_second"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelRule(_Strict):
    """What one choice of the endpoint input changes for an input (manifest `per_model`),
    checked when a call is prepared and stated in words in the tool's input schema."""

    required: bool = False
    max_length: int | None = Field(default=None, ge=1)


class InputSpec(_Strict):
    """One argument of a tool, as the agent sees it and as the upstream receives it."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: InputType
    # Left out where the name says it all in its tool (`text` of a TTS tool): tools/list is paid
    # for in every conversation.
    description: str = ""
    required: bool = False
    default: Any = None
    enum: list[Any] | None = None
    items: InputType | None = None  # element type of an array
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    min_items: int | None = None
    max_items: int | None = None
    pattern: str | None = None
    pattern_message: str | None = None  # what the pattern means, in words, for error messages
    upstream: bool = True  # False: used by the server itself (an endpoint choice, a voice name to save)
    advanced: bool = False  # grouped under one optional `advanced` object, without descriptions, to save context
    file: Literal["audio", "video", "media", "embedding"] | None = None  # a file the upstream reads
    # How the upstream takes the file: a URL it fetches (a local file is uploaded first), the
    # bytes as a multipart part of the request, or (tools run in this process) a local path: a
    # file inside the allowed folders or an earlier output as it is, anything else downloaded
    # to a temporary file. An array input of strings with `file` set is a list of files.
    sent_as: Literal["url", "part", "path"] = "url"
    # Where what an upload returns goes, when not in this input itself (e.g. Eigen's `voice_id`).
    uploaded_as: str | None = None
    min_duration_s: float | None = None  # checked for local files before upload (URLs are the upstream's)
    max_duration_s: float | None = None
    fields: list[InputSpec] | None = None  # the members of an object input (or of each list element)
    encode: Literal["json"] | None = None  # "json": an object sent upstream as a JSON string (form fields)
    # The upstream field this input fills when not one of the same name: another name (a file
    # input named `audio_url` like every file input, sent as Eigen's multipart part `file`), or a
    # dot path into an object (MiniMax's voice is `voice_setting.voice_id`), so the agent sees a
    # flat input.
    upstream_name: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
    # Deprecated names of this input, still accepted for one release after a rename (not in the
    # schema; a call giving an old and the new name is refused naming both).
    old_names: list[str] = Field(default_factory=list)
    # Only these choices of the tool's endpoint input take it (e.g. eleven-v3 has no `speed`);
    # given with another choice, the call is refused naming the input. None: every endpoint.
    models: list[str] | None = None
    # Per choice of the endpoint input: stricter rules for this input (e.g. required only by the
    # inpaint mode of a merged tool, or a shorter text for one model).
    per_model: dict[str, ModelRule] | None = None
    # A value sent upstream as null: fal's Wizper detects the language only when `language` is
    # null (its default is "en"), and a TOML manifest cannot write null.
    null_value: str | None = None
    # The id of a finished job of this server whose result the tool reads ("transcript": one
    # with segment or word timings).
    job: Literal["transcript"] | None = None

    @property
    def sent_name(self) -> str:
        """The key of this input in the upstream request: a file input's field or multipart part."""
        return self.upstream_name or self.name

    @model_validator(mode="after")
    def _advanced_is_upstream(self) -> InputSpec:
        if self.advanced and (self.required or not self.upstream):
            raise ValueError("an advanced input must be optional and sent upstream")
        if self.advanced and self.old_names:
            raise ValueError("`old_names` apply to inputs outside `advanced` only")
        return self

    @model_validator(mode="after")
    def _consistent(self) -> InputSpec:
        if self.type == "array" and self.items is None:
            raise ValueError("an array input needs `items` (the element type)")
        objects = self.type == "object" or (self.type == "array" and self.items == "object")
        if objects != (self.fields is not None):
            raise ValueError(
                "an object input (or a list of objects) needs `fields`, and only such an input may have them"
            )
        if self.encode is not None and self.type != "object":
            raise ValueError("`encode` applies to object inputs only")
        if self.file is None and (self.sent_as != "url" or self.uploaded_as is not None):
            raise ValueError("`sent_as` and `uploaded_as` apply to file inputs only")
        if self.null_value is not None and self.type != "string":
            raise ValueError("`null_value` applies to string inputs only")
        if self.file is not None and self.type == "array" and (self.items != "string" or self.sent_as != "path"):
            raise ValueError('a list of files needs `items = "string"` and `sent_as = "path"`')
        if self.file is not None and self.upstream_name is not None and "." in self.upstream_name:
            raise ValueError("a file input's `upstream_name` is a field name, not a dot path")
        if self.job is not None and (self.type != "string" or self.file is not None):
            raise ValueError("`job` applies to string inputs that are not files")
        if self.required and self.default is not None:
            raise ValueError("a required input cannot have a default")
        if self.enum is not None and self.default is not None and self.default not in self.enum:
            raise ValueError(f"default {self.default!r} is not one of enum {self.enum!r}")
        return self


class Surcharge(_Strict):
    """A price increase when an input is used (e.g. Scribe keyterms: +30%)."""

    input: str
    percent: float = Field(gt=0)


class Price(_Strict):
    """What one call costs upstream, as the upstream publishes it.

    The billed quantity comes from `quantity_input` (the text for characters, a duration input
    for seconds) or, when that input is left out, from `default_quantity`. Without either, the
    cost of a call cannot be known in advance (e.g. per minute of input audio).
    """

    usd: float = Field(ge=0)
    unit: PriceUnit
    quantity_input: str | None = None
    default_quantity: float | None = Field(default=None, ge=0)
    surcharge: Surcharge | None = None
    note: str | None = None

    def describe(self) -> str:
        return f"${self.usd:g} per {self.unit.replace('_', ' ')}"


class VoicePreset(_Strict):
    name: str
    notes: str = ""


class VoiceFamily(_Strict):
    """Voices one upstream model family accepts: built-in presets, plus saved cloned voices."""

    title: str
    presets: list[VoicePreset]


class VoiceInput(_Strict):
    """Which input picks a voice, and how a saved cloned voice maps onto upstream fields.

    `cloned` maps an upstream field name to a key of the saved voice, e.g.
    {speaker_voice_embedding_file_url = "embedding_url", reference_text = "reference_text"}.
    """

    input: str
    family: str
    cloned: dict[str, str] = Field(default_factory=dict)
    # True: a value that is neither a preset nor a saved name passes as an upstream voice id
    # (upstreams with open voice catalogs, e.g. the Voice API's model ids).
    any_id: bool = False


class SavesVoice(_Strict):
    """A clone tool: on success, save the result as a named voice of `family`.

    `fields` maps a key of the saved voice to where its value comes from: `output.<dot path>`
    in the upstream result or `input.<name>` in the call's arguments.
    """

    family: str
    name_input: str
    fields: dict[str, str]


# Every clone tool takes it (added to its inputs): a name already saved is refused unless it is true.
REPLACE_INPUT: dict[str, Any] = {
    "name": "replace",
    "type": "boolean",
    "description": "Replace a saved voice of this name",
    "default": False,
    "upstream": False,
}


class ToolSpec(_Strict):
    """One tool: a capability of one upstream, possibly over several endpoints."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{2,63}$")
    title: str
    kind: Kind
    description: str = Field(min_length=40)
    endpoint: str | None = None
    endpoint_input: str | None = None  # the input whose value picks one of `endpoints`
    endpoints: dict[str, str] | None = None
    inputs: list[InputSpec]
    files: list[str] = Field(default_factory=list)  # output paths holding File objects ("audio", "clips[]")
    result_text: str | None = None  # output field shown to the model as text (a transcript)
    # The upstream's output fields besides `files`, named in the tool's outputSchema (for fal,
    # its published output schema; tests/contract/test_fal_contract.py holds them to it).
    outputs: list[str] = Field(default_factory=list)
    # Words a request may use for this tool that its name, title and description do not say
    # (find_audio_tools ranks on them too).
    keywords: list[str] = Field(default_factory=list)
    price: Price | None = None
    # True: the upstream publishes no price for it (in our sources); a capability has a price or this.
    no_published_price: bool = False
    # "queued": an upstream job that is submitted, then followed (resumable after a restart).
    # "one_shot": one request answers with the output, possibly streaming partial results as
    # events (not resumable). Unset: the upstream's default shape (core/upstreams.py).
    shape: Literal["queued", "one_shot"] | None = None
    returns: Literal["json", "audio"] = "json"  # what a one-shot answer holds
    partial_text: str | None = None  # in streaming one-shot runs: the event field with the partial text
    voice: VoiceInput | None = None
    saves_voice: SavesVoice | None = None
    # Former tool names merged into this one, kept callable (not listed) for one release: each
    # maps to the choice of the endpoint input it stands for.
    aliases: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _clone_tools_take_replace(cls, data: Any) -> Any:
        if not (isinstance(data, dict) and data.get("saves_voice") and isinstance(data.get("inputs"), list)):
            return data
        if any(isinstance(i, dict) and i.get("name") == REPLACE_INPUT["name"] for i in data["inputs"]):
            return data
        return data | {"inputs": [*data["inputs"], dict(REPLACE_INPUT)]}

    @model_validator(mode="after")
    def _endpoints_and_inputs(self) -> ToolSpec:
        names = [spec.name for spec in self.inputs]
        if ADVANCED_GROUP in names:
            raise ValueError("`advanced` is reserved for the group of inputs marked `advanced = true`")
        if len(names) != len(set(names)):
            raise ValueError(f"duplicate input names in {names}")
        old = [old for spec in self.inputs for old in spec.old_names]
        if len(old) != len(set(old)) or set(old) & set(names) or ADVANCED_GROUP in old:
            raise ValueError(f"old names {old} must differ from each other and from the inputs {names}")
        sent = [spec.sent_name for spec in self.inputs if spec.upstream]
        if len(sent) != len(set(sent)):
            raise ValueError(f"two inputs are sent upstream as the same field: {sent}")
        if (self.endpoint is None) == (self.endpoints is None):
            raise ValueError("give exactly one of `endpoint` or `endpoints` (with `endpoint_input`)")
        if self.endpoints is not None:
            chooser = next((s for s in self.inputs if s.name == self.endpoint_input), None)
            if chooser is None:
                raise ValueError(f"`endpoint_input` {self.endpoint_input!r} must name one of the inputs")
            if chooser.upstream or sorted(chooser.enum or []) != sorted(self.endpoints):
                raise ValueError(
                    "the endpoint input must have `upstream = false` and an enum equal to the endpoints' keys"
                )
            if chooser.default is None and not chooser.required:
                raise ValueError("the endpoint input needs a default or `required = true`")
        for spec in self.inputs:
            unknown = [m for m in spec.models or [] if m not in (self.endpoints or {})]
            if unknown:
                raise ValueError(f"input {spec.name!r}: models {unknown} are not keys of `endpoints`")
            unknown = [m for m in spec.per_model or {} if m not in (self.endpoints or {})]
            if unknown:
                raise ValueError(f"input {spec.name!r}: per_model keys {unknown} are not keys of `endpoints`")
            if spec.required and any(rule.required for rule in (spec.per_model or {}).values()):
                raise ValueError(f"input {spec.name!r}: `per_model` cannot make a required input required")
        for alias, choice in self.aliases.items():
            if choice not in (self.endpoints or {}) or not re.fullmatch(r"[a-z][a-z0-9_]{2,63}", alias):
                raise ValueError(f"alias {alias!r}: {choice!r} is not a key of `endpoints`")
        price = self.price
        if price is not None and self.no_published_price:
            raise ValueError("give `price` or `no_published_price = true`, not both")
        for ref in (
            self.voice.input if self.voice else None,
            self.saves_voice.name_input if self.saves_voice else None,
            price.quantity_input if price else None,
            price.surcharge.input if price and price.surcharge else None,
        ):
            if ref is not None and ref not in names:
                raise ValueError(f"{ref!r} is not one of the inputs {names}")
        return self

    @property
    def all_endpoints(self) -> list[str]:
        return [self.endpoint] if self.endpoint else list((self.endpoints or {}).values())


class FamilySpec(_Strict):
    """One listed tool over several capabilities that do one task (manifests/families.toml): a
    `model` argument picks the capability, which validates and runs the call as its own tool
    would. The capabilities stay callable by their own names, unlisted."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{2,63}$")
    title: str
    kind: Kind
    description: str = Field(min_length=40)
    # A choice of `model` -> the capability's tool name, or "tool/choice" to fix that tool's own
    # endpoint choice (its `model` input, say). The first is the default.
    models: dict[str, str] = Field(min_length=2)

    @model_validator(mode="after")
    def _choices(self) -> FamilySpec:
        for choice in self.models:
            if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", choice):
                raise ValueError(f"model choice {choice!r}: lowercase letters, digits, '.' and '-' only")
        return self


class FamiliesFile(_Strict):
    """manifests/families.toml: the tools that list several capabilities under one name."""

    families: list[FamilySpec]


class Example(_Strict):
    """A request body from the upstream's own documentation: it must validate and pass unchanged."""

    tool: str
    endpoint: str
    request: dict[str, Any]
    arguments: dict[str, Any] = Field(default_factory=dict)  # server-only arguments (e.g. the endpoint choice)
    output: dict[str, Any] | None = None  # the documented output, when the seed gives one


class Difference(_Strict):
    """A known departure of a tool from its upstream's published schema, kept on purpose.

    `difference` is the text tests/test_fal_contract.py reports for it; `reason` says why the
    tool does not follow the schema there.
    """

    tool: str
    endpoint: str
    difference: str
    reason: str = Field(min_length=10)


class ManifestFile(_Strict):
    """One file under manifests/: a model family of one upstream."""

    provider: str  # an upstream of core/upstreams.py (checked when the catalog loads)
    family: str
    tools: list[ToolSpec]
    voices: dict[str, VoiceFamily] = Field(default_factory=dict)
    examples: list[Example] = Field(default_factory=list)
    differences: list[Difference] = Field(default_factory=list)
