"""SAM 2.1 on OpenVINO (lang_sam.models.sam2_openvino) against its PyTorch path, on the tiny fixtures.

Issue 27's exactness claim at float32: scores within 1e-3, masks agreeing on at least 99.9 % of
pixels, and on video equal tracks (same ids on every frame, masks >= 99.9 %). The two engines load
the same checkpoint; the OpenVINO one converts its image encoder at load and its video parts
(memory encoder, memory attention) once per shape the clip meets, cached beside the checkpoint.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from lang_sam.errors import BackendUnavailableError, DeviceError, InvalidArgumentError, InvalidPrecisionError
from lang_sam.models import openvino as ov_backend
from lang_sam.models.openvino import BackendFallbackWarning
from lang_sam.models.sam2 import Sam2Segmenter
from lang_sam.testing import TINY_SAM2_VIDEO, tiny_sam2_spec, write_sam2_checkpoint

from conftest import make_image

SCORE_ATOL = 1e-3
MASK_AGREEMENT = 0.999
BOXES = torch.tensor([[10.0, 20.0, 200.0, 180.0], [50.0, 60.0, 300.0, 230.0]])


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return 1.0 if a.numel() == 0 else float((a == b).float().mean())


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(PyTorch, OpenVINO) SAM 2.1 engines of :data:`TINY_SAM2_VIDEO` (the tiny structure on 256-px
    input: converts in seconds) on one checkpoint, and the spec and checkpoint path."""
    spec = tiny_sam2_spec("tiny_sam2_ov", TINY_SAM2_VIDEO)
    path = write_sam2_checkpoint(tmp_path_factory.mktemp("sam2ov") / spec.filename, TINY_SAM2_VIDEO)
    return (Sam2Segmenter.from_spec(spec, path), Sam2Segmenter.from_spec(spec, path, backend="openvino"),
            spec, path)


PROMPTS = {
    "boxes": dict(boxes=BOXES),
    "boxes, three masks": dict(boxes=BOXES, multimask_output=True),
    "points": dict(points=np.array([[[100.0, 100.0], [150.0, 120.0]]]), point_labels=np.array([[1, 0]])),
    "box and point": dict(boxes=BOXES[:1], points=np.array([[[120.0, 90.0]]]), point_labels=np.array([[1]])),
}


@pytest.mark.parametrize("prompt", list(PROMPTS), ids=list(PROMPTS))
def test_image_predictions_match_pytorch(pair, prompt):
    pt, ov, _, _ = pair
    img = make_image(seed=3)
    outs = []
    for engine in (pt, ov):
        engine.set_image(img, key="seed3")  # encoded once for the table
        outs.append(engine.predict(**PROMPTS[prompt], return_low_res=True))
    a, b = outs
    assert agreement(a.masks, b.masks) >= MASK_AGREEMENT
    assert float((a.iou_scores - b.iou_scores).abs().max()) <= SCORE_ATOL
    assert a.masks.any()  # not trivially equal empty masks
    assert float((a.low_res_logits - b.low_res_logits).abs().max()) < 1e-2


def test_engine_reports_its_backend(pair):
    pt, ov, _, _ = pair
    assert Sam2Segmenter.backends == ("pytorch", "openvino")
    assert (pt.backend, ov.backend) == ("pytorch", "openvino")
    assert [type(getattr(ov.model, p)).__name__ for p in ("vision_encoder", "memory_encoder", "memory_attention")] \
        == ["OVVisionEncoder", "_OVMemoryEncoder", "_OVMemoryAttention"]
    assert not any(k.startswith("vision_encoder.") for k in ov.model.state_dict())  # PyTorch's copy freed


