"""Track ids without a model (lang_sam.tracking): masks drawn as rectangles on a small canvas,
scripted frame by frame, and the ids the table gives them."""

from __future__ import annotations

import pytest
import torch

from lang_sam.errors import InvalidArgumentError, InvalidThresholdError, LangSAMError
from lang_sam.tracking import IOU_THRESHOLD, LOST_AFTER, TrackTable, mask_boxes, mask_iou, match_masks

H, W = 40, 60


def rects(*boxes) -> torch.Tensor:
    """``(N, H, W)`` bool masks of xyxy (exclusive) rectangles; None is an empty mask."""
    out = torch.zeros((len(boxes), H, W), dtype=torch.bool)
    for k, b in enumerate(boxes):
        if b is not None:
            x0, y0, x1, y1 = b
            out[k, y0:y1, x0:x1] = True
    return out


# ------------------------------------------------------------------------------------------
# IoU, matching, boxes
# ------------------------------------------------------------------------------------------

#: id -> (mask a, mask b, IoU)
IOUS = {
    "identical": ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
    "disjoint": ((0, 0, 10, 10), (20, 20, 30, 30), 0.0),
    "half overlap": ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),
    "contained": ((0, 0, 10, 10), (0, 0, 10, 5), 0.5),
    "both empty": (None, None, 0.0),
    "one empty": ((0, 0, 10, 10), None, 0.0),
}


@pytest.mark.parametrize("a, b, iou", IOUS.values(), ids=IOUS.keys())
def test_mask_iou(a, b, iou):
    got = mask_iou(rects(a), rects(b))
    assert got.shape == (1, 1) and got.dtype == torch.float32 and abs(float(got) - iou) < 1e-6


def test_mask_iou_shapes():
    assert mask_iou(rects(), rects((0, 0, 2, 2))).shape == (0, 1)
    assert mask_iou(rects((0, 0, 1, 1), (1, 1, 2, 2)), rects()).shape == (2, 0)
    with pytest.raises(InvalidArgumentError, match="different sizes"):
        mask_iou(rects((0, 0, 1, 1)), torch.zeros((1, 5, 5), dtype=torch.bool))


#: id -> (IoU matrix, threshold, pairs)
MATCHES = {
    "best pair first": ([[0.6, 0.9], [0.7, 0.1]], 0.5, [(0, 1), (1, 0)]),
    "greedy takes the highest even if the sum is lower": ([[0.9, 0.8], [0.8, 0.0]], 0.5, [(0, 0)]),
    "below the threshold": ([[0.4]], 0.5, []),
    "at the threshold": ([[0.5]], 0.5, [(0, 0)]),
    "ties go to the lower index": ([[0.7, 0.7], [0.7, 0.7]], 0.5, [(0, 0), (1, 1)]),
    "no rows": (torch.zeros((0, 3)), 0.5, []),
    "no columns": (torch.zeros((2, 0)), 0.5, []),
}


@pytest.mark.parametrize("iou, threshold, pairs", MATCHES.values(), ids=MATCHES.keys())
def test_greedy_matching(iou, threshold, pairs):
    assert match_masks(torch.as_tensor(iou, dtype=torch.float32), threshold) == pairs


def test_mask_boxes_are_exclusive_pixel_edges():
    boxes = mask_boxes(rects((3, 4, 10, 12), None, (0, 0, 60, 40), (59, 39, 60, 40)))
    assert boxes.dtype == torch.float32
    assert boxes.tolist() == [[3, 4, 10, 12], [0, 0, 0, 0], [0, 0, 60, 40], [59, 39, 60, 40]]
    assert mask_boxes(rects()).shape == (0, 4)


# ------------------------------------------------------------------------------------------
# The table over scripted videos
# ------------------------------------------------------------------------------------------

def run(script, *, iou_threshold=IOU_THRESHOLD, lost_after=LOST_AFTER):
    """Play a script through a table as the video pipeline does: each frame is
    ``(tracked, detections)``: ``tracked`` maps live track ids to their rectangle on the frame (an
    absent or None one is empty), ``detections`` (None on a frame that is not a key frame) is a
    list of ``(rectangle, score)``. Returns, per frame, the ids of the new tracks and the ids ended."""
    table = TrackTable(iou_threshold, lost_after)
    log = []
    for i, (tracked, dets) in enumerate(script):
        live = [t for t in table.live]
        masks = rects(*[tracked.get(t) for t in live])
        new = []
        if dets is not None:
            dm = rects(*[d for d, _ in dets])
            a = table.associate(live, masks, dm, torch.tensor([s for _, s in dets]), ["obj"] * len(dets), i)
            new = a.new_ids
            assert sorted(a.new + a.duplicates + a.empty + [d for _, d in a.matched]) == list(range(len(dets)))
            # The new tracks' masks on this frame are their detections'.
            live = live + a.new_ids
            masks = torch.cat([masks, dm[a.new]])
        ended = table.observe(live, masks)
        log.append((new, ended))
    return table, log


A, B = (5, 5, 15, 15), (40, 20, 52, 32)
B2 = (40, 5, 50, 15)  # A's size on A's rows: they overlap with IoU 0.54 on frame 4 as they pass


def moved(box, dx, dy=0):
    x0, y0, x1, y1 = box
    return (x0 + dx, y0 + dy, x1 + dx, y1 + dy)


