"""SAM 3 on OpenVINO (lang_sam.models.sam3_openvino) against its PyTorch path, on the tiny folder.

Issue 27's exactness claim at float32: boxes within 0.5 px, scores within 1e-3, masks agreeing on
at least 99.9 % of pixels. Both engines load the same random-weight folder
(:func:`lang_sam.testing.write_sam3_folder`); the OpenVINO one converts its vision encoder at load
and its heads (text encoder, DETR encoder / decoder, mask decoder) once per phrase count.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from lang_sam.errors import DeviceError, InvalidArgumentError, InvalidPrecisionError
from lang_sam.models.registry import get_spec
from lang_sam.models.sam3 import Sam3Segmenter
from lang_sam.testing import write_sam3_folder
from lang_sam.validation import TEXT_THRESHOLD

from conftest import make_image

BOX_PX = 0.5
SCORE_ATOL = 1e-3
MASK_AGREEMENT = 0.999


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = write_sam3_folder(tmp_path_factory.mktemp("sam3ov") / "sam3", "tiny", seed=0)
    spec = get_spec("sam", "sam3")
    return (Sam3Segmenter.from_spec(spec, folder), Sam3Segmenter.from_spec(spec, folder, backend="openvino"),
            spec, folder)


@pytest.mark.slow  # converts the heads once per phrase count (about 45 s each on the loaded 2-core machine)
@pytest.mark.parametrize("prompt, threshold", [
    ("cat", 0.2),
    ("wheel. car", 0.2),  # two phrases: one call of the heads with P = 2
    ("cat", 0.01),  # nearly every query
])
def test_detections_and_masks_match_pytorch(pair, prompt, threshold):
    pt, ov, _, _ = pair
    photo = Image.fromarray(make_image(90, 120, seed=5))
    results = []
    for engine in (pt, ov):
        prepared = engine.prepare(prompt, threshold, TEXT_THRESHOLD)
        features = engine.encode_image(photo, key="photo")
        detections = engine.detect(features, prepared)
        results.append((detections, *engine.masks_for(features, detections, prepared)))
    (da, ma, sa), (db, mb, sb) = results
    assert len(da) > 0 and da.phrases == db.phrases
    assert float((da.boxes - db.boxes).abs().max()) <= BOX_PX
    assert float((da.scores - db.scores).abs().max()) <= SCORE_ATOL
    assert float((sa - sb).abs().max()) <= SCORE_ATOL
    assert float((ma == mb).float().mean()) >= MASK_AGREEMENT


def test_engine_reports_its_backend(pair):
    pt, ov, _, _ = pair
    assert Sam3Segmenter.backends == ("pytorch", "openvino")
    assert (pt.backend, ov.backend) == ("pytorch", "openvino")
    assert type(ov.model.vision_encoder).__name__ == "OVVisionEncoder"
    assert not any(k.startswith("vision_encoder.") for k in ov.model.state_dict())  # PyTorch's copy freed
    assert all(p is not None for p in ov.model.forward.parts.values())  # every phrase count met converted
    # the ViT's rotary encoding converted as rotate_pairs (a gather, not Split + Concat)
    assert "aten::index_select" in Path(ov.model.vision_encoder.part.path).read_text()


def test_other_calls_of_the_model_stay_on_pytorch(pair):
    """Text embeddings given (what the video model passes): the PyTorch heads, same outputs."""
    pt, ov, _, _ = pair
    photo = Image.fromarray(make_image(90, 120, seed=6))
    outs = []
    for engine in (pt, ov):
        vision = engine.encode_image(photo).vision
        text = engine.processor(text=["cat"], return_tensors="pt")
        with torch.inference_mode():
            embeds = engine.model.get_text_features(input_ids=text["input_ids"], attention_mask=text["attention_mask"])
            outs.append(engine.model(vision_embeds=vision, text_embeds=embeds, attention_mask=text["attention_mask"]))
    assert float((outs[0].pred_logits - outs[1].pred_logits).abs().max()) <= SCORE_ATOL


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(backend="tensorrt"), InvalidArgumentError, "backend must be one of"),
    (dict(backend="openvino", precision="bf16"), InvalidPrecisionError, "SAM 3 at precision 'fp32'; got 'bf16'"),
    (dict(backend="openvino", device="meta"), DeviceError, "SAM 3 on the CPU; got device 'meta'"),
])
def test_bad_backend_arguments(pair, kwargs, error, match):
    _, _, spec, folder = pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bf16 on a CPU without it warns first
        with pytest.raises(error, match=match):
            Sam3Segmenter.from_spec(spec, folder, **kwargs)
