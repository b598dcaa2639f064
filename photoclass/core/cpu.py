"""What this CPU does with INT8 and bf16, read from its flags without torch.

INT8 convolutions multiply 8-bit numbers in one of two ways. CPUs with VNNI (AVX512-VNNI,
AVX-VNNI) or AMX add the products in 32 bits. AVX2-only and plain AVX-512 CPUs add each pair of
products in 16 bits first (VPMADDUBSW), which saturates when a pair exceeds 32,767, so the same
INT8 model can answer otherwise there. photoclass quantizes weights to 7 bits, where no pair can
reach that, so an INT8 export checked on one kind holds on the other; each check still records
the kind it ran on. `ONEDNN_MAX_CPU_ISA` (AVX2, AVX512_CORE, AVX512_CORE_VNNI, ...) caps the kind,
as it caps oneDNN and OpenVINO's kernels: an AVX2-only CPU can be emulated on a newer one.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache

KINDS = ("other", "avx2", "avx512", "avx512-vnni", "amx")  # in the order each adds to the last

_CAPS = {  # ONEDNN_MAX_CPU_ISA's values, read as the kinds they allow at most
    "sse41": "other",
    "avx": "other",
    "avx2": "avx2",
    "avx2_vnni": "avx512-vnni",
    "avx2_vnni_2": "avx512-vnni",
    "avx512_core": "avx512",
    "avx512_core_vnni": "avx512-vnni",
    "avx512_core_bf16": "avx512-vnni",
    "avx512_core_fp16": "avx512-vnni",
    "avx512_core_amx": "amx",
    "avx512_core_amx_fp16": "amx",
}
_BF16_CAPS = {"avx512_core_bf16", "avx512_core_fp16", "avx512_core_amx", "avx512_core_amx_fp16"}  # allow bf16


@lru_cache(maxsize=1)
def _flags() -> tuple[frozenset[str], str]:
    """(the CPU's feature flags, its model name), from /proc/cpuinfo; empty elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return frozenset(), platform.processor() or platform.machine()
    fields = dict(
        line.split(":", 1) for line in text.split("\n\n", 1)[0].splitlines() if ":" in line
    )  # the first core's
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    return frozenset(fields.get("flags", "").split()), fields.get("model name", platform.machine())


def cpu_kind() -> str:
    """One of KINDS: how this CPU (capped by ONEDNN_MAX_CPU_ISA) computes INT8."""
    flags, _ = _flags()
    if {"amx_int8", "amx_tile"} <= flags:
        kind = "amx"
    elif {"avx512_vnni"} & flags or {"avx_vnni"} & flags:
        kind = "avx512-vnni"
    elif "avx512f" in flags:
        kind = "avx512"
    elif "avx2" in flags:
        kind = "avx2"
    else:
        kind = "other"
    cap = _CAPS.get(_cap())
    return min(kind, cap, key=KINDS.index) if cap else kind


def bf16_native() -> bool:
    """Whether this CPU computes in bf16 (AVX512-BF16 or AMX), capped like `cpu_kind`;
    PHOTOCLASS_NATIVE_BF16=0 says no."""
    if os.environ.get("PHOTOCLASS_NATIVE_BF16") == "0":
        return False
    flags, _ = _flags()
    if _cap() and _cap() not in _BF16_CAPS:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def _cap() -> str:
    """ONEDNN_MAX_CPU_ISA, as oneDNN reads it (any case); "" when unset."""
    return os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().lower()


def int8_vnni() -> bool:
    """Whether INT8 products are summed in 32 bits here (VNNI or AMX), not in 16-bit pairs."""
    return KINDS.index(cpu_kind()) >= KINDS.index("avx512-vnni")


def describe_cpu() -> str:
    """What to expect of INT8 and bf16 exports on this CPU, in one line."""
    _, name = _flags()
    kind = cpu_kind()
    if kind == "other":
        int8 = "INT8: no AVX2, expect little or no gain"
    elif int8_vnni():
        int8 = f"INT8: {'AMX' if kind == 'amx' else 'VNNI'}, 8-bit products summed in 32 bits (the fastest exports)"
    else:
        int8 = "INT8: no VNNI, products summed in 16-bit pairs (a smaller gain; 7-bit weights keep the answers)"
    bf16 = "bf16: native" if bf16_native() else "bf16: not native (bf16 exports run in fp32 here)"
    capped = (
        f", capped by ONEDNN_MAX_CPU_ISA={os.environ['ONEDNN_MAX_CPU_ISA']}"
        if "ONEDNN_MAX_CPU_ISA" in os.environ
        else ""
    )
    return f"this CPU: {name} ({kind}{capped}); {int8}; {bf16}"
