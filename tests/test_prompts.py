"""SAM's own prompts: ``LangSAM.encode`` / ``segment`` against ``SamPredictor.predict`` called directly
on the same weights, encodings reused, ``Prediction.iou_scores``, and bad prompts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import load_tiny, make_image
from fidelity_helpers import SAM_LOGIT_ATOL, SAM_SCORE_ATOL, assert_masks_match, assert_within
from lang_sam import EncodedImage, MaskPrediction, Prediction
from lang_sam.errors import InvalidPromptError
from lang_sam.testing import TINY_SAM
from lang_sam.validation import check_sam_prompts

H, W = 180, 240
#: The tiny SAM's low-resolution logits side (a quarter of its 256-px input; 256 for the released).
S = TINY_SAM.image_size // 4


@pytest.fixture(scope="module")
def img():
    return make_image(H, W, seed=21)


@pytest.fixture(scope="module")
def reference(exact_model, img):
    """segment-anything's own predictor on the very same network, with the image set."""
    from segment_anything import SamPredictor

    p = SamPredictor(exact_model.segmenter.model)
    p.set_image(img)
    return p


def meaningful(masks) -> bool:
    """A comparison of masks proves something only if they are neither all-empty nor all-full."""
    m = np.asarray(masks)
    return 0 < m.sum() < m.size


def assert_same(ours: MaskPrediction, index: int, theirs: tuple):
    masks, scores, low = theirs
    assert np.array_equal(ours.masks[index].numpy(), masks)
    assert np.array_equal(ours.iou_scores[index].numpy(), scores)
    assert np.array_equal(ours.low_res_logits[index].numpy(), low)


BOX = np.array([30.0, 40.0, 150.0, 130.0])
POINTS = np.array([[60.0, 70.0], [200.0, 20.0]])
LABELS = np.array([1, 0])


@pytest.mark.parametrize("multimask", [False, True])
def test_box_alone_equals_sam_predictor(exact_model, reference, img, multimask):
    out = exact_model.segment(img, boxes=BOX, multimask_output=multimask)
    c = 3 if multimask else 1
    assert out.masks.shape == (1, c, H, W) and out.masks.dtype == torch.bool
    assert out.iou_scores.shape == (1, c) and out.iou_scores.dtype == torch.float32
    assert out.low_res_logits.shape == (1, c, S, S)
    theirs = reference.predict(box=BOX, multimask_output=multimask)
    assert meaningful(theirs[0])
    assert_same(out, 0, theirs)


@pytest.mark.parametrize("multimask", [False, True])
def test_points_alone_equal_sam_predictor(exact_model, reference, img, multimask):
    out = exact_model.segment(img, points=POINTS, point_labels=LABELS, multimask_output=multimask)
    assert out.masks.shape == (1, 3 if multimask else 1, H, W)
    theirs = reference.predict(point_coords=POINTS, point_labels=LABELS, multimask_output=multimask)
    assert meaningful(theirs[0])
    assert_same(out, 0, theirs)


def test_points_default_to_foreground(exact_model, reference, img):
    out = exact_model.segment(img, points=POINTS[:1].tolist())  # lists work too
    assert_same(out, 0, reference.predict(point_coords=POINTS[:1], point_labels=np.array([1]),
                                          multimask_output=False))


def test_points_with_a_box_equal_sam_predictor(exact_model, reference, img):
    out = exact_model.segment(img, boxes=BOX, points=POINTS, point_labels=LABELS)
    theirs = reference.predict(point_coords=POINTS, point_labels=LABELS, box=BOX,
                               multimask_output=False)
    assert meaningful(theirs[0])
    assert_same(out, 0, theirs)
    alone = reference.predict(box=BOX, multimask_output=False)
    assert not np.array_equal(theirs[2], alone[2]), "the points change the answer"


