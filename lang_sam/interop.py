"""Results as other libraries' types: :func:`to_supervision` makes a ``supervision.Detections``.

``Prediction.to_supervision()`` and ``TiledPrediction.to_supervision()`` call it. `supervision
<https://github.com/roboflow/supervision>`_ is not a dependency of lang-sam: it is imported inside
:func:`import_supervision` only, so ``import lang_sam`` never loads it.

Why it is not a pip extra: groundingdino-py 0.4.0 (a dependency) requires ``supervision==0.6.0``,
which has no ``sv.CompactMask``; pip refuses any ``supervision>=0.28`` requirement next to that
pin, so ``lang-sam[supervision]`` could never be installed. Install it on its own afterwards
(:data:`SUPERVISION_INSTALL`); pip then reports groundingdino-py's pin and installs it anyway.
lang-sam never imports ``groundingdino.util.inference``, the one groundingdino module that uses
supervision (and that module still imports under supervision 0.31).

This module imports numpy and :mod:`lang_sam.masks` only.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from lang_sam.errors import EngineUnavailableError, InvalidClassesError, SupervisionNotInstalledError
from lang_sam.masks import CropMask, stack_dense
from lang_sam.validation import as_numpy

__all__ = ["SUPERVISION_REQUIREMENT", "SUPERVISION_INSTALL", "import_supervision", "to_supervision",
           "class_ids", "tracked_to_supervision", "TRACKERS_REQUIREMENT", "track_boxes"]

#: The oldest supervision with what :func:`to_supervision` uses (``sv.CompactMask``: 0.28.0).
SUPERVISION_REQUIREMENT = "supervision>=0.28"
SUPERVISION_INSTALL = f'pip install "{SUPERVISION_REQUIREMENT}"'
#: Roboflow's ``trackers`` (where supervision's ByteTrack moved), for :func:`track_boxes`. It requires
#: supervision, so it is installed apart for the same reason (groundingdino-py's pin).
TRACKERS_REQUIREMENT = "trackers>=2.6"


def import_supervision():
    """The ``supervision`` module, or :class:`~lang_sam.errors.SupervisionNotInstalledError` when it
    is missing or too old (no ``CompactMask``), with the install command."""
    try:
        import supervision as sv
    except ImportError as exc:
        raise SupervisionNotInstalledError(
            f"to_supervision() needs {SUPERVISION_REQUIREMENT}, which is not installed here ({exc}): "
            f"{SUPERVISION_INSTALL}", required=SUPERVISION_REQUIREMENT,
        ) from None
    if not hasattr(sv, "CompactMask"):
        found = _installed_version(sv)
        raise SupervisionNotInstalledError(
            f"to_supervision() needs {SUPERVISION_REQUIREMENT}, found supervision {found} (0.6.0 is "
            f"what groundingdino-py pins; lang-sam does not use the part of groundingdino that needs "
            f"it): {SUPERVISION_INSTALL}", found=found, required=SUPERVISION_REQUIREMENT,
        )
    return sv


def _installed_version(module) -> str:
    from importlib import metadata

    try:
        return metadata.version("supervision")
    except metadata.PackageNotFoundError:
        return str(getattr(module, "__version__", "of unknown version"))


def class_ids(phrases: Sequence[str], classes: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """``(class_id, names)``: each phrase's index ``(N,)`` int64 in ``names``.

    ``names`` is ``classes`` when given (a list of distinct strings, index = class id; every
    phrase must be one of them, else :class:`~lang_sam.errors.InvalidClassesError` naming the
    missing ones), else the distinct phrases in order of first appearance.
    """
    phrases = [str(p) for p in phrases]
    if classes is None:
        names = list(dict.fromkeys(phrases))
    else:
        if isinstance(classes, (str, bytes)) or not all(isinstance(c, str) for c in classes):
            raise InvalidClassesError(
                f"classes must be a list of class names (strings), got {classes!r}", classes=classes
            )
        names = list(classes)
        twice = sorted({c for c in names if names.count(c) > 1})
        if twice:
            raise InvalidClassesError(f"classes must be distinct, but {twice} appear more than once",
                                      classes=classes)
        unknown = [p for p in dict.fromkeys(phrases) if p not in names]
        if unknown:
            raise InvalidClassesError(
                f"phrases {unknown} are not in classes {names}: add them to classes, or leave "
                "classes=None to number the phrases as they come", classes=classes, unknown=unknown,
            )
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[p] for p in phrases], dtype=np.int64), names


def _crop_list(masks: Any) -> list[CropMask] | None:
    """``masks`` as a list of crops if it is a list or tuple (which must hold crops only), else None."""
    if not isinstance(masks, (list, tuple)):
        return None
    bad = [type(m).__name__ for m in masks if not isinstance(m, CropMask)]
    if bad:
        raise TypeError(f"masks as a list must hold CropMask items only, got {sorted(set(bad))}")
    return list(masks)


def compact_mask(sv, crops: Sequence[CropMask], image_size: tuple[int, int]):
    """``sv.CompactMask`` of ``crops`` (of an ``(H, W)`` image) without any full-size array.

    Each crop is run-length encoded by supervision itself (``CompactMask.from_dense`` of the crop
    alone) and moved to its offset (``with_offset``); an empty crop becomes a 1x1 all-False one,
    as supervision stores empty masks.
    """
    H, W = (int(v) for v in image_size)
    if not crops:
        return sv.CompactMask.from_dense(np.zeros((0, H, W), bool), np.zeros((0, 4), np.float32), (H, W))
    parts = []
    for i, m in enumerate(crops):
        if m.image_size != (H, W):
            raise ValueError(f"crop {i} is of a {m.image_size} image, expected {(H, W)} (H, W)")
        crop, x0, y0 = m.mask, m.x0, m.y0
        if crop.size == 0:
            crop, x0, y0 = np.zeros((1, 1), bool), min(x0, W - 1), min(y0, H - 1)
        h, w = crop.shape
        one = sv.CompactMask.from_dense(crop[None], np.array([[0, 0, w - 1, h - 1]], np.float32), (h, w))
        parts.append(one.with_offset(x0, y0, (H, W)))
    return sv.CompactMask.merge(parts)


def to_supervision(
    masks: Any,
    boxes: Any,
    phrases: Sequence[str],
    scores: Any,
    *,
    image_size: tuple[int, int],
    iou_scores: Any = None,
    classes: Sequence[str] | None = None,
    compact: bool | None = None,
):
    """Detections as a ``supervision.Detections`` (needs :data:`SUPERVISION_REQUIREMENT`).

    ``masks`` ``(N, H, W)`` bool (torch or numpy) or ``N`` :class:`~lang_sam.masks.CropMask` of an
    ``image_size`` ``(H, W)`` image, ``boxes`` ``(N, 4)`` xyxy image pixels, ``phrases`` ``N``
    strings, ``scores`` ``(N,)`` GroundingDINO's box scores, ``iou_scores`` ``(N,)`` SAM's
    predicted IoU or None. The result has:

    - ``xyxy`` ``(N, 4)`` float32, the boxes as they are (continuous pixel coordinates);
    - ``mask``: with ``compact=False`` an ``(N, H, W)`` bool array (for dense torch masks on the
      CPU it shares their memory); with ``compact=True`` an ``sv.CompactMask`` (crops, run-length
      encoded, never ``N x H x W``). ``None`` (default) keeps the form ``masks`` has: dense stays
      dense, crops become a ``CompactMask``;
    - ``confidence`` ``(N,)`` float32: ``scores``;
    - ``class_id`` ``(N,)`` int64: see :func:`class_ids` (``classes``);
    - ``data["class_name"]`` ``(N,)`` str array: the phrases; ``data["iou_score"]`` ``(N,)``
      float32: ``iou_scores``, when given.
    """
    sv = import_supervision()
    H, W = (int(v) for v in image_size)
    crops = _crop_list(masks)
    ids, _ = class_ids(phrases, classes)
    if compact is None:
        compact = crops is not None
    if crops is not None:
        mask = compact_mask(sv, crops, (H, W)) if compact else stack_dense(crops, (H, W))
    else:
        dense = as_numpy(masks)
        if dense.ndim != 3 or dense.shape[1:] != (H, W):
            raise ValueError(f"masks must be (N, {H}, {W}), got shape {dense.shape}")
        dense = dense if dense.dtype == np.bool_ else dense > 0
        mask = compact_mask(sv, [CropMask.from_dense(m) for m in dense], (H, W)) if compact else dense
    data = {"class_name": np.array([str(p) for p in phrases], dtype=str)}
    if iou_scores is not None:
        data["iou_score"] = as_numpy(iou_scores).astype(np.float32).reshape(-1)
    return sv.Detections(
        xyxy=as_numpy(boxes).astype(np.float32).reshape(-1, 4),
        mask=mask,
        confidence=as_numpy(scores).astype(np.float32).reshape(-1),
        class_id=ids,
        data=data,
    )


def tracked_to_supervision(frame: Any, classes: Sequence[str] | None = None, *, compact: bool | None = None):
    """One :class:`~lang_sam.results.TrackedFrame` (a frame of ``predict_video`` / ``lang-sam
    track``) as a ``supervision.Detections``: what :func:`to_supervision` gives for its masks,
    boxes, phrases and scores, plus ``tracker_id`` ``(N,)`` int64, the frame's track ids (stable
    through the video, from 1), so supervision's trace and label annotators follow each object.

    Raises:
        SupervisionNotInstalledError: supervision missing or older than :data:`SUPERVISION_REQUIREMENT`.
        InvalidClassesError: a phrase not in ``classes``.
    """
    det = to_supervision(frame.masks, frame.boxes, frame.phrases, frame.scores, image_size=frame.image_size,
                         classes=classes, compact=compact)
    det.tracker_id = as_numpy(frame.track_ids).astype(np.int64).reshape(-1)
    return det


def track_boxes(frames: Iterable[Any], tracker: Any = None) -> Iterator[Any]:
    """Box-level tracking by the ``trackers`` package instead of lang-sam's own (mask IoU on key
    frames, a video segmenter in between, :mod:`lang_sam.tracking`): each item of ``frames`` (one
    per video frame, in order: a ``supervision.Detections``, or anything with ``to_supervision()``
    such as a :class:`~lang_sam.results.Prediction` of ``LangSAM.predict``) goes through
    ``tracker.update`` and the ``supervision.Detections`` it returns is yielded, ``tracker_id``
    set (``-1`` for detections the tracker has not confirmed yet; its order may differ from the
    input's). ``tracker``: any ``trackers`` tracker (``SORTTracker()``, ``OCSORTTracker()``...);
    default ``trackers.ByteTrackTracker()``.

    Raises:
        EngineUnavailableError: ``tracker`` not given and ``trackers`` not installed
            (:data:`TRACKERS_REQUIREMENT`).
        SupervisionNotInstalledError: supervision missing or too old.
    """
    if tracker is None:
        try:
            from trackers import ByteTrackTracker
        except ImportError as exc:
            raise EngineUnavailableError(
                f"track_boxes() needs {TRACKERS_REQUIREMENT}, which is not installed here ({exc}): "
                f'pip install "{TRACKERS_REQUIREMENT}"', package="trackers", required=TRACKERS_REQUIREMENT,
            ) from None
        tracker = ByteTrackTracker()
    for item in frames:
        yield tracker.update(item.to_supervision() if hasattr(item, "to_supervision") else item)
