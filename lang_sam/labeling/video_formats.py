"""The formats ``lang-sam track`` writes for a tracked video (:class:`~lang_sam.results.TrackedFrame` s).

Each writer is fed one frame at a time (:meth:`VideoSink.add`), holds at most one frame's
pixels, and makes its files appear atomically: nothing is visible under a final name until it is
whole (:mod:`lang_sam.labeling.atomic`). ``<key>`` is the video's path relative to its input
folder, without its suffix; frame numbers are 0-based in file names and 1-based in MOT lines.

- :class:`MotWriter` (``mot``): ``mot/<key>.txt``, MOTChallenge lines
  ``frame,id,x,y,w,h,score,-1,-1,-1`` (``frame`` from 1; ``x, y`` the box's top-left corner, ``w, h``
  its size, in frame pixels; ``score`` the detector's score of the detection that started the
  track), written when the video ends;
- :class:`CocoVideoRecord` (``coco``): one COCO image record per frame (``file_name``
  ``<key>/<frame:06d>.jpg``, ``video``, ``frame_index``) with RLE annotations carrying
  ``track_id``; :func:`coco_dataset` numbers the records of many videos into one
  ``coco/annotations.json``;
- :class:`OverlayWriter` (``overlay``): ``overlays/<key>.mp4``, masks, boxes and ``#<id> <phrase>``
  drawn on each frame, each track in its own colour (:func:`render_tracks`), H.264 via PyAV;
- :class:`TrackPngWriter` (``masks``): ``masks/<key>/<frame:06d>.png``, one 16-bit greyscale PNG per
  frame whose pixel values are track ids (0: background). Where masks overlap, the smaller mask's
  id is kept (it is drawn last: a small object in front of a large one stays visible). The PNGs
  are written into a staging folder and moved in when the video is done.
- ``cvat``: ``cvat/<key>.xml``, "CVAT for video 1.1" tracks (:class:`lang_sam.labeling.cvat.CvatTrackWriter`,
  opened by :func:`lang_sam.labeling.video_run.track_video`).
- :class:`TrackRows` (the server's ``POST /track`` answer): one JSON-able row per frame, a summary
  per track and the MOT text, kept in memory; it writes no file.

Boxes are the frame's :attr:`~lang_sam.results.TrackedFrame.boxes`: xyxy frame pixels with
``x1``/``y1`` exclusive (:func:`lang_sam.tracking.mask_boxes`), the convention of every writer
(:mod:`lang_sam.labeling.formats`): MOT's and COCO's ``w`` is the columns the mask covers.

``av`` (the ``[video]`` extra) is imported by :class:`OverlayWriter` only. Nothing here prints.
"""

from __future__ import annotations

import colorsys
import io
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from lang_sam.errors import InvalidArgumentError
from lang_sam.labeling.atomic import atomic_write_text
from lang_sam.labeling.classes import normalize_phrase

if TYPE_CHECKING:  # PyAV is imported when a video is written
    from lang_sam.results import TrackedFrame
    from lang_sam.video import FrameTap
    from lang_sam.video_io import VideoWriter
from lang_sam.validation import as_numpy

__all__ = [
    "VIDEO_FORMATS",
    "DEFAULT_VIDEO_FORMATS",
    "MAX_TRACK_ID",
    "DEFAULT_FPS",
    "VideoLayout",
    "VideoSink",
    "MotWriter",
    "mot_lines",
    "CocoVideoRecord",
    "coco_dataset",
    "track_class",
    "TrackPngWriter",
    "staging_folder",
    "track_id_image",
    "OverlayWriter",
    "render_tracks",
    "track_colour",
    "open_sinks",
    "TrackRows",
    "feed_sinks",
]

#: The formats of ``lang-sam track``, and those written when none is named.
VIDEO_FORMATS = ("mot", "coco", "overlay", "masks", "cvat")
DEFAULT_VIDEO_FORMATS = ("mot", "overlay")
#: The largest track id a 16-bit PNG of :class:`TrackPngWriter` can hold.
MAX_TRACK_ID = 65535
#: The frame rate of an overlay mp4 when the video's own is unknown.
DEFAULT_FPS = 25.0


