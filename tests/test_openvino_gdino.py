"""GroundingDINO on OpenVINO (issue 27): exact at float32 against the PyTorch path on the tiny
network, captions padded without changing a result, one part falling back alone, typed errors.

Every conversion of this module goes into one cache folder (module-scoped): each new image shape
costs an ``image`` and a ``fuse`` conversion (about 10 s of CPU each for the tiny network), so the
tests that convert are marked slow.
"""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from lang_sam.errors import BackendUnavailableError, DeviceError, InvalidArgumentError, InvalidPrecisionError
from lang_sam.models import detector_openvino
from lang_sam.models import openvino as ov_backend
from lang_sam.models.detector import (
    GroundingDINODetector, encode_text, fuse, preprocess_caption, text_inputs,
)
from lang_sam.models.detector_openvino import OpenVINOParts, bucket, pad_text
from lang_sam.models.openvino import BackendFallbackWarning, OVPart
from lang_sam.testing import tiny_gdino_spec, write_gdino_checkpoint

PROMPTS = ["object", "a cat. a dog", "the red car on the left. a person wearing a hat. bicycle"]


def _image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def spec():
    return tiny_gdino_spec("tiny_gdino_ov")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, spec):
    path = tmp_path_factory.mktemp("ov_gdino") / spec.filename
    write_gdino_checkpoint(path, spec, seed=1, few_boxes=True, target_boxes=8)
    return path


@pytest.fixture(scope="module")
def pt(ckpt, spec):
    return GroundingDINODetector.from_spec(spec, ckpt)


@pytest.fixture(scope="module")
def ov(ckpt, spec):
    return GroundingDINODetector.from_spec(spec, ckpt, backend="openvino")


#: (width, height): landscape and portrait resize to different backbone shapes, each its own conversion.
SIZES = [(600, 400), (400, 500)]


@pytest.mark.slow  # the module's conversions: about 10 s of CPU per part and image shape
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("prompt", PROMPTS)
def test_openvino_matches_pytorch(pt, ov, size, prompt):
    image = _image(*size)
    caption = preprocess_caption(prompt)
    ref_features, features = pt.encode_image(image), ov.encode_image(image)
    for a, b in zip(ref_features.srcs + ref_features.poss, features.srcs + features.poss):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(ref_features.masks, features.masks))
    ref_scores, ref_boxes = pt.forward_text(ref_features, caption)
    scores, boxes = ov.forward_text(features, caption)
    assert (scores - ref_scores).abs().max() < 1e-3
    pixels = ov.to_pixels(boxes, features.image_size) - pt.to_pixels(ref_boxes, features.image_size)
    assert pixels.abs().max() < 0.5
    ref, got = pt.predict(image, prompt, features=ref_features), ov.predict(image, prompt, features=features)
    assert len(ref.boxes) > 0 and len(got.boxes) == len(ref.boxes)
    assert (got.boxes - ref.boxes).abs().max() < 0.5 and (got.scores - ref.scores).abs().max() < 1e-3
    assert got.phrases == ref.phrases
    assert all(isinstance(p, OVPart) for kept in ov.openvino._compiled.values() for p in kept.values())


@pytest.fixture(scope="module")
def small_features(pt):
    return pt.encode_image(_image(300, 200))


@pytest.mark.parametrize("prompt, extra", [(PROMPTS[0], 1), (PROMPTS[1], 7), (PROMPTS[2], 40)])
def test_padding_a_caption_does_not_change_results(pt, small_features, prompt, extra):
    """The padded tokens are masked out of BERT, the fusion layers and the logits (PyTorch here:
    the OpenVINO parts compute the same graph)."""
    m, features = pt.model, small_features
    tokens = text_inputs(m, preprocess_caption(prompt))
    with torch.no_grad():
        ref = fuse(m, features.srcs, features.masks, features.poss, encode_text(m, *tokens), *tokens[1:])
        padded = pad_text(tokens, tokens[0].shape[1] + extra)
        got = fuse(m, features.srcs, features.masks, features.poss, encode_text(m, *padded), *padded[1:])
    assert torch.equal(torch.isinf(ref[0]), torch.isinf(got[0]))
    finite = torch.isfinite(ref[0])
    assert (ref[0][finite] - got[0][finite]).abs().max() < 1e-4
    assert (ref[1] - got[1]).abs().max() < 1e-5


@pytest.mark.parametrize("tokens, expected", [(1, 32), (4, 32), (32, 32), (33, 64), (200, 224), (250, 256), (256, 256)])
def test_caption_bucket(tokens, expected):
    assert bucket(tokens) == expected


def test_pad_text_refuses_to_shorten(pt):
    tokens = text_inputs(pt.model, "a cat. a dog.")
    with pytest.raises(ValueError, match="cannot pad"):
        pad_text(tokens, 2)


