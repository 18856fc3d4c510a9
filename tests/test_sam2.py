"""SAM 2.1 (lang_sam.models.sam2) against Meta's own code on the same weights.

Meta's ``sam2`` package is the reference here and only here (a test dependency, installed with
``SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0``). Its networks are built small
(tiny Hiera widths, one memory-attention layer) through its own Hydra configs with overrides; the
checkpoints are written by :func:`lang_sam.testing.write_sam2_checkpoint` in Meta's format and
loaded by both sides: ``LangSAM(sam_type=..., ckpt_path=...)`` and Meta's ``build_sam2``.

Tolerances (:mod:`fidelity_helpers`): the two decode the same operations, but Meta's batched decoder
multiplies ``(B, tokens, C)`` matrices where transformers' multiplies ``(B, 1, tokens, C)`` ones, and
the BLAS kernel chosen for a shape and CPU may add in another order. So logits agree within
:data:`LOGIT_ATOL`, scores within :data:`SCORE_ATOL`, and masks are equal except pixels whose
reference logit lies within :data:`LOGIT_ATOL` of 0 (issue 25: one such pixel flipped under AVX2 MKL
kernels with one thread, its logit 1.1e-9 from 0).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lang_sam import LangSAM
from lang_sam.errors import CheckpointMismatchError, EngineUnavailableError, InvalidArgumentError, LangSAMError
from lang_sam.models.base import engine_for
from lang_sam.models.registry import get_spec, model_names, register_model, unregister_model
from lang_sam.models.sam2 import Sam2Arch, Sam2Segmenter, build_sam2_model
from lang_sam.models.sam2_keys import meta_to_transformers, transformers_to_meta
from lang_sam.testing import (
    TINY_SAM,
    TINY_SAM2,
    TINY_SAM2_VIDEO,
    tiny_sam2_spec,
    write_sam2_checkpoint,
    write_sam_checkpoint,
)

from conftest import make_image
from fidelity_helpers import assert_masks_match, assert_within

META_CONFIGS = {"sam2.1_hiera_tiny": "sam2.1_hiera_t.yaml", "sam2.1_hiera_small": "sam2.1_hiera_s.yaml",
                "sam2.1_hiera_base_plus": "sam2.1_hiera_b+.yaml", "sam2.1_hiera_large": "sam2.1_hiera_l.yaml"}


def meta_overrides(arch: Sam2Arch) -> list[str]:
    """Hydra overrides that make Meta's sam2.1_hiera_t config into ``arch``."""
    e, s = arch.embed_dim, arch.image_size
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


def meta_model(arch: Sam2Arch, ckpt: Path | None = None, *, video: bool = False):
    """Meta's network for ``arch`` (its Hydra config + overrides), loading ``ckpt`` strictly."""
    from sam2.build_sam import build_sam2, build_sam2_video_predictor

    build = build_sam2_video_predictor if video else build_sam2
    return build("configs/sam2.1/sam2.1_hiera_t.yaml", str(ckpt) if ckpt else None, device="cpu",
                 hydra_overrides_extra=meta_overrides(arch))


@pytest.fixture(scope="module")
def sam2_specs():
    specs = [register_model(tiny_sam2_spec("tiny_sam2", TINY_SAM2)),
             register_model(tiny_sam2_spec("tiny_sam2_video", TINY_SAM2_VIDEO))]
    yield specs
    for s in specs:
        unregister_model("sam", s.name)


@pytest.fixture(scope="module")
def sam2_ckpts(sam2_specs, tmp_path_factory):
    d = tmp_path_factory.mktemp("sam2")
    return [write_sam2_checkpoint(d / s.filename, s, seed=1) for s in sam2_specs]


@pytest.fixture(scope="module")
def sam2_model(sam2_specs, sam2_ckpts, gdino_ckpt, tiny_specs):
    """LangSAM with the tiny SAM 2.1 (1024-px input) and the tiny GroundingDINO."""
    return LangSAM(sam2_specs[0].name, str(sam2_ckpts[0]), gdino_type=tiny_specs[1].name,
                   gdino_ckpt_path=str(gdino_ckpt), device="cpu")