def batched_reference(reference, boxes, points=None, labels=None, multimask=False):
    """SamPredictor's batched call (``predict_torch``), prompts mapped as ``predict`` maps them."""
    t = reference.transform
    as_t = lambda a, dt=torch.float: torch.as_tensor(a, dtype=dt)  # noqa: E731
    with torch.no_grad():
        m, s, low = reference.predict_torch(
            as_t(t.apply_coords(points, reference.original_size)) if points is not None else None,
            as_t(labels, torch.int) if labels is not None else None,
            as_t(t.apply_boxes(boxes, reference.original_size)), multimask_output=multimask)
    return m.numpy(), s.numpy(), low.numpy()


def test_several_boxes_at_once(exact_model, reference, img):
    boxes = np.array([BOX, [0.0, 0.0, 80.0, 60.0], [100.0, 90.0, 239.0, 179.0]])
    out = exact_model.segment(img, boxes=boxes, multimask_output=True)
    assert out.masks.shape == (3, 3, H, W) and out.iou_scores.shape == (3, 3)
    # Bit for bit SAM's own batched call ...
    bm, bs, blow = batched_reference(reference, boxes, multimask=True)
    for i in range(3):
        assert_same(out, i, (bm[i], bs[i], blow[i]))
    # ... and the same answers as one SamPredictor.predict per box up to float rounding (a batched
    # matmul may sum in another order than B separate ones, by CPU): masks equal but where that
    # logit lies within SAM_LOGIT_ATOL of 0 (fidelity_helpers: 1.2e-7 apart at most, measured).
    for i, box in enumerate(boxes):
        logits, scores, low = reference.predict(box=box, multimask_output=True, return_logits=True)
        assert_masks_match(out.masks[i], logits, eps=SAM_LOGIT_ATOL, what=f"box {i}'s masks")
        assert_within(out.iou_scores[i], scores, atol=SAM_SCORE_ATOL, what=f"box {i}'s scores")
        assert_within(out.low_res_logits[i], low, atol=SAM_LOGIT_ATOL, what=f"box {i}'s logits")
    # One point set for every box, and one set per box, give the same batched call.
    shared = exact_model.segment(img, boxes=boxes, points=POINTS, point_labels=LABELS)
    per_box = exact_model.segment(img, boxes=boxes, points=np.stack([POINTS] * 3),
                                  point_labels=np.stack([LABELS] * 3))
    bm, bs, blow = batched_reference(reference, boxes, np.stack([POINTS] * 3), np.stack([LABELS] * 3))
    for i in range(3):
        assert_same(shared, i, (bm[i], bs[i], blow[i]))
        assert_same(per_box, i, (bm[i], bs[i], blow[i]))


def test_mask_input_round_trip(exact_model, reference, img):
    first = exact_model.segment(img, points=POINTS[:1], multimask_output=True)
    best = int(first.iou_scores[0].argmax())
    logits = first.low_res_logits[0, best]                       # (S, S)
    again = exact_model.segment(img, points=POINTS, point_labels=LABELS, mask_input=logits)
    theirs_first = reference.predict(point_coords=POINTS[:1], point_labels=np.array([1]),
                                     multimask_output=True)
    assert_same(first, 0, theirs_first)
    theirs = reference.predict(point_coords=POINTS, point_labels=LABELS,
                               mask_input=theirs_first[2][best][None], multimask_output=False)
    assert_same(again, 0, theirs)
    # The mask alone, shaped (1, S, S) as SamPredictor takes it.
    alone = exact_model.segment(img, mask_input=logits[None].numpy())
    assert_same(alone, 0, reference.predict(mask_input=theirs_first[2][best][None],
                                            multimask_output=False))


