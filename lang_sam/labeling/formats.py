"""Dataset formats: COCO (RLE masks), LabelMe, YOLO segmentation, instance-mask and overlay PNGs.

- :func:`mask_to_rle` / :func:`masks_to_rle` / :func:`rle_to_mask`, :func:`coco_image_record` and
  :class:`CocoBuilder`: one COCO instance-segmentation ``annotations.json`` for a whole run;
- :func:`labelme_dict`, :func:`yolo_lines`, :func:`yolo_data_yaml`, :func:`write_instance_masks`,
  :func:`write_overlay`, :func:`detection_labels` (the one label text drawn on overlays).

Every file is written atomically (:mod:`lang_sam.labeling.atomic`). ``cv2``, ``pycocotools`` and
``torchvision`` are imported by the functions that need them. Nothing here prints.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lang_sam.labeling.atomic import write_json, write_png
from lang_sam.validation import as_numpy

__all__ = [
    "mask_to_rle",
    "masks_to_rle",
    "rle_to_mask",
    "coco_image_record",
    "CocoBuilder",
    "labelme_dict",
    "largest_polygon",
    "yolo_lines",
    "yolo_data_yaml",
    "write_instance_masks",
    "write_overlay",
    "detection_labels",
    "safe_name",
]


def safe_name(text: str) -> str:
    """``text`` reduced to ``[A-Za-z0-9_-]`` (other runs of characters become ``_``) for file names."""
    out = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")
    return out or "object"



def detection_labels(names: Sequence[str], scores: Any) -> list[str]:
    """The text drawn over each box: ``"<name> <score with 2 decimals>"``."""
    return [f"{n} {s:.2f}" for n, s in zip(names, as_numpy(scores).reshape(-1).tolist())]


def masks_to_rle(masks: Any) -> list[dict]:
    """``(N, H, W)`` binary masks (torch or numpy) -> COCO compressed RLE dicts
    ``{"size": [H, W], "counts": str}``, one per mask (an empty list for ``N = 0``)."""
    from pycocotools import mask as mask_util

    arr = as_numpy(masks)
    if arr.ndim != 3:
        raise ValueError(f"masks must be 3-D (N, H, W), got shape {arr.shape}")
    if len(arr) == 0:
        return []
    rles = mask_util.encode(np.asfortranarray((arr > 0).transpose(1, 2, 0), dtype=np.uint8))
    return [{"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")}
            for r in rles]


def mask_to_rle(mask: Any) -> dict:
    """A binary ``(H, W)`` mask -> COCO compressed RLE ``{"size": [H, W], "counts": str}``."""
    arr = as_numpy(mask)
    if arr.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {arr.shape}")
    return masks_to_rle(arr[None])[0]


def rle_to_mask(rle: dict) -> np.ndarray:
    """COCO compressed RLE (``counts`` str or bytes) -> ``(H, W)`` bool mask."""
    from pycocotools import mask as mask_util

    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return mask_util.decode({"size": list(rle["size"]), "counts": counts}).astype(bool)


def coco_image_record(
    file_name: str,
    width: int,
    height: int,
    masks: Any,
    boxes: Any,
    scores: Any,
    class_names: Sequence[str],
) -> dict:
    """One image's COCO content, with class *names* (ids are given by :class:`CocoBuilder`).

    ``masks`` ``(N, H, W)``, ``boxes`` ``(N, 4)`` xyxy pixels, ``scores`` ``(N,)``. JSON-able, so a
    run can keep one record per image on disk and rebuild ``annotations.json`` from them.
    """
    m = as_numpy(masks).astype(bool)
    b = as_numpy(boxes).astype(np.float64).reshape(-1, 4)
    s = as_numpy(scores).astype(np.float64).reshape(-1)
    if not len(m) == len(b) == len(s) == len(class_names):
        raise ValueError(
            f"got {len(m)} masks, {len(b)} boxes, {len(s)} scores and {len(class_names)} class names; "
            "expected equal counts"
        )
    if len(m) and m.shape[1:] != (height, width):
        raise ValueError(f"masks are {m.shape[1:]} but the image is {(height, width)} (H, W)")
    anns = []
    for mask, rle, box, score, name in zip(m, masks_to_rle(m) if len(m) else [], b, s, class_names):
        x0, y0, x1, y1 = (float(v) for v in box)
        anns.append({
            "class": str(name),
            "segmentation": rle,
            "area": int(mask.sum()),
            "bbox": [round(x0, 3), round(y0, 3), round(x1 - x0, 3), round(y1 - y0, 3)],
            "score": round(float(score), 6),
        })
    return {"file_name": str(file_name), "width": int(width), "height": int(height), "annotations": anns}


class CocoBuilder:
    """Accumulates :func:`coco_image_record` records; :meth:`to_dict` numbers them.

    Image ids are 1, 2, ... in the order records were added; annotation ids 1, 2, ... across the
    run; ``category_id`` = class index + 1. Adding a ``file_name`` twice replaces the first record,
    so rebuilding from saved records never duplicates an image.
    """

    def __init__(self) -> None:
        self._records: dict[str, dict] = {}

    def add(self, record: dict) -> None:
        self._records[record["file_name"]] = record

    def __len__(self) -> int:
        return len(self._records)

    def to_dict(self, class_names: Sequence[str]) -> dict:
        """The ``annotations.json`` content, with ``categories`` from ``class_names``."""
        cat = {name: i + 1 for i, name in enumerate(class_names)}
        images, annotations = [], []
        for image_id, rec in enumerate(self._records.values(), start=1):
            images.append({
                "id": image_id, "file_name": rec["file_name"],
                "width": rec["width"], "height": rec["height"],
            })
            for a in rec["annotations"]:
                if a["class"] not in cat:
                    raise ValueError(
                        f"annotation of class {a['class']!r} in {rec['file_name']!r} is not one of "
                        f"the categories {list(class_names)}"
                    )
                annotations.append({
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cat[a["class"]],
                    "segmentation": a["segmentation"],
                    "area": a["area"],
                    "bbox": a["bbox"],
                    "score": a["score"],
                    "iscrowd": 0,
                })
        return {
            "info": {"description": "lang-sam predictions"},
            "images": images,
            "categories": [
                {"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(class_names)
            ],
            "annotations": annotations,
        }

    def write(self, path: str | os.PathLike, class_names: Sequence[str]) -> Path:
        return write_json(path, self.to_dict(class_names))


# --------------------------------------------------------------------------------------------
# LabelMe, YOLO, PNGs
# --------------------------------------------------------------------------------------------

def labelme_dict(masks: Any, labels: Sequence[str], image_size: tuple[int, int],
                 image_path: str | None = None) -> dict:
    """LabelMe JSON for one image (:func:`lang_sam.utils.generate_labelme_json`)."""
    from lang_sam.utils import generate_labelme_json

    return generate_labelme_json(masks, list(labels), image_size, image_path)


def largest_polygon(mask: Any) -> np.ndarray | None:
    """The largest outer contour of ``mask`` as ``(K, 2)`` float pixel x, y, or ``None``.

    Uses :func:`lang_sam.utils.get_contours` (contours of 100 pixels or less are ignored).
    """
    import cv2

    from lang_sam.utils import get_contours

    contours = get_contours(mask)
    if not contours:
        return None
    c = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.float64)
    return c if len(c) >= 3 else None


def yolo_lines(masks: Any, class_ids: Sequence[int], image_size: tuple[int, int]) -> list[str]:
    """YOLO segmentation rows ``"class x1 y1 x2 y2 ..."``, coordinates in [0, 1].

    One row per mask: its largest outer contour divided by (W, H). Masks without a contour are
    skipped. ``image_size`` is ``(height, width)``.
    """
    h, w = int(image_size[0]), int(image_size[1])
    m = as_numpy(masks)
    if len(m) != len(class_ids):
        raise ValueError(f"got {len(m)} masks but {len(class_ids)} class ids")
    rows = []
    for mask, cid in zip(m, class_ids):
        poly = largest_polygon(mask)
        if poly is None:
            continue
        xy = np.clip(poly / np.array([w, h], dtype=np.float64), 0.0, 1.0)
        rows.append(f"{int(cid)} " + " ".join(f"{v:.6f}" for v in xy.reshape(-1)))
    return rows


def yolo_data_yaml(names: Sequence[str]) -> str:
    """An Ultralytics-style ``data.yaml`` naming the classes (``names: {0: ..., 1: ...}``).

    Written by hand (no YAML dependency): names are JSON-quoted, which is valid YAML.
    """
    lines = [
        "# lang-sam YOLO segmentation labels: labels/<image path relative to the input folder>.txt",
        f"nc: {len(names)}",
        "names:" if names else "names: {}",
    ]
    lines += [f"  {i}: {json.dumps(str(n))}" for i, n in enumerate(names)]
    return "\n".join(lines) + "\n"


def write_instance_masks(folder: str | os.PathLike, masks: Any, labels: Sequence[str]) -> list[Path]:
    """One ``HxW`` 0/255 PNG per mask, ``<folder>/<index:03d>_<label>.png``.

    PNG files already in ``folder`` (an earlier run's masks of the same image) are removed first.
    """
    folder = Path(folder)
    m = as_numpy(masks)
    if len(m) != len(labels):
        raise ValueError(f"got {len(m)} masks but {len(labels)} labels")
    if folder.is_dir():
        for old in folder.glob("*.png"):
            if old.is_file():
                old.unlink()
    out = []
    for i, (mask, label) in enumerate(zip(m, labels)):
        out.append(write_png(folder / f"{i:03d}_{safe_name(label)}.png",
                             (mask > 0).astype(np.uint8) * 255))
    return out


def write_overlay(path: str | os.PathLike, image: np.ndarray, masks: Any, boxes: Any,
                  labels: Sequence[str]) -> Path:
    """The overlay PNG (:func:`lang_sam.utils.draw_image`: red boxes, labels, cyan masks)."""
    from lang_sam.utils import draw_image

    return write_png(path, draw_image(image, masks, boxes, labels))