@pytest.fixture(scope="module")
def meta_predictor(sam2_ckpts):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    return SAM2ImagePredictor(meta_model(TINY_SAM2, sam2_ckpts[0]))


# --- names, files, conversion -----------------------------------------------------------------------


def test_the_four_released_names_are_registered_with_metas_files():
    names = [n for n in model_names("sam") if n.startswith("sam2.1_hiera_")]
    assert names == sorted(META_CONFIGS)
    for name in names:
        spec = get_spec("sam", name)
        assert spec.engine == "lang_sam.models.sam2:Sam2Segmenter" and engine_for(spec) is Sam2Segmenter
        assert spec.filename == f"{name}.pt"
        assert spec.urls == (f"https://dl.fbaipublicfiles.com/segment_anything_2/092824/{name}.pt",)
        assert spec.arch.meta_config == META_CONFIGS[name]


def test_a_tiny_meta_network_converts_key_for_key_and_back():
    """Meta's own network (built by its Hydra config) -> transformers' names -> Meta's again."""
    meta = meta_model(TINY_SAM2).state_dict()
    converted, unknown = meta_to_transformers(meta)
    ours = build_sam2_model(TINY_SAM2).state_dict()
    assert unknown == []
    assert set(converted) == set(ours)
    assert all(converted[k].shape == ours[k].shape for k in ours)
    back = transformers_to_meta(converted)
    assert set(back) == set(meta) and all(torch.equal(back[k], meta[k]) for k in meta)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(META_CONFIGS))
def test_the_full_size_architectures_convert_key_for_key(name):
    """Every parameter of Meta's full-size network has a transformers name of the same shape."""
    from sam2.build_sam import build_sam2

    meta = build_sam2(f"configs/sam2.1/{META_CONFIGS[name]}", None, device="cpu").state_dict()
    converted, unknown = meta_to_transformers(meta)
    ours = build_sam2_model(get_spec("sam", name), empty=True).state_dict()
    assert unknown == []
    assert set(converted) == set(ours)
    assert [k for k in ours if converted[k].shape != ours[k].shape] == []


def test_metas_loader_reads_our_random_files_strictly(sam2_ckpts):
    """The writer's files are Meta's format: Meta's build_sam2 loads them (it fails on any
    missing or unexpected key)."""
    model = meta_model(TINY_SAM2, sam2_ckpts[0])
    saved = torch.load(sam2_ckpts[0], weights_only=True)["model"]
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


def test_the_testing_cli_writes_sam2_files_in_metas_format(sam2_specs, tmp_path):
    """``python -m lang_sam.testing --sam <sam2 type>`` writes Meta's format under the type's name."""
    from lang_sam.testing import main

    main(["--to", str(tmp_path), "--sam", sam2_specs[0].name])
    path = tmp_path / sam2_specs[0].filename
    saved = torch.load(path, weights_only=True)
    assert list(saved) == ["model"] and "image_encoder.trunk.patch_embed.proj.weight" in saved["model"]
    meta_model(TINY_SAM2, path)  # Meta's strict loader accepts it