#: id -> (script, keyword arguments, expected log: per frame (new ids, ended ids))
SCRIPTS = {
    "empty start, then an object": (
        [({}, []), ({}, []), ({}, [(A, 0.9)]), ({1: A}, None)],
        {}, [([], []), ([], []), ([1], []), ([], [])]),
    "an object appears mid-video": (
        [({}, [(A, 0.9)]), ({1: moved(A, 1)}, None), ({1: moved(A, 2)}, [(moved(A, 2), 0.9), (B, 0.8)]),
         ({1: moved(A, 3), 2: B}, None)],
        {}, [([1], []), ([], []), ([2], []), ([], [])]),
    "re-detections are not new tracks": (
        [({}, [(A, 0.9)]), ({1: moved(A, 1)}, [(moved(A, 2), 0.9)]), ({1: moved(A, 2)}, [(moved(A, 2), 0.8)])],
        {}, [([1], []), ([], []), ([], [])]),
    "two boxes on one object on one frame": (
        [({}, [(A, 0.7), (moved(A, 1), 0.9)]), ({1: A}, None)],
        {}, [([1], []), ([], [])]),
    "a vanished object ends after lost_after empty frames": (
        [({}, [(A, 0.9)]), ({1: A}, None), ({}, None), ({}, None), ({}, None), ({}, None)],
        {"lost_after": 3}, [([1], []), ([], []), ([], []), ([], []), ([], [1]), ([], [])]),
    "a short gap does not end a track": (
        [({}, [(A, 0.9)]), ({}, None), ({}, None), ({1: A}, None), ({}, None), ({}, None), ({}, None)],
        {"lost_after": 3}, [([1], []), ([], []), ([], []), ([], []), ([], []), ([], []), ([], [1])]),
    "a returning object after its track ended gets a new id (never reused)": (
        [({}, [(A, 0.9)]), ({}, None), ({}, [(A, 0.9)])],
        {"lost_after": 1}, [([1], []), ([], [1]), ([2], [])]),
    "two objects crossing keep their ids": (
        [({}, [(A, 0.9), (B2, 0.9)])]
        + [({1: moved(A, 4 * k), 2: moved(B2, -4 * k)}, [(moved(B2, -4 * k), 0.9), (moved(A, 4 * k), 0.9)])
           for k in range(1, 9)],
        {}, [([1, 2], [])] + [([], [])] * 8),
    "a small overlap is a different object": (
        [({}, [(A, 0.9)]), ({1: A}, [(moved(A, 7), 0.9)])],
        {}, [([1], []), ([2], [])]),
    "a lower threshold merges it": (
        [({}, [(A, 0.9)]), ({1: A}, [(moved(A, 7), 0.9)])],
        {"iou_threshold": 0.1}, [([1], []), ([], [])]),
}


@pytest.mark.parametrize("script, kwargs, expected", SCRIPTS.values(), ids=SCRIPTS.keys())
def test_track_table_scripts(script, kwargs, expected):
    _, log = run(script, **kwargs)
    assert log == expected


def test_crossing_objects_match_their_own_tracks():
    """When the masks overlap mid-crossing, each detection still matches the track it overlaps most."""
    table = TrackTable()
    table.associate([], rects(), rects(A, B), torch.tensor([0.9, 0.9]), ["a", "b"], 0)
    a1, b1 = (10, 5, 22, 15), (16, 5, 28, 15)  # overlapping by half of each
    out = table.associate([1, 2], rects(a1, b1), rects(b1, a1), torch.tensor([0.9, 0.9]), ["b", "a"], 5)
    assert sorted(out.matched) == [(1, 1), (2, 0)] and out.new == [] and out.duplicates == []


def test_new_tracks_keep_the_starting_detection():
    table = TrackTable()
    out = table.associate([], rects(), rects(A, None, B), torch.tensor([0.4, 0.95, 0.8]), ["cat", "x", "dog"], 7)
    # in score order; a detection whose mask is empty (the segmenter found nothing) starts nothing
    assert out.new == [2, 0] and out.new_ids == [1, 2] and out.empty == [1] and out.duplicates == []
    assert [(t.track_id, t.score, t.phrase, t.first_frame) for t in table.live.values()] == [
        (1, pytest.approx(0.8), "dog", 7), (2, pytest.approx(0.4), "cat", 7)]


#: id -> (keyword arguments, error, words)
BAD = {
    "iou 0": ({"iou_threshold": 0}, InvalidThresholdError, "(0, 1]"),
    "iou above 1": ({"iou_threshold": 1.5}, InvalidThresholdError, "1.5"),
    "iou NaN": ({"iou_threshold": float("nan")}, InvalidThresholdError, "nan"),
    "iou bool": ({"iou_threshold": True}, InvalidThresholdError, "True"),
    "lost_after 0": ({"lost_after": 0}, InvalidArgumentError, "lost_after"),
    "lost_after float": ({"lost_after": 2.0}, InvalidArgumentError, "2.0"),
}


@pytest.mark.parametrize("kwargs, error, words", BAD.values(), ids=BAD.keys())
def test_bad_settings(kwargs, error, words):
    with pytest.raises(error) as e:
        TrackTable(**kwargs)
    assert isinstance(e.value, (LangSAMError, ValueError)) and words in str(e.value)


def test_associating_an_unknown_track_is_an_error():
    with pytest.raises(InvalidArgumentError, match=r"\[5\] are not live"):
        TrackTable().associate([5], rects(A), rects(), torch.zeros(0), [], 0)
