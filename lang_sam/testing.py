"""Random-weight checkpoints with the real architectures, for tests and benchmarks.

Model weights cannot always be downloaded (CI, air-gapped machines), but compute does not depend on
weight values. These helpers build the real networks (``segment_anything.modeling``, groundingdino's
``build_model``) with random weights and save them in the released files' formats, so they load
through the same path as the official checkpoints:

>>> from lang_sam.testing import TINY_SAM, TINY_GDINO, write_sam_checkpoint, write_gdino_checkpoint
>>> write_sam_checkpoint("sam.pth", "vit_b")            # full-size vit_b, random # doctest: +SKIP
>>> write_sam_checkpoint("tiny.pth", TINY_SAM)           # a few MB, for unit tests # doctest: +SKIP
>>> write_sam2_checkpoint("sam2.1_hiera_tiny.pt", "sam2.1_hiera_tiny")  # Meta's format # doctest: +SKIP

Files are written to a temporary name and renamed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast


from lang_sam.hub import ModelSpec
from lang_sam.models.base import engine_for
from lang_sam.models.detector import GDinoArch, GroundingDINODetector
from lang_sam.models.registry import get_spec
from lang_sam.models.sam2 import Sam2Arch, Sam2Segmenter
from lang_sam.models.sam3 import Sam3Segmenter
from lang_sam.models.segmenter import SamArch, SamSegmenter

__all__ = [
    "TINY_SAM",
    "TINY_GDINO",
    "TINY_GDINO_SWINB",
    "TINY_SAM2",
    "TINY_SAM2_VIDEO",
    "tiny_sam_spec",
    "tiny_sam2_spec",
    "write_sam2_checkpoint",
    "tiny_gdino_spec",
    "write_checkpoint",
    "write_sam_checkpoint",
    "write_gdino_checkpoint",
    "TINY_SAM3",
    "write_sam3_folder",
    "TINY_SAM3_TRACKER",
    "TINY_SAM3_VIDEO",
]

#: A SAM with the real structure, tiny widths and 256-px inputs (the released ones read 1024 px,
#: and the encoder's cost grows with the square of it): a 16x16 token grid in 8-token windows,
#: 64x64 low-resolution logits (``mask_input_size``) where the released models' are 256x256.
TINY_SAM = SamArch(
    encoder_embed_dim=32,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(1,),
    image_size=256,
    window_size=8,
    prompt_embed_dim=32,
    decoder_mlp_dim=64,
    decoder_num_heads=2,
    iou_head_hidden_dim=32,
)

#: A GroundingDINO shaped like the Swin-T one (``GroundingDINO_SwinT_OGC.py``: ``swin_T_224_1k``,
#: window 7, pretrain size 224, stage depths 2-2-6-2) with tiny Swin widths (16 channels, 1-2-4-8
#: heads; the real one has 96 and 3-6-12-24), a tiny transformer and a tiny BERT. Its input is
#: resized to 320 px (at most 533) where the real model's is resized to 800 (at most 1333): the
#: cost of every layer grows with the number of pixels. The weights do not depend on it (only
#: ``few_boxes`` calibration does), so ``replace(TINY_GDINO, image_size=800, max_size=1333)`` runs
#: the same file at the real size.
TINY_GDINO = GDinoArch(
    "GroundingDINO_SwinT_OGC.py",
    overrides={
        "hidden_dim": 256,  # groundingdino hard-codes 256 for the text position embedding
        "nheads": 8,
        "enc_layers": 1,
        "dec_layers": 2,
        "dim_feedforward": 256,
        "num_queries": 60,
    },
    bert={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64},
    swin={"embed_dim": 16, "num_heads": (1, 2, 4, 8)},
    image_size=320,
    max_size=533,
)


#: A GroundingDINO shaped like the Swin-B one (``GroundingDINO_SwinB_cfg.py``: ``swin_B_384_22k``,
#: window 12, pretrain size 384, stage depths 2-2-18-2) with tiny Swin widths, and the tiny
#: transformer and BERT of :data:`TINY_GDINO`.
TINY_GDINO_SWINB = GDinoArch(
    "GroundingDINO_SwinB_cfg.py",
    overrides=TINY_GDINO.overrides,
    bert=TINY_GDINO.bert,
    swin=TINY_GDINO.swin,
    image_size=TINY_GDINO.image_size,
    max_size=TINY_GDINO.max_size,
)


#: A SAM 2.1 with the real structure (four Hiera stages, one global-attention block, the FPN neck,
#: the released prompt encoder and mask decoder, one memory-attention layer) and a tiny Hiera
#: (8 channels). 1024-px input, as Meta's ``SAM2ImagePredictor`` requires.
TINY_SAM2 = Sam2Arch(embed_dim=8, num_heads=1, stages=(1, 1, 2, 1), global_att_blocks=(3,),
                     memory_attention_layers=1)
#: :data:`TINY_SAM2` on 256-px input (16x16 memory tokens instead of 64x64): video tests, where
#: the memory attention over 7 frames dominates the time.
TINY_SAM2_VIDEO = Sam2Arch(embed_dim=8, num_heads=1, stages=(1, 1, 2, 1), global_att_blocks=(3,),
                           memory_attention_layers=1, image_size=256)


def tiny_sam2_spec(name: str = "tiny_sam2", arch: Sam2Arch = TINY_SAM2, **kw) -> ModelSpec:
    """A registry entry for ``arch`` (:data:`TINY_SAM2` by default) run by the SAM 2.1 engine."""
    return ModelSpec("sam", name, kw.pop("filename", f"{name}.pt"), arch,
                     engine="lang_sam.models.sam2:Sam2Segmenter", **kw)


def tiny_sam_spec(name: str = "tiny_sam", **kw) -> ModelSpec:
    """A registry entry for :data:`TINY_SAM` (pass it to ``lang_sam.models.registry.register_model``)."""
    return ModelSpec("sam", name, kw.pop("filename", f"{name}.pth"), TINY_SAM, **kw)


def tiny_gdino_spec(name: str = "tiny_gdino", arch: GDinoArch = TINY_GDINO, **kw) -> ModelSpec:
    """A registry entry for ``arch`` (:data:`TINY_GDINO` by default, or :data:`TINY_GDINO_SWINB`)."""
    return ModelSpec("gdino", name, kw.pop("filename", f"{name}.pth"), arch, **kw)


def _arch(family: str, model) -> Any:
    """The architecture of ``model``: a type name (looked up in the registry), a spec, or an
    architecture record itself."""
    if isinstance(model, str):
        return get_spec(family, model).arch
    return model.arch if isinstance(model, ModelSpec) else model


def write_checkpoint(path: str | os.PathLike, spec: ModelSpec, seed: int = 0, **options) -> Path:
    """Write a random-weight checkpoint of the registry entry ``spec`` at ``path``, in the format its
    engine loads: the engine's own writer (``write_random_checkpoint`` of
    :class:`~lang_sam.models.base.Engine`) with ``options``.

    Raises:
        InvalidArgumentError: the engine cannot be imported, has no writer, or does not take an option.
    """
    return engine_for(spec).write_random_checkpoint(path, spec.arch, seed, **options)


def write_sam_checkpoint(path: str | os.PathLike, model="vit_b", seed: int = 0) -> Path:
    """Save a random SAM checkpoint of ``model`` (a type name, spec or
    :class:`~lang_sam.models.segmenter.SamArch`) in the released format (a bare state dict)."""
    return SamSegmenter.write_random_checkpoint(path, _arch("sam", model), seed)


def write_gdino_checkpoint(
    path: str | os.PathLike, model="swint", seed: int = 0, **kwargs
) -> Path:
    """Save a random GroundingDINO checkpoint of ``model`` (a type name, spec or
    :class:`~lang_sam.models.detector.GDinoArch`) in the released format (``{"model": state_dict}``,
    with the ``label_enc.weight`` entry the released files carry). ``kwargs`` go to
    :func:`lang_sam.models.detector.random_gdino_state_dict` (``few_boxes=True``...)."""
    return GroundingDINODetector.write_random_checkpoint(path, _arch("gdino", model), seed, **kwargs)


def write_sam2_checkpoint(path: str | os.PathLike, model="sam2.1_hiera_tiny", seed: int = 0, **kwargs) -> Path:
    """Save a random SAM 2.1 checkpoint of ``model`` (a type name, spec or
    :class:`~lang_sam.models.sam2.Sam2Arch`) in Meta's released format (``{"model": state_dict}``,
    Meta's names). ``kwargs`` go to :func:`lang_sam.models.sam2.random_sam2_state_dict`."""
    return Sam2Segmenter.write_random_checkpoint(path, _arch("sam", model), seed, **kwargs)