@pytest.mark.slow
def test_nothing_is_encoded_twice(sam_ckpt, gdino_ckpt, tiny_specs):
    m = load_tiny(sam_ckpt, gdino_ckpt, tiny_specs, fast_attention=False)
    runs = {"gdino": 0, "sam": 0}
    m.groundingdino.backbone.register_forward_hook(lambda *a: runs.__setitem__("gdino", runs["gdino"] + 1))
    m.sam.model.image_encoder.register_forward_hook(lambda *a: runs.__setitem__("sam", runs["sam"] + 1))
    pixels = make_image(120, 160, seed=22)

    enc = m.encode(pixels)
    assert isinstance(enc, EncodedImage) and runs == {"gdino": 0, "sam": 0}  # lazy
    first = m.predict(enc, "cat")
    assert runs == {"gdino": 1, "sam": 1}
    m.predict_dino(enc, "dog", 0.3, 0.25)
    m.predict_sam(enc, first.boxes[:2])
    seg = m.segment(enc, boxes=first.boxes[:2].numpy(), multimask_output=True)
    m.segment(enc, points=[[10, 10]])
    assert runs == {"gdino": 1, "sam": 1}
    assert m.encode(enc) is enc

    # Without a handle: the content-keyed cache recognises a copy of the same pixels.
    assert np.array_equal(m.segment(pixels.copy(), boxes=first.boxes[:2].numpy(),
                                    multimask_output=True).masks, seg.masks)
    m.predict(pixels.copy(), "remote control")
    assert runs == {"gdino": 1, "sam": 1}

    # eager encodes both now; a changed pixel is another image.
    other = pixels.copy()
    other[0, 0, 0] ^= 1
    m.encode(other, eager=True)
    assert runs == {"gdino": 2, "sam": 2}

    # With the cache off, a handle still holds its encodings.
    m.cache_size = 0
    enc2 = m.encode(make_image(100, 100, seed=23))
    m.predict(enc2, "cat")
    m.segment(enc2, boxes=[0, 0, 50, 50])
    m.predict_sam(enc2, torch.tensor([[0.0, 0.0, 50.0, 50.0]]))
    assert runs == {"gdino": 3, "sam": 3}


@pytest.mark.slow
def test_predict_is_unchanged_and_carries_sams_scores(exact_model, reference, img):
    result = exact_model.predict(img, "cat. remote control")
    assert isinstance(result, Prediction) and isinstance(result, tuple) and len(result) == 4
    masks, boxes, phrases, logits = result                 # the original's 4-tuple
    n = len(boxes)
    assert n > 0 and masks.shape == (n, H, W)
    assert result.iou_scores.shape == (n,) and result.iou_scores.dtype == torch.float32
    # iou_scores are SAM's predicted IoU for exactly those boxes, computed as the original
    # computed the masks (apply_boxes_torch + predict_torch, in chunks of boxes_per_chunk).
    step = exact_model.segmenter.boxes_per_chunk(H, W)
    assert step < n, "several chunks are compared"
    mapped = reference.transform.apply_boxes_torch(boxes, reference.original_size)
    for start in range(0, n, step):
        with torch.no_grad():
            m, s, _ = reference.predict_torch(None, None, mapped[start:start + step],
                                              multimask_output=False)
        assert torch.equal(result.iou_scores[start:start + step], s[:, 0])
        assert torch.equal(masks[start:start + step], m[:, 0])
    assert meaningful(masks)
    assert torch.equal(exact_model.predict_sam(img, boxes)[:, 0], masks)
    empty = exact_model.predict(img, "cat", box_threshold=1.0)
    assert empty.iou_scores.shape == (0,)
    # Tuple behaviour is untouched by the attribute.
    assert result[:2] == (masks, boxes) and tuple(result)[3] is logits


