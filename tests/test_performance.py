"""Encode once, prompt many: caches give identical results, stay bounded and are keyed by content.
Timings live in benchmarks/, not here."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from conftest import load_tiny, make_image


@pytest.fixture(scope="module")
def counted(sam_ckpt, gdino_ckpt, tiny_specs):
    """A fresh tiny model whose two image encoders count their runs."""
    m = load_tiny(sam_ckpt, gdino_ckpt, tiny_specs, fast_attention=False)
    m.runs = {"gdino": 0, "sam": 0}
    m.groundingdino.backbone.register_forward_hook(lambda *a: m.runs.__setitem__("gdino", m.runs["gdino"] + 1))
    m.sam.model.image_encoder.register_forward_hook(lambda *a: m.runs.__setitem__("sam", m.runs["sam"] + 1))
    return m


def same(a, b):
    return (torch.equal(a.masks, b.masks) and torch.equal(a.boxes, b.boxes)
            and torch.equal(a.logits, b.logits) and a.phrases == b.phrases)


@pytest.fixture(scope="module")
def uncached(sam_ckpt, gdino_ckpt, tiny_specs):
    return load_tiny(sam_ckpt, gdino_ckpt, tiny_specs, fast_attention=False, cache_size=0)


@pytest.mark.slow
def test_second_prompt_reuses_both_encodings_and_matches_uncached(counted, uncached):
    img = make_image(200, 260, seed=11)
    counted.clear_cache()
    counted.runs.update(gdino=0, sam=0)
    first = counted.predict(img, "cat")
    second = counted.predict(img.copy(), "remote control")  # another object, same pixels
    assert counted.runs == {"gdino": 1, "sam": 1}
    assert len(first.boxes) and len(second.boxes)
    assert same(first, uncached.predict(img, "cat"))
    assert same(second, uncached.predict(img, "remote control"))
    changed = img.copy()
    changed[0, 0, 0] ^= 1
    counted.predict(changed, "cat", 0.99, 0.99)
    assert counted.runs["gdino"] == 2, "one changed pixel is another image"


@pytest.mark.slow
def test_cache_is_bounded_and_clearable(counted):
    counted.clear_cache()
    assert counted.cache_size == 2
    for seed in range(3):
        counted.predict(make_image(64, 64, seed=seed), "cat", 1.0, 1.0)
    assert len(counted.detector.cache) == 2
    counted.cache_size = 1
    assert len(counted.detector.cache) == 1 and len(counted.segmenter.cache) <= 1
    counted.clear_cache()
    assert len(counted.detector.cache) == 0 and len(counted.segmenter.cache) == 0
    with pytest.raises(ValueError, match="cache size"):
        counted.cache_size = -1
    counted.cache_size = 2


@pytest.mark.slow
def test_predict_prompts_and_set_image(counted, uncached, sam_ckpt):
    img = Image.fromarray(make_image(180, 240, seed=4))
    counted.clear_cache()
    counted.runs.update(gdino=0, sam=0)
    results = counted.predict_prompts(img, ["cat", "a remote control. dog"])
    assert counted.runs == {"gdino": 1, "sam": 1}
    assert same(results[0], uncached.predict(img, "cat"))
    assert same(results[1], uncached.predict(img, "a remote control. dog"))
    counted.clear_cache()
    counted.set_image(img)
    assert counted.runs == {"gdino": 2, "sam": 2}
    again = counted.predict_prompt("cat")
    assert counted.runs == {"gdino": 2, "sam": 2}
    assert same(again, results[0])
    with pytest.raises(TypeError):
        counted.predict_prompts(img, "cat")
    counted.build_sam(str(sam_ckpt))  # reloading SAM drops the pinned image
    with pytest.raises(RuntimeError, match="set_image"):
        counted.predict_prompt("cat")


@pytest.mark.slow
def test_predict_batch(model):
    imgs = [make_image(100, 120, seed=s) for s in (1, 2)]
    out = model.predict_batch(imgs, "cat")
    assert len(out) == 2 and all(same(o, model.predict(i, "cat")) for o, i in zip(out, imgs))
    out = model.predict_batch(imgs, ["cat", "dog"])
    assert same(out[1], model.predict(imgs[1], "dog"))
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        model.predict_batch(imgs, ["cat"])


#: How far decoding boxes in chunks may move SAM's outputs: float32 rounding only. The decoder's
#: matrix products may add in another order when another number of boxes goes through them together
#: (which kernels run depends on the batch size and the CPU: AVX2 BLAS kernels, a single box's memory
#: layout), so a logit moves by about 1e-7 (measured here, for 1, 3 and 16 boxes under AVX2 and AVX-512)
#: and a pixel whose logit is that close to 0, SAM's threshold, may flip.
ROUNDING = 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("chunk", [1, 3, 16, 64])
def test_chunked_mask_decoding_differs_only_by_float_rounding(model, image, chunk):
    """Masks decoded ``chunk`` boxes at a time against SAM's own ``predict_torch`` on all the boxes in
    one batch (the original's call): low-resolution logits and scores within :data:`ROUNDING`, a mask
    pixel different only where that batch's logit is within :data:`ROUNDING` of 0, and with every box
    in one chunk (64 > the 60 boxes), bit for bit."""
    boxes, _, _ = model.predict_dino(image, "cat. remote control", 0.3, 0.25)
    n = len(boxes)
    assert n > 16, "several chunks of the default size are compared"
    seg = model.segmenter
    model.predict_sam(image, boxes[:1])  # selects the image's encoding in seg.predictor
    p = seg.predictor
    with torch.no_grad():
        logits, scores, low_res = p.predict_torch(
            None, None, p.transform.apply_boxes_torch(boxes, p.original_size),
            multimask_output=False, return_logits=True)
    seg.chunk_size = chunk
    try:
        ours = seg.predict(boxes=boxes, return_low_res=True)
        masks = model.predict_sam(image, boxes)
    finally:
        seg.chunk_size = 16
    assert torch.equal(masks, ours.masks)
    torch.testing.assert_close(ours.low_res_logits, low_res, rtol=0, atol=ROUNDING)
    torch.testing.assert_close(ours.iou_scores, scores, rtol=0, atol=ROUNDING)
    theirs = logits > p.model.mask_threshold
    assert 0 < theirs.sum() < theirs.numel(), "neither all-empty nor all-full masks"
    differ = ours.masks != theirs
    assert not (differ & ((logits - p.model.mask_threshold).abs() > ROUNDING)).any(), (
        f"{int(differ.sum())} pixels differ, some with a logit far from the threshold")
    if chunk >= n:
        assert torch.equal(ours.masks, theirs) and torch.equal(ours.iou_scores, scores)
        assert torch.equal(ours.low_res_logits, low_res)


def test_chunk_size_bounds_the_logits_held_at_once(model):
    seg = model.segmenter
    assert seg.chunk_size == 16
    assert seg.boxes_per_chunk(240, 320) == 16
    assert seg.boxes_per_chunk(3000, 4000) == 5  # 256 MiB of float32 logits: 5 boxes of 12 MP
    assert seg.boxes_per_chunk(20000, 20000) == 1


@pytest.mark.slow
def test_fast_attention_agrees_with_exact(model, exact_model):
    img = make_image(300, 400, seed=7)
    fast = model.predict(img, "a cat. a remote control")
    exact = exact_model.predict(img, "a cat. a remote control")
    assert torch.equal(fast.boxes, exact.boxes) and torch.equal(fast.logits, exact.logits)
    agreement = (fast.masks == exact.masks).float().mean().item()
    assert agreement >= 0.9999, agreement


@pytest.mark.slow
def test_bf16_is_scoped_and_returns_float32(sam_ckpt, gdino_ckpt, tiny_specs):
    m = load_tiny(sam_ckpt, gdino_ckpt, tiny_specs, precision="bf16")
    img = make_image(120, 160, seed=2)
    out = m.predict(img, "cat")
    assert out.boxes.dtype == torch.float32 and out.logits.dtype == torch.float32
    assert out.masks.dtype == torch.bool and out.masks.shape[1:] == (120, 160)
    assert not torch.is_autocast_enabled("cpu"), "autocast must not leak out of the library's calls"
    assert next(m.groundingdino.parameters()).dtype == torch.float32, "weights stay float32"
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        load_tiny(sam_ckpt, gdino_ckpt, tiny_specs, precision="fp16")
    with pytest.raises(ValueError, match="precision"):
        load_tiny(sam_ckpt, gdino_ckpt, tiny_specs, precision="int8")


def test_weights_are_loaded_without_a_second_copy(model):
    """Networks are built with meta parameters and the checkpoint tensors are assigned.

    Their parameters keep ``requires_grad=True``, as the original's did (all calls run under
    ``no_grad``): the flag picks the kernel ``matmul`` uses for a non-contiguous input, even under
    ``no_grad``, so frozen parameters made SAM's decoder round differently from the original with
    AVX2 MKL kernels (``MKL_ENABLE_INSTRUCTIONS=AVX2``: test_fidelity failed by one pixel)."""
    from lang_sam.models.detector import build_groundingdino_model
    from lang_sam.models.segmenter import build_sam_model
    from lang_sam.testing import TINY_GDINO, TINY_SAM

    for net, fresh in ((model.groundingdino, build_groundingdino_model(TINY_GDINO, empty=True)),
                       (model.sam.model, build_sam_model(TINY_SAM, empty=True))):
        assert all(p.device.type == "cpu" for p in net.parameters())
        flags = {n: p.requires_grad for n, p in net.named_parameters()}
        assert flags == {n: p.requires_grad for n, p in fresh.named_parameters()}
        assert any(flags.values())


@pytest.mark.slow
def test_bad_requests_fail_before_any_image_work(counted):
    from lang_sam.errors import InvalidPromptError, InvalidThresholdError, PromptTooLongError

    counted.clear_cache()
    counted.runs.update(gdino=0, sam=0)
    img = make_image(50, 60, seed=31)
    with pytest.raises(InvalidThresholdError):
        counted.predict(img, "cat", box_threshold=2)
    with pytest.raises(InvalidPromptError):
        counted.predict_dino(img, " ", 0.3, 0.25)
    with pytest.raises(PromptTooLongError):
        counted.predict_prompts(img, ["cat", " ".join(f"thing{i}" for i in range(120))])
    assert counted.runs["gdino"] == 1 and counted.runs["sam"] <= 1  # only the valid "cat" ran
    counted.clear_cache()
    counted.runs.update(gdino=0, sam=0)
    with pytest.raises(InvalidThresholdError):
        counted.predict(img, "cat", text_threshold=-1)
    assert counted.runs["gdino"] == 0
