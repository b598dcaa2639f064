"""Where the maths runs and in which precision: one `resolve_device`, one `autocast`.

Decoding and the cache stay on the CPU; models, batches and augmentation go to the device.
torch is imported where it is used, so the options (and predicting from ONNX) need none.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from .errors import PhotoclassError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA, then Apple's MPS, then the CPU; anything asked for must be there."""
    import torch

    if isinstance(name, torch.device):
        name = str(name)
    if not isinstance(name, str):
        raise PhotoclassError(f"`device` must be one of {DEVICES}. Received: device={name!r}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise PhotoclassError(
                "device='mps' but this PyTorch sees no Apple GPU (MPS). HINT: --device cpu, "
                "or --device auto to take what is there."
            )
        return torch.device("mps")
    if name == "cuda" or name.startswith("cuda:"):
        index = name.partition(":")[2]
        if index and not index.isdigit():
            raise PhotoclassError(f"`device` must be cuda or cuda:N with N a GPU number. Received: device={name!r}")
        if not torch.cuda.is_available():
            raise PhotoclassError(
                f"device={name!r} but this PyTorch ({torch.__version__}) sees no CUDA GPU"
                f"{'' if torch.version.cuda else ': it is a CPU-only build'}. HINT: --device cpu, or --device "
                "auto to take what is there."
            )
        count = torch.cuda.device_count()
        if index and int(index) >= count:
            raise PhotoclassError(
                f"device={name!r} but only {count} CUDA GPU(s) are visible (cuda:0 to "
                f"cuda:{count - 1}). HINT: --device cuda:0."
            )
        return torch.device("cuda", int(index) if index else torch.cuda.current_device())
    raise PhotoclassError(f"`device` must be one of {DEVICES}. Received: device={name!r}")


STAGES = ("train", "features", "predict")


def resolve_precision(precision: str, device: torch.device, *, stage: str = "train", trained: str | None = None) -> str:
    """The precision `precision` means for one `stage` on `device`.

    'auto' on a CPU with native bf16 (AMX or AVX512-BF16): bf16 to train on pixels (scratch,
    lpft); fp32 for cached features ("features"), as bf16 features changed 2 of the 372
    clothing test answers (99.46% agreement, under the 99.5% photoclass asks); for "predict",
    the precision the run was `trained` and tested in, so it gives its own test answers. On
    other CPUs and MPS fp32 (emulated bf16 only adds conversions); on CUDA GPUs bf16 where they
    have it, else fp16 (with a gradient scaler), and for "predict" the run's own precision.
    """
    import torch

    if precision not in PRECISIONS:
        raise PhotoclassError(f"`precision` must be one of {PRECISIONS}. Received: precision={precision!r}")
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")
    if precision != "auto":
        if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise PhotoclassError(
                f"precision='bf16' but {torch.cuda.get_device_name(device)} has no bfloat16. HINT: --precision fp16."
            )
        return precision
    if device.type == "cpu":
        if not native_bf16() or stage == "features":
            return "fp32"
        return "bf16" if stage == "train" or trained == "bf16" else "fp32"
    if device.type != "cuda":
        return "fp32"
    if stage == "predict" and trained in ("fp32", "bf16", "fp16"):
        return trained if trained != "bf16" or torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AMX tiles or AVX512-BF16), read at run time;
    PHOTOCLASS_NATIVE_BF16=0 says no (the tests run so, alike on every CPU)."""
    import os

    import torch

    if os.environ.get("PHOTOCLASS_NATIVE_BF16") == "0":
        return False
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(check() for check in checks if check is not None)


def channels_last(device: torch.device | str, wanted: bool | None = None) -> bool:
    """Whether image batches and convolutions use the channels-last memory format: `wanted`,
    or by default on a CPU (oneDNN's convolutions are faster so: 92 vs 81 images/s for
    seed-baseline) and not on a GPU (cuDNN compiles channels-last depthwise kernels at the
    first use of every shape: 8 s for Lite2's first fp32 step on an H200, over 45 s in bf16,
    against 1 s in the default layout; afterwards both run at the same speed)."""
    import torch

    return wanted if wanted is not None else torch.device(device).type == "cpu"


def memory_format(device: torch.device | str, wanted: bool | None = None) -> torch.memory_format:
    import torch

    return torch.channels_last if channels_last(device, wanted) else torch.contiguous_format


def autocast(device: torch.device | str = "cpu", precision: str = "fp32"):
    """Mixed precision on `device` for bf16 and fp16; nothing for fp32."""
    import torch

    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtypes[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A loss scaler for fp16 (small gradients underflow otherwise); disabled for the rest."""
    import torch

    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def _mps_available() -> bool:
    import torch

    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