@pytest.mark.parametrize("make, problem", [
    (lambda d, s: write_sam_checkpoint(d / "v1.pth", TINY_SAM), "keys are not SAM 2.1"),
    (lambda d, s: write_sam2_checkpoint(d / "other.pt", Sam2Arch(16, 1, (1, 1, 2, 1), (3,),
                                                                 memory_attention_layers=1)),
     "architecture (16, 5) differs from the expected (8, 5)"),
])
def test_a_checkpoint_of_another_network_is_a_clear_error(make, problem, sam2_specs, tmp_path):
    path = make(tmp_path, sam2_specs[0])
    with pytest.raises(CheckpointMismatchError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        Sam2Segmenter.from_spec(sam2_specs[0], str(path))


def test_unknown_options_are_refused(sam2_specs, sam2_ckpts):
    with pytest.raises(InvalidArgumentError, match="does not take"):
        Sam2Segmenter.from_spec(sam2_specs[0], str(sam2_ckpts[0]), window=3)


@pytest.mark.parametrize("version, hide", [("5.24.0", True), ("4.57.6", False)])
def test_a_transformers_without_sam2_is_a_typed_error(monkeypatch, sam2_specs, sam2_ckpts, version, hide):
    """No SAM 2 module, or a 4.x transformers (whose SAM 2 returns other outputs): a typed error
    naming the version needed and the one installed."""
    import transformers

    monkeypatch.setattr(transformers, "__version__", version)
    if hide:
        monkeypatch.setitem(sys.modules, "transformers.models.sam2_video.modeling_sam2_video", None)
    with pytest.raises(EngineUnavailableError, match=r"transformers>=5.0") as err:
        Sam2Segmenter.from_spec(sam2_specs[0], str(sam2_ckpts[0]))
    assert isinstance(err.value, ImportError) and isinstance(err.value, LangSAMError)
    assert (err.value.package, err.value.required, err.value.installed) == ("transformers", ">=5.0", version)


# --- images: the same masks as Meta's SAM2ImagePredictor ------------------------------------------

IMAGE = make_image(240, 320, seed=3)
BOXES = np.array([[50, 40, 210, 160], [10, 10, 100, 100], [0, 0, 319, 239]], dtype=np.float32)
POINTS = np.array([[[100, 100], [20, 30]]], dtype=np.float32)
LABELS = np.array([[1, 0]])

PROMPTS = {
    "one box": dict(box=BOXES[:1]),
    "three boxes": dict(box=BOXES),
    "points": dict(point_coords=POINTS, point_labels=LABELS),
    "box and points": dict(box=BOXES[:1], point_coords=POINTS, point_labels=LABELS),
}


def _ours(model, prompts, multimask, mask_input=None):
    return model.segment(IMAGE, boxes=prompts.get("box"), points=prompts.get("point_coords"),
                         point_labels=prompts.get("point_labels"), mask_input=mask_input,
                         multimask_output=multimask)


#: How far the tiny SAM 2.1's logits (low-resolution, and full-size) may be from Meta's, or from
#: another chunking's: float32 rounding of logits of about 1e-2. Measured at most 1.7e-8 (low-resolution)
#: and 1.3e-8 (full-size), native AVX-512 and AVX2 (MKL too), 1 and 2 threads.
LOGIT_ATOL = 1e-7
#: Scores (about 0.5, float32 spacing 6e-8): equal to Meta's in every measured setting; 6e-8 between
#: chunkings under AVX-512.
SCORE_ATOL = 1e-6


def _full_logits(low: torch.Tensor) -> torch.Tensor:
    """Full-size logits from ``(B, C, S, S)`` low-resolution ones, as both sides upsample them."""
    b, c = low.shape[:2]
    full = torch.nn.functional.interpolate(low.flatten(0, 1)[:, None].float(), IMAGE.shape[:2],
                                           mode="bilinear", align_corners=False)
    return full.reshape(b, c, *IMAGE.shape[:2])


def _assert_same(ours, logits, scores, low):
    """``ours`` against Meta's ``predict(..., return_logits=True)``: masks, scores and logits."""
    logits = torch.from_numpy(np.asarray(logits)).reshape(ours.masks.shape)
    assert ours.masks.any(), "the tiny model gave empty masks: nothing is compared"
    assert_masks_match(ours.masks, logits, eps=LOGIT_ATOL)
    assert_within(ours.iou_scores, np.asarray(scores).reshape(ours.iou_scores.shape), atol=SCORE_ATOL, what="scores")
    assert_within(ours.low_res_logits, np.asarray(low).reshape(ours.low_res_logits.shape), atol=LOGIT_ATOL,
                  what="low-resolution logits")
    assert_within(_full_logits(ours.low_res_logits), logits, atol=LOGIT_ATOL, what="full-size logits")


@pytest.mark.parametrize("multimask", [False, True])
@pytest.mark.parametrize("prompt", sorted(PROMPTS))
def test_masks_equal_metas_image_predictor(prompt, multimask, sam2_model, meta_predictor):
    assert isinstance(sam2_model.segmenter, Sam2Segmenter)
    meta_predictor.set_image(IMAGE)
    _assert_same(_ours(sam2_model, PROMPTS[prompt], multimask),
                 *meta_predictor.predict(**PROMPTS[prompt], multimask_output=multimask, return_logits=True))


def test_a_mask_prompt_refines_as_metas_does(sam2_model, meta_predictor):
    meta_predictor.set_image(IMAGE)
    _, _, low = meta_predictor.predict(**PROMPTS["points"], multimask_output=False)
    for prompts in ({}, PROMPTS["box and points"]):
        ours = _ours(sam2_model, prompts, False, mask_input=torch.from_numpy(low[None, :1]))
        _assert_same(ours, *meta_predictor.predict(**prompts, mask_input=low[:1], multimask_output=False,
                                                   return_logits=True))


def test_chunks_give_the_masks_of_one_call(sam2_model):
    """Decoding in chunks of 2 gives the masks of one call but for float32 rounding: a pixel whose
    logit is within :data:`LOGIT_ATOL` of 0 may flip, as with SAM v1."""
    boxes = np.concatenate([BOXES, BOXES[:2] + 5])
    seg = sam2_model.segmenter
    whole = sam2_model.segment(IMAGE, boxes=boxes)
    seg.chunk_size = 2
    try:
        chunked = sam2_model.segment(IMAGE, boxes=boxes)
    finally:
        seg.chunk_size = 16
    assert_masks_match(chunked.masks, _full_logits(whole.low_res_logits), eps=LOGIT_ATOL)
    assert_within(chunked.low_res_logits, whole.low_res_logits, atol=LOGIT_ATOL, what="low-resolution logits")
    assert_within(chunked.iou_scores, whole.iou_scores, atol=SCORE_ATOL, what="scores")


def test_bf16_runs_and_mostly_agrees(sam2_specs, sam2_ckpts):
    fp32 = Sam2Segmenter.from_spec(sam2_specs[0], str(sam2_ckpts[0]))
    bf16 = Sam2Segmenter.from_spec(sam2_specs[0], str(sam2_ckpts[0]), precision="bf16")
    outs = []
    for seg in (fp32, bf16):
        seg.set_image(IMAGE)
        outs.append(seg.predict(boxes=BOXES))
    assert outs[1].masks.dtype == torch.bool and outs[1].iou_scores.dtype == torch.float32
    assert (outs[0].masks == outs[1].masks).float().mean() > 0.9


# --- video ---------------------------------------------------------------------------------------


def clip(n: int, h: int = 120, w: int = 160) -> list[np.ndarray]:
    """A red square moving right over a gradient."""
    frames = []
    for t in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[..., 0], f[..., 1] = 40, np.arange(w)[None] * 255 // w
        x = (20 + 4 * t) % (w - 50)
        f[30:70, x:x + 50] = (220, 40, 60)
        frames.append(f)
    return frames


@pytest.fixture(scope="module")
def video_segmenter(sam2_specs, sam2_ckpts):
    return Sam2Segmenter.from_spec(sam2_specs[1], str(sam2_ckpts[1]))


VIDEO_BOXES = torch.tensor([[20, 30, 70, 70], [0, 0, 60, 50]], dtype=torch.float32)


@pytest.mark.slow
def test_tracking_equals_metas_video_predictor(video_segmenter, sam2_ckpts, tmp_path):
    """Two objects prompted by boxes on frame 0, followed for 6 frames, streamed one by one:
    the masks equal those of Meta's SAM2VideoPredictor on the whole clip (given our resized
    frames: Meta's loader resizes JPEGs with PIL, we resize as its image predictor does)."""
    from PIL import Image

    frames = clip(6)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / f"{i:05d}.jpg")
    predictor = meta_model(TINY_SAM2_VIDEO, sam2_ckpts[1], video=True)
    with torch.no_grad():
        state = predictor.init_state(str(tmp_path))
        state["images"] = torch.cat([video_segmenter._pixels(f) for f in frames])
        for obj_id, box in zip((7, 9), VIDEO_BOXES):
            predictor.add_new_points_or_box(state, frame_idx=0, obj_id=obj_id, box=box.numpy())
        ref = {i: (list(ids), logits[:, 0]) for i, ids, logits in predictor.propagate_in_video(state)}
    session = video_segmenter.start_video()
    nonempty = 0
    for i, f in enumerate(frames):
        step = (video_segmenter.track(session, f, new_ids=[7, 9], new_boxes=VIDEO_BOXES) if i == 0
                else video_segmenter.track(session, f))
        ids, logits = ref[i]
        assert step.object_ids.tolist() == ids == [7, 9]
        differ = step.masks != (logits > 0)
        assert not (differ & (logits.abs() > 1e-3)).any(), f"frame {i}"
        assert differ.float().mean() <= 0.005, f"frame {i}"
        nonempty += int(step.masks.flatten(1).any(1).sum())
    assert nonempty >= 6, "the tiny model lost the objects: nothing is compared"


