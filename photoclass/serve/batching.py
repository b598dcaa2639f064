"""Micro-batching: requests that arrive while the model is busy share its next call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
from starlette.concurrency import run_in_threadpool


class MicroBatcher:
    """`await batcher(x)` runs `fn` on a stack of the waiting inputs, one call at a time.

    Nothing waits for a batch to fill: a lone request runs at once, and whatever queued up
    behind a running call goes into the next one (at most `max_batch`).
    """

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], max_batch: int = 16):
        self.fn, self.max_batch = fn, max_batch
        self.pending: list[tuple[np.ndarray, asyncio.Future]] = []
        self.batches: list[int] = []  # sizes of recent calls, for /health
        self._worker: asyncio.Task | None = None

    async def __call__(self, x: np.ndarray) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((x, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self.pending:
            batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch :]
            batch = [(x, f) for x, f in batch if not f.cancelled()]  # clients that hung up
            if not batch:
                continue
            self.batches = (self.batches + [len(batch)])[-100:]
            try:
                out = await run_in_threadpool(self.fn, np.stack([x for x, _ in batch]))
            except Exception as e:  # handed to every caller of this batch
                for _, f in batch:
                    if not f.done():
                        f.set_exception(e)
            else:
                for (_, f), row in zip(batch, out):
                    if not f.done():
                        f.set_result(row)
