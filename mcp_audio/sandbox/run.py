"""`--sandbox`: the server against loopback fakes of every registered upstream, in this process.

Each fake is served on a free loopback port in a background thread and accepts one made-up
key; the settings get that key and the fakes' URLs, so every tool and resource works with no
real key and nothing leaves the machine. The fakes answer with real (synthetic) audio. Jobs and files
go to a `sandbox` folder inside the data and output folders, so they never mix with real jobs
(whose handles a later start re-attaches to).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from pydantic import SecretStr

from mcp_audio.config import ServerSettings
from mcp_audio.core.upstreams import REMOTE
from mcp_audio.sandbox.serve import fake_for, serve_in_thread

log = logging.getLogger("mcp_audio.sandbox")
SANDBOX_KEY = "sandbox-key-not-a-secret"
# Where an upstream URL setting points on a fake, beyond the fake's base URL.
URL_SUFFIXES = {("fal", "run_url"): "/run"}


def sandbox_folders(settings: ServerSettings) -> dict[str, Any]:
    """The settings that keep sandbox jobs and files apart (what `jobs --sandbox` reads)."""
    return {"data_dir": settings.data_dir / "sandbox", "output_dir": settings.output_dir / "sandbox"}


@contextmanager
def sandboxed(settings: ServerSettings) -> Iterator[ServerSettings]:
    """`settings` pointed at freshly served fakes of every upstream, for as long as the block runs."""
    with ExitStack() as stack:
        folders = sandbox_folders(settings)
        update: dict[str, Any] = {"output_dir": folders["output_dir"]}
        for name, upstream in REMOTE.items():  # local tools need no fake
            fake = fake_for(upstream, SANDBOX_KEY)
            fake.base_url = stack.enter_context(serve_in_thread(fake.app))
            assert upstream.key_field is not None  # remote upstreams are keyed
            update[upstream.key_field] = SecretStr(SANDBOX_KEY)
            for url in upstream.urls:
                if (name, url.param) == ("voice_api", "host"):
                    update[url.field] = fake.host  # the gateway host header the fake expects
                else:
                    update[url.field] = fake.base_url + URL_SUFFIXES.get((name, url.param), "")
            log.info("sandbox: fake %s at %s", upstream.label, fake.base_url)
        # Jobs in a folder of their own; the tokens stay the real data dir's (a sandbox on a token's
        # port must not answer everyone).
        yield settings.with_data_dir(folders["data_dir"], **update)