def test_objects_join_late_and_leave(video_segmenter):
    """An empty start, an object from frame 2, another from frame 3, the first dropped at 5."""
    seg, frames = video_segmenter, clip(7)
    session = seg.start_video()
    seen = []
    for i, f in enumerate(frames):
        if i == 5:
            seg.drop(session, [1, 99])  # 99 is not followed: ignored
        new = {2: ([1], VIDEO_BOXES[:1]), 3: ([2], VIDEO_BOXES[1:])}.get(i, ((), None))
        step = seg.track(session, f, new_ids=new[0], new_boxes=new[1])
        assert step.masks.shape == (len(step.object_ids), 120, 160) and step.masks.dtype == torch.bool
        assert step.iou_scores.shape == (len(step.object_ids),)
        seen.append(step.object_ids.tolist())
    assert seen == [[], [], [1], [1, 2], [1, 2], [2], [2]]
    with pytest.raises(InvalidArgumentError, match="already followed"):
        seg.track(session, frames[0], new_ids=[2], new_boxes=VIDEO_BOXES[:1])
    with pytest.raises(InvalidArgumentError, match="one size"):
        seg.track(session, np.zeros((60, 80, 3), np.uint8))


@pytest.mark.slow
def test_session_memory_is_flat_with_video_length(video_segmenter):
    """Once the memory window is full (7 memories + the prompted frame: from frame 9 on), stored
    frames and tensor bytes stay the same frame after frame (checked up to frame 32: what is
    kept does not depend on the frame count; benchmarks/bench_video.py measures RSS at 30 vs 90)."""
    seg, frames = video_segmenter, clip(32)
    window = seg.memory_frames + 1 + seg.max_cond_frames
    session = seg.start_video()
    sizes = {}
    for i, f in enumerate(frames):
        seg.track(session, f, new_ids=[1, 2] if i == 0 else (), new_boxes=VIDEO_BOXES if i == 0 else None)
        sizes[i + 1] = (session.stored_frames(), session.stored_bytes())
    steady = {n: v for n, v in sizes.items() if n > window + 2}
    assert len(set(steady.values())) == 1, steady
    assert sizes[32][1] > sizes[1][1]  # the window did fill: the count is of something real
    # what is kept: the current frame, the memory window and the prompted frame of each object
    assert sizes[32][0] <= 2 * (window) * 3 + 2


