"""Label Studio pre-annotations: an import file of tasks with ``predictions``, and the labelling
config that names the classes.

- :func:`brush_rle`: a binary mask in Label Studio's own brush RLE (the ``rle-pack`` bit stream its
  frontend decodes), byte for byte what ``label_studio_sdk.converter.brush.mask2rle`` makes of
  the mask's 0/255 image;
- :func:`image_reference`: where Label Studio finds an image: its local-files storage
  (``/data/local-files/?d=<path>``) or a URL prefix;
- :func:`labelstudio_task`: one image's task from its COCO record
  (:func:`lang_sam.labeling.formats.coco_image_record`): one mask region per instance (brush, or
  polygon), one rectangle region per box, each with its score;
- :func:`labeling_config`: the ``<View>`` XML to paste into the project's labelling interface.

Coordinates: Label Studio's rectangles and polygons are in percent of the image's width and
height (``0..100``, from the top-left corner); brush RLE covers the whole ``H x W`` image, row by
row, four bytes (RGBA) a pixel. Nothing here prints; files are written by
:mod:`lang_sam.labeling.tool_formats`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import numpy as np

from lang_sam.errors import InvalidMaskError
from lang_sam.labeling.formats import check_shape, largest_polygon, polygon_loss, rle_to_mask

__all__ = [
    "LOCAL_FILES_PREFIX", "brush_rle", "image_reference", "labeling_config", "labelstudio_task",
    "percent_box", "percent_points",
]

#: Label Studio's local-files storage serves ``/data/local-files/?d=<path relative to its
#: LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT>``; the default root is ``/``.
LOCAL_FILES_PREFIX = "/data/local-files/?d="

#: The brush stream's header: word size 8 bits, run-length field sizes 3, 4, 8, 16 bits (Label
#: Studio's encoder's defaults).
_HEADER_SIZES = (3, 4, 8, 16)


def brush_rle(mask: Any) -> list[int]:
    """An ``(H, W)`` binary mask (non-zero is True) as Label Studio brush RLE: a list of byte values.

    The stream encodes the mask's RGBA image (``H * W * 4`` bytes, 255 where the mask is, row by
    row): a 32-bit value count, the word size (8) and the four run-length field sizes, then one
    run token per run (``1``, the field index, the run length - 1, the 8-bit value; runs over
    65536 values split), zero-padded to whole bytes. It equals
    ``label_studio_sdk.converter.brush.mask2rle(mask.astype(np.uint8) * 255)`` (which builds the
    same bits one character at a time), padding included.

    Raises:
        InvalidMaskError: ``mask`` is not 2-D.
    """
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise InvalidMaskError(f"a brush mask must be 2-D (H, W), got shape {arr.shape}")
    flat = arr.reshape(-1) != 0
    starts = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1])
    lengths = (np.diff(np.append(starts, flat.size)) * 4).tolist()  # 4 bytes a pixel: runs of >= 4
    bits = [f"{flat.size * 4:032b}", f"{8 - 1:05b}", "".join(f"{s - 1:04b}" for s in _HEADER_SIZES)]
    for length, on in zip(lengths, flat[starts].tolist()):
        value = "11111111" if on else "00000000"
        if length <= 8:
            bits.append(f"100{length - 1:03b}{value}")
        elif length <= 16:
            bits.append(f"101{length - 1:04b}{value}")
        elif length <= 256:
            bits.append(f"110{length - 1:08b}{value}")
        else:
            while length > 1 << 16:
                bits.append(f"111{(1 << 16) - 1:016b}{value}")
                length -= 1 << 16
            bits.append(f"111{length - 1:016b}{value}")
    stream = "".join(bits)
    stream += "0" * (8 - len(stream) % 8)  # Label Studio's own padding: a whole zero byte when aligned
    return np.packbits(np.frombuffer(stream.encode("ascii"), np.uint8) - ord("0")).tolist()


def image_reference(path: str | os.PathLike, rel: str, prefix: str | None = None) -> str:
    """The task's ``data.image``: ``prefix`` + ``rel`` (the image's path relative to its input
    folder, URL-quoted) when a prefix is given (a URL such as ``https://host/photos/``, or
    ``/data/local-files/?d=photos/`` for a document root above the photos); else Label Studio's
    local-files URL of the image's absolute ``path`` (``/data/local-files/?d=home/me/a.jpg``,
    relative to the default document root ``/``)."""
    if prefix is not None:
        return prefix + quote(Path(rel).as_posix())
    return LOCAL_FILES_PREFIX + quote(Path(os.path.abspath(path)).as_posix().lstrip("/"))


def percent_box(bbox: Sequence[float], width: int, height: int) -> dict:
    """A COCO ``[x, y, w, h]`` pixel box as Label Studio's rectangle value: ``x``, ``y`` (top-left
    corner), ``width``, ``height`` in percent of the image, ``rotation`` 0."""
    x, y, w, h = (float(v) for v in bbox)
    return {"x": 100.0 * x / width, "y": 100.0 * y / height, "width": 100.0 * w / width,
            "height": 100.0 * h / height, "rotation": 0}


def percent_points(points: np.ndarray, width: int, height: int) -> list[list[float]]:
    """``(K, 2)`` pixel ``x, y`` as Label Studio's polygon points, ``[[x %, y %], ...]``."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2) * (100.0 / np.array([width, height]))
    return pts.tolist()


