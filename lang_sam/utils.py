"""Image I/O, drawing, contours and LabelMe export (the original's ``lang_sam.utils``).

Masks and boxes may be torch tensors or numpy arrays everywhere here.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from lang_sam.errors import InvalidArgumentError
from lang_sam.masks import MIN_AREA, CropMask, is_crop_list, outer_contours
from lang_sam.validation import as_numpy, open_image, to_rgb_array

__all__ = [
    "MIN_AREA",
    "load_image",
    "draw_image",
    "get_contours",
    "contour_to_points",
    "generate_labelme_json",
]



def load_image(image_path: str | os.PathLike) -> Image.Image:
    """Read an image file as an RGB PIL image, with its EXIF orientation applied.

    Grayscale, palette and RGBA files become RGB; 16-bit files are scaled to 8 bits.

    Raises:
        ImageNotFoundError: ``image_path`` is not a file.
        ImageTooLargeError: its header says it is over ``LANG_SAM_MAX_IMAGE_PIXELS`` (by default
            256 megapixels), checked before decoding.
        InvalidImageError: the file does not decode as an image.
        InvalidSettingError: ``LANG_SAM_MAX_IMAGE_PIXELS`` is set to something other than a whole
            number >= 0 (or ``none`` / ``off``).
    """
    return open_image(image_path)


def draw_image(
    image: np.ndarray,
    masks: Any,
    boxes: Any,
    labels: Sequence[str],
    alpha: float = 0.4,
) -> np.ndarray:
    """Draw red boxes with labels and cyan masks on a copy of ``image``.

    Args:
        image: ``HxWx3`` uint8 RGB array (not modified).
        masks: ``(N, H, W)`` bool masks (torch or numpy); may be empty.
        boxes: ``(N, 4)`` xyxy pixel boxes (torch or numpy); may be empty.
        labels: ``N`` strings drawn over the boxes.
        alpha: mask opacity in [0, 1].

    Returns:
        A new ``HxWx3`` uint8 array.

    Raises:
        InvalidImageError: ``image`` is not an ``HxW``/``HxWx1``/``HxWx3``/``HxWx4`` array of
            pixels (uint8, bool, integers up to 16 bits, or floats in [0, 1]), or has zero size.
        InvalidArgumentError: ``labels`` and ``boxes`` differ in length, or the masks' ``(H, W)``
            is not the image's.
    """
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

    arr = np.array(to_rgb_array(image, "image"))  # a writable copy: the input is never modified
    tensor = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
    boxes_t = torch.as_tensor(as_numpy(boxes), dtype=torch.float32).reshape(-1, 4)
    masks_t = torch.as_tensor(as_numpy(masks)).to(torch.bool)
    if masks_t.ndim == 4 and masks_t.shape[1] == 1:  # (N, 1, H, W) from predict_sam
        masks_t = masks_t[:, 0]
    labels = [str(label) for label in labels] if labels is not None else None
    if labels is not None and len(labels) != len(boxes_t):
        raise InvalidArgumentError(f"got {len(boxes_t)} boxes but {len(labels)} labels")
    if len(boxes_t) > 0:
        tensor = draw_bounding_boxes(
            tensor, boxes_t, colors=["red"] * len(boxes_t), labels=labels, width=2
        )
    if masks_t.numel() > 0 and len(masks_t) > 0:
        if masks_t.shape[-2:] != tensor.shape[-2:]:
            raise InvalidArgumentError(
                f"masks are {tuple(masks_t.shape[-2:])} but the image is {tuple(tensor.shape[-2:])}"
            )
        tensor = draw_segmentation_masks(
            tensor, masks=masks_t, colors=["cyan"] * len(masks_t), alpha=alpha
        )
    return np.ascontiguousarray(tensor.numpy().transpose(1, 2, 0))


def get_contours(mask: Any) -> list[np.ndarray]:
    """Outer contours (OpenCV ``(K, 1, 2)`` int32 point arrays) of a binary mask.

    ``mask`` is ``(H, W)`` or ``(1, H, W)``, bool or 0/1, torch or numpy, or a
    :class:`~lang_sam.masks.CropMask` (contours in image pixels, found on the crop). Contours of
    area :data:`MIN_AREA` or less are dropped.
    """
    if isinstance(mask, CropMask):
        return mask.contours()
    arr = as_numpy(mask)
    if arr.ndim > 2:
        arr = np.squeeze(arr, 0)
    return outer_contours(arr)


def contour_to_points(contour: np.ndarray) -> list[list[float]]:
    """An OpenCV contour -> ``[[x, y], ...]`` float pixel coordinates."""
    points = np.asarray(contour).reshape(len(contour), -1).astype(np.float32)
    return [point.tolist() for point in points]


def generate_labelme_json(
    binary_masks: Any,
    labels: Sequence[str],
    image_size: tuple[int, int],
    image_path: str | None = None,
) -> dict:
    """A LabelMe annotation dict: one polygon per outer contour of each mask.

    Args:
        binary_masks: ``(N, H, W)`` masks, torch or numpy, or a list of ``N``
            :class:`~lang_sam.masks.CropMask`.
        labels: ``N`` labels.
        image_size: ``(height, width)``.
        image_path: stored as ``imagePath``.

    Raises:
        InvalidArgumentError: ``binary_masks`` and ``labels`` differ in length.
    """
    masks = binary_masks if is_crop_list(binary_masks) else as_numpy(binary_masks)
    if len(masks) != len(labels):
        raise InvalidArgumentError(f"got {len(masks)} masks but {len(labels)} labels")
    json_dict: dict[str, Any] = {
        "version": "4.5.6",
        "imageHeight": int(image_size[0]),
        "imageWidth": int(image_size[1]),
        "imagePath": image_path,
        "flags": {},
        "shapes": [],
        "imageData": None,
    }
    for mask, label in zip(masks, labels):
        for contour in get_contours(mask):
            json_dict["shapes"].append({
                "label": label,
                "line_color": None,
                "fill_color": None,
                "points": contour_to_points(contour),
                "shape_type": "polygon",
            })
    return json_dict
