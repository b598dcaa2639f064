"""Features of frozen encoders on disk, so that a second run on the same photos costs seconds.

A photo's features are keyed by its content key (a hash of the file's bytes, as in the decode
cache) and by the encoder: a hash of its weights, its input contract, the arithmetic, whether
the photo was mirrored, and the torch version. Another head, seed, split or fold reuses them;
another model, size or precision does not.

Layout under the cache folder:

    features/<encoder>/<id>.npy    (rows, F) float32
    features/<encoder>/<id>.keys   the rows' content keys, one a line; written last, so a
                                   part without its .keys (a killed run) is never read
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..core.atomic import write_bytes_atomic
from ..models.registry import InputSpec

FEATURES_VERSION = 1  # bump when the way features are computed changes


def encoder_key(encode: Callable, spec: InputSpec, *, precision: str, flip: bool) -> str:
    """A hash naming what `encode` computes: its module's weights and buffers (a classifier's
    backbone's), and how it is fed."""
    module = getattr(encode, "__self__", encode)
    h = hashlib.blake2b(digest_size=12)
    h.update(repr(getattr(module, "_taps", None)).encode())  # which stages a multi-stage model reads
    if getattr(module, "_grid", 0):  # and the regions it also pools (keys of other models unchanged)
        h.update(repr(module._grid).encode())
    module = getattr(module, "body", module)  # a classifier's backbone: its head (seeded afresh) is not used
    h.update(
        repr(
            (
                type(module).__qualname__,
                getattr(encode, "__name__", ""),
                spec.size,
                tuple(spec.mean),
                tuple(spec.std),
                spec.channels,
                precision,
                flip,
                torch.__version__,
                FEATURES_VERSION,
            )
        ).encode()
    )
    if isinstance(module, torch.nn.Module):
        for name, tensor in module.state_dict().items():
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class FeatureCache:
    """The stored features of one encoder."""

    def __init__(self, root: str | os.PathLike, encoder: str):
        self.folder = Path(root) / "features" / encoder

    def _parts(self) -> dict[str, tuple[Path, int]]:
        found: dict[str, tuple[Path, int]] = {}
        if self.folder.is_dir():
            for keys in sorted(self.folder.glob("*.keys")):
                for row, key in enumerate(keys.read_text(encoding="ascii").split()):
                    found.setdefault(key, (keys.with_suffix(".npy"), row))
        return found

    def load(self, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """(a mask of the `keys` found, their features in that order or None when none is)."""
        where = self._parts()
        found = np.array([k in where for k in keys], dtype=bool)
        if not found.any():
            return found, None
        maps: dict[Path, np.ndarray] = {}
        rows = []
        for key in (k for k in keys if k in where):
            path, row = where[key]
            if path not in maps:
                maps[path] = np.load(path, mmap_mode="r")
            rows.append(maps[path][row])
        return found, np.stack(rows)

    def save(self, keys: Sequence[str], features: np.ndarray) -> None:
        """Store `features` (rows in the order of `keys`) as one new part; an error (a full or
        read-only disk) costs only the reuse, never the run."""
        if not len(keys):
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            name = uuid.uuid4().hex
            array = np.ascontiguousarray(features, dtype=np.float32)
            tmp = self.folder / f".{name}.npy.tmp"
            with open(tmp, "wb") as f:
                np.save(f, array)
            os.replace(tmp, self.folder / f"{name}.npy")
            write_bytes_atomic(self.folder / f"{name}.keys", "\n".join(keys).encode("ascii") + b"\n")
        except OSError:
            pass
