"""``--format cvat`` (issue 29 item 2): "CVAT for images 1.1" XML from ``lang-sam predict`` and
"CVAT for video 1.1" tracks from ``lang-sam track``, read back by Datumaro, the dataset library
CVAT itself imports and exports with (tests/tool-readers.txt): masks equal ours pixel for pixel,
polygons our contours, labels, scores, track ids and keyframe / outside flags kept. Datumaro does
not read masks inside tracks: those are decoded here by CVAT's published mask RLE."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch

from lang_sam.labeling.cvat import CvatTrackWriter, cvat_mask
from lang_sam.labeling.formats import largest_polygon, rle_to_mask
from lang_sam.labeling.tool_formats import ExportOptions
from lang_sam.results import TrackedFrame
from tool_readers import H, NAMES, W, shaped_masks, shaped_run, use_readers


@pytest.fixture(scope="module")
def dm():
    """Datumaro's ``Dataset``."""
    use_readers()
    from datumaro.components.dataset import Dataset

    return Dataset


def decode(attrs: dict, size: tuple[int, int]) -> np.ndarray:
    """A ``<mask>``'s attributes as a full-size mask, by CVAT's mask RLE: run lengths over the
    ``width x height`` box at ``left, top``, row by row, alternating from a run of 0s."""
    counts = [int(v) for v in attrs["rle"].split(",")]
    w, h, left, top = (int(attrs[k]) for k in ("width", "height", "left", "top"))
    out = np.zeros(size, bool)
    out[top:top + h, left:left + w] = np.repeat(np.arange(len(counts)) % 2 == 1, counts).reshape(h, w)
    return out


@pytest.mark.parametrize("rows, expected", [
    (["..#", ".##"], {"rle": "1, 3", "left": "1", "top": "0", "width": "2", "height": "2"}),
    (["#.", ".#"], {"rle": "0, 1, 2, 1", "left": "0", "top": "0", "width": "2", "height": "2"}),
    ([".....", "..#..", "....."], {"rle": "0, 1", "left": "2", "top": "1", "width": "1", "height": "1"}),
    (["...", "..."], None),
])
def test_cvat_mask_rle(rows, expected):
    mask = np.array([[c == "#" for c in r] for r in rows])
    got = cvat_mask(mask)
    assert got == expected
    if got is not None:
        assert np.array_equal(decode(got, mask.shape), mask)


def _images_run(tmp_path: Path, shape: str, dm):
    """The shaped run as CVAT XML and COCO, and the XML read by Datumaro (from ``cvat/``, with the
    images in ``cvat/images/`` as a CVAT export has them)."""
    run = shaped_run(tmp_path / "out", tmp_path / "images", ["coco", "cvat"], ExportOptions(shape=shape))
    cvat = tmp_path / "out" / "cvat"
    os.symlink(tmp_path / "images", cvat / "images")
    coco = json.loads((tmp_path / "out" / "coco" / "annotations.json").read_text())
    dataset = dm.import_from(str(cvat / "annotations.xml"), "cvat")
    return run, coco, dataset


def _instances(coco: dict) -> dict[str, list[dict]]:
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    out: dict[str, list[dict]] = {f: [] for f in files.values()}
    for a in coco["annotations"]:
        out[files[a["image_id"]]].append(dict(a, name=names[a["category_id"]]))
    return out


def _label_names(dataset) -> list[str]:
    from datumaro.components.annotation import AnnotationType

    return [c.name for c in dataset.categories()[AnnotationType.label].items]


