"""Track ids for text-prompted video, without a model: which detection is which object.

:func:`lang_sam.video.predict_video` detects on key frames and lets a video segmenter follow each
object between them. This module decides, from masks alone:

- **matching** (:func:`match_masks`): a key frame's detections against the live tracks, by mask
  IoU (:func:`mask_iou`), **greedily**: the pair with the highest IoU is matched first, then the
  highest among the rest, and so on, one-to-one, while the IoU is at least ``iou_threshold``
  (default :data:`IOU_THRESHOLD` = 0.5). With a threshold of 0.5 or more and tracks that do not
  overlap, a detection can reach it with one track at most, so greedy and optimal (Hungarian)
  assignment agree; greedy is kept for being simple and deterministic (ties: lower index first).
- **new tracks** (:meth:`TrackTable.associate`): a detection starts a new track only if its mask
  is not empty and overlaps no live track's mask **and** no detection accepted before it on the
  same frame (in score order) by ``iou_threshold`` or more; so an object detected again, or twice on one frame
  (two phrases, two boxes), is never a second track. Ids count from 1 and are never reused
  within a :class:`TrackTable` (one video).
- **ending** (:meth:`TrackTable.observe`): a track whose mask is empty on ``lost_after``
  consecutive frames (default :data:`LOST_AFTER` = 10) ends: it is dropped and its id retired.
  An object that comes back after that is a new track (a new id) at the next key frame that
  detects it. A track is reported only on frames where its mask is not empty.

Masks are ``(N, H, W)`` bool torch tensors in frame pixels, all of one frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from lang_sam.errors import InvalidArgumentError, InvalidThresholdError

__all__ = ["IOU_THRESHOLD", "LOST_AFTER", "mask_iou", "match_masks", "mask_boxes", "Track", "Association",
           "TrackTable"]

#: Default mask IoU at or above which a detection is the same object as a track.
IOU_THRESHOLD = 0.5
#: Default number of consecutive frames with an empty mask after which a track ends.
LOST_AFTER = 10


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(A, B)`` float32 IoU of each mask of ``a`` ``(A, H, W)`` bool with each of ``b``
    ``(B, H, W)`` bool. Two empty masks have IoU 0.

    Raises:
        InvalidArgumentError: ``a`` and ``b`` are masks of different sizes.
    """
    if a.shape[1:] != b.shape[1:]:
        raise InvalidArgumentError(f"mask_iou: masks of different sizes, {tuple(a.shape[1:])} and {tuple(b.shape[1:])}")
    if not len(a) or not len(b):
        return torch.zeros((len(a), len(b)), dtype=torch.float32)
    fa = a.reshape(len(a), -1).to(torch.float32)
    fb = b.reshape(len(b), -1).to(torch.float32)
    inter = fa @ fb.T  # exact in float32 below 2**24 pixels per mask
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))


def match_masks(iou: torch.Tensor, iou_threshold: float = IOU_THRESHOLD) -> list[tuple[int, int]]:
    """Greedy one-to-one matching on an ``(A, B)`` IoU matrix: ``(row, column)`` pairs, highest
    IoU first, each at least ``iou_threshold``."""
    iou = iou.clone().to(torch.float32)
    pairs: list[tuple[int, int]] = []
    while iou.numel():
        best = float(iou.max())
        if best < iou_threshold or best <= 0:
            break
        flat = int(torch.nonzero(iou.reshape(-1) == best)[0])  # ties: lowest row, then column
        r, c = divmod(flat, iou.shape[1])
        pairs.append((r, c))
        iou[r, :] = -1
        iou[:, c] = -1
    return pairs


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """``(N, 4)`` float32 xyxy boxes of ``(N, H, W)`` bool masks in pixel-edge coordinates: a mask
    covering columns ``c0..c1-1`` and rows ``r0..r1-1`` gives ``(c0, r0, c1, r1)`` (``x1`` / ``y1``
    exclusive, as :attr:`lang_sam.masks.CropMask.bbox`); an empty mask gives zeros."""
    n = len(masks)
    out = torch.zeros((n, 4), dtype=torch.float32)
    if not n:
        return out
    rows, cols = masks.any(2), masks.any(1)  # (N, H), (N, W)
    H, W = masks.shape[1:]
    has = rows.any(1)
    r = torch.arange(H)
    c = torch.arange(W)
    big = torch.iinfo(torch.int64).max
    out[:, 0] = torch.where(cols, c, big).min(1).values.to(torch.float32)
    out[:, 1] = torch.where(rows, r, big).min(1).values.to(torch.float32)
    out[:, 2] = (torch.where(cols, c, -1).max(1).values + 1).to(torch.float32)
    out[:, 3] = (torch.where(rows, r, -1).max(1).values + 1).to(torch.float32)
    out[~has] = 0
    return out


@dataclass
class Track:
    """One followed object: ``track_id`` (from 1), the detector ``score`` and ``phrase`` of the
    detection that started it, the ``first_frame`` it was seen on, and ``missing``: consecutive
    frames (up to now) on which its mask was empty."""

    track_id: int
    score: float
    phrase: str
    first_frame: int
    missing: int = 0


