"""The public API: names, defaults, shapes and dtypes, empty results, input kinds, bad input."""

from __future__ import annotations

import inspect
import io
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

import lang_sam
from conftest import make_image
from lang_sam import LangSAM, Prediction
from lang_sam.errors import (
    InvalidArgumentError,
    ImageNotFoundError,
    InvalidImageError,
    InvalidPromptError,
    InvalidThresholdError,
    PromptTooLongError,
)


def test_signatures_match_the_original():
    sig = inspect.signature(LangSAM.__init__)
    params = list(sig.parameters.values())[1:]
    assert [(p.name, p.default) for p in params[:3]] == [
        ("sam_type", "vit_h"), ("ckpt_path", None), ("return_prompts", False)]
    assert all(p.kind is p.KEYWORD_ONLY for p in params[3:])
    assert {p.name: p.default for p in params[3:]} == {
        "gdino_type": "swinb", "gdino_ckpt_path": None, "device": None, "precision": "fp32",
        "cache_size": 2, "fast_attention": True, "backend": "pytorch"}
    pred = inspect.signature(LangSAM.predict).parameters
    # One image parameter name everywhere ("image"); the 2023 keyword image_pil= still works
    # (test_the_2023_image_pil_keyword_still_works).
    # Then the keyword-only additions: sliced inference (issue 26 folded predict_tiled in) and progress.
    assert [(n, p.default) for n, p in pred.items()][1:] == [
        ("image", inspect.Parameter.empty), ("text_prompt", inspect.Parameter.empty),
        ("box_threshold", 0.3), ("text_threshold", 0.25), ("tile", None), ("progress", None)]
    assert [p.kind for p in pred.values()][-2:] == [inspect.Parameter.KEYWORD_ONLY] * 2
    assert set(lang_sam.SAM_MODELS) >= {"vit_h", "vit_l", "vit_b"}
    for name in lang_sam.__all__:
        assert hasattr(lang_sam, name)
    from lang_sam import utils
    for name in ("load_image", "draw_image", "get_contours", "contour_to_points", "generate_labelme_json"):
        assert callable(getattr(utils, name))


@pytest.mark.slow
def test_the_2023_image_pil_keyword_still_works(model, image):
    """2023 code called predict(image_pil=..., text_prompt=...); the parameter is now ``image``."""
    positional = model.predict(image, "car", 0.0, 0.0)
    by_2023_name = model.predict(image_pil=image, text_prompt="car", box_threshold=0.0, text_threshold=0.0)
    assert torch.equal(positional.masks, by_2023_name.masks) and positional.phrases == by_2023_name.phrases
    boxes, logits, phrases = model.predict_dino(image_pil=image, text_prompt="car", box_threshold=0.0,
                                                text_threshold=0.0)
    assert torch.equal(boxes, positional.boxes) and torch.equal(logits, positional.logits)
    assert torch.equal(model.predict_sam(image_pil=image, boxes=boxes)[:, 0], positional.masks)
    with pytest.raises(InvalidArgumentError, match="got the image twice"):
        model.predict(image, image_pil=image, text_prompt="car")