def test_image_masks_read_back_by_datumaro_equal_the_run(dm, tmp_path):
    run, coco, dataset = _images_run(tmp_path, "mask", dm)
    assert sorted(_label_names(dataset)) == sorted(NAMES)
    labels = _label_names(dataset)
    expected = _instances(coco)
    assert sorted(item.id for item in dataset) == ["a", "sub/b c"]
    for item in dataset:
        kept = [a for a in expected[item.id + ".png"] if a["area"] > 0]  # an empty mask has no <mask>
        assert len(item.annotations) == len(kept) == 6
        for got, ann in zip(item.annotations, kept):
            assert got.image.shape == (H, W)
            assert np.array_equal(got.image > 0, rle_to_mask(ann["segmentation"]))  # pixel for pixel
            assert labels[got.label] == ann["name"] and float(got.attributes["score"]) == ann["score"]
    assert run.summary.export_dropped["cvat"] == {"empty mask": 2}


def test_image_polygons_read_back_by_datumaro(dm, tmp_path):
    run, coco, dataset = _images_run(tmp_path, "polygon", dm)
    labels = _label_names(dataset)
    expected = _instances(coco)
    for item in dataset:
        polys = [(largest_polygon(rle_to_mask(a["segmentation"])), a) for a in expected[item.id + ".png"]]
        kept = [(p, a) for p, a in polys if p is not None]
        assert len(item.annotations) == len(kept) == 4  # not the speck, the random pixels, the empty mask
        for got, (poly, ann) in zip(item.annotations, kept):
            assert np.allclose(np.reshape(got.points, (-1, 2)), poly)
            assert labels[got.label] == ann["name"] and float(got.attributes["score"]) == ann["score"]
    assert run.summary.export_dropped["cvat"] == {"empty mask": 2, "outline <= 100 px": 4}


# ------------------------------------------------------------------------------------------
# Video
# ------------------------------------------------------------------------------------------

def _frame(f: int, boxes: dict[int, tuple[int, int, int, int]], size=(48, 64)) -> TrackedFrame:
    """A frame whose tracks (id -> xyxy) are filled rectangles; phrase "car", score 0.5 + id / 10."""
    ids = sorted(boxes)
    masks = torch.zeros((len(ids), *size), dtype=torch.bool)
    for k, tid in enumerate(ids):
        x0, y0, x1, y1 = boxes[tid]
        masks[k, y0:y1, x0:x1] = True
    return TrackedFrame(f, masks, torch.tensor([boxes[t] for t in ids], dtype=torch.float32).reshape(-1, 4),
                        torch.tensor(ids, dtype=torch.int64), torch.tensor([0.5 + t / 10 for t in ids]),
                        ["car"] * len(ids), size)


def test_tracks_mark_gaps_and_ends_outside(dm, tmp_path):
    """Track 1 is seen on frames 0, 1 and 4, track 2 from frame 3 to the video's end (frame 6):
    keyframes where seen, an outside shape where each stops being seen."""
    seen = {0: {1: (2, 2, 20, 20)}, 1: {1: (3, 2, 21, 20)}, 2: {}, 3: {2: (30, 10, 50, 30)},
            4: {1: (5, 2, 23, 20), 2: (31, 10, 51, 30)}, 5: {2: (32, 10, 52, 30)}, 6: {2: (33, 10, 53, 30)}}
    writer = CvatTrackWriter(tmp_path / "cvat" / "clip.xml", tmp_path, "clip.mp4", "polygon")
    for f, boxes in seen.items():
        writer.add(_frame(f, boxes))
    assert writer.close() == ["cvat/clip.xml"]
    got: dict[int, list[tuple[int, bool, bool]]] = {}
    for item in dm.import_from(str(tmp_path / "cvat" / "clip.xml"), "cvat"):
        for a in item.annotations:
            got.setdefault(a.attributes["track_id"], []).append(
                (item.attributes["frame"], a.attributes["outside"], a.attributes["keyframe"]))
            assert float(a.attributes["score"]) == pytest.approx(0.5 + a.attributes["track_id"] / 10)
    assert sorted(got[1]) == [(0, False, True), (1, False, True), (2, True, True), (4, False, True),
                              (5, True, True)]
    assert sorted(got[2]) == [(f, False, True) for f in (3, 4, 5, 6)]
    meta = ET.parse(tmp_path / "cvat" / "clip.xml").getroot().find("meta/task")
    assert [meta.findtext(k) for k in ("size", "mode", "stop_frame", "original_size/width")] == \
        ["7", "interpolation", "6", "64"]


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """The test clips tracked with cvat (masks) and the 16-bit track-id PNGs, and with cvat polygons."""
    from track_helpers import PROMPT, VideoEngines, write_clips

    from lang_sam.labeling.video_run import TrackSettings, track_folder

    root = tmp_path_factory.mktemp("cvat_track")
    engines = VideoEngines(root)
    try:
        model = engines.model()
        clips = write_clips(root / "clips")
        settings = TrackSettings.create(PROMPT, detect_every=3)
        for shape in ("mask", "polygon"):
            track_folder(model, [clips], root / shape, settings, ["cvat", "masks"], export=ExportOptions(shape))
    finally:
        engines.close()
    return root