@dataclass
class Association:
    """What :meth:`TrackTable.associate` decided for a key frame's ``D`` detections:

    - ``matched``: ``(track_id, detection index)`` pairs (greedy one-to-one, IoU >= threshold);
    - ``new``: the detection indices that start tracks, in score order, with ``new_ids`` their ids;
    - ``duplicates``: detections that overlap a live track or an accepted new detection but were
      not matched one-to-one; they start nothing;
    - ``empty``: detections whose mask is empty (the segmenter found nothing in the box); they start
      nothing either.
    """

    matched: list[tuple[int, int]] = field(default_factory=list)
    new: list[int] = field(default_factory=list)
    new_ids: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    empty: list[int] = field(default_factory=list)


class TrackTable:
    """The live tracks of one video and the rules that start and end them (see the module's
    docstring). Holds only the live tracks (a few numbers each), never masks or frames.

    Args:
        iou_threshold: mask IoU in (0, 1] at or above which a detection is the same object as a
            track (default :data:`IOU_THRESHOLD`).
        lost_after: consecutive empty-mask frames after which a track ends (default
            :data:`LOST_AFTER`; at least 1).

    Raises:
        InvalidThresholdError: ``iou_threshold`` is not a number in (0, 1].
        InvalidArgumentError: ``lost_after`` is not an int >= 1.
    """

    def __init__(self, iou_threshold: float = IOU_THRESHOLD, lost_after: int = LOST_AFTER):
        if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, (int, float)) or not (
                0 < float(iou_threshold) <= 1):
            raise InvalidThresholdError(f"iou_threshold must be a number in (0, 1], got {iou_threshold!r}")
        if isinstance(lost_after, bool) or not isinstance(lost_after, int) or lost_after < 1:
            raise InvalidArgumentError(f"lost_after must be an int >= 1, got {lost_after!r}")
        self.iou_threshold = float(iou_threshold)
        self.lost_after = lost_after
        self.live: dict[int, Track] = {}
        self.next_id = 1

    def __len__(self) -> int:
        return len(self.live)

    def associate(self, track_ids: Sequence[int], track_masks: torch.Tensor, det_masks: torch.Tensor,
                  det_scores: torch.Tensor, det_phrases: Sequence[str], frame_index: int) -> Association:
        """Match a key frame's detections to the live tracks and start tracks for the new ones.

        ``track_ids`` (``T`` live ids) with ``track_masks`` ``(T, H, W)`` bool, their masks on this
        frame; ``det_masks`` ``(D, H, W)`` bool, ``det_scores`` ``(D,)``, ``det_phrases`` (``D``)
        the detections' masks on the same frame. The new tracks are added to :attr:`live`.

        Raises:
            InvalidArgumentError: a track id that is not live; masks of different sizes.
        """
        track_ids = [int(t) for t in track_ids]
        unknown = [t for t in track_ids if t not in self.live]
        if unknown:
            raise InvalidArgumentError(f"associate: track ids {unknown} are not live (live: {sorted(self.live)})")
        iou = mask_iou(track_masks, det_masks)  # (T, D)
        out = Association()
        out.matched = [(track_ids[t], d) for t, d in match_masks(iou, self.iou_threshold)]
        taken = {d for _, d in out.matched}
        covered = (iou >= self.iou_threshold).any(0) if len(track_ids) else torch.zeros(len(det_masks), dtype=torch.bool)
        order = torch.argsort(torch.as_tensor(det_scores, dtype=torch.float32), descending=True, stable=True).tolist()
        accepted: list[int] = []
        has_pixels = det_masks.flatten(1).any(1).tolist()
        for d in order:
            if d in taken:
                continue
            if not has_pixels[d]:
                out.empty.append(d)
                continue
            if bool(covered[d]) or (accepted and bool(
                    (mask_iou(det_masks[d:d + 1], det_masks[accepted]) >= self.iou_threshold).any())):
                out.duplicates.append(d)
                continue
            accepted.append(d)
            tid = self.next_id
            self.next_id += 1
            self.live[tid] = Track(tid, float(det_scores[d]), str(det_phrases[d]), int(frame_index))
            out.new.append(d)
            out.new_ids.append(tid)
        out.duplicates.sort()
        out.empty.sort()
        return out

    def observe(self, track_ids: Sequence[int], masks: torch.Tensor) -> list[int]:
        """Record the live tracks' masks on a frame (``track_ids`` with ``(T, H, W)`` bool
        ``masks``; a live track not listed counts as empty) and end those empty on
        ``lost_after`` consecutive frames: their ids are returned (and removed from :attr:`live`)."""
        present = {int(t): bool(m.any()) for t, m in zip(track_ids, masks)}
        ended = []
        for tid, track in list(self.live.items()):
            if present.get(tid, False):
                track.missing = 0
            else:
                track.missing += 1
                if track.missing >= self.lost_after:
                    ended.append(tid)
                    del self.live[tid]
        return ended
