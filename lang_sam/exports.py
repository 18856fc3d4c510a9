"""Turn predictions into dataset files: COCO, LabelMe, YOLO segmentation, mask and overlay PNGs.

The pieces the ``lang-sam predict`` command is built from, usable on their own:

- :class:`ClassMap`: predicted phrases -> stable class names and ids (``"car=car. automobile"``);
- :func:`class_nms`: optional per-class box non-maximum suppression;
- :func:`mask_to_rle` / :func:`rle_to_mask`, :func:`coco_image_record` and :class:`CocoBuilder`:
  one COCO instance-segmentation ``annotations.json`` for a whole run;
- :func:`labelme_dict`, :func:`yolo_lines`, :func:`yolo_data_yaml`, :func:`write_instance_masks`,
  :func:`write_overlay`;
- :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`write_json` / :func:`write_png`:
  every file is written to a temporary name in its folder and renamed (``os.replace``), so an
  interrupted run never leaves a half-written file under the final name.

Class ids: :class:`ClassMap` ids start at 0 (YOLO's convention); COCO ``category_id`` is that id + 1
(COCO reserves 0). Nothing heavy is imported at import time (``cv2``, ``pycocotools`` and
``torchvision`` are imported by the functions that need them). Nothing here prints.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from lang_sam.errors import InvalidClassMapError

logger = logging.getLogger(__name__)

__all__ = [
    "TMP_SUFFIX",
    "ClassMap",
    "normalize_phrase",
    "class_nms",
    "atomic_write_bytes",
    "atomic_write_text",
    "write_json",
    "write_png",
    "mask_to_rle",
    "rle_to_mask",
    "coco_image_record",
    "CocoBuilder",
    "labelme_dict",
    "largest_polygon",
    "yolo_lines",
    "yolo_data_yaml",
    "write_instance_masks",
    "write_overlay",
    "safe_name",
]

#: Temporary files are named ``.<final name>.<pid>.tmp`` in the final file's folder.
TMP_SUFFIX = ".tmp"


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


# --------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------

def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``.<name>.<pid>.tmp`` next to ``path``, then rename it to ``path``.

    On any exception (``KeyboardInterrupt`` included) the temporary file is removed and the
    exception re-raised; ``path`` is either its old content or the new one, never a mix.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = None) -> Path:
    """Write ``obj`` as JSON, atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def write_png(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write an ``HxW`` (grey) or ``HxWx3`` (RGB) uint8 array as a PNG, atomically."""
    from PIL import Image

    arr = np.ascontiguousarray(array)
    if arr.dtype != np.uint8:
        raise ValueError(f"PNG pixels must be uint8, got dtype {arr.dtype}")
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"PNG array must be HxW or HxWx3, got shape {arr.shape}")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())


def safe_name(text: str) -> str:
    """``text`` reduced to ``[A-Za-z0-9_-]`` (other runs of characters become ``_``) for file names."""
    out = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")
    return out or "object"


# --------------------------------------------------------------------------------------------
# Classes
# --------------------------------------------------------------------------------------------

def normalize_phrase(phrase: str) -> str:
    """Lower case, dots dropped, white space collapsed: ``" Car.  Wheel"`` -> ``"car wheel"``."""
    return " ".join(str(phrase).lower().replace(".", " ").split())


class ClassMap:
    """Maps the phrases GroundingDINO returns to stable class names and ids (from 0).

    Two modes:

    - **fixed** (:meth:`parse`): classes named up front, each with the prompt phrases that find it,
      e.g. ``ClassMap.parse(["car=car. automobile", "wheel"])``. :attr:`prompt` is every phrase
      joined with ``". "`` (``"car. automobile. wheel"``). A predicted phrase maps to the class one
      of whose prompt phrases equals it; else to the class with the longest prompt phrase found in
      it as whole words; else to the class sharing the most words with it; else to nothing
      (:meth:`class_id` returns ``None`` and the detection should be dropped). Ties go to the
      class named first.
    - **open** (``ClassMap()``): every distinct (normalised, non-empty) phrase is a class, ids in
      order of first appearance; :meth:`class_id` adds new phrases as it meets them. An empty
      phrase (GroundingDINO's best token was punctuation) maps to ``None``.

    ``ClassMap(names=[...])`` (or :meth:`from_state`) restores an open map's classes so ids stay
    stable across a resumed run.
    """

    def __init__(self, classes: Sequence[tuple[str, Sequence[str]]] | None = None, *,
                 names: Sequence[str] | None = None):
        self.fixed = classes is not None
        self._names: list[str] = []
        self._phrases: list[list[str]] = []
        if classes is not None:
            if names is not None:
                raise ValueError("pass either classes (a fixed map) or names (an open map), not both")
            if not classes:
                raise InvalidClassMapError("a fixed class map needs at least one class, got none")
            owner: dict[str, str] = {}
            for name, phrases in classes:
                name = str(name).strip()
                if not name:
                    raise InvalidClassMapError("class names must be non-empty, got an empty name")
                if name in self._names:
                    raise InvalidClassMapError(f"class {name!r} is named twice; name each class once")
                norm = [normalize_phrase(p) for p in phrases]
                norm = [p for i, p in enumerate(norm) if p and p not in norm[:i]]
                if not norm:
                    raise InvalidClassMapError(
                        f"class {name!r} has no prompt phrase; expected e.g. '{name}={name}'"
                    )
                for p in norm:
                    if p in owner:
                        raise InvalidClassMapError(
                            f"prompt phrase {p!r} is given for both class {owner[p]!r} and {name!r}; "
                            "each phrase must find one class"
                        )
                    owner[p] = name
                self._names.append(name)
                self._phrases.append(norm)
        elif names is not None:
            for n in names:
                self.class_id(n)

    @classmethod
    def parse(cls, specs: Iterable[str]) -> "ClassMap":
        """A fixed map from specs ``"name=phrase. phrase"``, one class each.

        A spec without ``=`` makes one class per phrase: ``"car. wheel"`` is the classes ``car``
        and ``wheel``, each found by its own name.
        """
        classes: list[tuple[str, list[str]]] = []
        for spec in specs:
            if not isinstance(spec, str) or not spec.strip():
                raise InvalidClassMapError(
                    f"class spec must be a non-empty string such as 'car=car. automobile', got {spec!r}"
                )
            if "=" in spec:
                name, _, rest = spec.partition("=")
                if "=" in rest:
                    raise InvalidClassMapError(
                        f"class spec {spec!r} holds more than one '='; expected 'name=phrase. phrase'"
                    )
                phrases = [p for p in rest.split(".") if p.strip()]
                if not name.strip():
                    raise InvalidClassMapError(
                        f"class spec {spec!r} has an empty name before '='; expected 'name=phrase. phrase'"
                    )
                classes.append((name.strip(), phrases))
            else:
                for p in spec.split("."):
                    if p.strip():
                        classes.append((p.strip(), [p]))
        return cls(classes)

    @classmethod
    def from_state(cls, state: dict) -> "ClassMap":
        """Rebuild a map from :meth:`state`."""
        if state.get("fixed"):
            return cls([(c["name"], c["phrases"]) for c in state["classes"]])
        return cls(names=[c["name"] for c in state["classes"]])

    def state(self) -> dict:
        """A JSON-able description (see :meth:`from_state`)."""
        return {
            "fixed": self.fixed,
            "classes": [
                {"name": n, "phrases": list(p)} for n, p in zip(self._names, self._phrases)
            ],
        }

    @property
    def names(self) -> list[str]:
        """Class names, index = class id."""
        return list(self._names)

    @property
    def prompt(self) -> str:
        """The prompt that finds every class of a fixed map: all phrases joined with ``". "``."""
        if not self.fixed:
            raise ValueError("an open class map has no prompt of its own; classes come from the prompt")
        return ". ".join(p for phrases in self._phrases for p in phrases)

    def __len__(self) -> int:
        return len(self._names)

    def class_id(self, phrase: str) -> int | None:
        """The class id of a predicted phrase, or ``None`` if it matches no class (see class doc)."""
        p = normalize_phrase(phrase)
        if not p:
            return None
        if not self.fixed:
            if p not in self._names:
                self._names.append(p)
                self._phrases.append([p])
            return self._names.index(p)
        for i, phrases in enumerate(self._phrases):
            if p in phrases:
                return i
        best, best_len = None, 0
        padded = f" {p} "
        for i, phrases in enumerate(self._phrases):
            for q in phrases:
                if f" {q} " in padded and len(q) > best_len:
                    best, best_len = i, len(q)
        if best is not None:
            return best
        words = set(p.split())
        best_shared = 0
        for i, phrases in enumerate(self._phrases):
            for q in phrases:
                shared = len(words & set(q.split()))
                if shared > best_shared:
                    best, best_shared = i, shared
        return best

    def name(self, class_id: int) -> str:
        return self._names[class_id]


def class_nms(boxes: Any, scores: Any, class_ids: Sequence[int] | Any, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes kept by per-class NMS, in ascending order (the input's order).

    ``boxes`` ``(N, 4)`` xyxy, ``scores`` ``(N,)``, ``class_ids`` ``(N,)``: a box is dropped when a
    higher-scoring box *of the same class* overlaps it with IoU above ``iou_threshold``; boxes of
    different classes never suppress each other (``torchvision.ops.batched_nms``).
    """
    from torchvision.ops import batched_nms

    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    b = torch.as_tensor(_as_numpy(boxes), dtype=torch.float32).reshape(-1, 4)
    s = torch.as_tensor(_as_numpy(scores), dtype=torch.float32).reshape(-1)
    c = torch.as_tensor(_as_numpy(class_ids), dtype=torch.int64).reshape(-1)
    if not len(b) == len(s) == len(c):
        raise ValueError(f"got {len(b)} boxes, {len(s)} scores and {len(c)} class ids; expected equal")
    if len(b) == 0:
        return torch.zeros(0, dtype=torch.int64)
    keep = batched_nms(b, s, c, float(iou_threshold))
    return torch.sort(keep).values


# --------------------------------------------------------------------------------------------
# COCO
# --------------------------------------------------------------------------------------------

def mask_to_rle(mask: Any) -> dict:
    """A binary ``(H, W)`` mask -> COCO compressed RLE ``{"size": [H, W], "counts": str}``."""
    from pycocotools import mask as mask_util

    arr = _as_numpy(mask)
    if arr.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {arr.shape}")
    rle = mask_util.encode(np.asfortranarray(arr > 0, dtype=np.uint8))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


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
    m = _as_numpy(masks).astype(bool)
    b = _as_numpy(boxes).astype(np.float64).reshape(-1, 4)
    s = _as_numpy(scores).astype(np.float64).reshape(-1)
    if not len(m) == len(b) == len(s) == len(class_names):
        raise ValueError(
            f"got {len(m)} masks, {len(b)} boxes, {len(s)} scores and {len(class_names)} class names; "
            "expected equal counts"
        )
    if len(m) and m.shape[1:] != (height, width):
        raise ValueError(f"masks are {m.shape[1:]} but the image is {(height, width)} (H, W)")
    anns = []
    for mask, box, score, name in zip(m, b, s, class_names):
        x0, y0, x1, y1 = (float(v) for v in box)
        anns.append({
            "class": str(name),
            "segmentation": mask_to_rle(mask),
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
    m = _as_numpy(masks)
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
    m = _as_numpy(masks)
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
