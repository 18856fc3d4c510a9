"""Text-prompted video: detect on key frames, follow objects between them, keep ids stable.

:func:`predict_video` (and :meth:`LangSAM.predict_video`, which runs it on the model's
:class:`~lang_sam.engines.Engines`) reads a video one frame at
a time (:mod:`lang_sam.video_io`) and yields one :class:`~lang_sam.results.TrackedFrame` per frame:

1. **Key frames.** The detector (GroundingDINO, through :func:`lang_sam.pipeline.detect`, so the
   prompt and thresholds are checked as :meth:`LangSAM.predict` checks them, before any frame is
   read) runs on every frame until one has detections (an empty start is fine), then on every
   ``detect_every``-th frame after that one.
2. **Propagation.** The segmenter is a :class:`~lang_sam.models.base.VideoSegmenter` (SAM 2.1's
   video predictor): fed every frame in order, it returns the mask of every object it follows.
3. **New objects.** On a key frame with detections, each detected box (the ``max_candidates``
   highest-scoring) is given to the video segmenter as a candidate object on that very frame, so its mask comes from the same pass as the
   tracks' masks. :class:`~lang_sam.tracking.TrackTable` then matches candidates to live tracks by
   mask IoU (greedy, ``iou_threshold``, default 0.5): a candidate overlapping a live track (or a
   better-scored candidate) by that much is the same object and is dropped from the session at
   once; the others become new tracks, ids from 1, never reused. So objects appearing mid-video
   are tracked from the first key frame that sees them.
4. **Ending.** A track whose mask is empty on ``lost_after`` consecutive frames ends (it is dropped
   from the segmenter's session, freeing its memory).

**Engines that track text by themselves** (a :class:`~lang_sam.models.base.TextVideoSegmenter`,
SAM 3's video model, ``sam_type="sam3"``): no GroundingDINO and no key frames. The engine detects
every phrase of the prompt (one concept each) on every frame and keeps its own object ids; this
module only maps them to track ids (from 1, in order of first appearance, never reused) and
yields the same :class:`~lang_sam.results.TrackedFrame` (``scores`` there are the engine's
per-frame detection scores). ``detect_every``, ``iou_threshold``, ``lost_after``, ``max_candidates`` and the
thresholds do not apply (the engine's own settings decide; a non-default value is warned about,
:class:`~lang_sam.errors.IgnoredArgumentWarning`, once per call).

Memory is flat with video length: frames are decoded one at a time and not kept (the yielded
result holds the masks of one frame), the track table holds a few numbers per live track, and the
video segmenter keeps only the frames its memory attends to (its own contract).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Callable, Iterable, Iterator, cast

import numpy as np

import torch

from lang_sam import pipeline
from lang_sam.engines import Engines
from lang_sam.errors import (
    IgnoredArgumentWarning,
    InvalidArgumentError,
    InvalidResultError,
    LangSAMError,
    TrackingNotSupportedError,
)
from lang_sam.models.registry import registered_specs
from lang_sam.models.base import TextVideoSegmenter, VideoSegmenter, engine_for
from lang_sam.results import TrackedFrame
from lang_sam.tracking import IOU_THRESHOLD, LOST_AFTER, TrackTable, mask_boxes
from lang_sam.validation import BOX_THRESHOLD, TEXT_THRESHOLD
from lang_sam.video_io import open_video

logger = logging.getLogger(__name__)

__all__ = ["predict_video", "video_types", "FrameTap", "DETECT_EVERY", "MAX_CANDIDATES"]

#: Default key-frame interval: detect on every 10th frame after the first with detections.
DETECT_EVERY = 10
#: Default cap on a key frame's candidates (its highest-scoring detections).
MAX_CANDIDATES = 20
#: ``progress("track", frames_done, frame_count)``; ``frame_count`` None when not known in advance.
VideoProgress = Callable[[str, int, "int | None"], None]


class FrameTap:
    """The frames of a video on their way into :func:`predict_video`, kept by index until the
    consumer takes them with the frame's :class:`~lang_sam.results.TrackedFrame` (an overlay needs
    the pixels the masks were made from).

    Iterate it as ``predict_video``'s ``video``; for each yielded ``tracked``,
    ``tap.take(tracked.frame_index)`` returns that frame. At most the frames that ``predict_video``
    has read ahead are held: taking frame ``i`` drops every frame before it.

    Args:
        frames: the frames, in order (``HxWx3`` uint8 RGB arrays, as
            :func:`lang_sam.video_io.open_video` yields them; any item is handed on as it is).
    """

    def __init__(self, frames: Iterable[np.ndarray]):
        self.frames = frames
        self.held: dict[int, np.ndarray] = {}

    def __iter__(self) -> Iterator[np.ndarray]:
        """The frames, each held under its 0-based index until taken. Raises what iterating
        ``frames`` raises."""
        for i, frame in enumerate(self.frames):
            self.held[i] = frame
            yield frame

    def take(self, index: int) -> np.ndarray | None:
        """Frame ``index`` (None when it was never read or already taken); frames before it are
        dropped."""
        for i in [i for i in self.held if i < index]:
            del self.held[i]
        return self.held.pop(index, None)


def video_types() -> list[str]:
    """The registered ``sam_type`` names whose engine is a
    :class:`~lang_sam.models.base.VideoSegmenter` or a
    :class:`~lang_sam.models.base.TextVideoSegmenter` (each engine module is imported to tell)."""
    out = []
    for spec in registered_specs("sam"):
        try:
            cls = engine_for(spec)
        except LangSAMError:
            continue  # an engine that cannot be imported here cannot track here either
        if cls.can_track:
            out.append(spec.name)
    return out


def _check_tracker(engines: Engines) -> None:
    seg = engines.segmenter
    if seg.can_track:  # it implements VideoSegmenter or TextVideoSegmenter
        return
    types = video_types()
    can = ", ".join(types) if types else "none is registered"
    raise TrackingNotSupportedError(
        f"sam_type {engines.sam_type!r} ({type(seg).__name__}) cannot follow objects through a video: "
        f"expected a video segmenter (one that follows boxes, or one that tracks text itself; "
        f"sam_type one of: {can})", sam_type=engines.sam_type, video_types=types)


def predict_video(
    engines: Engines,
    video: Any,
    text_prompt: str,
    *,
    detect_every: int = DETECT_EVERY,
    box_threshold: float = BOX_THRESHOLD,
    text_threshold: float = TEXT_THRESHOLD,
    iou_threshold: float = IOU_THRESHOLD,
    lost_after: int = LOST_AFTER,
    max_candidates: int = MAX_CANDIDATES,
    offload: bool = True,
    progress: VideoProgress | None = None,
) -> Iterator[TrackedFrame]:
    """Track what ``text_prompt`` names through ``video``: one
    :class:`~lang_sam.results.TrackedFrame` per frame, in order, as each frame is processed.

    Args:
        engines: an :class:`~lang_sam.engines.Engines` whose segmenter can track (SAM 2.1, SAM 3);
            :meth:`LangSAM.predict_video` passes the model's own (``model.engines``).
        video: a video file, a folder of frame images, or any iterable of frames (PIL images or
            ``HxWx3`` uint8 RGB arrays): see :func:`lang_sam.video_io.open_video`.
        text_prompt, box_threshold, text_threshold: as in :meth:`LangSAM.predict`.
        detect_every: detect on every ``detect_every``-th frame counted from the first frame with
            detections (before it: on every frame). 1 detects on every frame.
        iou_threshold: mask IoU in (0, 1] at or above which a detection is an object already
            tracked (:mod:`lang_sam.tracking`).
        lost_after: a track ends after this many consecutive frames with an empty mask.
        max_candidates: at most this many detections of a key frame (the highest-scoring) are
            given to the video segmenter as candidates: each is an object it segments and encodes
            into memory on that frame, so this bounds a key frame's time and memory (a low
            ``box_threshold`` can pass hundreds of boxes).
        offload: let the video segmenter keep its per-frame state on the CPU.
        progress: ``progress("track", frames_done, frame_count)`` after each frame
            (``frame_count`` None when the source does not say).

    Everything that can be checked before reading frames is checked now (the segmenter can track,
    the prompt, thresholds, arguments, the video path); frame errors
    (:class:`~lang_sam.errors.InvalidVideoError`) arrive while iterating. Each frame's masks are
    ``(N, H, W)`` bool in frame pixels, boxes their bounding boxes (:func:`lang_sam.tracking.mask_boxes`),
    ``track_ids`` ascending; ``scores`` and ``phrases`` those of the detection that started each
    track. A frame where nothing is tracked has ``N = 0``.

    Raises:
        TrackingNotSupportedError: the segmenter cannot follow objects (SAM v1 ``vit_*``).
        InvalidArgumentError: ``detect_every``, ``max_candidates`` or ``lost_after`` is not an int >= 1.
        InvalidPromptError: a bad prompt. InvalidThresholdError: a threshold (``iou_threshold``
            included) out of range.
        InvalidVideoError: the video cannot be opened (now) or a frame cannot be read (while iterating).
    """
    _check_tracker(engines)
    segmenter = engines.segmenter
    for name, value in (("detect_every", detect_every), ("max_candidates", max_candidates)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgumentError(f"{name} must be an int >= 1, got {value!r}")
    if segmenter.tracks_text:
        text = cast(TextVideoSegmenter, segmenter)  # tracks_text: it implements TextVideoSegmenter
        prepared = text.prepare(text_prompt, box_threshold, text_threshold)
        TrackTable(iou_threshold, lost_after)  # checks them as the other path does
        ignored = [f"{n}={v!r}" for n, v, d in (("detect_every", detect_every, DETECT_EVERY),
                                                ("box_threshold", box_threshold, BOX_THRESHOLD),
                                                ("iou_threshold", iou_threshold, IOU_THRESHOLD),
                                                ("lost_after", lost_after, LOST_AFTER),
                                                ("max_candidates", max_candidates, MAX_CANDIDATES)) if v != d]
        if ignored:
            warnings.warn(
                f"{', '.join(ignored)} ignored: sam_type {engines.sam_type!r} detects on every frame and "
                "follows objects itself (its own detection thresholds and track ending apply)",
                IgnoredArgumentWarning, stacklevel=3)
        source = open_video(video)
        return _run_text(text, source, prepared, bool(offload), progress)
    prepared = engines.prepare(text_prompt, box_threshold, text_threshold)
    table = TrackTable(iou_threshold, lost_after)
    source = open_video(video)
    boxes = cast(VideoSegmenter, segmenter)  # can_track and not tracks_text: a VideoSegmenter
    return _run(engines, boxes, source, prepared, table, detect_every, pipeline.top_k(max_candidates),
                bool(offload), progress)


def _run(engines: Engines, segmenter: VideoSegmenter, source, prepared, table: TrackTable, detect_every: int,
         select, offload: bool, progress) -> Iterator[TrackedFrame]:
    session = segmenter.start_video(offload=offload)
    obj_of: dict[int, int] = {}  # track id -> the segmenter session's object id
    track_of: dict[int, int] = {}  # session object id -> track id
    next_obj = 1  # session ids are not track ids: rejected candidates use some up
    first_key: int | None = None
    for i, frame in enumerate(source):
        det = None
        if first_key is None or (i - first_key) % detect_every == 0:
            det, _ = pipeline.detect(engines, frame, prepared)
            if len(det) and first_key is None:
                first_key = i
            det = select(det) if len(det) else None
        if det is not None:
            candidates = list(range(next_obj, next_obj + len(det)))
            next_obj += len(det)
            step = segmenter.track(session, frame, new_ids=candidates, new_boxes=det.boxes)
        else:
            step = segmenter.track(session, frame)
        ids = [int(o) for o in step.object_ids]
        row = {o: k for k, o in enumerate(ids)}
        if det is not None:
            missing = [c for c in candidates if c not in row]
            if missing:
                raise InvalidResultError(
                    f"TrackStep.object_ids from {type(segmenter).__name__}.track: expected the new objects "
                    f"{candidates} among them, got {ids}", result="TrackStep", field="object_ids",
                    expected=f"ids including {candidates}", got=str(ids))
            live = [o for o in ids if o in track_of]
            assoc = table.associate([track_of[o] for o in live], step.masks[[row[o] for o in live]],
                                    step.masks[[row[c] for c in candidates]], det.scores, det.phrases, i)
            for d, tid in zip(assoc.new, assoc.new_ids):
                obj_of[tid], track_of[candidates[d]] = candidates[d], tid
            rejected = [c for c in candidates if c not in track_of]
            if rejected:
                segmenter.drop(session, rejected)
            logger.debug("frame %d: %d detections, %d matched, %d new tracks %s", i, len(det),
                         len(assoc.matched), len(assoc.new), assoc.new_ids)
        live = [o for o in ids if o in track_of]
        masks = step.masks[[row[o] for o in live]]
        tids = [track_of[o] for o in live]
        ended = table.observe(tids, masks)
        if ended:
            segmenter.drop(session, [obj_of[t] for t in ended])
            for t in ended:
                del track_of[obj_of.pop(t)]
        yield _frame(i, tids, masks, table, frame.shape[:2])
        if progress is not None:
            progress("track", i + 1, source.frame_count)


def _run_text(segmenter: TextVideoSegmenter, source, prepared, offload: bool, progress) -> Iterator[TrackedFrame]:
    session = segmenter.start_video(prepared, offload=offload)
    track_of: dict[int, int] = {}  # the engine's object id -> track id (from 1, never reused)
    for i, frame in enumerate(source):
        step = segmenter.track(session, frame)
        ids = [int(o) for o in step.object_ids]
        for o in ids:
            if o not in track_of:
                track_of[o] = len(track_of) + 1
        order = sorted(range(len(ids)), key=lambda k: track_of[ids[k]])
        order = [k for k in order if bool(step.masks[k].any())]
        masks = step.masks[order].to(torch.bool)
        yield TrackedFrame.checked(
            i, masks, mask_boxes(masks), torch.tensor([track_of[ids[k]] for k in order], dtype=torch.int64),
            step.scores[order].to(torch.float32), [step.phrases[k] for k in order],
            (int(frame.shape[0]), int(frame.shape[1])))
        if progress is not None:
            progress("track", i + 1, source.frame_count)


def _frame(index: int, tids: list[int], masks: torch.Tensor, table: TrackTable, size) -> TrackedFrame:
    keep = [k for k, t in enumerate(tids) if t in table.live and bool(masks[k].any())]
    keep.sort(key=lambda k: tids[k])
    masks = masks[keep].to(torch.bool)
    tracks = [table.live[tids[k]] for k in keep]
    return TrackedFrame.checked(
        index, masks, mask_boxes(masks), torch.tensor([t.track_id for t in tracks], dtype=torch.int64),
        torch.tensor([t.score for t in tracks], dtype=torch.float32), [t.phrase for t in tracks],
        (int(size[0]), int(size[1])))