def test_import_is_light_and_silent():
    code = (
        "import sys, lang_sam, lang_sam.utils\n"
        "heavy = [m for m in ('groundingdino', 'segment_anything', 'transformers', 'cv2') if m in sys.modules]\n"
        "import torch\n"
        "assert not torch.cuda.is_initialized()\n"
        "sys.stderr.write(repr(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == ""
    assert out.stderr.strip() == "[]"


def test_predict_shapes_and_types(model, image):
    result = model.predict(image, "a cat. a remote control")
    assert isinstance(result, Prediction)
    masks, boxes, phrases, logits = result
    n = len(boxes)
    assert n > 0
    W, H = image.size
    assert masks.shape == (n, H, W) and masks.dtype == torch.bool
    assert boxes.shape == (n, 4) and boxes.dtype == torch.float32
    assert logits.shape == (n,) and logits.dtype == torch.float32
    assert isinstance(phrases, list) and len(phrases) == n and all(isinstance(p, str) for p in phrases)
    assert bool((logits > 0.3).all()) and bool((logits <= 1).all())
    assert bool((boxes[:, 2] >= boxes[:, 0]).all()) and bool((boxes[:, 3] >= boxes[:, 1]).all())


def test_nothing_detected(model, image):
    masks, boxes, phrases, logits = model.predict(image, "cat", box_threshold=1.0)
    W, H = image.size
    assert masks.shape == (0, H, W) and masks.dtype == torch.bool
    assert boxes.shape == (0, 4) and phrases == [] and logits.shape == (0,)


def test_predict_dino_and_predict_sam(model, image):
    boxes, logits, phrases = model.predict_dino(image, "cat", 0.3, 0.25)
    assert boxes.shape[1] == 4 and len(logits) == len(phrases) == len(boxes)
    masks = model.predict_sam(image, boxes[:3])
    W, H = image.size
    assert masks.shape == (min(3, len(boxes)), 1, H, W) and masks.dtype == torch.bool
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        model.predict_sam(image, torch.zeros(3))


@pytest.mark.slow
def test_image_inputs_agree(model, tmp_path):
    arr = make_image(120, 160, seed=5)
    pil = Image.fromarray(arr)
    path = tmp_path / "x.png"
    pil.save(path)
    ref = model.predict(pil, "cat", 0.9, 0.9)
    for other in (arr, str(path), path, pil.convert("RGBA")):
        got = model.predict(other, "cat", 0.9, 0.9)
        assert torch.equal(got.boxes, ref.boxes) and torch.equal(got.masks, ref.masks)
        assert got.phrases == ref.phrases


@pytest.mark.parametrize("image,error,match", [
    (np.zeros((0, 10, 3), np.uint8), InvalidImageError, "zero size"),
    (np.zeros((10, 10, 2), np.uint8), InvalidImageError, r"HxWx3.*\(10, 10, 2\)"),
    (np.zeros((10, 10, 3), np.float32) + 2, InvalidImageError, r"\[0, 1\]"),
    ("does/not/exist.jpg", ImageNotFoundError, "does/not/exist.jpg"),
    (12, InvalidImageError, "got int"),
])
def test_bad_images(model, image, error, match):
    with pytest.raises(error, match=match):
        model.predict(image, "cat")


def test_corrupt_image_file(model, tmp_path):
    bad = tmp_path / "broken.jpg"
    buf = io.BytesIO()
    Image.fromarray(make_image()).save(buf, "JPEG")
    bad.write_bytes(buf.getvalue()[:200])
    with pytest.raises(InvalidImageError, match="broken.jpg"):
        model.predict(bad, "cat")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(InvalidImageError, match="text.png"):
        model.predict(tmp_path / "text.png", "cat")


def test_decompression_bomb_path_is_refused_quickly(model, bomb_png):
    """predict(path) reads the header only: a 30000x30000 PNG fails in well under a second of work."""
    from lang_sam.errors import ImageTooLargeError

    started = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="30000x30000.*LANG_SAM_MAX_IMAGE_PIXELS"):
        model.predict(bomb_png, "cat")
    with pytest.raises(ImageTooLargeError):
        model.encode(str(bomb_png))
    assert time.perf_counter() - started < 10


@pytest.mark.parametrize("box,text", [(-0.1, 0.25), (0.3, 1.5), (float("nan"), 0.2), ("0.3", 0.2), (True, 0.2)])
def test_thresholds_outside_unit_interval(model, image, box, text):
    with pytest.raises(InvalidThresholdError, match=r"threshold"):
        model.predict(image, "cat", box, text)


@pytest.mark.parametrize("prompt", ["", "   ", " . ", None, 3])
def test_empty_or_non_string_prompt(model, image, prompt):
    with pytest.raises(InvalidPromptError):
        model.predict(image, prompt)


