"""Segment everything with SAM 2.1: :func:`lang_sam.generate.generate` on the SAM 2.1 engine
(:class:`~lang_sam.models.sam2.Sam2Segmenter`, transformers' network) against Meta's
``SAM2AutomaticMaskGenerator`` on Meta's network holding the same random weights (needs Meta's
``sam2`` package, a test-only reference: ``SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0``).

The two networks are two implementations (transformers' and Meta's), so logits agree to float32
rounding, not bit for bit: the tiny random model's logits are tiny, so a few pixels of a mask may
flip and near-equal scores may swap places. Masks are therefore matched by their prompt point
and score, and compared by IoU and score tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_image
from lang_sam.generate import GenerateSettings, generate

pytestmark = pytest.mark.slow  # a 1024-px SAM 2.1 image encoder twice per test


def _meta_overrides(arch, image_size: int = 1024) -> list[str]:
    """Hydra overrides that make Meta's sam2.1_hiera_t config into ``arch``."""
    e, s = arch.embed_dim, image_size
    fmt = lambda xs: "[" + ",".join(str(x) for x in xs) + "]"  # noqa: E731
    return [
        f"++model.image_encoder.trunk.embed_dim={e}",
        f"++model.image_encoder.trunk.num_heads={arch.num_heads}",
        f"++model.image_encoder.trunk.stages={fmt(arch.stages)}",
        f"++model.image_encoder.trunk.global_att_blocks={fmt(arch.global_att_blocks)}",
        f"++model.image_encoder.trunk.window_spec={fmt(arch.window_spec)}",
        f"++model.image_encoder.trunk.window_pos_embed_bkg_spatial_size={fmt(arch.window_pos_embed_bkg_spatial_size)}",
        f"++model.image_encoder.neck.backbone_channel_list={fmt([8 * e, 4 * e, 2 * e, e])}",
        f"++model.memory_attention.num_layers={arch.memory_attention_layers}",
        f"++model.image_size={s}",
        f"++model.memory_attention.layer.self_attention.feat_sizes={fmt([s // 16, s // 16])}",
        f"++model.memory_attention.layer.cross_attention.feat_sizes={fmt([s // 16, s // 16])}",
    ]


@pytest.fixture(scope="module")
def pair():
    """(our Sam2Segmenter, Meta's SAM2Base) with the same random weights (tiny Hiera, 1024 px)."""
    from sam2.build_sam import build_sam2

    from lang_sam.hub.registry import Sam2Arch
    from lang_sam.models.sam2 import Sam2Segmenter, build_sam2_model, transformers_to_meta

    arch = Sam2Arch(embed_dim=8, num_heads=1, stages=(1, 1, 2, 1), global_att_blocks=(3,),
                    memory_attention_layers=1)
    torch.manual_seed(1)
    ours = build_sam2_model(arch)
    meta = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", None, device="cpu",
                      hydra_overrides_extra=_meta_overrides(arch))
    meta.load_state_dict(transformers_to_meta(ours.state_dict()), strict=True)
    return Sam2Segmenter(ours), meta.eval()


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

    seg, meta = pair
    image = make_image()
    ref = SAM2AutomaticMaskGenerator(meta, **settings).generate(image)
    out = generate(seg, image, GenerateSettings.for_engine(seg, **settings))
    assert len(out) > 0
    if settings["pred_iou_thresh"] > 0:  # the filter dropped some masks here, and the same ones
        assert len(out) < settings["points_per_side"] ** 2 * 3
    _match(out.records(), ref, score_tol=1e-4, min_iou=0.99)
