"""Segment everything (``LangSAM.generate``, :mod:`lang_sam.generate`): equal to Segment Anything's
own ``SamAutomaticMaskGenerator`` on the same network and image.

The tiny random SAM's logits are small (std ~0.03) and its masks are noise spread over the whole
image, so SAM's default filters (predicted IoU > 0.88, stability >= 0.95 at offset 1.0) keep
nothing and every box is the whole image. The settings below are calibrated to these weights so
that each filter keeps some masks and drops others (``N > 0`` is asserted, and where a filter is
the point of a row, that it dropped something): a stability offset of 0.01, IoU thresholds
around the scores' range (-0.07 .. 0.15), ``box_nms_thresh=1.0`` to keep distinct masks whose
boxes coincide.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lang_sam import GeneratedMasks, GenerateSettings
from lang_sam.errors import InvalidArgumentError, InvalidResultError
from lang_sam.generate import crop_boxes, layer_point_grids, masks_to_boxes, stability_scores

from conftest import make_image

KEEP_ALL = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0, stability_score_offset=0.01, box_nms_thresh=1.0)

# (id, settings, whether a filter must have dropped masks: with KEEP_ALL every point's 3 masks stay)
CASES = [
    ("iou-filter", dict(KEEP_ALL, points_per_side=2, pred_iou_thresh=0.1), True),
    ("grid4-keep-all", dict(points_per_side=4, **KEEP_ALL), False),
    ("stability-filter", dict(KEEP_ALL, points_per_side=4, stability_score_thresh=0.35), True),
    ("box-nms", dict(KEEP_ALL, points_per_side=4, box_nms_thresh=0.7), True),
    ("crops", dict(KEEP_ALL, points_per_side=2, crop_n_layers=1, crop_nms_thresh=1.0, pred_iou_thresh=0.05), True),
    ("small-regions", dict(KEEP_ALL, points_per_side=3, min_mask_region_area=40), False),
    ("uneven-batches", dict(KEEP_ALL, points_per_side=5, points_per_batch=7, pred_iou_thresh=0.12), True),
    ("sam-defaults", dict(points_per_side=4, stability_score_offset=0.01, stability_score_thresh=0.3,
                          pred_iou_thresh=0.13), True),
]
QUICK = {"iou-filter"}


def _reference(model, image: np.ndarray, settings: dict) -> list[dict]:
    from segment_anything import SamAutomaticMaskGenerator

    return SamAutomaticMaskGenerator(model.segmenter.model, **settings).generate(image)


def assert_records_equal(ours: list[dict], ref: list[dict]) -> None:
    """Same masks in the same order, same boxes, areas and crop boxes, scores and points equal to
    float32 precision (ours keeps them as float32 tensors)."""
    assert len(ours) == len(ref)
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert a.keys() == b.keys()
        assert np.array_equal(a["segmentation"], b["segmentation"]), f"mask {i}"
        assert a["area"] == b["area"] and isinstance(a["area"], int)
        assert a["bbox"] == b["bbox"], f"bbox {i}"
        assert a["crop_box"] == b["crop_box"], f"crop_box {i}"
        for key in ("predicted_iou", "stability_score"):
            assert a[key] == pytest.approx(b[key], rel=0, abs=1e-6), f"{key} {i}"
        assert np.allclose(a["point_coords"], b["point_coords"], rtol=0, atol=1e-4), f"point {i}"


def _params():
    for name, settings, filtered in CASES:
        marks = () if name in QUICK else (pytest.mark.slow,)
        yield pytest.param(settings, filtered, id=name, marks=marks)


@pytest.mark.parametrize("settings,filtered", list(_params()))
def test_generate_equals_sam_automatic_mask_generator(exact_model, settings, filtered):
    image = make_image()
    out = exact_model.generate(image, **settings)
    ref = _reference(exact_model, image, settings)
    assert len(out) > 0
    assert_records_equal(out.records(), ref)
    # The tensors say what the records say.
    assert out.masks.shape == (len(out), *image.shape[:2]) and out.masks.dtype == torch.bool
    assert torch.equal(out.areas, out.masks.sum((1, 2)))
    assert out.boxes.dtype == torch.float32 and out.areas.dtype == torch.int64
    candidates = settings["points_per_side"] ** 2 * 3 * (1 + 4 * settings.get("crop_n_layers", 0))
    assert (len(out) < candidates) == filtered  # the row's filter dropped masks (and only then)


def test_default_attention_is_close_to_the_reference(model):
    """The library's default (fast attention in the image encoder) keeps the same masks here."""
    image = make_image(seed=1)
    settings = dict(points_per_side=3, **KEEP_ALL)
    out = model.generate(image, **settings)
    ref = _reference(model, image, settings)  # the same network, fast attention included
    assert_records_equal(out.records(), ref)