BAD = [
    (dict(), "at least one prompt"),
    (dict(boxes=[1, 2, 3]), r"boxes must be shaped \(4,\) or \(B, 4\)"),
    (dict(boxes=[[1, 2, 3, 4, 5]]), "boxes must be shaped"),
    (dict(boxes=np.zeros((1, 1, 4))), "boxes must be shaped"),
    (dict(boxes=[[10, 10, 5, 20]]), "x0 <= x1"),
    (dict(boxes=[[0, 0, float("nan"), 5]]), "finite"),
    (dict(boxes=[[0, 0, 1e39, 5]]), r"finite float32 numbers .* got 1e\+39"),  # inf in float32
    (dict(boxes=[[0, 0, 1e38, 5]]), r"within the image extended"),  # NaN scores once scaled
    (dict(boxes=[[-W - 1, 0, 5, 5]]), r"within the image extended"),
    (dict(boxes=[[0, 0, 5, 2 * H + 1]]), r"within the image extended"),
    (dict(mask_input=np.full((S, S), 1e39)), r"mask_input must be finite float32"),
    (dict(boxes="a box"), "boxes must be numbers"),
    (dict(points=[1, 2]), r"points must be shaped \(K, 2\)"),
    (dict(points=np.zeros((0, 2))), "points must be shaped"),
    (dict(points=[[10, 10, 1]]), "points must be shaped"),
    (dict(points=[[W + 1, 10]]), "points must lie in the image"),
    (dict(points=[[10, -1]]), "points must lie in the image"),
    (dict(points=[[10, H + 0.5]]), "points must lie in the image"),
    (dict(points=[[10, 10]], point_labels=[2]), "1 \\(foreground\\) or 0"),
    (dict(points=[[10, 10]], point_labels=[-1]), "1 \\(foreground\\) or 0"),
    (dict(points=[[10, 10], [20, 20]], point_labels=[1]), "one per point"),
    (dict(boxes=[0, 0, 5, 5], point_labels=[1]), "without points"),
    (dict(boxes=np.zeros((3, 4)), points=np.ones((2, 1, 2))), "3 boxes but 2 point sets"),
    (dict(boxes=np.zeros((2, 4)), mask_input=np.zeros((3, 1, S, S))), "2 prompts but 3 masks"),
    (dict(mask_input=np.zeros((128, 128))), "mask_input must be SAM's low-resolution logits"),
    (dict(mask_input=np.zeros((1, 2, S, S))), "mask_input must be SAM's low-resolution logits"),
    (dict(mask_input=np.zeros((256, 256))),
     rf"shaped \({S}, {S}\), \(1, {S}, {S}\) or \(B, 1, {S}, {S}\), got shape \(256, 256\)"),
]


@pytest.mark.parametrize("mask_size,shape,ok", [
    (256, (256, 256), True),         # every released SAM: 1024-px input, 256-px logits
    (256, (2, 1, 256, 256), True),
    (256, (64, 64), False),
    (64, (1, 64, 64), True),         # the tiny test SAM: 256-px input
    (64, (256, 256), False),
])
def test_mask_input_must_be_the_segmenters_low_res_size(mask_size, shape, ok):
    args = dict(mask_input=np.zeros(shape), image_size=(H, W), mask_size=mask_size)
    if ok:
        assert check_sam_prompts(**args)["mask_input"].shape == (shape[0] if len(shape) == 4 else 1, 1,
                                                                  mask_size, mask_size)
    else:
        with pytest.raises(InvalidPromptError, match=f"shaped \\({mask_size}, {mask_size}\\)"):
            check_sam_prompts(**args)


@pytest.mark.parametrize("kwargs,match", BAD)
def test_bad_prompts_raise_invalid_prompt_error(exact_model, img, kwargs, match):
    with pytest.raises(InvalidPromptError, match=match) as info:
        exact_model.segment(img, **kwargs)
    assert isinstance(info.value, ValueError)


def test_boxes_reaching_past_the_image_by_its_size_are_allowed(exact_model, img):
    out = exact_model.segment(img, boxes=[[-W, -H, 2 * W, 2 * H], [-0.5, 3, W + 7, H]])
    assert torch.isfinite(out.iou_scores).all() and out.masks.shape[0] == 2


def test_points_on_the_far_edge_are_allowed(exact_model, reference, img):
    pts = np.array([[W, H], [0.0, 0.0]])
    out = exact_model.segment(img, points=pts)
    assert_same(out, 0, reference.predict(point_coords=pts, point_labels=np.array([1, 1]),
                                          multimask_output=False))
