"""What this CPU does with INT8 and bf16 (`core/cpu.py`), and which verified exports `--engine
auto` takes from on it."""

import numpy as np
import pytest

from photoclass.core import cpu
from photoclass.inference import export as exporting
from photoclass.inference import verify
from photoclass.tasks import SINGLE_LABEL

ZEN2 = frozenset({"avx2", "fma"})
ZEN4 = frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"})
SAPPHIRE = frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16"})
SKYLAKE = frozenset({"avx2", "avx512f"})


@pytest.fixture
def flags(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("PHOTOCLASS_NATIVE_BF16", raising=False)

    def use(found, name="Test CPU"):
        monkeypatch.setattr(cpu, "_flags", lambda: (found, name))

    return use


@pytest.mark.parametrize(
    "found, kind, vnni, bf16",
    [(ZEN2, "avx2", False, False), (SKYLAKE, "avx512", False, False), (ZEN4, "avx512-vnni", True, True),
     (SAPPHIRE, "amx", True, True), (frozenset(), "other", False, False)],
)  # fmt: skip
def test_the_kind_of_cpu_says_how_int8_is_summed_and_whether_bf16_is_native(flags, found, kind, vnni, bf16):
    flags(found)
    assert (cpu.cpu_kind(), cpu.int8_vnni(), cpu.bf16_native()) == (kind, vnni, bf16)
    words = cpu.describe_cpu()
    assert words.startswith(f"this CPU: Test CPU ({kind})")
    assert ("16-bit pairs" in words) == (kind in ("avx2", "avx512"))
    assert ("bf16: native" in words) == bf16


def test_onednns_cap_emulates_an_older_cpu(flags, monkeypatch):
    flags(SAPPHIRE)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert (cpu.cpu_kind(), cpu.int8_vnni(), cpu.bf16_native()) == ("avx2", False, False)
    assert "capped by ONEDNN_MAX_CPU_ISA=AVX2" in cpu.describe_cpu()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx512_core_vnni")
    assert cpu.cpu_kind() == "avx512-vnni" and not cpu.bf16_native()  # VNNI, but oneDNN's bf16 comes after it
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert cpu.cpu_kind() == "avx512-vnni" and cpu.bf16_native()
    flags(ZEN2)  # a cap above the CPU changes nothing
    assert cpu.cpu_kind() == "avx2"


def check(precision, kind, rate, bits=None):
    found = {"precision": precision, "int8": precision == "int8", "cpu": kind, "images_per_s": rate}
    found["torch_images_per_s"] = 100.0 if kind == "amx" else 50.0  # each machine's PyTorch, in turns
    return found | ({"int8_weight_bits": bits} if bits else {})


def test_auto_takes_only_exports_whose_check_holds_here_measured_here_first(flags, monkeypatch):
    exports = [
        ("ov-int8-7bit", check("int8", "amx", 900.0, bits=7)),
        ("litert-int8", check("int8", "amx", 800.0, bits=8)),
        ("ov-bf16", check("bf16", "amx", 700.0)),
        ("onnx-fp32", check("fp32", "amx", 300.0)),
        ("onnx-int8-here", check("int8", "avx2", 150.0, bits=8)),
        ("ov-fp32-here", check("fp32", "avx2", 120.0)),
    ]
    monkeypatch.setattr(exporting, "verified_exports", lambda run: exports)
    flags(ZEN2)
    chosen = [name for name, _ in exporting.exports_for_here(None)]
    # checked here first, fastest first; then those checked elsewhere that hold here: not the 8-bit
    # INT8 (a pair of products can saturate here) nor bf16 (not native here)
    assert chosen == ["onnx-int8-here", "ov-fp32-here", "ov-int8-7bit", "onnx-fp32"]
    flags(SAPPHIRE)
    assert [name for name, _ in exporting.exports_for_here(None)] == [
        "ov-int8-7bit", "litert-int8", "ov-bf16", "onnx-fp32", "ov-fp32-here"
    ]  # fmt: skip
    # the order is the speed against PyTorch in turns, which a busy machine leaves as it is
    exports[0] = ("ov-int8-7bit", check("int8", "amx", 250.0, bits=7) | {"torch_images_per_s": 25.0})
    assert exporting.exports_for_here(None)[0][0] == "ov-int8-7bit"


def test_none_of_these_answers_that_change_are_refused_and_every_figure_names_its_photos():
    labels = np.arange(300) % 3
    logits = np.eye(3, dtype=np.float32)[labels] * 4
    scored = np.zeros(300, bool)
    scored[-100:] = True
    photos = verify.Photos(
        np.zeros((300, 1, 1, 3), np.uint8), labels, "test", scored, {"train": 150, "val": 50, "test": 100}
    )
    unknown = np.zeros(300, bool)
    changed = unknown.copy()
    changed[:4] = True  # 4 of 300: 98.67% < 99%
    found = verify.judge(SINGLE_LABEL, logits, logits, photos, fp32=False, unknown=(unknown, changed))
    assert not found["kept"] and found["agreement"] == 1.0 and found["unknown_agreement"] == pytest.approx(296 / 300)
    assert found["why_not"] == (
        "it answers 'none of these' otherwise than PyTorch for 4 of 300 photos (agreement 98.67% < 99%)"
    )
    assert (found["photos"], found["scored_photos"], found["judged_on"]) == (300, 100, photos.counts)
    assert verify.describe(found).startswith(
        "photos judged: 300 (train 150, val 50, test 100), agreement with PyTorch 100.00%, 'none of these' "
        "agreement 98.67%; test accuracy 100.00% (PyTorch 100.00%, 100 photos)"
    )
    changed[:1] = False  # 3 of 300: 99.0%
    assert verify.judge(SINGLE_LABEL, logits, logits, photos, fp32=False, unknown=(unknown, changed))["kept"]


def test_the_headline_figure_is_measured_on_the_scored_split_only():
    labels = np.arange(200) % 2
    want = np.eye(2, dtype=np.float32)[labels]
    got = want.copy()
    got[:1] = got[:1, ::-1]  # one training photo changes: 99.5% agreement, the test figure unmoved
    scored = np.arange(200) >= 100
    photos = verify.Photos(np.zeros((200, 1, 1, 3), np.uint8), labels, "test", scored, {"train": 100, "test": 100})
    found = verify.judge(SINGLE_LABEL, want, got, photos, fp32=False)
    assert found["kept"] and found["accuracy"] == found["accuracy_torch"] == 1.0 and found["agreement"] == 0.995
    got[100:102] = got[100:102, ::-1]  # two test photos change: 1.5 points of 100 lost
    found = verify.judge(SINGLE_LABEL, want, got, photos, fp32=False)
    assert not found["kept"] and "for 3 of 200 photos" in found["why_not"]
    assert "its test accuracy is 98.00% against PyTorch's 100.00%" in found["why_not"]
