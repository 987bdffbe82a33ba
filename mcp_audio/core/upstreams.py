"""The upstreams this server knows, each declared once.

An `Upstream` says what the rest of the server needs to know about an upstream without
importing its (heavier) provider module: its name and label, its key and URL settings, the
call shapes it offers, how file inputs reach it, which endpoint ids it has, its provider
class and its loopback fake. Settings, secret redaction, `doctor`, manifest validation, the
server's provider factory, the README settings table, `--sandbox` and the test fixtures all
read this table.

Adding an upstream: a provider module (implementing `base.QueuedProvider` or
`base.OneShotProvider`), a fake under `mcp_audio/sandbox/`, its manifests, and one entry here.
An upstream that runs in this process (`LOCAL`) has no key, no URLs and nothing to fake:
`key_field` and `fake_class` are None, and whatever iterates keys or fakes skips it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Shape = Literal["queued", "one_shot"]


@dataclass(frozen=True)
class UrlSetting:
    """A base URL (or host name) of an upstream, set by `MCP_AUDIO_{FIELD}`."""

    field: str  # the Settings field, e.g. "fal_queue_url"
    param: str  # the provider's constructor argument, e.g. "queue_url"
    default: str
    description: str

    @property
    def env(self) -> str:
        return f"MCP_AUDIO_{self.field.upper()}"


@dataclass(frozen=True)
class Upstream:
    name: str  # the manifests' `provider` value
    label: str  # how messages name it
    key_field: str | None  # the Settings field holding the API key (None: needs no key)
    key_env: str | None  # the key's environment variable
    key_description: str
    key_needed_for: str  # ends the missing-key message: "this tool calls {key_needed_for}"
    urls: tuple[UrlSetting, ...]
    shapes: tuple[Shape, ...]  # the first is the default of its manifests' tools
    # How file inputs reach it: as multipart parts of the request (`sent_as = "part"`), and/or
    # as a URL or id that an upload of a local file returns (`sent_as = "url"`).
    takes_parts: bool
    uploads: bool
    reads_data_uris: bool  # a data: URI is a URL it fetches (else its bytes are uploaded or sent)
    provider_class: str  # "module:Class"
    fake_class: str | None  # "module:Class", a FakeUpstream subclass (None: nothing to fake, it is local)
    fake_port: int  # default port of `python -m mcp_audio.sandbox.serve NAME`
    endpoints: tuple[str, ...] | None = None  # the endpoint ids it has, when it has a fixed set
    can_cancel: bool = True
    # Where a user sees whether a request whose answer was lost ran (and was billed).
    where_to_check: str = "the upstream account's usage page"
    # Where this server receives the upstream's webhooks (with MCP_AUDIO_PUBLIC_URL set; None: it sends none).
    webhook_path: str | None = None
    # Settings fields its provider is built with besides its key and URLs (passed by field name).

    @property
    def local(self) -> bool:
        """Runs in this process: no key, no fake, nothing sent anywhere."""
        return self.key_field is None

    def check_tool(self, shape: Shape, endpoints: list[str]) -> list[str]:
        """Why a manifest tool with this shape and these endpoints cannot run here ([] if it can)."""
        problems = []
        if shape not in self.shapes:
            problems.append(f"shape: {self.label} offers {' or '.join(repr(s) for s in self.shapes)}, not {shape!r}")
        if self.endpoints is not None:
            problems.extend(
                f"endpoint: {self.label} has no endpoint {endpoint!r}; it has {', '.join(self.endpoints)}"
                for endpoint in endpoints
                if endpoint not in self.endpoints
            )
        return problems


FAL = Upstream(
    name="fal",
    label="fal",
    key_field="fal_key",
    key_env="FAL_KEY",
    key_description="fal.ai API key. Without it the server still starts and lists tools; calls answer with an "
    "error naming `FAL_KEY`. Never logged, stored or echoed.",
    key_needed_for="fal.ai, which needs an API key (get one at fal.ai/dashboard/keys)",
    urls=(
        UrlSetting(
            "fal_queue_url", "queue_url", "https://queue.fal.run", "fal queue base URL (proxies, loopback tests)"
        ),
        UrlSetting("fal_run_url", "run_url", "https://fal.run", "fal run base URL (streaming endpoints)"),
        UrlSetting("fal_rest_url", "rest_url", "https://rest.fal.ai", "fal REST base URL (storage tokens)"),
        UrlSetting("fal_cdn_url", "cdn_url", "https://v3.fal.media", "fal CDN base URL (uploads)"),
    ),
    shapes=("queued", "one_shot"),
    takes_parts=False,
    uploads=True,
    reads_data_uris=True,
    provider_class="mcp_audio.providers.fal:FalProvider",
    fake_class="mcp_audio.sandbox.fal_queue:FakeFal",
    fake_port=8799,
    where_to_check="fal's request history at https://fal.ai/dashboard/requests",
    webhook_path="/webhooks/fal",
)

VOICE_API = Upstream(
    name="voice_api",
    label="Voice API",
    key_field="voice_api_key",
    key_env="VOICE_API_KEY",
    key_description="Voice API key (`VOICE_API_KEY`), sent as the marketplace key header (`X-RapidAPI-Key`)",
    key_needed_for="the Voice API, which needs the API key of your subscription to its marketplace listing",
    urls=(
        UrlSetting("voice_api_url", "base_url", "https://voice-api.p.rapidapi.com", "Voice API base URL"),
        UrlSetting(
            "voice_api_host",
            "host",
            "voice-api.p.rapidapi.com",
            "sent as the marketplace host header (`X-RapidAPI-Host`)",
        ),
    ),
    shapes=("queued",),
    takes_parts=True,
    uploads=False,
    reads_data_uris=False,
    provider_class="mcp_audio.providers.voice_api:VoiceApiProvider",
    fake_class="mcp_audio.sandbox.voice_api:FakeVoiceApi",
    fake_port=8797,
    endpoints=("tts", "stt", "clone"),  # the task kinds: POST /v1/{kind}
    can_cancel=False,
    where_to_check="the usage page of your Voice API subscription",
)

EIGEN = Upstream(
    name="eigen",
    label="eigen",
    key_field="eigen_api_key",
    key_env="EIGEN_API_KEY",
    key_description="Eigen AI API key (`EIGEN_API_KEY`), sent as a Bearer token",
    key_needed_for="Eigen AI, which needs an API key",
    urls=(UrlSetting("eigen_url", "base_url", "https://api-web.eigenai.com", "Eigen AI base URL"),),
    shapes=("one_shot",),
    takes_parts=True,
    uploads=True,  # a voice sample becomes a voice id (POST /generate/upload)
    reads_data_uris=False,
    provider_class="mcp_audio.providers.eigen:EigenProvider",
    fake_class="mcp_audio.sandbox.eigen:FakeEigen",
    fake_port=8798,
    where_to_check="your Eigen AI account's usage page",
)

# The finishing tools (join, mix, master, trim, info, subtitles) and the Content Credentials
# reader (provenance): the audio engine of
# `mcp_audio.post`, run in a worker thread of this process. File inputs reach it as local paths.
LOCAL = Upstream(
    name="local",
    label="mcp-audio",
    key_field=None,
    key_env=None,
    key_description="",
    key_needed_for="",
    urls=(),
    shapes=("one_shot",),
    takes_parts=False,
    uploads=False,
    reads_data_uris=False,
    provider_class="mcp_audio.providers.local_post:LocalPostProvider",
    fake_class=None,
    fake_port=0,
    endpoints=("join", "mix", "master", "trim", "info", "subtitles", "provenance"),
)

UPSTREAMS: dict[str, Upstream] = {upstream.name: upstream for upstream in (FAL, VOICE_API, EIGEN, LOCAL)}
# The upstreams reached over the network, each with a key and a loopback fake.
REMOTE: dict[str, Upstream] = {name: upstream for name, upstream in UPSTREAMS.items() if not upstream.local}


def upstream(name: str) -> Upstream:
    try:
        return UPSTREAMS[name]
    except KeyError:
        raise ValueError(f"unknown upstream {name!r}; known: {', '.join(UPSTREAMS)}") from None