def test_records_coco_rle_decodes_to_the_masks(exact_model):
    from pycocotools import mask as mask_util

    out = exact_model.generate(make_image(), points_per_side=2, **KEEP_ALL)
    assert len(out) > 0
    for rec, mask in zip(out.records("coco_rle"), out.masks.numpy()):
        assert isinstance(rec["segmentation"]["counts"], str)
        assert np.array_equal(mask_util.decode(rec["segmentation"]).astype(bool), mask)
    with pytest.raises(InvalidResultError, match="binary_mask"):
        out.records("uncompressed_rle")


@pytest.mark.slow  # five 1024-px encodings
def test_whole_image_encoded_once_and_crops_once_each(exact_model):
    seg = exact_model.segmenter
    sizes = []
    hook = seg.model.image_encoder.register_forward_hook(lambda mod, args, out: sizes.append(args[0].shape))
    try:
        image = make_image(seed=2)
        steps = []
        exact_model.clear_cache()
        exact_model.generate(image, points_per_side=2, crop_n_layers=1, **KEEP_ALL,
                             progress=lambda *a: steps.append(a))
        assert len(sizes) == 1 + 4  # the image, then its four crops, each encoded once
        assert steps[0] == ("generate", 0, 5 * 4) and steps[-1] == ("generate", 20, 20)
        assert len(steps) == 1 + 5  # one report per batch (4 points: one batch per crop)
        sizes.clear()
        exact_model.generate(image, points_per_side=2, **KEEP_ALL)
        assert sizes == []  # the whole image's encoding came from the cache
    finally:
        hook.remove()


def test_nothing_kept_gives_an_empty_result(exact_model):
    out = exact_model.generate(make_image(), points_per_side=2)  # SAM's defaults: nothing passes
    assert len(out) == 0 and out.masks.shape == (0, 240, 320) and out.records() == []
    assert "0 masks" in repr(out)


@pytest.mark.parametrize("kwargs,match", [
    (dict(points_per_side=0), "points_per_side"),
    (dict(points_per_batch=0), "points_per_batch"),
    (dict(pred_iou_thresh=1.5), "pred_iou_thresh"),
    (dict(box_nms_thresh=-0.1), "box_nms_thresh"),
    (dict(crop_overlap_ratio=1.0), "crop_overlap_ratio"),
    (dict(crop_n_layers=-1), "crop_n_layers"),
    (dict(points_per_side=None), "exactly one"),
    (dict(point_grids=[np.zeros((4, 3))]), r"point_grids\[0\]"),
    (dict(point_grids=[np.full((4, 2), 0.5)], crop_n_layers=1), "one grid per crop layer"),
    (dict(pointz_per_side=4), "unknown generate setting"),
    (dict(stability_score_offset=float("nan")), "stability_score_offset"),
])
def test_bad_settings_raise_typed_errors(kwargs, match):
    with pytest.raises(InvalidArgumentError, match=match) as err:
        GenerateSettings.for_engine(None, **kwargs)
    assert isinstance(err.value, ValueError)


def test_engine_defaults_come_first_then_arguments():
    class Sam2Like:
        generate_defaults = {"pred_iou_thresh": 0.8}

    assert GenerateSettings.for_engine(None).pred_iou_thresh == 0.88  # SAM v1's
    assert GenerateSettings.for_engine(Sam2Like()).pred_iou_thresh == 0.8
    assert GenerateSettings.for_engine(Sam2Like(), pred_iou_thresh=0.5).pred_iou_thresh == 0.5
    grids = GenerateSettings.for_engine(None, point_grids=[np.full((1, 2), 0.5)])
    assert grids.points_per_side is None and len(grids.grids()) == 1


def test_point_grids_setting_matches_reference(exact_model):
    grid = np.array([[0.25, 0.25], [0.5, 0.5], [0.8, 0.3]])
    settings = dict(KEEP_ALL, point_grids=[grid])
    out = exact_model.generate(make_image(), points_per_side=None, **settings)
    ref = _reference(exact_model, make_image(), dict(settings, points_per_side=None))
    assert len(out) > 0
    assert_records_equal(out.records(), ref)


