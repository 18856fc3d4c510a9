"""User code against lang-sam's public API, for the type checker only.

``python -m mypy`` (CI's type check; ``[tool.mypy] files`` in pyproject.toml) checks this file
with the package, so a change that makes user code stop type-checking, or makes a public result
untyped, fails CI. It is never executed: importing it only defines functions, and no test imports
it (pytest collects ``test_*.py`` only).

Two kinds of check:

- ``assert_type(value, T)``: mypy fails unless ``value``'s type is exactly ``T`` (so a public
  return type that became ``Any`` or changed fails here);
- a mistake users make, followed by ``# type: ignore[code]``: with ``warn_unused_ignores``
  (pyproject.toml) mypy fails when that line is *not* an error any more, so each such line proves
  that the API flags the mistake.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from typing_extensions import assert_type

import lang_sam
from lang_sam import (
    GDINO_MODELS,
    SAM_MODELS,
    CropMask,
    Detections,
    EncodedImage,
    GeneratedMasks,
    InvalidPromptError,
    LangSAM,
    LangSAMError,
    MaskPrediction,
    Prediction,
    TiledPrediction,
    TileSpec,
    TrackedFrame,
)
from lang_sam.labeling import LabelSettings, RunSummary, label_folder
from lang_sam.labeling.video_run import TrackSettings, TrackSummary, track_folder
from lang_sam.utils import contour_to_points, draw_image, generate_labelme_json, get_contours, load_image


def build() -> LangSAM:
    """The 2023 constructor, positional and by keyword, and the newer keyword-only options."""
    assert_type(LangSAM(), LangSAM)
    assert_type(LangSAM("vit_b", None, False), LangSAM)
    assert_type(LangSAM(sam_type="sam2.1_hiera_tiny", ckpt_path=Path("sam.pt"), device="cpu",
                        precision="fp32", cache_size=0), LangSAM)
    LangSAM(sam_type=3)  # type: ignore[arg-type]
    LangSAM("vit_b", None, False, "swint")  # type: ignore[call-arg]  # gdino_type is keyword-only
    assert_type(SAM_MODELS, dict[str, str])
    assert_type(GDINO_MODELS, dict[str, str])
    assert_type(lang_sam.__version__, str)
    return LangSAM(sam_type="vit_b", gdino_type="swint")


def predict_2023(model: LangSAM, image: Image.Image) -> None:
    """``predict`` returns the 2023 4-tuple, and the 2023 keyword ``image_pil=`` still works."""
    masks, boxes, phrases, logits = model.predict(image, "car. wheel")
    assert_type(masks, torch.Tensor)
    assert_type(boxes, torch.Tensor)
    assert_type(phrases, list[str])
    assert_type(logits, torch.Tensor)
    result = model.predict(image_pil=image, text_prompt="car", box_threshold=0.3, text_threshold=0.25)
    assert_type(result, Prediction)
    assert_type(result.scores, torch.Tensor)
    assert_type(result.iou_scores, torch.Tensor | None)
    assert_type(result.image_size, tuple[int, int])

    masks, boxes, phrases = model.predict(image, "car")  # type: ignore[misc]  # four values, not three
    phrases.upper()  # type: ignore[attr-defined]  # a list of phrases, not one string
    model.predict(image)  # type: ignore[call-overload]  # the prompt is required
    model.predict(image, ["car", "wheel"])  # type: ignore[call-overload]  # several prompts: predict_prompts
    model.predict(image, image_pil=image, text_prompt="car")  # type: ignore[call-overload]  # the image twice
    result.dense()  # type: ignore[attr-defined]  # dense masks already; dense() is TiledPrediction's


def the_pieces(model: LangSAM, image: Image.Image, pixels: np.ndarray) -> None:
    """``predict_dino`` / ``predict_sam`` (2023), encode handles, several prompts or images."""
    boxes, logits, phrases = model.predict_dino(image, "car", 0.3, 0.25)
    assert_type(boxes, torch.Tensor)
    assert_type(phrases, list[str])
    assert_type(model.predict_dino(image_pil=image, text_prompt="car", box_threshold=0.3,
                                   text_threshold=0.25), tuple[torch.Tensor, torch.Tensor, list[str]])
    assert_type(model.predict_sam(image, boxes), torch.Tensor)
    assert_type(model.predict_sam(image_pil=image, boxes=boxes), torch.Tensor)

    enc = model.encode("photo.jpg", eager=True)
    assert_type(enc, EncodedImage)
    assert_type(enc.image_size, tuple[int, int])
    assert_type(model.predict(enc, "car"), Prediction)
    assert_type(model.predict_prompts(pixels, ["car", "wheel"]), list[Prediction])
    assert_type(model.predict_batch([image, pixels, Path("a.jpg"), enc], "car"), list[Prediction])
    assert_type(model.predict_batch([image, image], ["car", "dog"]), list[Prediction])
    model.set_image(image)
    assert_type(model.predict_prompt("car"), Prediction)
    model.predict(42, "car")  # type: ignore[call-overload]  # not an image


def sam_prompts(model: LangSAM, image: Image.Image) -> None:
    """SAM's own prompts; a refined mask feeds an earlier call's low-resolution logits back."""
    out = model.segment(image, boxes=[10, 10, 200, 150], multimask_output=True)
    assert_type(out, MaskPrediction)
    assert_type(out.masks, torch.Tensor)
    assert_type(out.iou_scores, torch.Tensor)
    assert_type(out.low_res_logits, torch.Tensor | None)  # always set by LangSAM.segment
    out.low_res_logits[0, 0]  # type: ignore[index]  # Optional in the type: check it first
    if out.low_res_logits is not None:
        model.segment(image, points=[[50, 50]], mask_input=out.low_res_logits[0, 0])
    assert_type(model.generate(image, points_per_side=8), GeneratedMasks)


def tiles_and_video(model: LangSAM, image: Image.Image) -> None:
    """Sliced inference (masks as crops) and tracking through a video."""
    tiled = model.predict(image, "car", tile=TileSpec(size=512))
    masks, boxes, phrases, logits = tiled
    assert_type(tiled, TiledPrediction)
    assert_type(masks, list[CropMask])
    assert_type(tiled.dense(), torch.Tensor)
    assert_type(tiled.image_size, tuple[int, int])
    tiled.masks.shape  # type: ignore[attr-defined]  # crops, not one tensor: tiled.dense()
    assert_type(model.predict_dino(image, "car", 0.3, 0.25, tile=TileSpec()), Detections)
    crops, iou = model.predict_sam(image, boxes, tile=TileSpec())
    assert_type(crops, list[CropMask])

    for frame in model.predict_video("clip.mp4", "car", detect_every=5):
        assert_type(frame, TrackedFrame)
        assert_type(frame.track_ids, torch.Tensor)
        assert_type(frame.phrases, list[str])
        assert_type(frame.image_size, tuple[int, int])


def utils_2023(model: LangSAM) -> dict:
    """``lang_sam.utils``: load, draw, contours and LabelMe JSON, as the 2023 module had them."""
    image = load_image("photo.jpg")
    assert_type(image, Image.Image)
    masks, boxes, phrases, logits = model.predict(image, "car")
    overlay = draw_image(np.asarray(image), masks, boxes, phrases)
    assert_type(overlay, np.ndarray)
    Image.fromarray(overlay).save("overlay.png")
    contours = get_contours(masks[0])
    assert_type(contours, list[np.ndarray])
    assert_type(contour_to_points(contours[0]), list[list[float]])
    load_image(42)  # type: ignore[arg-type]
    return generate_labelme_json(masks, phrases, (image.height, image.width), "photo.jpg")


def labelling(model: LangSAM) -> None:
    """Folders of images or videos into label files."""
    settings = LabelSettings.create(classes=["cat=cat. kitten", "cup=cup. mug"], nms=0.5)
    summary = label_folder(model, ["photos/"], "labels/", settings, formats=("coco", "yolo"), resume=True)
    assert_type(summary, RunSummary)
    assert_type(summary.failed, list[tuple[lang_sam.labeling.ImageItem, str]])
    label_folder(lambda: LangSAM(sam_type="vit_b"), [Path("photos")], Path("labels"), settings)  # a loader
    label_folder(model, ["photos/"], "labels/", "cat")  # type: ignore[arg-type]  # settings, not a prompt
    label_folder("vit_b", ["photos/"], "labels/", settings)  # type: ignore[arg-type]  # a model, not its name
    tracked = track_folder(model, ["clips/"], "tracks/", TrackSettings.create("car", detect_every=5))
    assert_type(tracked, TrackSummary)


def errors(model: LangSAM, image: Image.Image) -> str:
    """The typed errors are also the built-in errors they replace."""
    try:
        model.predict(image, "")
    except InvalidPromptError as exc:
        assert_type(exc, InvalidPromptError)
        value_error: ValueError = exc
        return str(value_error)
    except LangSAMError as exc:
        return str(exc)
    return ""