#: :data:`TINY_SAM2_VIDEO` with two memory-attention layers: the shared first layer and a layer after it.
TWO_LAYER_VIDEO = Sam2Arch(embed_dim=8, num_heads=1, stages=(1, 1, 2, 1), global_att_blocks=(3,),
                           memory_attention_layers=2, image_size=256)


@pytest.fixture(scope="module")
def two_layer_segmenter():
    from lang_sam.models.sam2 import random_sam2_state_dict

    net = build_sam2_model(TWO_LAYER_VIDEO)
    net.load_state_dict(meta_to_transformers(random_sam2_state_dict(TWO_LAYER_VIDEO, seed=3))[0])
    return Sam2Segmenter(net)


def _track_clip(seg, frames, plan):
    """Track ``frames`` with ``plan`` ({frame: (new ids, boxes) or ("drop", ids)}); per frame, the
    ids and, per object, the stored low-resolution logits and object score of that frame."""
    session, out = seg.start_video(), []
    for i, f in enumerate(frames):
        what = plan.get(i, ((), None))
        if what[0] == "drop":
            seg.drop(session, what[1])
            what = ((), None)
        step = seg.track(session, f, new_ids=what[0], new_boxes=what[1])
        s = session.inference
        stored = []
        for obj_id in step.object_ids.tolist():
            per_obj = s.output_dict_per_obj[s.obj_id_to_idx(obj_id)]
            o = per_obj["non_cond_frame_outputs"].get(i) or per_obj["cond_frame_outputs"][i]
            stored.append((o["pred_masks"], o["object_score_logits"], o["object_pointer"]))
        out.append((step, stored))
    return out