class VideoLayout:
    """Where each output of a tracking run goes (see the module doc); ``key`` is a video's
    relative path without its suffix."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def mot(self, key: str) -> Path:
        return self.root / "mot" / f"{key}.txt"

    def overlay(self, key: str) -> Path:
        return self.root / "overlays" / f"{key}.mp4"

    def masks(self, key: str) -> Path:
        return self.root / "masks" / key

    def mask(self, key: str, frame_index: int) -> Path:
        return self.masks(key) / f"{frame_index:06d}.png"

    @property
    def coco(self) -> Path:
        return self.root / "coco" / "annotations.json"

    def cvat(self, key: str) -> Path:
        return self.root / "cvat" / f"{key}.xml"

    def rel(self, p: Path) -> str:
        return p.relative_to(self.root).as_posix()


def _frame_arrays(frame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """A :class:`~lang_sam.results.TrackedFrame`'s fields as numpy: masks ``(N, H, W)`` bool, boxes
    ``(N, 4)`` float64 xyxy, ids ``(N,)`` int64, scores ``(N,)`` float64, phrases."""
    masks = as_numpy(frame.masks).astype(bool).reshape(-1, *frame.image_size)
    boxes = as_numpy(frame.boxes).astype(np.float64).reshape(-1, 4)
    ids = as_numpy(frame.track_ids).astype(np.int64).reshape(-1)
    scores = as_numpy(frame.scores).astype(np.float64).reshape(-1)
    return masks, boxes, ids, scores, list(frame.phrases)


class VideoSink:
    """One format's writer for one video: :meth:`add` each frame in order, then :meth:`close`
    (returns the files written, relative to the output folder) or, if the video is not finished,
    :meth:`abort` (removes everything it wrote for this video: per-frame files included)."""

    def add(self, frame, pixels: np.ndarray | None = None) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> list[str]:  # pragma: no cover - interface
        raise NotImplementedError

    def abort(self) -> None:
        """Drop the unfinished output (default: nothing was written yet)."""


# --------------------------------------------------------------------------------------------
# MOT
# --------------------------------------------------------------------------------------------

def mot_lines(frame) -> list[str]:
    """A frame's MOTChallenge lines ``frame,id,x,y,w,h,score,-1,-1,-1``: ``frame`` is
    ``frame_index + 1``, ``x, y, w, h`` the box (top-left corner and size, frame pixels, 2
    decimals; from the frame's xyxy boxes, ``x1``/``y1`` exclusive, so ``w = x1 - x0`` is the
    columns the mask covers), ``score`` 4 decimals. One line per track, in the frame's order."""
    _, boxes, ids, scores, _ = _frame_arrays(frame)
    out = []
    for (x0, y0, x1, y1), tid, score in zip(boxes.tolist(), ids.tolist(), scores.tolist()):
        out.append(f"{frame.frame_index + 1},{tid},{x0:.2f},{y0:.2f},{x1 - x0:.2f},{y1 - y0:.2f},"
                   f"{score:.4f},-1,-1,-1")
    return out


class MotWriter(VideoSink):
    """``mot/<key>.txt`` (:func:`mot_lines` of every frame), written atomically by :meth:`close`."""

    def __init__(self, path: str | os.PathLike, root: str | os.PathLike):
        self.path, self.root = Path(path), Path(root)
        self.lines: list[str] = []

    def add(self, frame, pixels=None) -> None:
        self.lines.extend(mot_lines(frame))

    def close(self) -> list[str]:
        atomic_write_text(self.path, "".join(line + "\n" for line in self.lines))
        return [self.path.relative_to(self.root).as_posix()]


# --------------------------------------------------------------------------------------------
# COCO
# --------------------------------------------------------------------------------------------

def track_class(phrase: str) -> str:
    """A track's COCO category name: its phrase normalised (:func:`normalize_phrase`), or
    ``"object"`` for an empty phrase."""
    return normalize_phrase(phrase) or "object"


class CocoVideoRecord(VideoSink):
    """The COCO content of one video: a JSON-able list of per-frame records, one per frame (frames
    without tracks too), each ``{"file_name": "<key>/<frame:06d>.jpg", "width", "height",
    "video": <the video's relative path>, "frame_index", "annotations": [{"class", "track_id",
    "segmentation" (RLE), "area", "bbox" (xywh: COCO's ``toBbox`` of the mask, from the frame's
    ``x1``/``y1``-exclusive boxes), "score"}]}``. It writes no file itself: the run
    keeps it in the video's record, and :func:`coco_dataset` numbers all videos' records."""

    def __init__(self, key: str, video: str):
        self.key, self.video = key, video
        self.frames: list[dict] = []

    def add(self, frame, pixels=None) -> None:
        from lang_sam.labeling.formats import coco_image_record

        masks, boxes, ids, scores, phrases = _frame_arrays(frame)
        H, W = frame.image_size
        rec = coco_image_record(f"{self.key}/{frame.frame_index:06d}.jpg", W, H, masks, boxes, scores,
                                [track_class(p) for p in phrases])
        for ann, tid in zip(rec["annotations"], ids.tolist()):
            ann["track_id"] = int(tid)
        rec["video"], rec["frame_index"] = self.video, int(frame.frame_index)
        self.frames.append(rec)

    def close(self) -> list[str]:
        return []


