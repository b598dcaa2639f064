"""The input contract of a model: what its weights expect, stored with them in model.json.

Training, prediction, ONNX export, serving and the report all read it through
`InputSpec.from_dict`, so the preprocessing is defined once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from ..core.errors import PhotoclassError

RESIZE_METHODS = ("bilinear",)


@dataclass(frozen=True)
class InputSpec:
    """(pixels / 255 - mean) / std, at size x size px, `channels` channels, resized `resize`."""

    size: int
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    channels: int = 3
    resize: str = "bilinear"  # how photos are brought to size x size (aspect not kept)

    def with_channels(self, channels: int) -> InputSpec:
        """This contract for grey (1) or colour (3) input: the channel statistics averaged or repeated."""
        if channels == self.channels:
            return self
        if channels == 1:
            return replace(self, channels=1, mean=(sum(self.mean) / 3,), std=(sum(self.std) / 3,))
        return replace(self, channels=3, mean=self.mean * 3, std=self.std * 3)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, values: Any, *, source: str = "the input spec") -> InputSpec:
        """Checked: a one-line error naming `source` for anything missing, unknown or odd."""

        def bad(why: str) -> PhotoclassError:
            return PhotoclassError(f"{source}: the input spec {why}. Received: {values!r}")

        if not isinstance(values, dict):
            raise bad("must be an object")
        unknown = sorted(set(values) - {"size", "mean", "std", "channels", "resize"})
        if unknown:
            raise bad(f"has unexpected keys {unknown}")
        size, channels = values.get("size"), values.get("channels", 3)
        if not (isinstance(size, int) and not isinstance(size, bool) and 8 <= size <= 4096):
            raise bad("needs size, an integer from 8 to 4096")
        if channels not in (1, 3):
            raise bad("needs channels 1 or 3")
        for key in ("mean", "std"):
            seq = values.get(key, [0.0] * channels if key == "mean" else [1.0] * channels)
            if not (
                isinstance(seq, (list, tuple))
                and len(seq) == channels
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seq)
            ):
                raise bad(f"needs {key}, {channels} numbers")
        if any(v <= 0 for v in values.get("std", [1.0])):
            raise bad("needs a positive std")
        if values.get("resize", "bilinear") not in RESIZE_METHODS:
            raise bad(f"needs resize one of {RESIZE_METHODS}")
        return cls(
            size,
            tuple(float(v) for v in values.get("mean", (0.0,) * channels)),
            tuple(float(v) for v in values.get("std", (1.0,) * channels)),
            channels,
            values.get("resize", "bilinear"),
        )
