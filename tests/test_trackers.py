"""supervision's trackers (issue 29 item 5): tracked frames as ``sv.Detections`` with
``tracker_id``, and Roboflow's ``trackers`` package following lang-sam's per-frame detections
instead of lang-sam's own tracking (:func:`lang_sam.interop.track_boxes`)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

from lang_sam import Prediction, TrackedFrame
from lang_sam.errors import EngineUnavailableError
from lang_sam.interop import track_boxes, tracked_to_supervision

if os.environ.get("CI"):  # the README's test command installs both: never skipped in CI
    import supervision as sv
    import trackers
else:
    sv = pytest.importorskip("supervision", minversion="0.30", reason='pip install "supervision>=0.30"')
    trackers = pytest.importorskip("trackers", reason='pip install "trackers>=2.6"')

H, W = 60, 80


def box_masks(boxes) -> torch.Tensor:
    masks = torch.zeros((len(boxes), H, W), dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        masks[i, y0:y1, x0:x1] = True
    return masks


def moving(f: int) -> list[tuple[int, int, int, int]]:
    """Two objects crossing the frame in opposite directions, apart at every frame."""
    return [(2 + 3 * f, 5, 22 + 3 * f, 25), (56 - 3 * f, 32, 76 - 3 * f, 56)]


def test_a_tracked_frame_becomes_detections_with_its_track_ids():
    boxes = moving(0)
    frame = TrackedFrame.checked(4, box_masks(boxes), torch.tensor(boxes, dtype=torch.float32),
                                 torch.tensor([7, 3]), torch.tensor([0.9, 0.5]), ["car", "person"], (H, W))
    det = tracked_to_supervision(frame, classes=["person", "car"])
    assert isinstance(det, sv.Detections)
    assert det.tracker_id.dtype == np.int64 and det.tracker_id.tolist() == [7, 3]
    assert det.class_id.tolist() == [1, 0] and det.data["class_name"].tolist() == ["car", "person"]
    assert np.array_equal(det.mask, frame.masks.numpy()) and det.xyxy.tolist() == [list(map(float, b)) for b in boxes]
    assert det.confidence.tolist() == pytest.approx([0.9, 0.5])
    compact = tracked_to_supervision(frame, compact=True)
    assert isinstance(compact.mask, sv.CompactMask) and compact.tracker_id.tolist() == [7, 3]


@pytest.mark.parametrize("tracker", [None, "SORTTracker"])
def test_trackers_follow_lang_sam_detections(tracker):
    """Per-frame predictions (as ``LangSAM.predict`` returns them) through ByteTrack (default) or
    SORT: each object keeps one id through the clip, the two ids differ."""
    frames = [Prediction(box_masks(moving(f)), torch.tensor(moving(f), dtype=torch.float32), ["car", "car"],
                         torch.tensor([0.9, 0.8])) for f in range(8)]
    made = None if tracker is None else getattr(trackers, tracker)(minimum_consecutive_frames=1)
    out = list(track_boxes(frames, made))
    assert len(out) == 8 and all(isinstance(d, sv.Detections) for d in out)
    ids: dict[int, set[int]] = {0: set(), 1: set()}
    for f, det in enumerate(out[2:], start=2):  # past the trackers' confirmation frames
        for box, tid in zip(det.xyxy, det.tracker_id):
            which = int(np.argmin([abs(box[0] - b[0]) for b in moving(f)]))
            ids[which].add(int(tid))
    assert all(len(v) == 1 for v in ids.values()) and ids[0] != ids[1] and -1 not in ids[0] | ids[1]


def test_track_boxes_takes_supervision_detections_too():
    dets = [sv.Detections(xyxy=np.array(moving(f), np.float32), confidence=np.array([0.9, 0.9], np.float32))
            for f in range(4)]
    out = list(track_boxes(dets, trackers.SORTTracker(minimum_consecutive_frames=1)))
    assert [sorted(d.tracker_id.tolist()) for d in out][1:] == [sorted(out[1].tracker_id.tolist())] * 3


def test_track_boxes_without_trackers_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "trackers", None)
    with pytest.raises(EngineUnavailableError, match=r'pip install "trackers>=2.6"') as info:
        next(track_boxes([]))
    assert info.value.package == "trackers" and isinstance(info.value, ImportError)