def coco_dataset(videos: Iterable[Sequence[dict]]) -> dict:
    """One COCO ``annotations.json`` dict from :class:`CocoVideoRecord` frame lists (one list per
    video, in input order). Image ids are 1, 2, ... over every frame of every video, annotation
    ids 1, 2, ...; categories are the tracks' classes in order of first appearance (``category_id``
    from 1). Images carry ``video`` and ``frame_index``, annotations ``track_id`` (unique within
    a video) and ``score``."""
    cats: dict[str, int] = {}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for frames in videos:
        for rec in frames:
            image_id = len(images) + 1
            images.append({"id": image_id, "file_name": rec["file_name"], "width": rec["width"],
                           "height": rec["height"], "video": rec["video"],
                           "frame_index": rec["frame_index"]})
            for a in rec["annotations"]:
                cid = cats.setdefault(a["class"], len(cats) + 1)
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": cid,
                    "track_id": a["track_id"], "segmentation": a["segmentation"], "area": a["area"],
                    "bbox": a["bbox"], "score": a["score"], "iscrowd": 0,
                })
    return {
        "info": {"description": "lang-sam video tracks"},
        "images": images,
        "categories": [{"id": i, "name": n, "supercategory": ""} for n, i in cats.items()],
        "annotations": annotations,
    }


# --------------------------------------------------------------------------------------------
# 16-bit track-id PNGs
# --------------------------------------------------------------------------------------------

def track_id_image(frame) -> np.ndarray:
    """The ``(H, W)`` uint16 image of a frame's track ids (0 where no mask is). Masks are painted
    largest first, so where they overlap the smaller mask's id is kept.

    Raises:
        InvalidArgumentError: a track id outside ``[1, MAX_TRACK_ID]``.
    """
    masks, _, ids, _, _ = _frame_arrays(frame)
    out = np.zeros(frame.image_size, dtype=np.uint16)
    if len(ids) and (ids.max() > MAX_TRACK_ID or ids.min() < 1):
        raise InvalidArgumentError(
            f"frame {frame.frame_index}: track ids must be in [1, {MAX_TRACK_ID}] to be written as "
            f"16-bit PNG pixels, got {int(ids.min())}..{int(ids.max())}")
    areas = masks.sum((1, 2))
    for i in np.argsort(-areas, kind="stable"):
        out[masks[i]] = ids[i]
    return out