@pytest.mark.slow
def test_prompts_of_one_bucket_share_a_conversion_and_a_later_process_loads_it(pt, ov, spec, monkeypatch):
    image = _image(600, 400)
    features = ov.encode_image(image)
    fuse_shapes = set()
    for prompt in PROMPTS:  # 3 to 17 tokens: one fuse conversion (BERT runs on PyTorch)
        ov.forward_text(features, preprocess_caption(prompt))
        fuse_shapes.add(next(reversed(ov.openvino._compiled["fuse"])))  # the part this call used
    # converted parts are <model>-<part>-<precision>-<digest>/ (compiled/ is OpenVINO's own blob cache)
    entries = sorted(p.name.split("-")[1] for p in ov.openvino.root.iterdir() if p.name.startswith(f"{spec.name}-")
                     and p.is_dir())
    assert len(fuse_shapes) == 1 and set(ov.openvino._compiled) == {"image", "fuse"}
    assert "text" not in entries and entries.count("image") >= 1 and entries.count("fuse") >= 1

    def no_conversion(*args, **kwargs):
        raise AssertionError("a cached part was converted again")

    monkeypatch.setattr(ov_backend, "_convert", no_conversion)
    later = GroundingDINODetector(ov.model, backend="openvino", openvino_cache=ov.openvino.root, name=spec.name,
                                  openvino_weights=ov.openvino.weights, input_size=spec.arch.input_size)
    scores, _ = later.forward_text(later.encode_image(image), preprocess_caption(PROMPTS[0]))
    assert all(isinstance(p, OVPart) for kept in later.openvino._compiled.values() for p in kept.values())
    assert torch.equal(scores, ov.forward_text(features, preprocess_caption(PROMPTS[0]))[0])


@pytest.mark.slow
def test_a_part_that_cannot_be_converted_falls_back_alone(pt, ov, spec, tmp_path, monkeypatch):
    """The image part fails to convert: a warning names it, it runs on PyTorch, the fuse part stays
    on OpenVINO (loaded from a copy of the cache without the image entry)."""
    image = _image(600, 400)
    ov.forward_text(ov.encode_image(image), preprocess_caption(PROMPTS[0]))  # fills the cache
    root = tmp_path / "cache"
    shutil.copytree(ov.openvino.root, root, ignore=shutil.ignore_patterns("*-image-*"))

    def broken(self, *args):
        raise RuntimeError("unsupported operation")

    monkeypatch.setattr(detector_openvino._ImagePart, "forward", broken)
    det = GroundingDINODetector(ov.model, backend="openvino", openvino_cache=root, name=spec.name,
                                openvino_weights=ov.openvino.weights, input_size=spec.arch.input_size)
    with pytest.warns(BackendFallbackWarning, match="'image'"):
        got = det.predict(image, PROMPTS[0])
    ref = pt.predict(image, PROMPTS[0])
    assert (got.boxes - ref.boxes).abs().max() < 0.5 and got.phrases == ref.phrases
    kinds = {name: [type(p) for p in kept.values()] for name, kept in det.openvino._compiled.items()}
    assert kinds == {"image": [type(None)], "fuse": [OVPart]}


def test_backends_are_listed_on_the_class():
    assert GroundingDINODetector.backends == ("pytorch", "openvino")


@pytest.mark.parametrize("options, error, match", [
    ({"backend": "onnx"}, InvalidArgumentError, "backend must be one of"),
    ({"backend": "openvino", "precision": "bf16"}, InvalidPrecisionError, "fp32.*'bf16'"),
    ({"backend": "openvino", "device": "meta"}, DeviceError, "CPU.*'meta'"),
])
def test_bad_options_are_typed_errors(pt, tmp_path, options, error, match):
    with pytest.raises(error, match=match):
        GroundingDINODetector(pt.model, openvino_cache=tmp_path, **options)


def test_openvino_missing_names_the_extra(pt, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    with pytest.raises(BackendUnavailableError, match=r"lang-sam\[openvino\]") as info:
        OpenVINOParts(pt.model, "x", tmp_path, None, None, None)
    assert info.value.extra == "openvino"


def test_from_spec_keys_the_parts_by_the_checkpoint_file_without_reading_the_network(ckpt, spec, tmp_path, monkeypatch):
    """A later start must not hash the loaded network (every weight read: seconds, and its pages
    resident) to find its cached parts: from_spec keys them by the file's sha256, remembered."""
    import hashlib

    def no_state_hash(model):
        raise AssertionError("the network's state dict was hashed")

    monkeypatch.setattr(detector_openvino, "state_sha256", no_state_hash)
    det = GroundingDINODetector.from_spec(spec, ckpt, backend="openvino", openvino_cache=tmp_path)
    assert det.openvino.weights == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert det.openvino.root == tmp_path