@pytest.mark.slow
def test_prompt_over_256_tokens_is_split_never_truncated(model, image):
    """A long class list runs in several passes at '.' boundaries; classes at its end are reached."""
    classes = [f"thing{i}" for i in range(100)] + ["a remote control"]
    prompt = ". ".join(classes)
    n = model.detector.count_tokens(prompt)
    assert n > 256
    passes = model.detector.split_prompt(prompt)
    assert len(passes) >= 2 and all(model.detector.count_tokens(p) <= 256 for p in passes)
    assert ". ".join(passes) == prompt, "every phrase, in order, in exactly one pass"
    result = model.predict(image, prompt)
    assert any("remote" in p for p in result.phrases), "the last class was read"
    last = model.predict(image, passes[-1])
    n_last = len(last.boxes)
    assert n_last > 0 and torch.equal(result.boxes[-n_last:], last.boxes)
    assert result.phrases[-n_last:] == last.phrases
    # one phrase longer than the window cannot be split: a clear error, never a truncation
    single = " ".join(f"thing{i}" for i in range(120))
    with pytest.raises(PromptTooLongError, match="tokens"):
        model.predict(image, single)


def test_build_sam_accepts_a_type_name_as_the_original_demo_passed_it(model, sam_ckpt, tiny_specs, tmp_path, monkeypatch):
    """The original web demo called build_sam(sam_type); that must switch type, not read a path."""
    name = tiny_specs[0].name
    monkeypatch.setenv("LANG_SAM_WEIGHTS_DIR", str(sam_ckpt.parent))
    before = model.segmenter
    model.build_sam(name)
    assert model.sam_type == name and model.segmenter is not before
    model.build_sam(sam_type=name)
    model.build_sam(str(sam_ckpt))
    assert model.sam_type == name
    with pytest.raises(lang_sam.UnknownModelError):
        model.build_sam(sam_type="vit_q")
    with pytest.raises(lang_sam.UnknownModelError, match="vit_h"):
        model.build_sam("vit_q")  # not a file, not path-like: an unknown type, not a missing file
    # A file of that name in the working folder changes nothing (issue 14 item 8): still a type.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vit_q").write_bytes(b"not a checkpoint")
    with pytest.raises(lang_sam.UnknownModelError, match="vit_h"):
        model.build_sam("vit_q")
    # What looks like a path stays a path: a missing file, never an unknown type.
    for path in ("vit_q.pth", "weights/vit_b", str(tmp_path / "vit_b")):
        with pytest.raises(lang_sam.WeightsNotFoundError, match="not found"):
            model.build_sam(path)
    assert model.sam_type == name


# ------------------------------------------------------------------------------------------
# Devices
# ------------------------------------------------------------------------------------------

def _unavailable_devices() -> list[str]:
    """Device strings that cannot work on this machine, whatever it has."""
    bad = ["gpu", "cuda:x", "meta", f"cuda:{torch.cuda.device_count()}"]  # one past the last GPU
    if not torch.cuda.is_available():
        bad += ["cuda", torch.device("cuda")]
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        bad.append("mps")
    return bad


@pytest.mark.parametrize("device", _unavailable_devices(), ids=lambda d: f"{type(d).__name__}-{d}")
def test_unavailable_device_is_a_typed_error_before_any_loading(device, tmp_path):
    """No checkpoint exists (offline): the device is refused first, naming the devices there are."""
    from lang_sam.errors import DeviceError
    from lang_sam.validation import available_devices

    with pytest.raises(DeviceError) as err:
        LangSAM(device=device)
    assert isinstance(err.value, ValueError) and isinstance(err.value, lang_sam.LangSAMError)
    msg = str(err.value)
    assert repr(str(device)) in msg and "available" in msg and "'cpu'" in msg
    assert all(repr(d) in msg for d in available_devices())


