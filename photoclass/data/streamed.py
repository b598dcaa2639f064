"""Photos decoded when they are read, for work that reads each photo once.

Cached-feature training reads every photo once, through the frozen backbone, and never again:
keeping its pixels would cost 200 KB a photo at 260 px (20 GB at 100,000 photos) for nothing.
`StreamedImages` stands in for the decode cache's `CachedImages` and decodes on each read,
the photos of a batch in parallel threads (Pillow decodes and resizes without the GIL).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..core.errors import PhotoclassError
from .decode import DecodeError, decode_photo


class StreamedImages:
    """A read-only (N, S, S, 3) uint8 array-like over photo files, decoded on each read."""

    streamed = True  # loaders read it in order, one batch ahead, and never copy it whole

    def __init__(self, paths: list[Path], image_size: int, *, max_pixels: int, min_side: int, threads: int = 0):
        self.paths = [Path(p) for p in paths]
        self.image_size = image_size
        self.max_pixels, self.min_side = max_pixels, min_side
        self.threads = threads or os.cpu_count() or 1
        self._pool: ThreadPoolExecutor | None = None

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), self.image_size, self.image_size, 3)

    def _decode(self, i: int) -> np.ndarray:
        path = self.paths[i]
        try:
            return decode_photo(
                path, size=self.image_size, max_pixels=self.max_pixels, min_side=self.min_side
            ).to_array()
        except DecodeError as e:
            raise PhotoclassError(
                f"{path} can no longer be read ({e.reason}), though it could when the photos were "
                "checked. HINT: leave the photos unchanged while photoclass runs, and run again."
            ) from None

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            return self._decode(int(index))
        indices = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="decode")
        out = np.empty((len(indices), self.image_size, self.image_size, 3), dtype=np.uint8)
        for row, pixels in enumerate(self._pool.map(self._decode, indices.tolist())):
            out[row] = pixels
        return out

    def __getstate__(self):  # a thread pool is not copied
        return {**self.__dict__, "_pool": None}
