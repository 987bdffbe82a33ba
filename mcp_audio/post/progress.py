"""How far a render is, and a way to stop it between blocks.

A render runs in a worker thread and reads its input once per pass (master reads it three or
four times). Each block it reads passes through `tracked`, which counts the seconds read and
raises RenderStopped once `stop()` was called, so a cancelled job or a stopping server ends the
work within one block instead of at the end of the render. Outside a `running` block (the
engine called directly, the bench) nothing is counted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # light at import: the server imports this before any render loads numpy
    import numpy as np

Block = TypeVar("Block", bound="np.ndarray[Any, Any]")


class RenderStopped(Exception):
    """The render was asked to stop; nothing it wrote is kept."""


class RenderProgress:
    """Written by the worker thread, read by the server's task (plain attribute reads)."""

    def __init__(self) -> None:
        self.passes = 0
        self.read_s = 0.0  # in the current pass
        self.length_s: float | None = None  # of the current pass's input, when its header says
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def describe(self) -> str | None:
        """'pass 2, 40%' in steps of 10%; None before the first block."""
        if not self.passes:
            return None
        if not self.length_s:
            return f"pass {self.passes}, {self.read_s:.0f} s read"
        tenths = min(10, int(10 * self.read_s / self.length_s))
        return f"pass {self.passes}, {10 * tenths}% of {self.length_s:.0f} s"

    def _begin(self, length_s: float | None) -> None:
        self.passes += 1
        self.read_s, self.length_s = 0.0, length_s

    def _advance(self, seconds: float) -> None:
        if self._stop.is_set():
            raise RenderStopped("the render was stopped")
        self.read_s += seconds


_current: ContextVar[RenderProgress | None] = ContextVar("mcp_audio_render", default=None)


@contextmanager
def running(progress: RenderProgress) -> Iterator[RenderProgress]:
    """Count the blocks read in this thread (and stop at `progress.stop()`)."""
    token = _current.set(progress)
    try:
        yield progress
    finally:
        _current.reset(token)


def tracked(blocks: Generator[Block], sample_rate: int, length_s: Callable[[], float | None]) -> Iterator[Block]:
    """`blocks` (one pass over an input), counted for the current render, if any. `length_s`
    reads the input's header, only when there is a render to report to."""
    progress = _current.get()
    if progress is None:
        yield from blocks
        return
    progress._begin(length_s())
    try:
        for block in blocks:
            progress._advance(block.shape[-1] / sample_rate)
            yield block
    finally:
        blocks.close()  # a stopped render stops its decoder thread now, not when collected
