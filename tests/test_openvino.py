"""The OpenVINO backend (issue 27): the facade's ``backend=`` / ``precision="int8"`` checks, the
converted-part cache (converted once; corrupt, foreign, half-written or locked entries rebuilt or
ignored, never loaded; two processes convert once), a part that cannot convert falling back alone,
and the exactness table (OpenVINO fp32 against PyTorch, one row per engine: SAM v1's here)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from backend_helpers import assert_backends_agree, toy_part
from conftest import load_tiny, make_image

import lang_sam.models.openvino as ovb
from lang_sam.errors import DeviceError, InvalidArgumentError, InvalidPrecisionError
from lang_sam.models.openvino import BackendFallbackWarning, OVPart, compile_part
from lang_sam.precision import check_precision

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def conversions(monkeypatch):
    """The parts converted while the test runs (their cache entries' names), in order."""
    seen: list[str] = []
    real = ovb._convert

    def counting(module, example_inputs, shapes, out, quantize):
        seen.append(out.name.split(".incomplete-")[0])
        return real(module, example_inputs, shapes, out, quantize)

    monkeypatch.setattr(ovb, "_convert", counting)
    return seen


@pytest.fixture(scope="module")
def ov_ckpt(tmp_path_factory, sam_ckpt):
    """A copy of the tiny SAM checkpoint in its own folder, so its ``openvino/`` cache starts empty."""
    path = tmp_path_factory.mktemp("ov") / sam_ckpt.name
    shutil.copy(sam_ckpt, path)
    return path


@pytest.mark.parametrize("backend, precision, expected", [
    ("pytorch", "fp32", "fp32"),
    ("openvino", "fp32", "fp32"),
    ("openvino", "int8", "int8"),
    ("openvino", "auto", "fp32"),
    ("pytorch", "int8", "needs backend='openvino'"),
    ("openvino", "bf16", "runs at one of 'fp32', 'int8'; got 'bf16'"),
    ("openvino", "fp16", "runs at one of 'fp32', 'int8'; got 'fp16'"),
])
def test_precision_per_backend(backend, precision, expected):
    if expected in ("fp32", "int8"):
        assert check_precision(precision, torch.device("cpu"), backend) == expected
    else:
        with pytest.raises(InvalidPrecisionError, match=expected):
            check_precision(precision, torch.device("cpu"), backend)


@pytest.mark.parametrize("device, precision, precisions, expected", [
    ("cpu", "fp32", ("fp32",), "fp32"),
    ("cpu", "auto", ("fp32",), "fp32"),
    ("cpu", None, ("fp32",), "fp32"),
    ("cpu", "int8", ("fp32", "int8"), "int8"),
    ("cpu", "int8", ("fp32",), (InvalidPrecisionError, "runs X at precision 'fp32'; got 'int8'")),
    ("cpu", "bf16", ("fp32", "int8"), (InvalidPrecisionError, "precision 'fp32' or 'int8'; got 'bf16'")),
    ("meta", "fp32", ("fp32",), (DeviceError, "runs X on the CPU; got device 'meta'")),
    (torch.device("cuda", 0), "fp32", ("fp32",), (DeviceError, "got device 'cuda:0'")),
])
def test_one_target_check_for_every_engine(device, precision, precisions, expected):
    """check_target is what GroundingDINO, SAM, SAM 2.1, SAM 3 and the facade ask (no GPU needed:
    the device is only compared)."""
    if isinstance(expected, str):
        assert ovb.check_target(device, precision, engine="X", precisions=precisions) == expected
    else:
        with pytest.raises(expected[0], match=expected[1]):
            ovb.check_target(device, precision, engine="X", precisions=precisions)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"backend": "onnx"}, InvalidArgumentError, "backend must be one of 'pytorch', 'openvino'; got 'onnx'"),
    ({"precision": "int8"}, InvalidPrecisionError, "precision='int8' needs backend='openvino'.*got backend='pytorch'"),
    ({"backend": "openvino", "precision": "bf16"}, InvalidPrecisionError, "got 'bf16'"),
])
def test_facade_checks_backend_and_precision_before_loading(kwargs, error, match):
    from lang_sam import LangSAM

    with pytest.raises(error, match=match):  # no checkpoint exists (offline): the check comes first
        LangSAM("vit_b", **kwargs)


