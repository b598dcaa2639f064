"""Augmentation specs: presets and `"hflip,rotate=10,zoom=0.1"` strings, parsed and checked.

The tensors are transformed by `photoclass.data.augment`; this is only the option's value.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from ..core.errors import PhotoclassError


@dataclass(frozen=True)
class AugmentSpec:
    hflip: bool = False
    vflip: bool = False
    rotate: float = 0.0  # max degrees, either way
    zoom: float = 0.0  # max fraction in or out
    shift: float = 0.0  # max fraction of the side, each axis
    shear: float = 0.0  # max degrees
    brightness: float = 0.0  # max fraction
    contrast: float = 0.0  # max fraction

    @property
    def geometric(self) -> bool:
        return any((self.hflip, self.vflip, self.rotate, self.zoom, self.shift, self.shear))

    @property
    def enabled(self) -> bool:
        return self.geometric or bool(self.brightness or self.contrast)

    def __str__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is True:
                parts.append(f.name)
            elif value:
                parts.append(f"{f.name}={value:g}")
        return ",".join(parts) or "none"


PRESETS = {
    "none": AugmentSpec(),
    "light": AugmentSpec(hflip=True, rotate=5, zoom=0.05, brightness=0.05),
    "default": AugmentSpec(hflip=True, rotate=10, zoom=0.1, shift=0.05, brightness=0.1, contrast=0.1),
    "strong": AugmentSpec(hflip=True, rotate=20, zoom=0.2, shift=0.1, shear=10, brightness=0.2, contrast=0.2),
}


def parse_augment(spec: str | AugmentSpec | None) -> AugmentSpec:
    """'default', 'none', or e.g. 'hflip,rotate=15,zoom=0.1'; a preset may start the list."""
    if isinstance(spec, AugmentSpec):
        return spec
    if spec is None:
        return PRESETS["default"]
    names = {f.name: f.type for f in fields(AugmentSpec)}
    result = AugmentSpec()
    for part in filter(None, (p.strip() for p in str(spec).split(","))):
        key, _, value = part.partition("=")
        if not value and key in PRESETS:
            result = PRESETS[key]
        elif key in ("flip",) and not value:
            result = replace(result, hflip=True)
        elif key not in names:
            raise PhotoclassError(
                f"Unknown augmentation {key!r} in augment={spec!r}. Known: {sorted(names)} "
                f"and presets {sorted(PRESETS)}. HINT: e.g. 'hflip,rotate=10,zoom=0.1'"
            )
        elif names[key] in (bool, "bool"):
            result = replace(result, **{key: value.lower() not in ("0", "false", "no") if value else True})
        else:
            try:
                amount = float(value)
            except ValueError:
                raise PhotoclassError(
                    f"Augmentation {key!r} needs a number, e.g. {key}=0.1. Received: {part!r}"
                ) from None
            if not 0 <= amount <= (90 if key in ("rotate", "shear") else 1):
                raise PhotoclassError(
                    f"Augmentation {key}={value} is out of range (0 to "
                    f"{'90 degrees' if key in ('rotate', 'shear') else '1'})."
                )
            result = replace(result, **{key: amount})
    return result
