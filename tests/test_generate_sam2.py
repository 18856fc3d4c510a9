"""Segment everything with SAM 2.1: ``LangSAM.generate`` on the SAM 2.1 engine
(:class:`~lang_sam.models.sam2.Sam2Segmenter`, transformers' network, loading a Meta-format .pt)
against Meta's ``SAM2AutomaticMaskGenerator`` on Meta's network loading the same file (needs Meta's
``sam2`` package, a test-only reference: ``SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0``).

The two networks are two implementations (transformers' and Meta's), so logits agree to float32
rounding, not bit for bit: the tiny random model's logits are tiny, so a few pixels of a mask may
flip and near-equal scores may swap places. Masks are therefore matched by their prompt point
and score, and compared by IoU and score tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_image

pytestmark = pytest.mark.slow  # a 1024-px SAM 2.1 image encoder twice per test


@pytest.fixture(scope="module")
def pair(tmp_path_factory, gdino_ckpt, tiny_specs):
    """(LangSAM with the tiny SAM 2.1 from a Meta-format .pt, Meta's SAM2Base loading that file)."""
    from test_sam2 import meta_model

    from lang_sam import LangSAM
    from lang_sam.models.registry import register_model, unregister_model
    from lang_sam.testing import TINY_SAM2, tiny_sam2_spec, write_sam2_checkpoint

    spec = register_model(tiny_sam2_spec("tiny_sam2_generate", TINY_SAM2))
    ckpt = write_sam2_checkpoint(tmp_path_factory.mktemp("sam2gen") / spec.filename, spec, seed=1)
    model = LangSAM(spec.name, str(ckpt), gdino_type=tiny_specs[1].name, gdino_ckpt_path=str(gdino_ckpt),
                    device="cpu")
    yield model, meta_model(TINY_SAM2, ckpt).eval()
    unregister_model("sam", spec.name)


def _match(ours: list[dict], ref: list[dict], *, score_tol: float, min_iou: float) -> None:
    """Each reference mask has one of ours from the same point with the same scores (within
    ``score_tol``) whose mask IoU is at least ``min_iou``; no mask is left over."""
    assert len(ours) == len(ref)
    left = list(range(len(ours)))
    for r in ref:
        rm = r["segmentation"]
        best, best_iou = None, -1.0
        for j in left:
            o = ours[j]
            if not np.allclose(o["point_coords"], r["point_coords"], atol=1e-3):
                continue
            if abs(o["predicted_iou"] - r["predicted_iou"]) > score_tol:
                continue
            om = o["segmentation"]
            iou = (om & rm).sum() / max((om | rm).sum(), 1)
            if iou > best_iou:
                best, best_iou = j, iou
        assert best is not None and best_iou >= min_iou, (r["point_coords"], r["predicted_iou"], best_iou)
        o = ours[best]
        assert o["stability_score"] == pytest.approx(r["stability_score"], abs=0.02)
        assert o["crop_box"] == r["crop_box"]
        assert abs(o["area"] - r["area"]) <= 0.01 * r["area"] + 5
        assert np.allclose(o["bbox"], r["bbox"], atol=3)
        left.remove(best)


@pytest.mark.parametrize("settings", [
    pytest.param(dict(points_per_side=3, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0),
                 id="keep-all"),
    pytest.param(dict(points_per_side=3, pred_iou_thresh=0.506, stability_score_thresh=0.0,
                      stability_score_offset=0.001, box_nms_thresh=1.0), id="iou-filter"),
    pytest.param(dict(points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0,
                      use_m2m=True), id="m2m"),
])
def test_generate_matches_metas_sam2_automatic_mask_generator(pair, settings):
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    model, meta = pair
    image = make_image()
    ref = SAM2AutomaticMaskGenerator(meta, **settings).generate(image)
    out = model.generate(image, **settings)
    assert len(out) > 0
    if settings["pred_iou_thresh"] > 0:  # the filter dropped some masks here, and the same ones
        assert len(out) < settings["points_per_side"] ** 2 * 3
    _match(out.records(), ref, score_tol=1e-4, min_iou=0.99)