def test_available_devices_and_check_device():
    from lang_sam.validation import available_devices, check_device, default_device

    devices = available_devices()
    assert devices[0] == "cpu"
    assert ("cuda" in devices) == torch.cuda.is_available()
    assert check_device("cpu") == torch.device("cpu")
    assert check_device(torch.device("cpu")) == torch.device("cpu")
    assert check_device(None) == default_device()
    assert str(default_device()) in devices
    for i in range(torch.cuda.device_count()):
        assert check_device(f"cuda:{i}") == torch.device("cuda", i)


def test_model_service_checks_the_device_at_start_up():
    """The server and the demo fail when they start, not at their first request."""
    from lang_sam.errors import DeviceError
    from lang_sam.serving.service import ModelService

    with pytest.raises(DeviceError, match="'gpu'.*available here: 'cpu'"):
        ModelService(device="gpu")
    assert ModelService(device="cpu").info()["loaded"] is False


# ------------------------------------------------------------------------------------------
# Third-party warnings
# ------------------------------------------------------------------------------------------

_KNOWN_NOISE = (
    "Importing from timm.models.layers is deprecated",  # at groundingdino's import
    "torch.meshgrid: in an upcoming release",  # groundingdino's Swin and transformer
    "torch.cuda.amp.autocast(args...)` is deprecated",  # groundingdino's transformer, every call
    "None of the inputs have requires_grad",  # torch.utils.checkpoint, if checkpointing is on
)


@pytest.mark.slow
def test_known_third_party_warnings_are_silenced_only_inside_the_library(sam_ckpt, gdino_ckpt, tiny_specs):
    """Issue 8: timm, torch.meshgrid and torch.cuda.amp warnings were printed on every run. In a
    fresh process (so import-time warnings fire) with every warning shown (-W always), building,
    predicting and segmenting print none of them, no ignore filter is left in the global filters,
    and the same warning raised by the user's own code still shows."""
    code = f"""
import sys, warnings
import numpy as np
from lang_sam.models.registry import register_model
from lang_sam.testing import tiny_gdino_spec, tiny_sam_spec
register_model(tiny_sam_spec()); register_model(tiny_gdino_spec())
from lang_sam import LangSAM
before = list(warnings.filters)
m = LangSAM({tiny_specs[0].name!r}, {str(sam_ckpt)!r}, gdino_type={tiny_specs[1].name!r},
            gdino_ckpt_path={str(gdino_ckpt)!r}, device="cpu")
image = (np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)
result = m.predict(image, "cat. dog", 0.0, 0.0)
assert len(result.boxes) > 0  # SAM ran too
m.segment(image, points=[[5, 5]])
m.predict(image, "a cat")  # again: the torch.cuda.amp warning fired on every call
# Libraries add filters of their own when first imported (torch imports sympy on first use;
# transformers 4 imports requests, whose urllib3 ignores its DependencyWarning; supervision imports
# scipy, which ignores numpy's "matrix subclass" warning). None of those is ours: an ignore filter
# of ours (patches.KNOWN_WARNINGS) left behind would hide the user's warnings too.
from lang_sam.patches import KNOWN_WARNINGS
ours = {{pattern for _, pattern in KNOWN_WARNINGS}}
added = [f for f in warnings.filters if f not in before]
assert not [f for f in added if f[0] == "ignore" and f[1] is not None and f[1].pattern in ours], added
assert len(warnings.filters) == len(before) + len(added), "a filter was removed"
sys.stderr.write("=== the user's own code:\\n")
warnings.warn("Importing from timm.models.layers is deprecated (raised by the user)", FutureWarning)
warnings.warn("the user's own warning", UserWarning)
"""
    out = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stderr
    library, user = out.stderr.split("=== the user's own code:\n")
    for message in _KNOWN_NOISE:
        assert message not in library, library
    assert "Warning" not in library, library  # nor any other
    assert "Importing from timm.models.layers is deprecated (raised by the user)" in user
    assert "UserWarning: the user's own warning" in user


