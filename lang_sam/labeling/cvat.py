"""CVAT pre-annotations: "CVAT for images 1.1" and "CVAT for video 1.1" XML.

- :func:`cvat_mask`: a mask as CVAT's mask RLE (``rle``, ``left``, ``top``, ``width``,
  ``height``: run lengths over the mask's tight box, row by row, first of 0s), what CVAT's own
  ``mask2Rle`` writes;
- :func:`cvat_images_xml`: one image run's ``annotations.xml`` from the images' COCO records
  (:func:`lang_sam.labeling.formats.coco_image_record`): one ``<image>`` per image, one
  ``<mask>`` or ``<polygon>`` per instance;
- :class:`CvatTrackWriter` (``lang-sam track --format cvat``): ``cvat/<key>.xml``, one ``<track>``
  per track id, a keyframe shape on every frame the track is seen, an ``outside`` shape on the
  first frame it is not seen after being seen (CVAT interpolates between keyframes, so a gap and
  the end of a track must be marked).

Each instance's label is its class, its score the text attribute ``score`` (CVAT's ``number``
attributes hold whole numbers only), ``source="auto"``. Coordinates are image pixels (polygon
points ``x,y`` of the mask's largest outer contour, as LabelMe and YOLO write it; masks without
one over :data:`~lang_sam.masks.MIN_AREA` pixels get no polygon, empty masks no mask).
Nothing here prints; files are written atomically (:mod:`lang_sam.labeling.atomic`).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lang_sam.labeling.atomic import atomic_write_text
from lang_sam.labeling.formats import check_shape, largest_polygon, polygon_loss, rle_to_mask
from lang_sam.labeling.video_formats import VideoSink, track_class
from lang_sam.masks import CropMask
from lang_sam.validation import as_numpy

__all__ = ["cvat_mask", "cvat_shape", "cvat_images_xml", "CvatTrackWriter"]


def cvat_mask(mask: Any) -> dict[str, str] | None:
    """A mask (``(H, W)`` or a :class:`~lang_sam.masks.CropMask`) as the attributes of CVAT's
    ``<mask>``: ``rle`` (``"3, 5, 2"``: run lengths over the tight box, row by row, starting with
    a run of 0s, 0 when the first pixel is set), ``left``, ``top``, ``width``, ``height`` (pixels);
    None for an empty mask."""
    crop = (mask if isinstance(mask, CropMask) else CropMask.from_dense(as_numpy(mask) > 0)).tight()
    if crop.area == 0:
        return None
    flat = crop.mask.reshape(-1)
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat[0]:
        runs.insert(0, 0)
    h, w = crop.mask.shape
    return {"rle": ", ".join(map(str, runs)), "left": str(crop.x0), "top": str(crop.y0),
            "width": str(w), "height": str(h)}


def cvat_shape(mask: Any, shape: str) -> tuple[str, dict[str, str]] | None:
    """``(tag, attributes)`` of one instance's CVAT shape: ``("mask", cvat_mask(...))`` or
    ``("polygon", {"points": "x0,y0;x1,y1;..."})`` (2 decimals); None when the mask has none."""
    if check_shape(shape) == "mask":
        attrs = cvat_mask(mask)
        return None if attrs is None else ("mask", attrs)
    poly = largest_polygon(mask)
    if poly is None:
        return None
    return "polygon", {"points": ";".join(f"{x:.2f},{y:.2f}" for x, y in poly.tolist())}


def _meta(root: ET.Element, name: str, size: int, mode: str, class_names: Sequence[str]) -> ET.Element:
    """``<version>`` and ``<meta><task>`` (name, size, mode, labels with the ``score`` attribute)."""
    ET.SubElement(root, "version").text = "1.1"
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    for tag, text in (("name", name), ("size", str(size)), ("mode", mode), ("overlap", "0")):
        ET.SubElement(task, tag).text = text
    labels = ET.SubElement(task, "labels")
    for n in class_names:
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = str(n)
        ET.SubElement(label, "type").text = "any"
        attr = ET.SubElement(ET.SubElement(label, "attributes"), "attribute")
        for tag, text in (("name", "score"), ("mutable", "False"), ("input_type", "text"),
                          ("default_value", ""), ("values", "")):
            ET.SubElement(attr, tag).text = text
    return task


def _add_shape(parent: ET.Element, tag: str, attrs: dict[str, str], label: str | None, score: float,
               **more: str) -> None:
    own = {"label": label, "source": "auto"} if label is not None else {}  # a track's shapes: the track's
    el = ET.SubElement(parent, tag, {**own, **more, "occluded": "0", **attrs, "z_order": "0"})
    ET.SubElement(el, "attribute", {"name": "score"}).text = repr(round(float(score), 6))


def _xml(root: ET.Element) -> str:
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def cvat_images_xml(records: Sequence[dict], class_names: Sequence[str], shape: str = "mask",
                    name: str = "lang-sam") -> tuple[str, dict[str, int]]:
    """"CVAT for images 1.1" XML of image ``records`` (COCO records: ``file_name``, ``width``,
    ``height``, ``annotations`` with ``class``, RLE ``segmentation``, ``score``), ``<image id>``
    0, 1, ... in order, ``name`` the ``file_name``; and how many instances got no shape, by reason
    (``{"empty mask": 1}``, the reasons of :func:`~lang_sam.labeling.formats.polygon_loss`).

    Raises:
        InvalidArgumentError: ``shape`` is not one of :data:`~lang_sam.labeling.formats.SHAPES`.
    """
    check_shape(shape)
    root = ET.Element("annotations")
    _meta(root, name, len(records), "annotation", class_names)
    dropped: dict[str, int] = {}
    for i, rec in enumerate(records):
        image = ET.SubElement(root, "image", {"id": str(i), "name": str(rec["file_name"]),
                                               "width": str(rec["width"]), "height": str(rec["height"])})
        for ann in rec["annotations"]:
            mask = CropMask.from_dense(rle_to_mask(ann["segmentation"]))
            got = cvat_shape(mask, shape)
            if got is None:
                why = polygon_loss(mask) or "empty mask"
                dropped[why] = dropped.get(why, 0) + 1
                continue
            _add_shape(image, got[0], got[1], str(ann["class"]), ann["score"])
    return _xml(root), dropped


class CvatTrackWriter(VideoSink):
    """``cvat/<key>.xml``: a video's tracks as "CVAT for video 1.1" (``mode`` interpolation,
    ``original_size`` the frame size), written atomically by :meth:`close`.

    Each track id is a ``<track id label source="auto">`` (label: its first phrase as a class,
    :func:`~lang_sam.labeling.video_formats.track_class`); each frame the track has a shape on is
    a ``keyframe="1" outside="0"`` shape (CVAT interpolates only between keyframes); the first
    frame it has none on after one it had (a gap, or the end of the track before the video's last
    frame) repeats its last shape with ``outside="1"``. Frame numbers are 0-based. Holds each
    shape's attributes (RLE or points text) until :meth:`close`, never the masks."""

    def __init__(self, path: str | os.PathLike, root: str | os.PathLike, video: str, shape: str = "mask"):
        self.path, self.root, self.video = Path(path), Path(root), video
        self.shape = check_shape(shape)
        self.tracks: dict[int, dict[str, Any]] = {}
        self.frames = 0
        self.size: tuple[int, int] = (0, 0)

    def add(self, frame, pixels=None) -> None:
        masks = as_numpy(frame.masks).astype(bool).reshape(-1, *frame.image_size)
        ids = as_numpy(frame.track_ids).astype(np.int64).reshape(-1).tolist()
        scores = as_numpy(frame.scores).astype(np.float64).reshape(-1).tolist()
        f = int(frame.frame_index)
        self.frames, self.size = max(self.frames, f + 1), tuple(frame.image_size)
        for m, tid, score, phrase in zip(masks, ids, scores, frame.phrases):
            got = cvat_shape(m, self.shape)
            if got is None:
                continue
            t = self.tracks.setdefault(tid, {"label": track_class(phrase), "shapes": [], "last": None})
            if t["last"] is not None and t["last"] < f - 1:
                t["shapes"].append((t["last"] + 1, "1", *t["shapes"][-1][2:]))
            t["shapes"].append((f, "0", got[0], got[1], score))
            t["last"] = f

    def xml(self) -> str:
        """The file's text for the frames added so far."""
        root = ET.Element("annotations")
        names = list(dict.fromkeys(t["label"] for t in self.tracks.values()))
        task = _meta(root, self.video, self.frames, "interpolation", names)
        for tag, text in (("start_frame", "0"), ("stop_frame", str(max(self.frames - 1, 0)))):
            ET.SubElement(task, tag).text = text
        size = ET.SubElement(task, "original_size")
        ET.SubElement(size, "width").text, ET.SubElement(size, "height").text = str(self.size[1]), str(self.size[0])
        ET.SubElement(root[1], "source").text = self.video  # <meta>, after <version>: the video's path
        for tid in sorted(self.tracks):
            t = self.tracks[tid]
            shapes = list(t["shapes"])
            if t["last"] < self.frames - 1:
                shapes.append((t["last"] + 1, "1", *shapes[-1][2:]))
            track = ET.SubElement(root, "track", {"id": str(tid), "label": t["label"], "source": "auto"})
            for f, outside, tag, attrs, score in shapes:
                _add_shape(track, tag, attrs, None, score, frame=str(f), keyframe="1", outside=outside)
        return _xml(root)

    def close(self) -> list[str]:
        atomic_write_text(self.path, self.xml())
        return [self.path.relative_to(self.root).as_posix()]