#: A SAM 3 (``Sam3Config``) with the real structure and tiny widths: 112-px input (8x8 patches of
#: 14), 2-layer ViT and CLIP text encoder of width 32, 20 queries. ``"full"`` is ``Sam3Config()``'s
#: defaults, the released model's shape (about 840 M parameters).
TINY_SAM3: dict[str, Any] = {
    "vision_config": {
        "backbone_config": {"model_type": "sam3_vit_model", "hidden_size": 32, "intermediate_size": 64,
                            "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 112,
                            "patch_size": 14, "window_size": 4, "global_attn_indexes": [1],
                            "pretrain_image_size": 112},
        "fpn_hidden_size": 32, "backbone_feature_sizes": [[32, 32], [16, 16], [8, 8]],
    },
    "text_config": {"model_type": "clip_text_model", "vocab_size": 49408, "max_position_embeddings": 32,
                    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                    "num_attention_heads": 2, "projection_dim": 32},
    "geometry_encoder_config": {"hidden_size": 32, "num_layers": 1, "num_attention_heads": 2,
                                "intermediate_size": 64},
    "detr_encoder_config": {"hidden_size": 32, "num_layers": 1, "num_attention_heads": 2,
                            "intermediate_size": 64},
    "detr_decoder_config": {"hidden_size": 32, "num_layers": 2, "num_attention_heads": 2,
                            "intermediate_size": 64, "num_queries": 20},
    "mask_decoder_config": {"hidden_size": 32, "num_attention_heads": 2},
}