@pytest.mark.parametrize("size,layers,ratio", [((240, 320), 0, 512 / 1500), ((240, 320), 2, 512 / 1500),
                                                ((1500, 2250), 1, 0.2), ((777, 333), 3, 0.5)])
def test_crop_boxes_and_grids_equal_segment_anything(size, layers, ratio):
    from segment_anything.utils import amg

    assert crop_boxes(size, layers, ratio) == amg.generate_crop_boxes(size, layers, ratio)
    for ours, ref in zip(layer_point_grids(16, layers, 2), amg.build_all_layer_point_grids(16, layers, 2)):
        assert np.array_equal(ours, ref)


def test_boxes_and_stability_equal_segment_anything():
    from segment_anything.utils import amg

    g = torch.Generator().manual_seed(0)
    logits = torch.randn((6, 30, 40), generator=g) * 3
    logits[0] = -5  # empty mask
    logits[1, 3:9, 5:6] = 10
    masks = logits > 0
    assert torch.equal(masks_to_boxes(masks), amg.batched_mask_to_box(masks))
    ours, ref = stability_scores(logits, 0.0, 1.0), amg.calculate_stability_score(logits, 0.0, 1.0)
    assert torch.allclose(ours[1:], ref[1:]) and torch.isnan(ours[0]) and torch.isnan(ref[0])


def test_generated_masks_are_checked():
    ok = GeneratedMasks.empty((4, 5))
    with pytest.raises(InvalidResultError, match="areas"):
        GeneratedMasks(torch.zeros((1, 4, 5), dtype=torch.bool), torch.zeros((1, 4)),
                       torch.zeros((1,)), torch.zeros((1,)), torch.zeros((1,)), torch.zeros((1, 2)),
                       torch.zeros((1, 4)), (4, 5))
    with pytest.raises(InvalidResultError, match="masks"):
        GeneratedMasks(torch.zeros((1, 4, 6), dtype=torch.bool), *(getattr(ok, f) for f in (
            "boxes", "areas", "iou_scores", "stability_scores", "point_coords", "crop_boxes")), (4, 5))


def test_large_crops_decode_fewer_points_at_once(exact_model, monkeypatch):
    """Over LOGITS_BYTES of logits per batch, points are decoded in smaller steps: the same masks
    (up to the decoder's batch-size rounding), reported step by step."""
    import lang_sam.generate as gen

    image = make_image()
    whole = exact_model.generate(image, points_per_side=2, **KEEP_ALL)
    monkeypatch.setattr(gen, "LOGITS_BYTES", 2 * 3 * 4 * 240 * 320)  # two points' logits
    steps = []
    capped = exact_model.generate(image, points_per_side=2, **KEEP_ALL, progress=lambda s, d, t: steps.append(d))
    assert steps == [0, 2, 4]
    assert len(capped) == len(whole) == 12
    assert torch.allclose(capped.iou_scores, whole.iou_scores, atol=1e-5)
    assert (capped.masks != whole.masks).float().mean() < 1e-3


def _generator_defaults(path: str) -> dict:
    import importlib
    import inspect

    module, _, name = path.rpartition(".")
    params = inspect.signature(getattr(importlib.import_module(module), name).__init__).parameters
    return {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}


@pytest.mark.parametrize("engine, reference", [
    ("lang_sam.models.segmenter:SamSegmenter", "segment_anything.SamAutomaticMaskGenerator"),
    ("lang_sam.models.sam2:Sam2Segmenter", "sam2.automatic_mask_generator.SAM2AutomaticMaskGenerator"),
])
def test_each_family_defaults_are_its_own_generators(engine, reference):
    """GenerateSettings.for_engine gives every parameter its family's generator's default (SAM 2
    keeps predicted IoU over 0.8 where SAM v1 keeps over 0.88)."""
    import dataclasses
    import importlib

    module, _, cls = engine.partition(":")
    ours = GenerateSettings.for_engine(getattr(importlib.import_module(module), cls))
    theirs = _generator_defaults(reference)
    shared = [f.name for f in dataclasses.fields(GenerateSettings) if f.name in theirs and f.name != "point_grids"]
    assert len(shared) >= 11
    assert {n: getattr(ours, n) for n in shared} == {n: theirs[n] for n in shared}