def labeling_config(class_names: Sequence[str], shape: str = "mask") -> str:
    """The labelling interface XML for ``class_names``: an ``Image`` named ``image`` (the tasks'
    ``$image``), ``BrushLabels`` (``shape="mask"``) or ``PolygonLabels`` (``"polygon"``) named
    ``mask``, and ``RectangleLabels`` named ``box``, each with one ``Label`` per class.

    Raises:
        InvalidArgumentError: ``shape`` is neither ``"mask"`` nor ``"polygon"``.
    """
    tag = {"mask": "BrushLabels", "polygon": "PolygonLabels"}[check_shape(shape)]
    labels = "".join(f"    <Label value={quoteattr(str(n))}/>\n" for n in class_names)
    return (f'<View>\n  <Image name="image" value="$image" zoom="true"/>\n'
            f'  <{tag} name="mask" toName="image">\n{labels}  </{tag}>\n'
            f'  <RectangleLabels name="box" toName="image">\n{labels}  </RectangleLabels>\n</View>\n')


def labelstudio_task(record: dict, image: str, shape: str = "mask",
                     model_version: str = "lang-sam") -> tuple[dict, dict[str, int]]:
    """One image's Label Studio task from its COCO record (:func:`~lang_sam.labeling.formats.coco_image_record`:
    ``width``, ``height``, ``annotations`` with ``class``, RLE ``segmentation``, ``bbox``, ``score``).

    ``{"data": {"image": image}, "predictions": [{"model_version", "score", "result"}]}``: for
    instance ``i``, a region ``m<i>`` (``brushlabels`` with :func:`brush_rle`, or ``polygonlabels``
    with the mask's largest outer contour, :func:`~lang_sam.labeling.formats.largest_polygon`; a
    mask with no contour over :data:`~lang_sam.masks.MIN_AREA` pixels gets no polygon) and a
    region ``b<i>`` (``rectanglelabels``, the box), each with the instance's ``score``. The
    prediction's ``score`` is the mean of the instances' (0 for none). Returned with how many
    instances got no mask region, by reason (:func:`~lang_sam.labeling.formats.polygon_loss`;
    only polygons leave any out).

    Raises:
        InvalidArgumentError: ``shape`` is neither ``"mask"`` nor ``"polygon"``.
    """
    check_shape(shape)
    W, H = int(record["width"]), int(record["height"])
    size = {"to_name": "image", "original_width": W, "original_height": H, "image_rotation": 0}
    result: list[dict] = []
    dropped: dict[str, int] = {}
    for i, ann in enumerate(record["annotations"]):
        label, score = [str(ann["class"])], float(ann["score"])
        mask = rle_to_mask(ann["segmentation"])
        if shape == "mask":
            value: dict = {"format": "rle", "rle": brush_rle(mask), "brushlabels": label}
            result.append({"id": f"m{i}", "from_name": "mask", "type": "brushlabels", **size,
                           "value": value, "score": score})
        else:
            poly = largest_polygon(mask)
            if poly is None:
                why = polygon_loss(mask) or "empty mask"
                dropped[why] = dropped.get(why, 0) + 1
            else:
                value = {"points": percent_points(poly, W, H), "closed": True, "polygonlabels": label}
                result.append({"id": f"m{i}", "from_name": "mask", "type": "polygonlabels", **size,
                               "value": value, "score": score})
        result.append({"id": f"b{i}", "from_name": "box", "type": "rectanglelabels", **size,
                       "value": {**percent_box(ann["bbox"], W, H), "rectanglelabels": label}, "score": score})
    scores = [float(a["score"]) for a in record["annotations"]]
    prediction = {"model_version": model_version,
                  "score": round(sum(scores) / len(scores), 6) if scores else 0.0, "result": result}
    return {"data": {"image": image}, "predictions": [prediction]}, dropped