#: The tracker half of a tiny SAM 3 *video* folder (``Sam3VideoConfig.tracker_config``), widths
#: matching :data:`TINY_SAM3`; its detection thresholds are lowered (with :data:`TINY_SAM3_VIDEO`)
#: so that a random model starts tracks.
TINY_SAM3_TRACKER = {
    "prompt_encoder_config": {"hidden_size": 128, "image_size": 112, "patch_size": 14, "mask_input_channels": 4},
    "mask_decoder_config": {"hidden_size": 128, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 32},
    "memory_attention_hidden_size": 128, "memory_attention_num_layers": 1, "memory_attention_num_attention_heads": 1,
    "memory_attention_feed_forward_hidden_size": 64, "memory_attention_rope_feat_sizes": [8, 8],
    "memory_encoder_hidden_size": 128, "memory_encoder_output_channels": 64,
    "mask_downsampler_embed_dim": 128, "memory_fuser_embed_dim": 128, "memory_fuser_intermediate_dim": 64, "memory_fuser_num_layers": 1,
    "max_object_pointers_in_encoder": 3, "max_cond_frame_num": 2,
}
#: The tracker's memory attention reads 64-channel memories (hard-coded), and transformers 5.x
#: handles object pointers only when the tracker is wider than its memories (it splits each
#: pointer into width / 64 tokens; at width 64 the pointers keep an extra dimension and
#: ``torch.cat`` fails): so the tiny video folder is 128 wide where the tracker meets the
#: detector's FPN (:func:`tiny_sam3_video_detector` widens :data:`TINY_SAM3` so).
def tiny_sam3_video_detector() -> dict:
    """:data:`TINY_SAM3` with the FPN and the DETR / geometry / mask-head widths at 128 (the
    detector half of the tiny video folder)."""
    import copy

    config = copy.deepcopy(TINY_SAM3)
    config["vision_config"]["fpn_hidden_size"] = 128
    for part in ("geometry_encoder_config", "detr_encoder_config", "detr_decoder_config", "mask_decoder_config"):
        config[part]["hidden_size"] = 128
    return config


#: ``Sam3VideoConfig`` settings of the tiny video folder (a random detector scores 0.24 to 0.26: a few queries pass).
TINY_SAM3_VIDEO: dict[str, Any] = {"score_threshold_detection": 0.2575, "new_det_thresh": 0.2575, "max_num_objects": 3}


