"""bf16 only where the CPU has it (issue 14 item 9): on a CPU that emulates bfloat16 (AVX2 only),
a bf16 predict was 4.5x slower than float32 and nothing said so."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch

from lang_sam import precision as prec
from lang_sam.errors import InvalidPrecisionError, LangSAMError, SlowPrecisionWarning

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def fresh_warning(monkeypatch):
    monkeypatch.setattr(prec, "_warned", set())


@pytest.mark.parametrize("asked,device,native,expected,warns", [
    ("auto", CPU, True, "bf16", False),
    ("auto", CPU, False, "fp32", False),
    ("auto", CUDA, True, "bf16", False),
    ("auto", CUDA, False, "fp16", False),
    ("bf16", CPU, True, "bf16", False),
    ("bf16", CPU, False, "bf16", True),   # honoured, with a warning saying what it costs
    ("bfloat16", CPU, False, "bf16", True),
    ("bf16", CUDA, False, "bf16", False),  # a GPU is not an emulating CPU
    ("fp32", CPU, False, "fp32", False),
    (None, CPU, False, "fp32", False),
    ("fp16", CUDA, False, "fp16", False),
])
def test_precision_table(monkeypatch, fresh_warning, asked, device, native, expected, warns):
    monkeypatch.setattr(prec, "native_bf16", lambda d: native)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert prec.check_precision(asked, device) == expected
        assert prec.check_precision(asked, device) == expected  # a second model: no second warning
    slow = [w for w in caught if issubclass(w.category, SlowPrecisionWarning)]
    assert len(slow) == (1 if warns else 0)
    if warns:
        text = str(slow[0].message)
        assert "fp32" in text and "auto" in text and "slower" in text


@pytest.mark.parametrize("asked,device,match", [
    ("fp8", CPU, "got 'fp8'"),
    ("half", CPU, "got 'half'"),
    (16, CPU, "got 16"),
    ("fp16", CPU, "needs a CUDA device"),
])
def test_bad_precision_is_a_typed_error(asked, device, match):
    with pytest.raises(InvalidPrecisionError, match=match) as err:
        prec.check_precision(asked, device)
    assert isinstance(err.value, ValueError) and isinstance(err.value, LangSAMError)


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


#: oneDNN's ISA limits under which its bf16 probe says no (measured here, torch 2.14.1; from
#: AVX512_CORE up it says yes, and the CPU's flags decide).
ONEDNN_BELOW_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2"}


@pytest.mark.skipif(not _cpu_flags(), reason="needs /proc/cpuinfo (Linux) to know the truth")
def test_native_bf16_follows_the_cpu_and_onednn_limits():
    """The real probe: this CPU's flags decide, and a oneDNN limited to AVX2 (as on an AVX2-only
    CPU) is not native, whatever the hardware."""
    flags = _cpu_flags()
    # (oneDNN limited to AVX2 by this process's environment, as CI's AVX2 step does, is not
    # native whatever the CPU's flags say)
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "ALL"))
    limited = isa.upper() in ONEDNN_BELOW_BF16
    assert prec.native_bf16(CPU) == (bool({"avx512_bf16", "amx_bf16"} & flags) and not limited)
    code = "import torch; from lang_sam.precision import native_bf16; print(native_bf16(torch.device('cpu')))"
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_langsam_auto_precision(tiny_specs, sam_ckpt, gdino_ckpt, fresh_warning):
    from lang_sam import LangSAM

    sam, gdino = tiny_specs
    model = LangSAM(sam.name, sam_ckpt, gdino_type=gdino.name, gdino_ckpt_path=gdino_ckpt, device="cpu",
                    precision="auto")
    expected = "bf16" if prec.native_bf16(CPU) else "fp32"
    assert model.precision == expected
    assert model.segmenter.precision == expected and model.detector.precision == expected
