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

import torch

from lang_sam.hub import ModelSpec
from lang_sam.models.detector import GDinoArch
from lang_sam.models.registry import get_spec
from lang_sam.models.sam2 import Sam2Arch
from lang_sam.models.segmenter import SamArch

__all__ = [
    "TINY_SAM",
    "TINY_GDINO",
    "TINY_GDINO_SWINB",
    "TINY_SAM2",
    "TINY_SAM2_VIDEO",
    "tiny_sam_spec",
    "tiny_sam2_spec",
    "random_sam2_state_dict",
    "write_sam2_checkpoint",
    "tiny_gdino_spec",
    "random_sam_state_dict",
    "random_gdino_state_dict",
    "write_sam_checkpoint",
    "write_gdino_checkpoint",
    "TINY_SAM3",
    "clip_bpe_path",
    "write_clip_tokenizer",
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


def _arch(family: str, model) -> SamArch | Sam2Arch | GDinoArch:
    if isinstance(model, (SamArch, Sam2Arch, GDinoArch)):
        return model
    if isinstance(model, ModelSpec):
        return model.arch
    return get_spec(family, model).arch


def _perturb(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Give norms and biases random values too, so no parameter is trivially 0 or 1."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1 and ("norm" in name.lower() or name.endswith("bias")):
                p.add_(torch.randn(p.shape, generator=generator) * 0.02)


def random_sam_state_dict(model="vit_b", seed: int = 0) -> dict[str, torch.Tensor]:
    """The state dict of a SAM network of ``model`` (a type name, spec or arch) with random weights."""
    from lang_sam.models.segmenter import build_sam_model

    torch.manual_seed(seed)
    net = build_sam_model(cast(SamArch, _arch("sam", model)))  # a SAM v1 model, as documented
    _perturb(net, torch.Generator().manual_seed(seed))
    return net.state_dict()


def random_sam2_state_dict(model="sam2.1_hiera_tiny", seed: int = 0, *,
                           object_score: float = 4.0) -> dict[str, torch.Tensor]:
    """A SAM 2.1 state dict with random weights **in Meta's names** (what the released
    ``sam2.1_hiera_*.pt`` files hold under ``"model"``), for ``model`` (a type name, spec or
    :class:`~lang_sam.models.sam2.Sam2Arch`).

    Built with transformers' ``Sam2VideoModel`` and renamed with
    :func:`lang_sam.models.sam2.transformers_to_meta`. Random weights make SAM 2.1's object-score
    head say "no object" about half the time, and then every mask is empty; the head's output bias
    is set to ``object_score`` (a logit) so that masks are not trivially empty.
    """
    from lang_sam.models.sam2 import build_sam2_model, transformers_to_meta

    torch.manual_seed(seed)
    net = build_sam2_model(cast(Sam2Arch, _arch("sam", model)))  # a SAM 2.1 model, as documented
    generator = torch.Generator().manual_seed(seed)
    _perturb(net, generator)
    with torch.no_grad():
        net.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(object_score)
    return transformers_to_meta(net.state_dict())


def _calibration_image():
    """A deterministic photo-like 600x400 RGB image (gradients and a few solid shapes)."""
    import numpy as np
    from PIL import Image

    h, w = 400, 600
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx + yy) * 255 // (h + w - 2)], -1)
    img = img.astype(np.uint8)
    for i, (y0, x0, c) in enumerate([(40, 60, 200), (150, 300, 30), (250, 100, 120), (60, 420, 250)]):
        img[y0:y0 + 90 + 10 * i, x0:x0 + 120, :] = (c, 255 - c, (c * 7) % 256)
    return Image.fromarray(img)


def random_gdino_state_dict(
    model="swint", seed: int = 0, *, few_boxes: bool = False, target_boxes: int = 8,
    calibration_image=None, feature_scale: float = 1 / 16, calibration_prompt: str = "object.",
) -> dict[str, torch.Tensor]:
    """The state dict of a GroundingDINO network with random weights.

    Random GroundingDINO scores saturate: nearly every query scores about 1 for some token, so all
    900 queries pass the 0.3 threshold (and SAM then decodes 900 masks). ``few_boxes=True`` gives a
    realistic handful instead, by setting two LayerNorms (compute is unchanged):

    - the last text-enhancer layer's output norm to weight 0 and a random bias ``c``, so every
      token's feature is ``c`` and a query's score depends on the prompt only a little (the
      prompt still reaches the decoder through the earlier fusion layers);
    - the decoder's final norm to weight ``feature_scale`` and a bias ``-k c / |c|^2``, which
      lowers every logit by ``k``. ``k`` is calibrated with one forward pass on
      ``calibration_image`` (a path or PIL image; default a fixed synthetic 600x400 image) so that
      exactly ``target_boxes`` queries score over 0.3 there for ``calibration_prompt`` (default
      ``"object."``); other prompts give about as many (6 instead of 8 was seen), so calibrate
      with the prompt you measure, and other images other counts (the
      scores' offset depends on the image: 532 boxes were seen on another photo), so calibrate on
      the image you measure.
      A list of images calibrates on all of them: at most ``target_boxes`` on each, exactly that
      many on the one that gives most (e.g. every distinct tile of a sliced benchmark).
    """
    from lang_sam.models.detector import GroundingDINODetector, build_groundingdino_model, preprocess_caption

    torch.manual_seed(seed)
    arch = cast(GDinoArch, _arch("gdino", model))  # the gdino family has only GDinoArch
    net = build_groundingdino_model(arch)
    generator = torch.Generator().manual_seed(seed)
    _perturb(net, generator)
    state = net.state_dict()
    if not few_boxes:
        return state
    width = state["transformer.decoder.norm.weight"].shape[0]
    last = max(int(k.split(".")[3]) for k in state if k.startswith("transformer.encoder.text_layers."))
    text_norm = f"transformer.encoder.text_layers.{last}.norm2"
    c = torch.randn(width, generator=generator)
    state[f"{text_norm}.weight"] = torch.zeros(width)
    state[f"{text_norm}.bias"] = c
    state["transformer.decoder.norm.weight"] = torch.full((width,), feature_scale)
    state["transformer.decoder.norm.bias"] = torch.zeros(width)
    net.load_state_dict(state)
    detector = GroundingDINODetector(net, input_size=arch.input_size)  # as the spec runs it
    images = calibration_image if isinstance(calibration_image, (list, tuple)) else [calibration_image]
    wanted = -float("inf")
    for image in images:
        if image is None:
            image = _calibration_image()
        elif not hasattr(image, "size"):
            from lang_sam.utils import load_image

            image = load_image(image)
        scores, _ = detector.forward_text(detector.encode_image(image), preprocess_caption(calibration_prompt))
        logits = torch.logit(scores[:, 1].double())  # every token scores the same now
        wanted = max(wanted, logits.topk(target_boxes).values[-1].item())
    k = wanted - torch.logit(torch.tensor(0.3, dtype=torch.float64)).item() + 1e-3
    state["transformer.decoder.norm.bias"] = -k * c / c.dot(c)
    return state


def _save(obj, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".incomplete")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def write_sam_checkpoint(path: str | os.PathLike, model="vit_b", seed: int = 0) -> Path:
    """Save a random SAM checkpoint in the released format (a bare state dict)."""
    return _save(random_sam_state_dict(model, seed), path)


def write_gdino_checkpoint(
    path: str | os.PathLike, model="swint", seed: int = 0, **kwargs
) -> Path:
    """Save a random GroundingDINO checkpoint in the released format (``{"model": state_dict}``,
    with the ``label_enc.weight`` entry the released files carry). ``kwargs`` go to
    :func:`random_gdino_state_dict`."""
    state = random_gdino_state_dict(model, seed, **kwargs)
    args_hidden = next(v for k, v in state.items() if k == "feat_map.weight").shape[0]
    state = {**state, "label_enc.weight": torch.zeros(2001, args_hidden)}
    return _save({"model": state}, path)


def write_sam2_checkpoint(path: str | os.PathLike, model="sam2.1_hiera_tiny", seed: int = 0, **kwargs) -> Path:
    """Save a random SAM 2.1 checkpoint in Meta's released format (``{"model": state_dict}``,
    Meta's names). ``kwargs`` go to :func:`random_sam2_state_dict`."""
    return _save({"model": random_sam2_state_dict(model, seed, **kwargs)}, path)


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


def clip_bpe_path() -> Path:
    """CLIP's BPE merges (``bpe_simple_vocab_16e6.txt.gz``, MIT licence) as the ``open-clip-torch``
    package ships them (the ``test`` extra installs it), found without importing it; raises
    :class:`~lang_sam.errors.EngineUnavailableError` if it is not installed. Never downloaded."""
    import importlib.util

    from lang_sam.errors import EngineUnavailableError

    spec = importlib.util.find_spec("open_clip")
    path = Path(next(iter(spec.submodule_search_locations or ()), "")) / "bpe_simple_vocab_16e6.txt.gz" \
        if spec is not None else None
    if path is None or not path.is_file():
        raise EngineUnavailableError(
            "writing a random SAM 3 folder needs CLIP's BPE vocabulary from open-clip-torch: "
            "pip install open-clip-torch (or pip install 'lang-sam[test]')",
            package="open-clip-torch", required=">=2", installed=None)
    return path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible map of the 256 bytes to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_clip_tokenizer(folder: str | os.PathLike) -> Path:
    """Write CLIP's tokenizer (``vocab.json``, ``merges.txt``: 49408 tokens, the vocabulary SAM 3's
    text encoder reads) into ``folder``, built from :func:`clip_bpe_path` as open_clip builds it."""
    import gzip
    import json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    merges = gzip.open(clip_bpe_path()).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    pairs = [tuple(m.split()) for m in merges]
    vocab = list(_bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in pairs]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({v: i for i, v in enumerate(vocab)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in pairs) + "\n",
                                       encoding="utf-8")
    return folder


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
    """Write a random-weight SAM 3 folder in the hub layout (``config.json``, ``model.safetensors``,
    ``processor_config.json``, ``tokenizer.json``, ``tokenizer_config.json``: what
    ``facebook/sam3`` holds, :data:`lang_sam.models.sam3.SAM3_FILES`) at ``path``: ``size`` ``"tiny"``
    (:data:`TINY_SAM3`, a few MB), ``"full"`` (the released shape, about 3.4 GB) or a
    ``Sam3Config`` keyword dict. The tokenizer is CLIP's (:func:`write_clip_tokenizer`); the
    image processor reads the config's image size. Written beside ``path`` and renamed.

    ``video=True`` writes the video model instead, as ``facebook/sam3`` really is: a
    ``Sam3VideoModel`` (``model_type`` ``"sam3_video"``: the detector, under ``detector_model.``,
    plus the tracker) and a ``Sam3VideoProcessor``; ``Sam3Model`` loads its detector half. Tiny:
    :data:`TINY_SAM3_TRACKER` and :data:`TINY_SAM3_VIDEO`; full: transformers' defaults."""
    import shutil
    import tempfile

    from lang_sam.models.sam3 import require_sam3

    Sam3Model, Sam3Processor = require_sam3()
    from transformers import CLIPTokenizer, PretrainedConfig, ProcessorMixin, Sam3Config, Sam3ImageProcessor

    import copy

    tiny = tiny_sam3_video_detector() if video else TINY_SAM3
    config = Sam3Config(**copy.deepcopy(
        {} if size == "full" else tiny if size == "tiny" else dict(cast(dict, size))))
    # transformers types sub-configs as "dict | PretrainedConfig | None"; Sam3Config builds them as configs.
    vision = cast(PretrainedConfig, config.vision_config)
    side = cast(PretrainedConfig, vision.backbone_config).image_size
    torch.manual_seed(seed)
    if video:
        from transformers import Sam3VideoConfig, Sam3VideoModel

        tracker = {} if size == "full" else {
            "vision_config": vision.to_dict(), **copy.deepcopy(TINY_SAM3_TRACKER)}
        vconfig = Sam3VideoConfig(detector_config=config.to_dict(), tracker_config=tracker,
                                  **({} if size == "full" else TINY_SAM3_VIDEO))
        vconfig.image_size = side
        model = Sam3VideoModel(vconfig).eval()
    else:
        model = Sam3Model(config).eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tokenizer = CLIPTokenizer(*(str(write_clip_tokenizer(tmp / "bpe") / f)
                                    for f in ("vocab.json", "merges.txt")))
        processor: ProcessorMixin = Sam3Processor(Sam3ImageProcessor(size={"height": side, "width": side}), tokenizer)
        if video:
            from transformers import Sam3VideoProcessor
            from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor

            processor = Sam3VideoProcessor(processor.image_processor,
                                           Sam2VideoVideoProcessor(size={"height": side, "width": side}), tokenizer)
        out = tmp / "folder"
        model.save_pretrained(out)
        processor.save_pretrained(out)
        if path.exists():
            shutil.rmtree(path)
        os.replace(out, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def main(argv=None) -> None:
    """``python -m lang_sam.testing --to DIR [--sam vit_b ...] [--gdino swint ...] [--few-boxes]``:
    write full-size random checkpoints under their canonical names (for benchmarks and smoke runs)."""
    import argparse
    import sys
    import time

    p = argparse.ArgumentParser(prog="python -m lang_sam.testing", description=main.__doc__)
    p.add_argument("--to", required=True, help="folder to write to (use it as LANG_SAM_WEIGHTS_DIR)")
    p.add_argument("--sam", nargs="*", default=[], help="SAM types, e.g. vit_b vit_h sam2.1_hiera_tiny (sam3: see --sam3)")
    p.add_argument("--gdino", nargs="*", default=[], help="GroundingDINO types, e.g. swint swinb")
    p.add_argument("--few-boxes", action="store_true", help="see random_gdino_state_dict")
    p.add_argument("--boxes", type=int, default=8, help="with --few-boxes: boxes on the image")
    p.add_argument("--calibrate", default=None, help="with --few-boxes: the image to calibrate on")
    p.add_argument("--sam3", nargs="?", const="full", default=None, choices=("full", "tiny"),
                   help="also write a random SAM 3 folder, DIR/sam3 (full size by default, or tiny)")
    p.add_argument("--video", action="store_true",
                   help="with --sam3: the video model (detector + tracker, what facebook/sam3 holds)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = Path(args.to)
    if "sam3" in args.sam:  # a folder model: --sam sam3 is --sam3 full
        args.sam = [n for n in args.sam if n != "sam3"]
        args.sam3 = args.sam3 or "full"
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
        path = out / get_spec(family, name).filename
        what = "SAM" if family == "sam" else "GroundingDINO"
        calibrated = " (calibrating the box count with --few-boxes)" if family == "gdino" and args.few_boxes else ""
        print(f"[{i}/{len(jobs)}] {what} {name}: building random weights{calibrated} ...",
              file=sys.stderr, flush=True)
        started = time.perf_counter()
        if family == "sam" and isinstance(get_spec(family, name).arch, Sam2Arch):
            write_sam2_checkpoint(path, name, args.seed)
        elif family == "sam":
            write_sam_checkpoint(path, name, args.seed)
        else:
            write_gdino_checkpoint(path, name, args.seed, few_boxes=args.few_boxes, target_boxes=args.boxes,
                                   calibration_image=args.calibrate)
        print(f"[{i}/{len(jobs)}] {what} {name}: wrote {path} ({path.stat().st_size / 2**20:.1f} MiB) "
              f"in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