def _frame_ids(root: Path, key: str) -> dict[int, np.ndarray]:
    from PIL import Image

    return {int(p.stem): np.asarray(Image.open(p)).astype(np.int64)
            for p in sorted((root / "masks" / key).glob("*.png"))}


@pytest.mark.parametrize("key", ["a", "sub/b"])
def test_track_masks_equal_the_track_pngs(tracked, key):
    pngs = _frame_ids(tracked / "mask", key)
    root = ET.parse(tracked / "mask" / "cvat" / f"{key}.xml").getroot()
    assert root.findtext("meta/task/size") == str(len(pngs))
    seen = 0
    for track in root.iter("track"):
        tid = int(track.get("id"))
        for shape in track.iter("mask"):
            truth = pngs[int(shape.get("frame"))] == tid
            if shape.get("outside") == "0":
                assert np.array_equal(decode(shape.attrib, truth.shape), truth)  # pixel for pixel
                seen += 1
            else:
                assert not truth.any()
    assert seen == sum(len(np.unique(ids[ids > 0])) for ids in pngs.values()) > 0


@pytest.mark.parametrize("key", ["a", "sub/b"])
def test_track_polygons_read_back_by_datumaro(dm, tracked, key):
    pngs = _frame_ids(tracked / "polygon", key)
    dataset = dm.import_from(str(tracked / "polygon" / "cvat" / f"{key}.xml"), "cvat")
    labels = _label_names(dataset)
    shapes = 0
    for item in dataset:
        ids = pngs[item.attributes["frame"]]
        for a in item.annotations:
            assert labels[a.label] in ("red", "green", "blue") and a.attributes["keyframe"]
            if not a.attributes["outside"]:
                assert np.allclose(np.reshape(a.points, (-1, 2)), largest_polygon(ids == a.attributes["track_id"]))
                shapes += 1
    # every mask with an outline over MIN_AREA pixels (a polygon); the others are not seen there
    assert shapes == sum(largest_polygon(ids == t) is not None for ids in pngs.values()
                         for t in np.unique(ids[ids > 0])) > 0


def test_track_cli_writes_cvat(tmp_path):
    """``lang-sam track --format cvat --polygons``: the files, the summary, and a resume with other
    shapes is refused (the videos' files hold the first run's)."""
    from track_helpers import CLIPS, PROMPT, VideoEngines, write_clip

    from lang_sam.cli import main

    engines = VideoEngines(tmp_path)
    try:
        write_clip(tmp_path / "clips" / "a.mp4", *CLIPS["a.mp4"])
        args = ["track", str(tmp_path / "clips"), "--prompt", PROMPT, "--output", str(tmp_path / "out"),
                "--format", "cvat", "-q", *engines.flags()]
        assert main(args + ["--polygons"]) == 0
        root = ET.parse(tmp_path / "out" / "cvat" / "a.xml").getroot()
        assert root.find("track/polygon") is not None and root.find("track/mask") is None
        assert main(args + ["--resume"]) == 2
    finally:
        engines.close()