THREE_BOXES = torch.tensor([[20, 30, 70, 70], [0, 0, 60, 50], [80, 40, 150, 110]], dtype=torch.float32)


@pytest.mark.slow
def test_tracking_is_bit_identical_to_the_stock_transformers_path(two_layer_segmenter, monkeypatch):
    """The shared first-layer self-attention and the in-place key rotation
    (lang_sam.models.sam2_tracking) change no bit: masks, presence, and the stored logits, object
    scores and object pointers equal those of transformers' own memory attention on every frame,
    up to a full 7-frame memory window, with an object joining late and one dropped."""
    from contextlib import nullcontext

    frames = clip(9)  # frame 8 reads a full window: the prompted frame and 6 tracked ones
    plan = {0: ([1, 2], THREE_BOXES[:2]), 2: ([3], THREE_BOXES[2:]), 7: ("drop", [2])}
    ours = _track_clip(two_layer_segmenter, frames, plan)
    monkeypatch.setattr("lang_sam.models.sam2.fast_memory_attention", lambda model: nullcontext())
    stock = _track_clip(two_layer_segmenter, frames, plan)
    for i, ((a, sa), (b, sb)) in enumerate(zip(ours, stock)):
        assert a.object_ids.tolist() == b.object_ids.tolist(), f"frame {i}"
        assert torch.equal(a.masks, b.masks) and torch.equal(a.iou_scores, b.iou_scores), f"frame {i}"
        for x, y in zip(sa, sb):
            assert all(torch.equal(u, v) for u, v in zip(x, y)), f"frame {i}"
    assert sum(int(s.masks.any()) for s, _ in ours) >= 5, "nothing tracked: nothing compared"


@pytest.mark.parametrize("objects", [1, 3])
def test_the_first_layer_self_attention_runs_once_a_frame(two_layer_segmenter, objects):
    """Whatever the number of objects, a tracked frame runs the first memory-attention layer's
    self-attention once (the frame's features, shared) and the second layer's once per object;
    the stock forward is back after each frame."""
    seg = two_layer_segmenter
    calls = [0, 0]
    hooks = [layer.self_attn.register_forward_hook(lambda *a, n=n: calls.__setitem__(n, calls[n] + 1))
             for n, layer in enumerate(seg.model.memory_attention.layers)]
    try:
        session = seg.start_video()
        frames = clip(3)
        seg.track(session, frames[0], new_ids=list(range(1, objects + 1)), new_boxes=THREE_BOXES[:objects])
        calls[:] = [0, 0]
        seg.track(session, frames[1])
        assert calls == [1, objects]
    finally:
        for h in hooks:
            h.remove()
    assert "forward" not in vars(seg.model.memory_attention)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("memories,pointers", [(1, 0), (1, 4), (3, 8), (0, 4)])
def test_one_memory_attention_call_equals_the_stock_one(two_layer_segmenter, dtype, memories, pointers):
    """The memory attention alone, on random inputs: float32 and under bf16 autocast, one or
    several remembered frames, with and without object-pointer tokens (rotated or not), pointers
    only: the same bits as transformers' forward."""
    from lang_sam.models.sam2_tracking import fast_memory_attention

    model = two_layer_segmenter.model
    g = torch.Generator().manual_seed(memories * 10 + pointers)
    hw = 16 * 16
    s = memories * hw + pointers
    args = dict(current_vision_features=torch.randn(hw, 1, 256, generator=g),
                current_vision_position_embeddings=torch.randn(hw, 1, 256, generator=g),
                memory=torch.randn(s, 1, 64, generator=g), memory_posision_embeddings=torch.randn(s, 1, 64, generator=g),
                num_object_pointer_tokens=pointers)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        stock = model.memory_attention(**args)
        with fast_memory_attention(model):
            ours, again = model.memory_attention(**args), model.memory_attention(**args)
    assert stock.dtype == ours.dtype and torch.equal(stock, ours) and torch.equal(ours, again)


