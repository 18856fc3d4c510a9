"""LangSAM.predict equals the original algorithm, written plainly over groundingdino-py's
``inference.predict`` and segment-anything's ``SamPredictor``, on the same (random) weights."""

from __future__ import annotations

import bisect
import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_image
from lang_sam.detector import build_groundingdino_model
from lang_sam.segmenter import build_sam_model
from lang_sam.testing import TINY_GDINO, TINY_SAM

SPECIAL = re.compile(r"\[(CLS|SEP|PAD)\]")


def norm(phrase: str) -> str:
    """The special-token rule: no [CLS]/[SEP]/[PAD]; white space folded."""
    return " ".join(SPECIAL.sub(" ", phrase).split())


@pytest.fixture(scope="module")
def reference(sam_ckpt, gdino_ckpt):
    """The original's models, loaded the way it loaded them (plain torch.load, strict=False)."""
    from groundingdino.util.misc import clean_state_dict
    from segment_anything import SamPredictor

    # The configs' gradient checkpointing on, as the original ran it (the library turns it off).
    arch = replace(TINY_GDINO, overrides={**TINY_GDINO.overrides, "use_checkpoint": True,
                                          "use_transformer_ckpt": True})
    gd = build_groundingdino_model(arch)
    gd.load_state_dict(clean_state_dict(torch.load(gdino_ckpt, map_location="cpu")["model"]), strict=False)
    gd.eval()
    sam = build_sam_model(TINY_SAM)
    sam.load_state_dict(torch.load(sam_ckpt, map_location="cpu"), strict=True)
    return gd, SamPredictor(sam.eval())


def original_predict(gd, predictor, image_pil, prompt, box_threshold, text_threshold,
                     remove_combined=False):
    import groundingdino.datasets.transforms as T
    from groundingdino.util import box_ops
    from groundingdino.util.inference import predict, preprocess_caption

    transform = T.Compose([
        T.RandomResize([800], max_size=1333),
        T.ToTensor(),
        T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    image_trans, _ = transform(image_pil, None)
    boxes, logits, phrases = predict(
        model=gd, image=image_trans, caption=prompt, box_threshold=box_threshold,
        text_threshold=text_threshold, device="cpu",
    )
    if remove_combined:  # the later GroundingDINO's remove_combined branch, written out
        with torch.no_grad():
            out = gd(image_trans[None], captions=[preprocess_caption(prompt)])
        scores = out["pred_logits"].sigmoid()[0]
        scores = scores[scores.max(dim=1)[0] > box_threshold]
        tokenized = gd.tokenizer(preprocess_caption(prompt))
        ids = tokenized["input_ids"]
        sep_idx = [i for i in range(len(ids)) if ids[i] in (101, 102, 1012)]
        phrases = []
        for logit in scores:
            max_idx = int(logit.argmax())
            insert_idx = bisect.bisect_left(sep_idx, max_idx)
            right_idx, left_idx = sep_idx[insert_idx], sep_idx[insert_idx - 1]
            posmap = logit > text_threshold
            posmap[0:left_idx + 1] = False
            posmap[right_idx:] = False
            token_ids = [ids[i] for i in posmap.nonzero(as_tuple=True)[0].tolist()]
            phrases.append(gd.tokenizer.decode(token_ids).replace(".", ""))
    W, H = image_pil.size
    boxes = box_ops.box_cxcywh_to_xyxy(boxes) * torch.Tensor([W, H, W, H])
    if len(boxes) == 0:
        return None, boxes, phrases, logits
    image_array = np.asarray(image_pil)
    predictor.set_image(image_array)
    transformed = predictor.transform.apply_boxes_torch(boxes, image_array.shape[:2])
    masks, _, _ = predictor.predict_torch(
        point_coords=None, point_labels=None, boxes=transformed, multimask_output=False
    )
    return masks.cpu().squeeze(1), boxes, phrases, logits


CASES = [
    # (h, w, prompt, box_threshold, text_threshold)
    (240, 320, "a cat. a remote control", 0.3, 0.25),
    (400, 150, "Car. Wheel. traffic light.", 0.97, 0.9),
    (100, 700, "person", 0.5, 0.99),
]


@pytest.mark.slow
@pytest.mark.parametrize("h,w,prompt,box_threshold,text_threshold", CASES)
def test_predict_equals_original(exact_model, reference, h, w, prompt, box_threshold, text_threshold):
    image = Image.fromarray(make_image(h, w, seed=h))
    masks, boxes, phrases, logits = exact_model.predict(image, prompt, box_threshold, text_threshold)
    ref_masks, ref_boxes, ref_phrases, ref_logits = original_predict(
        *reference, image, prompt, box_threshold, text_threshold
    )
    assert len(boxes) > 0, "the case should detect something, or it tests nothing"
    assert torch.equal(boxes, ref_boxes)
    assert torch.equal(logits, ref_logits)
    assert masks.dtype == torch.bool and masks.shape == (len(boxes), h, w)
    assert torch.equal(masks, ref_masks)
    assert [norm(p) for p in phrases] == [norm(p) for p in ref_phrases]
    assert not any(SPECIAL.search(p) for p in phrases)


@pytest.mark.slow
def test_return_prompts_equals_remove_combined(model, reference, image):
    prompt = "a cat. a remote control. dog"
    model.return_prompts = True
    try:
        _, boxes, phrases, logits = model.predict(image, prompt, 0.3, 0.25)
    finally:
        model.return_prompts = False
    _, ref_boxes, ref_phrases, _ = original_predict(
        *reference, image, prompt, 0.3, 0.25, remove_combined=True
    )
    assert torch.equal(boxes, ref_boxes)
    assert [norm(p) for p in phrases] == [norm(p) for p in ref_phrases]
    parts = {"a cat", "a remote control", "dog"}
    # each phrase lies inside one prompt part, never across two
    assert all(any(norm(p) in part for part in parts) for p in phrases)
    _, _, combined, _ = model.predict(image, prompt, 0.3, 0.25)
    assert any(norm(p) not in parts and " " in norm(p) for p in combined), (
        "without return_prompts the saturated random model merges parts; with it, it must not"
    )
