"""Dataset formats: COCO (RLE masks), LabelMe, YOLO segmentation, instance-mask and overlay PNGs.

- :func:`mask_to_rle` / :func:`masks_to_rle` / :func:`rle_to_mask`, :func:`coco_image_record` and
  :class:`CocoBuilder`: one COCO instance-segmentation ``annotations.json`` for a whole run;
- :func:`labelme_dict`, :func:`yolo_lines`, :func:`yolo_data_yaml`, :func:`write_instance_masks`,
  :func:`write_overlay` / :func:`render_overlay`, :func:`detection_labels` (the one label text
  drawn on overlays).

Masks take one form here: a list of ``N`` :class:`~lang_sam.masks.CropMask`, what the labelling
pipeline hands every writer (tiled or not). A caller with ``(N, H, W)`` arrays (numpy or torch) may
pass them: :func:`as_crops`, at each public function's entry and nowhere else, turns them into
crops, so the writers' logic reads one form and gives the same output for both. Nothing is made
full-size per mask (RLE and polygons come from the crop and its offset; instance PNGs are
streamed row by row).

Boxes take one convention here, every writer's input: ``(N, 4)`` xyxy in image pixels with
``x1``/``y1`` exclusive (the pixel edges), so that a mask's box is ``x1 - x0`` columns wide, as
:attr:`~lang_sam.masks.CropMask.bbox`, :func:`lang_sam.tracking.mask_boxes` and COCO's ``toBbox``
of the mask's RLE give it. A detector's boxes are already in it (continuous edge coordinates);
SAM's generator's inclusive boxes are converted where they enter
(:meth:`lang_sam.results.GeneratedMasks.edge_boxes`).

Every file is written atomically (:mod:`lang_sam.labeling.atomic`). ``cv2``, ``pycocotools`` and
``torchvision`` are imported by the functions that need them. Nothing here prints.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Sequence, TypedDict

import numpy as np

from lang_sam.errors import InvalidArgumentError, InvalidMaskError
from lang_sam.labeling.atomic import atomic_open, write_json, write_png
from lang_sam.masks import CropMask, is_crop_list
from lang_sam.validation import as_numpy

__all__ = [
    "mask_to_rle",
    "masks_to_rle",
    "rle_to_mask",
    "coco_image_record",
    "CocoBuilder",
    "labelme_dict",
    "largest_polygon",
    "POLYGON_FORMATS",
    "SHAPES",
    "check_shape",
    "polygon_loss",
    "export_losses",
    "yolo_lines",
    "yolo_data_yaml",
    "write_instance_masks",
    "instance_mask_names",
    "write_mask_png",
    "write_overlay",
    "render_overlay",
    "detection_labels",
    "safe_name",
    "as_crops",
]


def safe_name(text: str) -> str:
    """``text`` reduced to ``[A-Za-z0-9_-]`` (other runs of characters become ``_``) for file names."""
    out = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")
    return out or "object"



def detection_labels(names: Sequence[str], scores: Any) -> list[str]:
    """The text drawn over each box: ``"<name> <score with 2 decimals>"``."""
    return [f"{n} {s:.2f}" for n, s in zip(names, as_numpy(scores).reshape(-1).tolist())]


def as_crops(masks: Any) -> list[CropMask]:
    """The one form the writers read: ``N`` crops as they are, ``(N, H, W)`` masks (numpy or
    torch, any dtype: non-zero is True) each as a tight :class:`~lang_sam.masks.CropMask`.

    Raises:
        InvalidMaskError: ``masks`` is neither a list of crops nor 3-D.
    """
    if is_crop_list(masks) or (isinstance(masks, (list, tuple)) and not masks):
        return list(masks)
    arr = as_numpy(masks)
    if arr.ndim != 3:
        raise InvalidMaskError(f"masks must be N CropMask or (N, H, W), got shape {arr.shape}")
    return [CropMask.from_dense(m > 0) for m in arr]


def _as_crop(mask: Any) -> CropMask:
    """One mask, ``(H, W)`` or a crop, as a crop."""
    if isinstance(mask, CropMask):
        return mask
    arr = as_numpy(mask)
    if arr.ndim != 2:
        raise InvalidMaskError(f"mask must be 2-D (H, W) or a CropMask, got shape {arr.shape}")
    return CropMask.from_dense(arr > 0)


def masks_to_rle(masks: Any) -> list[dict]:
    """``(N, H, W)`` binary masks (torch or numpy) or ``N`` crops -> COCO compressed RLE dicts
    ``{"size": [H, W], "counts": str}``, one per mask (an empty list for ``N = 0``).

    Raises:
        InvalidMaskError: ``masks`` is neither a list of crops nor 3-D.
    """
    return [m.to_rle() for m in as_crops(masks)]


def mask_to_rle(mask: Any) -> dict:
    """A binary ``(H, W)`` mask (or a :class:`CropMask`) -> COCO compressed RLE
    ``{"size": [H, W], "counts": str}``.

    Raises:
        InvalidMaskError: ``mask`` is neither a crop nor 2-D.
    """
    return _as_crop(mask).to_rle()


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

    ``masks`` ``(N, H, W)`` or ``N`` crops, ``boxes`` ``(N, 4)`` xyxy image pixels with ``x1``/``y1``
    exclusive (the module's one box convention; COCO's ``bbox`` is ``[x0, y0, x1 - x0, y1 - y0]``,
    3 decimals), ``scores`` ``(N,)``.
    JSON-able, so a run can keep one record per image on disk and rebuild ``annotations.json``
    from them.

    Raises:
        InvalidArgumentError: unequal counts of masks, boxes, scores and class names.
        InvalidMaskError: masks of another size than ``(height, width)``, or of no known form.
    """
    m = as_crops(masks)
    b = as_numpy(boxes).astype(np.float64).reshape(-1, 4)
    s = as_numpy(scores).astype(np.float64).reshape(-1)
    if not len(m) == len(b) == len(s) == len(class_names):
        raise InvalidArgumentError(
            f"got {len(m)} masks, {len(b)} boxes, {len(s)} scores and {len(class_names)} class names; "
            "expected equal counts"
        )
    shapes = {tuple(x.image_size) for x in m}
    if shapes - {(height, width)}:
        raise InvalidMaskError(f"masks are {sorted(shapes)[0]} but the image is {(height, width)} (H, W)")
    anns = []
    for mask, rle, box, score, name in zip(m, masks_to_rle(m) if len(m) else [], b, s, class_names):
        x0, y0, x1, y1 = (float(v) for v in box)
        anns.append({
            "class": str(name),
            "segmentation": rle,
            "area": mask.area,
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
        """The ``annotations.json`` content, with ``categories`` from ``class_names``.

        Raises:
            InvalidArgumentError: an annotation's class is not one of ``class_names``.
        """
        cat = {name: i + 1 for i, name in enumerate(class_names)}
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for image_id, rec in enumerate(self._records.values(), start=1):
            images.append({
                "id": image_id, "file_name": rec["file_name"],
                "width": rec["width"], "height": rec["height"],
            })
            for a in rec["annotations"]:
                if a["class"] not in cat:
                    raise InvalidArgumentError(
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
    """LabelMe JSON for one image (:func:`lang_sam.utils.generate_labelme_json`; a mask without a
    contour over :data:`lang_sam.masks.MIN_AREA` pixels gets no shape, see :func:`polygon_loss`).

    Raises:
        InvalidArgumentError: unequal counts of masks and labels.
    """
    from lang_sam.utils import generate_labelme_json

    return generate_labelme_json(masks, list(labels), image_size, image_path)


def largest_polygon(mask: Any) -> np.ndarray | None:
    """The largest outer contour of ``mask`` (``(H, W)`` or a :class:`CropMask`) as ``(K, 2)``
    float pixel x, y, or ``None``.

    Uses :func:`lang_sam.utils.get_contours` (contours of 100 pixels or less are ignored).
    """
    import cv2

    from lang_sam.utils import get_contours

    contours = get_contours(mask)
    if not contours:
        return None
    c = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.float64)
    return c if len(c) >= 3 else None


#: The formats that write an instance as a polygon, and so leave out a mask without one (see
#: :func:`polygon_loss`). COCO (RLE), ``masks`` (PNGs) and ``overlay`` keep every instance.
POLYGON_FORMATS = ("labelme", "yolo")

#: How the annotation tools' formats (``labelstudio``, ``cvat``) write an instance: a mask
#: (default) or a polygon (its largest outer contour, as :data:`POLYGON_FORMATS` do).
SHAPES = ("mask", "polygon")


def check_shape(shape: str) -> str:
    """``shape`` if it is one of :data:`SHAPES`.

    Raises:
        InvalidArgumentError: it is not.
    """
    if shape not in SHAPES:
        raise InvalidArgumentError(f"shape must be one of {', '.join(SHAPES)}, got {shape!r}")
    return shape


def polygon_loss(mask: Any) -> str | None:
    """Why ``mask`` (``(H, W)`` or a :class:`CropMask`) gives no polygon, so that LabelMe and YOLO
    leave it out: ``"empty mask"`` (no pixel), ``"outline <= MIN_AREA px"`` (every outer contour
    encloses :data:`lang_sam.masks.MIN_AREA` pixels or fewer: specks), or ``None`` (it has one).
    Decided by the same contours the writers use (:func:`lang_sam.utils.get_contours`)."""
    from lang_sam.masks import MIN_AREA
    from lang_sam.utils import get_contours

    mask = _as_crop(mask)
    if mask.area == 0:
        return "empty mask"
    return None if get_contours(mask) else f"outline <= {MIN_AREA} px"


def export_losses(masks: Any, formats: Sequence[str]) -> dict[str, dict[str, int]]:
    """For each of ``formats``, how many of ``masks`` (``(N, H, W)`` or ``N`` crops) it leaves out,
    by reason: ``{"yolo": {"empty mask": 2, "outline <= 100 px": 5}, "coco": {}, ...}``. Only the
    :data:`POLYGON_FORMATS` leave any out (:func:`polygon_loss`); the counts plus the instances
    written equal ``N`` for every format."""
    out: dict[str, dict[str, int]] = {f: {} for f in formats if f != "overlay"}
    polygon = [f for f in out if f in POLYGON_FORMATS]
    if polygon:
        m = as_crops(masks)
        for i in range(len(m)):
            why = polygon_loss(m[i])
            if why is not None:
                for f in polygon:
                    out[f][why] = out[f].get(why, 0) + 1
    return out


def yolo_lines(masks: Any, class_ids: Sequence[int], image_size: tuple[int, int]) -> list[str]:
    """YOLO segmentation rows ``"class x1 y1 x2 y2 ..."``, coordinates in [0, 1].

    One row per mask: its largest outer contour divided by (W, H). Masks without a contour (empty,
    or only specks of :data:`lang_sam.masks.MIN_AREA` pixels or fewer) are skipped:
    :func:`polygon_loss` says why, :func:`export_losses` counts them. ``image_size`` is
    ``(height, width)``.

    Raises:
        InvalidArgumentError: unequal counts of masks and class ids.
        InvalidMaskError: masks of no known form.
    """
    h, w = int(image_size[0]), int(image_size[1])
    m = as_crops(masks)
    if len(m) != len(class_ids):
        raise InvalidArgumentError(f"got {len(m)} masks but {len(class_ids)} class ids")
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


def instance_mask_names(labels: Sequence[str]) -> list[str]:
    """The file names :func:`write_instance_masks` gives ``labels``' masks: ``<index:03d>_<label>.png``."""
    return [f"{i:03d}_{safe_name(label)}.png" for i, label in enumerate(labels)]


def write_instance_masks(folder: str | os.PathLike, masks: Any, labels: Sequence[str]) -> list[Path]:
    """One ``HxW`` 0/255 PNG per mask, ``<folder>/<index:03d>_<label>.png``
    (:func:`instance_mask_names`); other files in ``folder`` are left alone.

    Crops are written by :func:`write_mask_png` (streamed: no full-size array).

    Raises:
        InvalidArgumentError: unequal counts of masks and labels.
        InvalidMaskError: masks of no known form.
        OSError: a file cannot be written.
    """
    folder = Path(folder)
    m = as_crops(masks)
    if len(m) != len(labels):
        raise InvalidArgumentError(f"got {len(m)} masks but {len(labels)} labels")
    return [write_mask_png(folder / name, mask) for mask, name in zip(m, instance_mask_names(labels))]


#: Rows of zeros compressed once and repeated by :func:`write_mask_png` (about 1 MB of pixels).
_ZERO_BLOCK_BYTES = 1 << 20


class _PngState(TypedDict):
    """The streaming PNG writer's running state: the zlib stream's Adler-32 and the IDAT bytes
    not yet written."""

    adler: int
    buf: bytearray


def write_mask_png(path: str | os.PathLike, mask: CropMask, *, level: int = 6) -> Path:
    """Write a crop's full-size ``H x W`` 0/255 greyscale PNG without a full-size array, atomically.

    The PNG's rows are streamed: each run of all-zero rows outside the crop reuses one block of
    zero rows compressed once (independent deflate blocks after a full flush), so time and memory
    go with the crop (plus about ``H * W / 2**20`` KB of output for the empty part), not with
    ``H x W``. Decodes to exactly ``mask.to_dense() * 255``.
    """
    import struct
    import zlib

    H, W = mask.image_size
    row_bytes = W + 1  # filter byte 0 ("None"), then W pixels
    x0, y0, x1, y1 = mask.bbox
    block_rows = max(1, _ZERO_BLOCK_BYTES // row_bytes)

    def deflate(data: bytes) -> bytes:  # an independent, byte-aligned, non-final deflate piece
        c = zlib.compressobj(level, zlib.DEFLATED, -15)
        return c.compress(data) + c.flush(zlib.Z_FULL_FLUSH)

    zero_block = deflate(bytes(row_bytes * block_rows))
    state: _PngState = {"adler": 1, "buf": bytearray()}

    def chunk(f, tag: bytes, data: bytes) -> None:
        f.write(struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    def emit(f, data: bytes) -> None:
        state["buf"] += data
        if len(state["buf"]) >= 1 << 20:
            chunk(f, b"IDAT", bytes(state["buf"]))
            state["buf"].clear()

    def zero_rows(f, n: int) -> None:
        a, b = state["adler"] & 0xFFFF, state["adler"] >> 16
        state["adler"] = (((b + n * row_bytes * a) % 65521) << 16) | a  # zeros leave a unchanged
        for _ in range(n // block_rows):
            emit(f, zero_block)
        if n % block_rows:
            emit(f, deflate(bytes(row_bytes * (n % block_rows))))

    with atomic_open(path) as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        chunk(f, b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 0, 0, 0, 0))  # 8-bit greyscale
        emit(f, b"\x78\x9c")  # zlib header: deflate, 32 KiB window
        zero_rows(f, y0)
        if y1 > y0:
            c = zlib.compressobj(level, zlib.DEFLATED, -15)
            rows = np.zeros((min(256, y1 - y0), row_bytes), dtype=np.uint8)
            for start in range(0, y1 - y0, len(rows)):
                part = mask.mask[start:start + len(rows)]
                rows[:len(part), 1 + x0:1 + x1] = part * np.uint8(255)
                data = rows[:len(part)].tobytes()
                state["adler"] = zlib.adler32(data, state["adler"])
                emit(f, c.compress(data))
            emit(f, c.flush(zlib.Z_FULL_FLUSH))
        zero_rows(f, H - y1)
        emit(f, zlib.compressobj(level, zlib.DEFLATED, -15).flush(zlib.Z_FINISH))  # final empty block
        emit(f, struct.pack(">I", state["adler"]))
        chunk(f, b"IDAT", bytes(state["buf"]))
        chunk(f, b"IEND", b"")
    return Path(path)


def write_overlay(path: str | os.PathLike, image: Any, masks: Any, boxes: Any,
                  labels: Sequence[str], *, max_pixels: int | None = None) -> Path:
    """The overlay PNG (:func:`render_overlay`: red boxes, labels, cyan masks); ``boxes`` xyxy
    image pixels, ``x1``/``y1`` exclusive.

    Raises:
        InvalidArgumentError: unequal counts of boxes and labels (or masks).
        OSError: the file cannot be written.
    """
    return write_png(path, render_overlay(image, masks, boxes, labels, max_pixels=max_pixels))


def _nearest(n_out: int, n_in: int) -> np.ndarray:
    """For each of ``n_out`` output pixels, the input pixel whose area holds its centre."""
    return np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)


def render_overlay(image: Any, masks: Any, boxes: Any, labels: Sequence[str], *,
                   max_pixels: int | None = None) -> np.ndarray:
    """The overlay as an ``h x w x 3`` uint8 array: :func:`lang_sam.utils.draw_image` (red boxes
    with labels, cyan masks, black where masks overlap) of ``image`` (an ``HxWx3`` array or an
    RGB PIL image).

    ``boxes``: ``(N, 4)`` xyxy image pixels, ``x1``/``y1`` exclusive (the module's convention).
    ``masks`` are ``(N, H, W)`` or ``N`` crops; crops are drawn through two image-size layers
    (covered by one mask, by several), which draws exactly what ``N`` dense masks would. With
    ``max_pixels`` and an image larger than that, the overlay is drawn on a copy downscaled to
    at most ``max_pixels`` (box filter for the image, nearest pixel for the masks, boxes scaled),
    so its memory is that of the copy whatever the image's size.

    Raises:
        InvalidArgumentError: unequal counts of boxes and labels (or masks).
        InvalidMaskError: masks of no known form.
    """
    from PIL import Image

    from lang_sam.utils import draw_image

    pil = image if isinstance(image, Image.Image) else None
    W, H = pil.size if pil is not None else (np.asarray(image).shape[1], np.asarray(image).shape[0])
    w, h = W, H
    if max_pixels is not None and W * H > max_pixels:
        scale = (max_pixels / (W * H)) ** 0.5
        w, h = max(1, int(W * scale)), max(1, int(H * scale))
    if (w, h) != (W, H):
        small = (pil if pil is not None else Image.fromarray(np.asarray(image))).resize((w, h), Image.Resampling.BOX)
        pixels = np.asarray(small)
    else:
        pixels = np.asarray(pil) if pil is not None else image
    ys, xs = _nearest(h, H), _nearest(w, W)
    b = as_numpy(boxes).astype(np.float32).reshape(-1, 4) * np.array([w / W, h / H, w / W, h / H], np.float32)
    count = np.zeros((h, w), dtype=np.uint8)
    for m in as_crops(masks):
        x0, y0, x1, y1 = m.bbox
        r = np.flatnonzero((ys >= y0) & (ys < y1))
        c = np.flatnonzero((xs >= x0) & (xs < x1))
        if len(r) and len(c):
            hit = m.mask[np.ix_(ys[r] - y0, xs[c] - x0)]
            window = count[r[0]:r[-1] + 1, c[0]:c[-1] + 1]
            window += (hit & (window < 2)).astype(np.uint8)
    drawn = np.stack([count >= 1, count >= 2])
    return draw_image(pixels, drawn, b if (w, h) != (W, H) else boxes, labels)