def test_the_stock_memory_attention_is_restored_after_an_error(two_layer_segmenter):
    from lang_sam.models.sam2_tracking import fast_memory_attention

    attention = two_layer_segmenter.model.memory_attention
    with pytest.raises(ZeroDivisionError):
        with fast_memory_attention(two_layer_segmenter.model):
            assert "forward" in vars(attention)
            1 / 0
    assert "forward" not in vars(attention)


# --- the rest of the library, unchanged ------------------------------------------------------------


@pytest.fixture(scope="module")
def few_boxes_gdino(tmp_path_factory, tiny_specs, image):
    """The tiny GroundingDINO calibrated to find 3 boxes on ``image`` (random weights find all 60
    queries, and 60 SAM 2.1 decodes per call would only make these tests slow)."""
    from lang_sam.testing import write_gdino_checkpoint

    return write_gdino_checkpoint(tmp_path_factory.mktemp("few") / "few.pth", tiny_specs[1], seed=0,
                                  few_boxes=True, target_boxes=3, calibration_image=image,
                                  calibration_prompt="car.")


@pytest.mark.slow
def test_predict_tiling_labelling_and_the_server_run_sam2_unchanged(sam2_specs, sam2_ckpts, few_boxes_gdino,
                                                                    tiny_specs, image, tmp_path):
    """LangSAM.predict (tiled or not), label_folder and the server's ModelService give SAM 2.1's
    masks for the detector's boxes, through code that knows nothing of SAM 2.1."""
    import json

    from PIL import Image

    from lang_sam.labeling.run import LabelSettings, label_folder
    from lang_sam.serving.service import ModelService
    from lang_sam.tiling import TileSpec

    sam, gdino = sam2_specs[0].name, tiny_specs[1].name
    m = LangSAM(sam, str(sam2_ckpts[0]), gdino_type=gdino, gdino_ckpt_path=str(few_boxes_gdino), device="cpu")
    masks, boxes, phrases, logits = m.predict(image, "car")
    assert 1 <= len(boxes) <= 6 and masks.shape == (len(boxes), image.height, image.width)
    assert masks.flatten(1).any(1).all(), "empty masks: nothing is compared"
    assert torch.equal(masks, m.segment(image, boxes=boxes).masks[:, 0])  # the engine's masks
    tiled = m.predict(image, "car", tile=TileSpec(10_000))  # one tile: predict's result
    assert torch.equal(tiled.dense(), masks)
    Image.fromarray(np.asarray(image)).save(tmp_path / "a.png")
    settings = LabelSettings.create("car", sam_type=sam, gdino_type=gdino)
    label_folder(m, [tmp_path / "a.png"], tmp_path / "out", settings, ["coco"])
    coco = json.loads((tmp_path / "out" / "coco" / "annotations.json").read_text())
    assert sorted(a["area"] for a in coco["annotations"]) == sorted(int(x.sum()) for x in masks)
    service = ModelService(sam_type=sam, gdino_type=gdino, sam_ckpt=str(sam2_ckpts[0]),
                           gdino_ckpt=str(few_boxes_gdino), device="cpu")
    served = service.predict(image, "car")
    assert served.sam_type == sam and torch.equal(served.masks.dense, masks)


def test_info_and_offline_errors_know_the_sam2_files(tmp_path, monkeypatch, capsys):
    from lang_sam.cli import main
    from lang_sam.errors import WeightsNotFoundError

    (tmp_path / "sam2.1_hiera_small.pt").write_bytes(b"")
    monkeypatch.setenv("LANG_SAM_WEIGHTS_DIR", str(tmp_path))
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"sam2.1_hiera_small: sam2.1_hiera_small.pt: found: {tmp_path / 'sam2.1_hiera_small.pt'}" in out
    for name in ("sam2.1_hiera_tiny", "sam2.1_hiera_base_plus", "sam2.1_hiera_large"):
        assert f"{name}: {name}.pt: missing; offline mode is on" in out
    with pytest.raises(WeightsNotFoundError, match="sam2.1_hiera_large.pt"):
        Sam2Segmenter.from_spec(get_spec("sam", "sam2.1_hiera_large"))