def _png16(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def staging_folder(folder: str | os.PathLike) -> Path:
    """Where :class:`TrackPngWriter` writes a video's PNGs before they are moved into ``folder``:
    ``.<folder name>.<pid>.tmp`` beside it."""
    folder = Path(folder)
    return folder.with_name(f".{folder.name}.{os.getpid()}.tmp")


class TrackPngWriter(VideoSink):
    """``masks/<key>/<frame:06d>.png``: :func:`track_id_image` of each frame (16-bit greyscale:
    read with ``np.asarray(PIL.Image.open(p))``, dtype uint16 or int32 by Pillow version, values =
    ids). Each PNG is written as its frame arrives into :func:`staging_folder` (``masks/.<key
    leaf>.<pid>.tmp/``); :meth:`close` moves them into ``masks/<key>/`` when the video is done,
    :meth:`abort` removes the staging folder: a video that fails or is interrupted leaves no
    frame of its own in ``masks/<key>/``."""

    def __init__(self, folder: str | os.PathLike, root: str | os.PathLike):
        self.folder, self.root = Path(folder), Path(root)
        self.staging = staging_folder(self.folder)
        self.written: list[str] = []

    def add(self, frame, pixels=None) -> None:
        name = f"{frame.frame_index:06d}.png"
        self.staging.mkdir(parents=True, exist_ok=True)
        (self.staging / name).write_bytes(_png16(track_id_image(frame)))
        self.written.append((self.folder / name).relative_to(self.root).as_posix())

    def close(self) -> list[str]:
        if self.staging.is_dir():
            if not self.folder.exists():
                os.replace(self.staging, self.folder)  # one rename: all the frames or none
            else:  # a folder of an earlier run of this video (or the user's notes): frame by frame
                for name in sorted(os.listdir(self.staging)):
                    os.replace(self.staging / name, self.folder / name)
                self.staging.rmdir()
        return list(self.written)

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Overlay mp4
# --------------------------------------------------------------------------------------------

def track_colour(track_id: int) -> tuple[int, int, int]:
    """A track's RGB colour, the same in every frame and video: hues by the golden ratio."""
    h = (int(track_id) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def render_tracks(pixels: np.ndarray, frame, *, alpha: float = 0.5) -> np.ndarray:
    """A frame's overlay: ``pixels`` (``HxWx3`` uint8 RGB) with each track's mask blended in its
    :func:`track_colour`, its box outlined and ``#<id> <phrase>`` written above it. Returns a new
    ``HxWx3`` uint8 array.

    Raises:
        InvalidArgumentError: ``pixels`` is not ``HxWx3`` of the frame's size.
    """
    import cv2

    masks, boxes, ids, _, phrases = _frame_arrays(frame)
    img = np.asarray(pixels)
    if img.shape[:2] != tuple(frame.image_size) or img.ndim != 3 or img.shape[2] != 3:
        raise InvalidArgumentError(
            f"frame {frame.frame_index}: pixels must be {frame.image_size[0]}x{frame.image_size[1]}x3, "
            f"got shape {img.shape}")
    out = img.astype(np.float32)
    for m, tid in zip(masks, ids.tolist()):
        out[m] = out[m] * (1 - alpha) + np.array(track_colour(tid), np.float32) * alpha
    out = np.ascontiguousarray(out.round().clip(0, 255).astype(np.uint8))
    for (x0, y0, x1, y1), tid, phrase in zip(boxes.tolist(), ids.tolist(), phrases):
        colour = track_colour(tid)
        cv2.rectangle(out, (int(round(x0)), int(round(y0))), (int(round(x1)), int(round(y1))), colour, 2)
        text = f"#{tid} {phrase}".strip()
        cv2.putText(out, text, (int(round(x0)), max(int(round(y0)) - 4, 10)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    return out


class OverlayWriter(VideoSink):
    """``overlays/<key>.mp4``: :func:`render_tracks` of every frame, encoded as it arrives by
    :class:`lang_sam.video_io.VideoWriter` (H.264, ``yuv420p``, at ``fps``; odd sizes padded by
    one black pixel) into ``.<name>.<pid>.tmp`` beside the final path, renamed by :meth:`close`;
    :meth:`abort` deletes the temporary file. Needs PyAV (``pip install 'lang-sam[video]'``).

    Raises:
        InvalidArgumentError: :meth:`add` without the frame's pixels; :meth:`close` before any frame.
    """

    def __init__(self, path: str | os.PathLike, root: str | os.PathLike, fps: float = DEFAULT_FPS):
        self.path, self.root = Path(path), Path(root)
        self.fps = fps if fps and fps > 0 else DEFAULT_FPS
        self._writer: VideoWriter | None = None

    def add(self, frame, pixels=None) -> None:
        if pixels is None:
            raise InvalidArgumentError(f"frame {frame.frame_index}: the overlay needs the frame's pixels")
        drawn = render_tracks(pixels, frame)
        if self._writer is None:
            from lang_sam.video_io import VideoWriter

            self._writer = VideoWriter(self.path, fps=self.fps)
        self._writer.write(drawn)

    def close(self) -> list[str]:
        if self._writer is None:
            raise InvalidArgumentError(f"{self.path}: no frame was written; a video has at least one")
        self._writer.close()
        self._writer = None
        return [self.path.relative_to(self.root).as_posix()]

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None


# --------------------------------------------------------------------------------------------
# Rows in memory (the server's answer)
# --------------------------------------------------------------------------------------------

class TrackRows(VideoSink):
    """A tracked video as JSON-able rows, built frame by frame in memory (what ``POST /track``
    answers, :meth:`lang_sam.serving.service.ModelService.track`); it writes no file.

    - :attr:`rows`: one dict per frame, in order: ``{"frame_index", "track_ids": [int], "boxes":
      [[x0, y0, x1, y1]] (frame pixels, 2 decimals), "scores" (4 decimals), "phrases", "masks":
      [COCO RLE]}`` (``masks`` only with ``masks=True``);
    - :attr:`tracks`: one dict per track id, ascending: ``{"track_id", "phrase", "score" (of the
      first frame it was seen on), "first_frame", "last_frame", "frames"}`` (``frames``: how many
      frames it was seen on);
    - :attr:`mot`: the MOTChallenge text, :func:`mot_lines` of every frame, each line ended by
      ``"\n"``;
    - :attr:`image_size`: ``(H, W)`` of the last frame added (``(0, 0)`` before any).
    """

    def __init__(self, *, masks: bool = True):
        self.with_masks = bool(masks)
        self.rows: list[dict] = []
        self.image_size: tuple[int, int] = (0, 0)
        self._mot: list[str] = []
        self._tracks: dict[int, dict[str, Any]] = {}

    def add(self, frame, pixels=None) -> None:
        """Add a :class:`~lang_sam.results.TrackedFrame` (``pixels`` is not used)."""
        self.image_size = frame.image_size
        ids = [int(t) for t in frame.track_ids.tolist()]
        row = {"frame_index": frame.frame_index, "track_ids": ids,
               "boxes": [[round(float(v), 2) for v in b] for b in frame.boxes.tolist()],
               "scores": [round(float(v), 4) for v in frame.scores.tolist()],
               "phrases": list(frame.phrases)}
        if self.with_masks:
            from lang_sam.labeling.formats import masks_to_rle

            row["masks"] = masks_to_rle(frame.masks)
        self.rows.append(row)
        self._mot.extend(mot_lines(frame))
        for tid, phrase, score in zip(ids, frame.phrases, row["scores"]):
            t = self._tracks.setdefault(tid, {"track_id": tid, "phrase": phrase, "score": score,
                                              "first_frame": frame.frame_index, "frames": 0})
            t["last_frame"] = frame.frame_index
            t["frames"] += 1

    @property
    def tracks(self) -> list[dict]:
        """One summary dict per track id seen so far, ascending by id."""
        return [self._tracks[k] for k in sorted(self._tracks)]

    @property
    def mot(self) -> str:
        """The MOTChallenge text of the frames added so far (``""`` for none)."""
        return "".join(line + "\n" for line in self._mot)

    def close(self) -> list[str]:
        """Nothing to write: returns ``[]``."""
        return []


def open_sinks(layout: VideoLayout, key: str, video: str, formats: Sequence[str],
               fps: float = DEFAULT_FPS) -> dict[str, VideoSink]:
    """The writers of ``formats`` for one video (``key`` its outputs' stem, ``video`` its relative
    path), by format name.

    Raises:
        InvalidArgumentError: a format not in :data:`VIDEO_FORMATS`.
    """
    sinks: dict[str, VideoSink] = {}
    for f in formats:
        if f == "mot":
            sinks[f] = MotWriter(layout.mot(key), layout.root)
        elif f == "coco":
            sinks[f] = CocoVideoRecord(key, video)
        elif f == "overlay":
            sinks[f] = OverlayWriter(layout.overlay(key), layout.root, fps)
        elif f == "masks":
            sinks[f] = TrackPngWriter(layout.masks(key), layout.root)
        else:
            raise InvalidArgumentError(f"unknown video format {f!r}: expected some of {', '.join(VIDEO_FORMATS)}")
    return sinks


def feed_sinks(
    tracked: Iterable[TrackedFrame],
    tap: FrameTap,
    sinks: Sequence[VideoSink],
    *,
    no_frame: Callable[[], BaseException],
    on_frame: Callable[[TrackedFrame], None] | None = None,
) -> list[list[str]]:
    """The one consumer of a tracked video: each :class:`~lang_sam.results.TrackedFrame` of
    ``tracked`` (:func:`lang_sam.video.predict_video` reading from ``tap``), with its pixels
    (``tap.take``), to every sink in order, then ``on_frame(frame)``; when the video ends, every
    sink is closed.

    Returns each sink's :meth:`VideoSink.close` (the files it wrote, relative to its output
    folder), in the order of ``sinks``.

    Raises:
        BaseException: ``no_frame()`` when ``tracked`` yields no frame; whatever iterating
            ``tracked``, a sink or ``on_frame`` raises. On any error (Ctrl-C included) every sink
            is aborted (its unfinished files removed) before the error goes on.
    """
    seen = False
    try:
        for frame in tracked:
            pixels = tap.take(frame.frame_index)
            for sink in sinks:
                sink.add(frame, pixels)
            seen = True
            if on_frame is not None:
                on_frame(frame)
        if not seen:
            raise no_frame()
        return [sink.close() for sink in sinks]
    except BaseException:
        for sink in sinks:
            sink.abort()
        raise