@pytest.mark.slow  # converts the two video parts (about 15 s on the loaded 2-core machine)
def test_tracks_match_pytorch(pair):
    """Same ids and masks on every frame of a short clip, with an object joining late."""
    pt, ov, _, _ = pair
    sessions = pt.start_video(), ov.start_video()
    agreements = []
    for i in range(4):
        frame = make_image(seed=i)
        kw = {}
        if i == 0:
            kw = dict(new_ids=[1, 2], new_boxes=BOXES)
        elif i == 2:
            kw = dict(new_ids=[3], new_boxes=BOXES[1:])
        a, b = (engine.track(session, frame, **kw) for engine, session in zip((pt, ov), sessions))
        assert a.object_ids.tolist() == b.object_ids.tolist()
        agreements.append(agreement(a.masks, b.masks))
        assert float((a.iou_scores - b.iou_scores).abs().max()) <= SCORE_ATOL
    assert min(agreements) >= MASK_AGREEMENT, agreements
    assert b.object_ids.tolist() == [1, 2, 3]
    assert ov.model.memory_attention.part is not None and ov.model.memory_encoder.part is not None  # converted
    # the image encoder runs once a frame and hands its buffers back; the memory parts keep theirs
    assert ov.model.vision_encoder.part.release
    assert not ov.model.memory_attention.part.release and not ov.model.memory_encoder.part.release
    # the memory attention's rotary encoding converted as rotate_pairs (a gather, not Split + Concat)
    assert "aten::index_select" in Path(ov.model.memory_attention.part.path).read_text()


def test_second_load_uses_the_cache(pair, monkeypatch):
    _, _, spec, path = pair
    entries = sorted(p.name for p in ov_backend.cache_dir(path).iterdir())
    monkeypatch.setattr(ov_backend, "_convert", lambda *a, **k: pytest.fail("converted again"))
    again = Sam2Segmenter.from_spec(spec, path, backend="openvino")
    assert sorted(p.name for p in ov_backend.cache_dir(path).iterdir()) == entries
    assert again.model.vision_encoder.part.path.parent.parent == ov_backend.cache_dir(path)
    assert ov_backend.weights_sha256(path) in json_key(again.model.vision_encoder.part.path.parent)


def json_key(entry) -> str:
    return (entry / "manifest.json").read_text()


def test_a_part_that_cannot_convert_stays_on_pytorch(pair, tmp_path, monkeypatch):
    pt, _, spec, path = pair
    monkeypatch.setenv("LANG_SAM_OPENVINO_CACHE", str(tmp_path))

    def fail(*a, **k):
        raise RuntimeError("unsupported operation")

    monkeypatch.setattr(ov_backend, "_convert", fail)
    with pytest.warns(BackendFallbackWarning, match="vision_encoder"):
        engine = Sam2Segmenter.from_spec(spec, path, backend="openvino")
    assert type(engine.model.vision_encoder).__name__ != "OVVisionEncoder"
    img = make_image(seed=4)
    a = (pt.set_image(img), pt.predict(boxes=BOXES))[1]
    b = (engine.set_image(img), engine.predict(boxes=BOXES))[1]
    assert torch.equal(a.masks, b.masks)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(backend="tensorrt"), InvalidArgumentError, "backend must be one of"),
    (dict(backend="openvino", precision="bf16"), InvalidPrecisionError, "SAM 2.1 at precision 'fp32'; got 'bf16'"),
    (dict(backend="openvino", device="meta"), DeviceError, "SAM 2.1 on the CPU; got device 'meta'"),
])
def test_bad_backend_arguments(pair, kwargs, error, match):
    _, _, spec, path = pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bf16 on a CPU without it warns first
        with pytest.raises(error, match=match):
            Sam2Segmenter.from_spec(spec, path, **kwargs)


def test_openvino_missing_names_the_extra(pair, monkeypatch):
    _, _, spec, path = pair
    monkeypatch.setitem(__import__("sys").modules, "openvino", None)
    with pytest.raises(BackendUnavailableError, match=r"lang-sam\[openvino\]") as info:
        Sam2Segmenter.from_spec(spec, path, backend="openvino")
    assert info.value.extra == "openvino"