def write_sam3_folder(path: str | os.PathLike, size: str | dict = "tiny", seed: int = 0, *,
                      video: bool = False) -> Path:
    """Write a random-weight SAM 3 folder in the hub layout (what ``facebook/sam3`` holds,
    :data:`lang_sam.models.sam3.SAM3_FILES`) at ``path``: ``size`` ``"tiny"`` (:data:`TINY_SAM3`, a
    few MB), ``"full"`` (the released shape, about 3.4 GB) or a ``Sam3Config`` keyword dict (see
    :meth:`lang_sam.models.sam3.Sam3Segmenter.write_random_checkpoint`).

    ``video=True`` writes the video model instead, as ``facebook/sam3`` really is (a
    ``Sam3VideoModel`` and a ``Sam3VideoProcessor``; ``Sam3Model`` loads its detector half). Tiny:
    :data:`TINY_SAM3_TRACKER` and :data:`TINY_SAM3_VIDEO`; full: transformers' defaults."""
    full = size == "full"
    tiny = tiny_sam3_video_detector() if video else TINY_SAM3
    config = None if full else tiny if size == "tiny" else dict(cast(dict, size))
    return Sam3Segmenter.write_random_checkpoint(
        path, get_spec("sam", "sam3").arch, seed, config=config, video=video,
        tracker=None if full else TINY_SAM3_TRACKER, video_config=None if full else TINY_SAM3_VIDEO)


def main(argv=None) -> None:
    """``python -m lang_sam.testing --to DIR [--sam vit_b ...] [--gdino swint ...] [--few-boxes]``:
    write full-size random checkpoints under their canonical names (for benchmarks and smoke runs)."""
    import argparse
    import sys
    import time

    p = argparse.ArgumentParser(prog="python -m lang_sam.testing", description=main.__doc__)
    p.add_argument("--to", required=True, help="folder to write to (use it as LANG_SAM_WEIGHTS_DIR)")
    p.add_argument("--sam", nargs="*", default=[], help="SAM types, e.g. vit_b vit_h sam2.1_hiera_tiny sam3 (a tiny or video sam3: see --sam3)")
    p.add_argument("--gdino", nargs="*", default=[], help="GroundingDINO types, e.g. swint swinb")
    p.add_argument("--few-boxes", action="store_true", help="see lang_sam.models.detector.random_gdino_state_dict")
    p.add_argument("--boxes", type=int, default=8, help="with --few-boxes: boxes on the image")
    p.add_argument("--calibrate", default=None, help="with --few-boxes: the image to calibrate on")
    p.add_argument("--sam3", nargs="?", const="full", default=None, choices=("full", "tiny"),
                   help="also write a random SAM 3 folder, DIR/sam3 (full size by default, or tiny)")
    p.add_argument("--video", action="store_true",
                   help="with --sam3: the video model (detector + tracker, what facebook/sam3 holds)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = Path(args.to)
    jobs = [("sam", n) for n in args.sam] + [("gdino", n) for n in args.gdino]
    if args.sam3:
        print(f"SAM 3 ({args.sam3}): building random weights ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        folder = write_sam3_folder(out / get_spec("sam", "sam3").filename, args.sam3, args.seed,
                                   video=args.video)
        size = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
        print(f"SAM 3 ({args.sam3}): wrote {folder} ({size:.1f} MiB) in "
              f"{time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    if not jobs and not args.sam3:
        print("python -m lang_sam.testing: nothing to write: name types with --sam and/or --gdino",
              file=sys.stderr)
    # A full-size network takes a minute or more to build and save on a small CPU: say what is
    # being done, one line per checkpoint, so the wait is not silent.
    for i, (family, name) in enumerate(jobs, start=1):
        spec = get_spec(family, name)
        path = out / spec.filename
        what = "SAM" if family == "sam" else "GroundingDINO"
        # --few-boxes and its options are the GroundingDINO writer's (random_gdino_state_dict)
        options = dict(few_boxes=True, target_boxes=args.boxes, calibration_image=args.calibrate) \
            if args.few_boxes and family == "gdino" else {}
        calibrated = " (calibrating the box count with --few-boxes)" if options else ""
        print(f"[{i}/{len(jobs)}] {what} {name}: building random weights{calibrated} ...",
              file=sys.stderr, flush=True)
        started = time.perf_counter()
        write_checkpoint(path, spec, args.seed, **options)
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
        print(f"[{i}/{len(jobs)}] {what} {name}: wrote {path} ({size / 2**20:.1f} MiB) "
              f"in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