# --------------------------------------------------------------------------------------------
# Reprs: what a notebook shows for a result or a model (one short line, never whole tensors)
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def every_query(model, image):
    """A real prediction with box_threshold 0: every GroundingDINO query (60) is a detection."""
    return model.predict(image, "cat. remote control", 0.0, 0.25)


def test_prediction_repr_is_short_for_900_detections(every_query):
    from IPython.lib.pretty import pretty

    one = every_query
    k = 900 // len(one.phrases)
    assert k * len(one.phrases) == 900
    big = Prediction(one.masks.repeat(k, 1, 1), one.boxes.repeat(k, 1), one.phrases * k, one.logits.repeat(k))
    r = repr(big)
    assert len(r) < 400 and "\n" not in r and "tensor(" not in r, r
    assert r.startswith("Prediction(900 detections on a 320x240 image: ")
    for phrase, score in zip(big.phrases[:5], big.logits[:5].tolist()):
        assert f"{phrase!r} {score:.2f}" in r
    assert "(+895 more)" in r
    assert r.endswith("masks (900, 240, 320) bool, boxes (900, 4) float32 xyxy px)")
    assert pretty(big) == r, "IPython shows the same line"
    assert "tensor(" not in pretty([one, big])


def test_prediction_repr_when_empty_single_or_long_phrases(model, image, every_query):
    empty = model.predict(image, "cat", box_threshold=1.0)
    assert repr(empty) == (
        "Prediction(0 detections on a 320x240 image; masks (0, 240, 320) bool, boxes (0, 4) float32 xyxy px)")
    one = every_query
    single = Prediction(one.masks[:1], one.boxes[:1], one.phrases[:1], one.logits[:1])
    assert repr(single).startswith(f"Prediction(1 detection on a 320x240 image: {one.phrases[0]!r} ")
    assert "more" not in repr(single)
    long = "a remarkably long description of the object that was asked for"
    r = repr(Prediction(one.masks, one.boxes, [long] * len(one.phrases), one.logits))
    assert long not in r and repr(long[:23] + "\u2026") in r and len(r) < 400


def test_model_repr_names_models_device_and_precision(model, tiny_specs):
    from IPython.lib.pretty import pretty

    r = repr(model)
    assert r.startswith(f"LangSAM(sam_type={tiny_specs[0].name!r}, gdino_type={tiny_specs[1].name!r}, "
                        "device='cpu', precision='fp32', cache=")
    assert "fast_attention=True" in r and "return_prompts=False" in r
    assert len(r) < 300 and "\n" not in r and pretty(model) == r


def test_mask_prediction_repr_is_short(model, image, every_query):
    from IPython.lib.pretty import pretty

    many = model.segment(image, boxes=every_query.boxes[:7], multimask_output=True)
    r = repr(many)
    assert len(r) < 400 and "\n" not in r and "tensor(" not in r, r
    first = ", ".join(f"{s:.2f}" for s in many.iou_scores[0].tolist())
    assert r.startswith(f"MaskPrediction(7 prompts x 3 masks on a 320x240 image; iou_scores [{first}], ")
    assert "(+2 more)" in r
    side = model.segmenter.mask_input_size  # 64 for the tiny SAM, 256 for the released ones
    assert r.endswith(f"masks (7, 3, 240, 320) bool, low_res_logits (7, 3, {side}, {side}) float32)")
    assert pretty(many) == r
    click = model.segment(image, points=[[10, 20]])
    assert repr(click).startswith(
        f"MaskPrediction(1 prompt x 1 mask on a 320x240 image; iou_scores {click.iou_scores[0, 0]:.2f}; ")


def test_encoded_image_repr_says_what_is_encoded(model, image, every_query):
    enc = model.encode(image)
    assert repr(enc) == "EncodedImage(320x240, encoded by: none yet)"
    model.segment(enc, points=[[10, 20]])
    assert repr(enc) == "EncodedImage(320x240, encoded by: SAM)"
    assert repr(model.encode(image, eager=True)) == "EncodedImage(320x240, encoded by: GroundingDINO, SAM)"