@pytest.mark.slow
def test_openvino_missing_is_a_typed_error_naming_the_extra():
    code = textwrap.dedent("""
        import sys
        sys.modules["openvino"] = None  # import openvino fails
        from lang_sam import LangSAM
        from lang_sam.errors import BackendUnavailableError
        try:
            LangSAM("vit_b", backend="openvino")
        except BackendUnavailableError as e:
            print(type(e).__name__, e.backend, e.extra, e.package, isinstance(e, ImportError), "|", e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert out.stdout.startswith("BackendUnavailableError openvino openvino openvino True |"), out.stderr[-2000:]
    assert 'pip install "lang-sam[openvino]"' in out.stdout


@pytest.mark.slow
def test_sam_on_openvino_converts_once_then_loads_the_cache(ov_ckpt, conversions):
    from lang_sam.models.sam_openvino import OVImageEncoder, OVMaskDecoder
    from lang_sam.models.segmenter import SamSegmenter
    from lang_sam.testing import tiny_sam_spec

    spec = tiny_sam_spec()
    first = SamSegmenter.from_spec(spec, ov_ckpt, backend="openvino")
    assert [c.split("-")[1] for c in conversions] == ["image_encoder", "mask_decoder"]
    assert isinstance(first.model.image_encoder, OVImageEncoder) and isinstance(first.model.mask_decoder, OVMaskDecoder)
    assert first.backend == "openvino" and SamSegmenter.backends == ("pytorch", "openvino")
    cache = ov_ckpt.parent / "openvino"
    stamps = {p: p.stat().st_mtime_ns for p in cache.rglob("model.bin")}
    second = SamSegmenter.from_spec(spec, ov_ckpt, backend="openvino")
    assert len(conversions) == 2 and {p: p.stat().st_mtime_ns for p in cache.rglob("model.bin")} == stamps
    img = make_image()
    for seg in (first, second):
        seg.set_image(img)
    a, b = (s.predict(boxes=torch.tensor([[10.0, 20, 200, 200]])) for s in (first, second))
    assert torch.equal(a.masks, b.masks) and torch.equal(a.iou_scores, b.iou_scores)
    assert not list(cache.glob("*.lock")) and not list(cache.glob("*.incomplete-*"))


def _flip_middle(entry: Path) -> None:
    path = entry / "model.bin"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _other_version(entry: Path) -> None:
    manifest = json.loads((entry / "manifest.json").read_text())
    manifest["key"]["openvino"] = "2023.0.0"
    (entry / "manifest.json").write_text(json.dumps(manifest))


#: name -> (what is done to a complete entry, whether it must be rebuilt)
DAMAGE = {
    "corrupt bin": (_flip_middle, True),
    "truncated bin": (lambda e: os.truncate(e / "model.bin", 10), True),
    "missing manifest": (lambda e: (e / "manifest.json").unlink(), True),
    "manifest of another version": (_other_version, True),
    "unreadable manifest": (lambda e: (e / "manifest.json").write_text("{not json"), True),
    "missing xml": (lambda e: (e / "model.xml").unlink(), True),
    "leftover verified stamp of other files": (lambda e: (e / "verified.json").write_text("{}"), False),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_cache_entry_is_not_valid(tmp_path, toy_entry, damage):
    key, entry = toy_entry
    shutil.copytree(entry, tmp_path / entry.name)
    harm, rebuilt = DAMAGE[damage]
    harm(tmp_path / entry.name)
    assert ovb._valid(tmp_path / entry.name, key) is not rebuilt


@pytest.fixture(scope="module")
def toy_entry(tmp_path_factory):
    """A complete cache entry of :func:`toy_part` (converted once for the module)."""
    key, module, x = toy_part()
    root = tmp_path_factory.mktemp("toy")
    compile_part(key, module, (x,), root)
    return key, root / key.dirname()


def test_a_corrupt_entry_is_rebuilt_and_the_rebuilt_one_loaded(tmp_path, toy_entry, conversions):
    key, entry = toy_entry
    shutil.copytree(entry, tmp_path / entry.name)
    _flip_middle(tmp_path / entry.name)
    _, module, x = toy_part()
    part = compile_part(key, module, (x,), tmp_path)
    assert conversions == [key.dirname()] and ovb._valid(tmp_path / entry.name, key)
    with torch.no_grad():
        assert torch.allclose(part(x)[0], module(x), atol=1e-5)


@pytest.mark.parametrize("release", [True, False], ids=["releases", "keeps"])
def test_what_a_part_returned_stays_as_it_was_after_the_next_call(tmp_path, toy_entry, release):
    """A part returns tensors that own their memory: the next call neither frees it (release=True
    hands OpenVINO's buffers back after each call) nor writes into it (release=False: the request
    reuses its output buffers); OVPart does not copy OpenVINO's outputs a second time."""
    key, entry = toy_entry
    shutil.copytree(entry, tmp_path / entry.name)
    _, module, x = toy_part()
    part = compile_part(key, module, (x,), tmp_path, release=release)
    first = part(x)[0]
    kept = first.clone()
    second = part(x * 2)[0]
    assert part.release is release and torch.equal(first, kept)
    with torch.no_grad():
        assert torch.allclose(second, module(x * 2), atol=1e-5)


@pytest.mark.slow
def test_the_parts_run_once_an_image_release_their_buffers(ov_model):
    """SAM's encoder and decoder and GroundingDINO's parts are called once an image: their buffers are
    handed back after each call (peak memory); video's per-frame parts keep theirs (test_openvino_sam2)."""
    ov_model.predict(make_image(), "object", 0.0, 0.0)
    sam = ov_model.segmenter.model
    parts = [sam.image_encoder.part, sam.mask_decoder.part]
    parts += [p for kept in ov_model.detector.openvino._compiled.values() for p in kept.values()]
    assert len(parts) == 4 and all(isinstance(p, OVPart) and p.release for p in parts)  # (BERT: PyTorch)


@pytest.mark.slow
def test_leftovers_of_a_killed_converter_are_ignored_and_removed(tmp_path, conversions):
    """A process killed while converting leaves its ``.lock`` (holding no lock: flock dies with it)
    and its ``.incomplete-<pid>`` folder; the next process converts at once and removes both."""
    key, module, x = toy_part()
    entry = tmp_path / key.dirname()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, sys, time
        from pathlib import Path
        from lang_sam.hub.download import _file_lock
        with _file_lock(Path({str(entry)!r} + ".lock")):
            part = Path({str(entry)!r} + f".incomplete-{{os.getpid()}}")
            part.mkdir()
            (part / "model.xml").write_text("<half")
            print("holding", flush=True)
            time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert (tmp_path / (entry.name + ".lock")).exists() and list(tmp_path.glob("*.incomplete-*"))
    start = time.monotonic()
    part = compile_part(key, module, (x,), tmp_path)
    assert time.monotonic() - start < 60 and conversions == [key.dirname()]
    assert not list(tmp_path.glob("*.incomplete-*")) and not (tmp_path / (entry.name + ".lock")).exists()
    with torch.no_grad():
        assert torch.allclose(part(x)[0], module(x), atol=1e-5)


_RACER = """
import os, sys, time
from pathlib import Path
import torch
sys.path.insert(0, {tests!r})
import lang_sam.models.openvino as ovb
from backend_helpers import toy_part
root = Path(sys.argv[1])
real = ovb._convert
def counting(*args):
    (root.parent / f"converted-{{os.getpid()}}").touch()
    time.sleep(1.0)  # widen the window in which the other process waits on the lock
    real(*args)
ovb._convert = counting
key, module, x = toy_part()
(root.parent / f"ready-{{os.getpid()}}").touch()
while not (root.parent / "go").exists():
    time.sleep(0.01)
part = ovb.compile_part(key, module, (x,), root)
print(float(part(x)[0].sum()))
"""


@pytest.mark.slow
def test_two_processes_at_once_convert_once(tmp_path):
    root = tmp_path / "cache"
    code = _RACER.format(tests=str(ROOT / "tests"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    (tmp_path / "go").touch()
    outs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    assert len(list(tmp_path.glob("converted-*"))) == 1
    assert outs[0][0] == outs[1][0] and len([p for p in root.iterdir() if p.name != "compiled"]) == 1


def test_a_part_that_cannot_convert_falls_back_alone_with_a_warning(tmp_path, ov_ckpt, monkeypatch, sam_ckpt):
    """The image encoder's conversion fails: it runs on PyTorch, named in the warning; the mask
    decoder still runs on OpenVINO (from the cache the test above filled)."""
    from lang_sam.models.sam_openvino import OVMaskDecoder
    from lang_sam.models.segmenter import SamSegmenter
    from lang_sam.testing import tiny_sam_spec

    spec = tiny_sam_spec()
    SamSegmenter.from_spec(spec, ov_ckpt, backend="openvino")  # the cache is filled (once per module)
    path = tmp_path / ov_ckpt.name
    shutil.copy(ov_ckpt, path)
    shutil.copytree(ov_ckpt.parent / "openvino", tmp_path / "openvino")
    for entry in (tmp_path / "openvino").glob("*-image_encoder-*"):
        shutil.rmtree(entry)

    def fail(*args):
        raise RuntimeError("no conversion rule for aten::frobnicate")

    monkeypatch.setattr(ovb, "_convert", fail)
    with pytest.warns(BackendFallbackWarning, match=r"part 'image_encoder' could not be converted.*frobnicate"):
        seg = SamSegmenter.from_spec(spec, path, backend="openvino")
    assert type(seg.model.image_encoder).__name__ == "ImageEncoderViT" and isinstance(seg.model.mask_decoder,
                                                                                     OVMaskDecoder)
    ref = SamSegmenter.from_spec(spec, sam_ckpt)
    img = make_image()
    for s in (seg, ref):
        s.set_image(img)
    boxes = torch.tensor([[10.0, 20, 200, 200], [0, 0, 90, 60]])
    a, b = ref.predict(boxes=boxes), seg.predict(boxes=boxes)
    assert_backends_agree(masks=(a.masks, b.masks), scores=(a.iou_scores, b.iou_scores))


def test_an_engine_without_the_backend_runs_on_pytorch_with_a_warning(gdino_ckpt, tiny_specs, monkeypatch):
    from lang_sam.engines import load_engine
    from lang_sam.models.detector import GroundingDINODetector

    monkeypatch.setattr(GroundingDINODetector, "backends", ("pytorch",))
    with pytest.warns(BackendFallbackWarning) as heard:
        detector = load_engine(tiny_specs[1], gdino_ckpt, torch.device("cpu"), precision="int8", backend="openvino")
    assert [str(w.message) for w in heard] == [
        f"gdino model {tiny_specs[1].name!r} (GroundingDINODetector) has no openvino backend (it runs on pytorch): "
        "it runs on PyTorch"]
    assert detector.backend == "pytorch" and detector.precision == "fp32"


@pytest.fixture(scope="module")
def ov_model(ov_ckpt, gdino_ckpt, tiny_specs):
    """The tiny models with ``backend="openvino"`` (fp32), SAM's parts cached beside ``ov_ckpt``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BackendFallbackWarning)  # GroundingDINO's, until it has the backend
        return load_tiny(ov_ckpt, gdino_ckpt, tiny_specs, backend="openvino")


@pytest.mark.slow
def test_int8_sam_is_an_approximation_of_fp32(ov_ckpt, gdino_ckpt, tiny_specs, ov_model):
    fp32 = ov_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BackendFallbackWarning)
        int8 = load_tiny(ov_ckpt, gdino_ckpt, tiny_specs, backend="openvino", precision="int8")
    assert repr(int8).endswith("backend='openvino')") and int8.segmenter.precision == "int8"
    assert {p.name.split("-")[2] for p in (ov_ckpt.parent / "openvino").glob("tiny_sam-*")} == {"fp32", "int8"}
    boxes = np.array([[10.0, 20, 200, 200], [50, 50, 300, 230]])
    a, b = (m.segment(make_image(), boxes=boxes) for m in (fp32, int8))
    assert float((a.masks == b.masks).float().mean()) > 0.9  # approximate: no exactness claim


def _sam_v1_row(pt, ov):
    """SAM v1 (tiny): LangSAM's text predict (GroundingDINO's boxes, SAM's masks) and SAM's own
    multimask box prompts, OpenVINO fp32 against PyTorch."""
    image = make_image(240, 320, seed=3)
    rows = []
    a, b = (m.predict(image, "car. wheel. road", 0.0, 0.0) for m in (pt, ov))
    rows.append({"masks": (a.masks, b.masks), "boxes": (a.boxes, b.boxes), "scores": (a.logits, b.logits)})
    boxes = np.array([[10.0, 20, 200, 200], [50, 50, 300, 230], [0, 0, 319, 239]])
    a, b = (m.segment(image, boxes=boxes, multimask_output=True) for m in (pt, ov))
    rows.append({"masks": (a.masks, b.masks), "scores": (a.iou_scores, b.iou_scores)})
    return rows


#: One row per engine with an OpenVINO path: given the tiny models on PyTorch and on OpenVINO
#: (conftest's ``model``, ``ov_model``), pairs of (PyTorch, OpenVINO fp32) outputs. The other engines' rows live in their own OpenVINO tests (same helper).
EXACTNESS_ROWS = {"sam v1": _sam_v1_row}


@pytest.mark.slow
@pytest.mark.parametrize("engine", EXACTNESS_ROWS)
def test_openvino_fp32_agrees_with_pytorch(engine, model, ov_model):
    for pairs in EXACTNESS_ROWS[engine](model, ov_model):
        figures = assert_backends_agree(**pairs)
        assert figures.get("mask_agreement", 1.0) >= 0.999


@pytest.mark.slow
def test_cli_predict_with_the_openvino_backend_equals_pytorch(tmp_path, ov_ckpt, gdino_ckpt, tiny_specs, capsys):
    from PIL import Image

    from lang_sam.cli import main

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray(make_image(60, 80, 1)).save(imgs / "a.png")
    args = ["--sam-type", tiny_specs[0].name, "--sam-ckpt", str(ov_ckpt), "--gdino-type", tiny_specs[1].name,
            "--gdino-ckpt", str(gdino_ckpt), "--prompt", "car", "--format", "masks", "-q"]
    for backend in ("pytorch", "openvino"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BackendFallbackWarning)
            assert main(["predict", str(imgs), "--output", str(tmp_path / backend), "--backend", backend, *args]) == 0
    masks = {b: sorted((tmp_path / b).rglob("*.png")) for b in ("pytorch", "openvino")}
    assert masks["pytorch"] and [p.name for p in masks["pytorch"]] == [p.name for p in masks["openvino"]]
    for a, b in zip(masks["pytorch"], masks["openvino"]):
        assert (np.asarray(Image.open(a)) == np.asarray(Image.open(b))).mean() >= 0.999
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"backends: pytorch, openvino (--backend; OpenVINO {ovb.openvino_version()})" in out
    assert f"CPU threads: {torch.get_num_threads()} (torch and OpenVINO; {ovb.physical_cores()} physical cores" in out


def test_server_and_ray_jobs_carry_the_backend(tiny_specs):
    from lang_sam.labeling.distributed import _langsam_job
    from lang_sam.labeling.run import LabelSettings
    from lang_sam.serving.service import ModelService

    service = ModelService(sam_type=tiny_specs[0].name, gdino_type=tiny_specs[1].name, backend="openvino")
    assert service.info()["backend"] == "openvino" and not service.info()["loaded"]
    with pytest.raises(InvalidArgumentError, match="got 'onnx'"):
        ModelService(sam_type=tiny_specs[0].name, gdino_type=tiny_specs[1].name, backend="onnx")
    settings = LabelSettings.create("car", sam_type=tiny_specs[0].name, gdino_type=tiny_specs[1].name)
    _, job = _langsam_job(settings, "vit_h", None, None, "cpu", "int8", 2, "openvino")
    assert job.model["backend"] == "openvino" and job.model["precision"] == "int8"


@pytest.mark.parametrize("family", ["sam2_video", "sam3"])
@pytest.mark.parametrize("shape", [(2,), (3, 8), (1, 2, 5, 64), (1, 1, 7, 256)])
def test_rotate_pairs_is_transformers_rotation_bit_for_bit(family, shape):
    """What converted parts trace in place of transformers' rotate_pairwise gives the same bits
    (signed zeros and infinities included), so the conversion changes its form, not its values."""
    import importlib

    rotate_pairwise = importlib.import_module(f"transformers.models.{family}.modeling_{family}").rotate_pairwise
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    x.view(-1)[:2] = torch.tensor([0.0, -0.0])
    if x.numel() > 3:
        x.view(-1)[2:4] = torch.tensor([float("inf"), float("-inf")])
    mine, theirs = ovb.rotate_pairs(x), rotate_pairwise(x)
    assert mine.shape == theirs.shape and torch.equal(mine.view(torch.int32), theirs.view(torch.int32))


@pytest.mark.parametrize("fixture", ["model", "exact_model"])
def test_the_sam_encoder_form_that_is_converted_gives_the_same_bits(fixture, request):
    """SAM's image encoder is converted with its blocks' residual stream flattened to (B, H*W, C)
    (sam_openvino._TracedEncoder: OpenVINO otherwise reorders it around every layer norm): the same
    values as segment_anything's blocks, bit for bit, with SDPA attention or the stock one; the
    blocks are as they were afterwards."""
    from lang_sam.models.sam_openvino import _TracedEncoder

    encoder = request.getfixturevalue(fixture).segmenter.model.image_encoder
    assert any(block.window_size > 0 for block in encoder.blocks)
    x = torch.randn(1, 3, encoder.img_size, encoder.img_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        stock = encoder(x)
        flat = _TracedEncoder(encoder)(x)
    assert torch.equal(stock, flat)
    assert not any("forward" in vars(block) for block in encoder.blocks)


def test_physical_cores_count_hyperthreads_once():
    cores = ovb.physical_cores()
    assert 1 <= cores <= (os.cpu_count() or 1)
    if Path("/sys/devices/system/cpu/cpu0/topology/core_cpus_list").exists():
        sibling_sets = {Path(f"/sys/devices/system/cpu/cpu{c}/topology/core_cpus_list").read_text()
                        for c in os.sched_getaffinity(0)}
        assert cores == len(sibling_sets)


def test_weights_sha256_is_hashed_once_per_file_version(tmp_path, monkeypatch):
    path = tmp_path / "w.pth"
    path.write_bytes(b"weights v1")
    hashed: list[Path] = []
    real = ovb._sha256
    monkeypatch.setattr(ovb, "_sha256", lambda p: hashed.append(p) or real(p))
    first = ovb.weights_sha256(path, tmp_path / "cache")
    assert ovb.weights_sha256(path, tmp_path / "cache") == first and len(hashed) == 1
    path.write_bytes(b"weights v2, another size")
    assert ovb.weights_sha256(path, tmp_path / "cache") != first and len(hashed) == 2
