"""lang_sam.labeling's formats on crafted masks, boxes and phrases (no model needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from lang_sam.errors import InvalidClassMapError
from lang_sam.labeling import (
    ClassMap,
    CocoBuilder,
    atomic_write_bytes,
    atomic_write_text,
    class_nms,
    coco_image_record,
    labelme_dict,
    mask_to_rle,
    rle_to_mask,
    write_instance_masks,
    write_overlay,
    yolo_data_yaml,
    yolo_lines,
)


def crafted_masks(h=60, w=80, seed=0):
    """Three masks: a rectangle, a disc with a hole, and random speckle (many components, holes)."""
    yy, xx = np.mgrid[0:h, 0:w]
    rect = np.zeros((h, w), bool)
    rect[5:30, 10:50] = True
    r = np.hypot(yy - 35, xx - 55)
    ring = (r < 20) & (r > 6)
    speckle = np.random.default_rng(seed).random((h, w)) > 0.3
    return np.stack([rect, ring, speckle])


# ------------------------------------------------------------------------------------------
# Class mapping and NMS
# ------------------------------------------------------------------------------------------

def test_class_map_parse_and_prompt():
    cm = ClassMap.parse(["car=car. automobile", "wheel", "person. dog"])
    assert cm.names == ["car", "wheel", "person", "dog"]
    assert cm.prompt == "car. automobile. wheel. person. dog"
    assert cm.fixed and len(cm) == 4


@pytest.mark.parametrize("phrase,expected", [
    ("car", "car"), ("Automobile", "car"), ("automobile.", "car"),   # exact (normalised)
    ("wheel", "wheel"), ("red automobile", "car"),                   # contains a prompt phrase
    ("police car", "police car"), ("white police car", "police car"),  # longest phrase wins
    ("car wheel", "wheel"),          # both contained: the longer prompt phrase wins
    ("police", "police car"),        # shares a word
    ("dog", None), ("", None), (" . ", None),
])
def test_class_map_matching(phrase, expected):
    cm = ClassMap.parse(["car=car. automobile", "wheel", "police car=police car"])
    cid = cm.class_id(phrase)
    assert (cm.name(cid) if cid is not None else None) == expected
    assert len(cm) == 3  # a fixed map never grows


def test_class_map_ties_go_to_the_first_class():
    cm = ClassMap.parse(["a=red thing", "b=blue thing"])
    assert cm.name(cm.class_id("green thing")) == "a"


def test_open_class_map_ids_stable_in_order_of_first_appearance():
    cm = ClassMap()
    ids = [cm.class_id(p) for p in ["wheel", " car", "Wheel.", "car wheel", "", "car"]]
    assert ids == [0, 1, 0, 2, None, 1]
    assert cm.names == ["wheel", "car", "car wheel"]
    again = ClassMap.from_state(json.loads(json.dumps(cm.state())))
    assert again.names == cm.names and not again.fixed
    assert again.class_id("dog") == 3
    with pytest.raises(ValueError, match="no prompt"):
        cm.prompt


@pytest.mark.parametrize("specs,match", [
    ([], "at least one"),
    (["=car"], "empty name"),
    (["car="], "no prompt phrase"),
    (["car=car", "auto=car"], "both class 'car' and 'auto'"),
    (["car=car", "car=auto"], "named twice"),
    (["a=b=c"], "more than one '='"),
    ([""], "non-empty"),
])
def test_class_map_bad_specs(specs, match):
    with pytest.raises(InvalidClassMapError, match=match) as info:
        ClassMap.parse(specs)
    assert isinstance(info.value, ValueError)


def test_class_nms_is_per_class_and_keeps_input_order():
    boxes = torch.tensor([
        [0, 0, 10, 10],     # 0 class 0
        [1, 1, 11, 11],     # 1 class 0, overlaps 0 (IoU ~0.68), higher score -> 0 is dropped
        [0, 0, 10, 10],     # 2 class 1, same box as 0 but another class -> kept
        [50, 50, 60, 60],   # 3 class 0, far away -> kept
        [0, 0, 10, 9],      # 4 class 1, overlaps 2 (IoU 0.9), lower score -> dropped
    ], dtype=torch.float32)
    scores = torch.tensor([0.5, 0.9, 0.4, 0.3, 0.35])
    classes = [0, 0, 1, 0, 1]
    assert class_nms(boxes, scores, classes, 0.5).tolist() == [1, 2, 3]
    assert class_nms(boxes, scores, classes, 0.95).tolist() == [0, 1, 2, 3, 4]  # nothing over 0.95
    assert class_nms(np.zeros((0, 4)), [], [], 0.5).tolist() == []
    with pytest.raises(ValueError, match="expected equal"):
        class_nms(boxes, scores, [0], 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        class_nms(boxes, scores, classes, 1.5)


# ------------------------------------------------------------------------------------------
# Round trips
# ------------------------------------------------------------------------------------------

def test_rle_round_trip_numpy_and_torch():
    for m in crafted_masks():
        rle = mask_to_rle(m)
        assert isinstance(rle["counts"], str) and rle["size"] == [60, 80]
        assert np.array_equal(rle_to_mask(json.loads(json.dumps(rle))), m)
        assert mask_to_rle(torch.from_numpy(m)) == rle


def test_coco_file_loads_with_pycocotools_and_round_trips(tmp_path):
    from pycocotools.coco import COCO

    masks = crafted_masks()
    boxes = np.array([[10, 5, 50, 30], [35, 15, 75, 55], [0, 0, 80, 60]], np.float32)
    b = CocoBuilder()
    b.add(coco_image_record("a.png", 80, 60, masks, boxes, [0.9, 0.8, 0.7], ["car", "wheel", "car"]))
    b.add(coco_image_record("sub/a.png", 80, 60, masks[:1], boxes[:1], [0.5], ["wheel"]))
    b.add(coco_image_record("empty.png", 80, 60, np.zeros((0, 60, 80), bool), np.zeros((0, 4)), [], []))
    b.add(coco_image_record("a.png", 80, 60, masks, boxes, [0.9, 0.8, 0.7], ["car", "wheel", "car"]))
    path = b.write(tmp_path / "annotations.json", ["car", "wheel"])
    coco = COCO(str(path))
    assert sorted(coco.getImgIds()) == [1, 2, 3]  # the repeated a.png replaced, not duplicated
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["car", "wheel"]
    anns = coco.loadAnns(coco.getAnnIds())
    assert [a["id"] for a in anns] == [1, 2, 3, 4]
    expected = list(zip(masks, [1, 2, 1])) + [(masks[0], 2)]
    for ann, (mask, cat) in zip(anns, expected):
        assert np.array_equal(coco.annToMask(ann).astype(bool), mask)
        assert ann["category_id"] == cat and ann["iscrowd"] == 0 and ann["area"] == int(mask.sum())
    assert anns[0]["bbox"] == [10, 5, 40, 25] and anns[0]["score"] == pytest.approx(0.9)
    with pytest.raises(ValueError, match="not one of the categories"):
        b.to_dict(["car"])


def test_instance_mask_pngs_round_trip(tmp_path):
    masks = crafted_masks()
    d = tmp_path / "m"
    d.mkdir()
    (d / "007_other.png").write_bytes(b"old")
    paths = write_instance_masks(d, torch.from_numpy(masks), ["car", "car wheel", "a/b"])
    assert [p.name for p in paths] == ["000_car.png", "001_car_wheel.png", "002_a_b.png"]
    # Files it did not write are not its to delete (issue 18); LabelRun removes an earlier run's
    # extra masks of an image itself (tests/test_output_folder.py).
    assert sorted(p.name for p in d.iterdir()) == [p.name for p in paths] + ["007_other.png"]
    for p, m in zip(paths, masks):
        back = np.asarray(Image.open(p))
        assert back.dtype == np.uint8 and set(np.unique(back)) <= {0, 255}
        assert np.array_equal(back > 0, m)


def test_overlay_png(tmp_path):
    image = np.full((60, 80, 3), 100, np.uint8)
    p = write_overlay(tmp_path / "o" / "x.png", image, crafted_masks()[:1], [[10, 5, 50, 30]], ["car"])
    back = np.asarray(Image.open(p))
    assert back.shape == (60, 80, 3) and not np.array_equal(back, image)
    p = write_overlay(tmp_path / "o" / "y.png", image, np.zeros((0, 60, 80), bool), np.zeros((0, 4)), [])
    assert np.array_equal(np.asarray(Image.open(p)), image)


def test_yolo_rows_and_data_yaml():
    masks = crafted_masks()
    tiny = np.zeros((60, 80), bool)
    tiny[0:3, 0:3] = True  # 9 pixels: no contour over MIN_AREA -> skipped
    rows = yolo_lines(np.concatenate([masks, tiny[None]]), [0, 1, 0, 1], (60, 80))
    assert len(rows) == 3
    for row, cid in zip(rows, [0, 1, 0]):
        parts = row.split()
        assert int(parts[0]) == cid
        xy = np.array(parts[1:], float).reshape(-1, 2)
        assert len(xy) >= 3 and (xy >= 0).all() and (xy <= 1).all()
    rect = np.array(rows[0].split()[1:], float).reshape(-1, 2) * [80, 60]
    assert np.allclose(rect.min(0), [10, 5], atol=1e-3) and np.allclose(rect.max(0), [49, 29], atol=1e-3)
    text = yolo_data_yaml(["car", 'say "hi"'])
    assert text.splitlines()[1:] == ["nc: 2", "names:", '  0: "car"', '  1: "say \\"hi\\""']
    assert "names: {}" in yolo_data_yaml([])


def test_labelme_dict_schema():
    d = labelme_dict(torch.from_numpy(crafted_masks()[:2]), ["car", "wheel"], (60, 80), "../a.png")
    assert d["imageHeight"] == 60 and d["imageWidth"] == 80 and d["imagePath"] == "../a.png"
    assert [s["label"] for s in d["shapes"]] == ["car", "wheel"]
    assert all(s["shape_type"] == "polygon" and len(s["points"]) >= 3 for s in d["shapes"])


def test_atomic_write_leaves_no_temp_file_on_failure(tmp_path):
    target = tmp_path / "x.json"
    atomic_write_text(target, "old")

    with pytest.raises(TypeError):  # fails inside the write, after the temp file is opened
        atomic_write_bytes(target, object())
    assert target.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["x.json"]



def test_exports_and_cli_import_light():
    code = (
        "import sys, lang_sam.labeling, lang_sam.cli\n"
        "heavy = [m for m in ('groundingdino', 'segment_anything', 'transformers', 'cv2', 'pycocotools')"
        " if m in sys.modules]\n"
        "sys.stderr.write(repr(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "" and out.stderr.strip() == "[]"


# ------------------------------------------------------------------------------------------
# What each format leaves out, counted (issue 19, item 5)
# ------------------------------------------------------------------------------------------

def _instances(h=60, w=80):
    """Five masks: two objects, an empty mask, a 5x5 speck (outline 16 px^2), and an object with a
    speck beside it (kept: its largest outline is over MIN_AREA)."""
    m = np.zeros((5, h, w), bool)
    m[0, 5:30, 10:50] = True
    m[2, 40:45, 5:10] = True
    m[3, 30:55, 55:75] = True
    m[4, 10:25, 60:78] = True
    m[4, 50:52, 2:4] = True
    return m


@pytest.mark.parametrize("as_crops", [False, True], ids=["dense", "crops"])
def test_run_counts_what_each_format_left_out_and_counts_add_up(tmp_path, as_crops):
    """Issue 19: 531 COCO annotations but 418 YOLO lines, and a LabelMe file with 0 polygons for 6
    masks, said nowhere. LabelMe and YOLO leave out masks without a polygon (empty, or specks of
    MIN_AREA px or fewer); the run's summary and the image's record now say how many, and why, and
    written + left out = detections for every format."""
    from pathlib import PurePosixPath

    from lang_sam.labeling.formats import export_losses, polygon_loss
    from lang_sam.labeling.run import ImageItem, ImageLabels, LabelRun, LabelSettings
    from lang_sam.masks import CropMask

    dense = _instances()
    masks = [CropMask.from_dense(x) for x in dense] if as_crops else dense
    assert [polygon_loss(x) for x in masks] == [None, "empty mask", "outline <= 100 px", None, None]
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(tmp_path / "a.png")
    item = ImageItem(tmp_path / "a.png", PurePosixPath("a.png"))
    boxes = np.array([[10, 5, 50, 30], [0, 0, 1, 1], [5, 40, 10, 45], [55, 30, 75, 55], [2, 10, 78, 52]],
                     np.float32)
    labels = ImageLabels(item=item, width=80, height=60, boxes=boxes, scores=np.full(5, 0.5, np.float32),
                         names=["car", "car", "wheel", "car", "wheel"], masks=masks)
    formats = ["masks", "coco", "labelme", "yolo"]
    run = LabelRun(tmp_path / "out", LabelSettings.create("car. wheel"), formats)
    run.start([item])
    record = run.write(labels)
    summary = run.finish()

    left_out = {"empty mask": 1, "outline <= 100 px": 1}
    expected = {"masks": {}, "coco": {}, "labelme": left_out, "yolo": left_out}
    assert record["exports"] == expected == export_losses(masks, formats)
    assert summary.export_dropped == expected and summary.run_detections == 5
    out = tmp_path / "out"
    on_disk = {
        "coco": len(json.loads((out / "coco" / "annotations.json").read_text())["annotations"]),
        "masks": len(list((out / "masks" / "a").glob("*.png"))),
        "yolo": len((out / "yolo" / "labels" / "a.txt").read_text().splitlines()),
        # one shape per outline over MIN_AREA: here one for each mask that has any
        "labelme": len(json.loads((out / "labelme" / "a.json").read_text())["shapes"]),
    }
    assert on_disk == {"coco": 5, "masks": 5, "yolo": 3, "labelme": 3}
    for f in formats:
        assert summary.written(f) == on_disk[f]
        assert summary.written(f) + sum(summary.export_dropped[f].values()) == summary.run_detections


def test_cli_summary_prints_what_each_format_left_out(tmp_path, capsys):
    from lang_sam.cli_report import print_summary
    from lang_sam.labeling.run import RunSummary

    summary = RunSummary(output=tmp_path, formats=["overlay", "coco", "yolo"], images=2, labelled=2,
                         detections=9, run_images=2, run_detections=9, seconds=3.0,
                         export_dropped={"coco": {}, "yolo": {"empty mask": 1, "outline <= 100 px": 2}})
    print_summary(summary)
    out = capsys.readouterr().out
    assert "instances written per format: coco 9 of 9, yolo 6 of 9 (3 left out: 1 empty mask, " \
           "2 outline <= 100 px)" in out


@pytest.mark.parametrize("labelled,seconds,rate", [
    (1, 3600.0, "3600.0 s/image"),  # was "0.000 images/s": an hour per tiled image said nothing
    (2, 3.0, "1.5 s/image"),
    (10, 4.0, "2.50 images/s"),
])
def test_cli_summary_rate_is_readable_for_slow_and_fast_runs(tmp_path, capsys, labelled, seconds, rate):
    from lang_sam.cli_report import print_summary
    from lang_sam.labeling.run import RunSummary

    print_summary(RunSummary(output=tmp_path, formats=["coco"], images=labelled, labelled=labelled,
                             seconds=seconds, run_images=labelled))
    assert f"; {seconds:.1f} s, {rate}" in capsys.readouterr().out


def _to_bbox(mask: np.ndarray) -> list[float]:
    """COCO's ``toBbox`` of a mask's RLE, from the mask itself: ``[x, y, w, h]`` with ``w``/``h``
    the columns/rows it covers (min/max column and row + 1)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1 - cols[0]), float(rows[-1] + 1 - rows[0])]


def _generate_boxes(masks: torch.Tensor) -> torch.Tensor:
    """``LangSAM.generate`` -> labelling writers: SAM's inclusive boxes, converted where they enter."""
    from lang_sam.generate import masks_to_boxes
    from lang_sam.results import GeneratedMasks

    n, (h, w) = len(masks), masks.shape[1:]
    gen = GeneratedMasks(masks, masks_to_boxes(masks).to(torch.float32), masks.flatten(1).sum(1),
                         torch.ones(n), torch.ones(n), torch.zeros((n, 2)), torch.tensor([[0, 0, w, h]] * n,
                                                                                        dtype=torch.float32), (h, w))
    return gen.edge_boxes()


def _tracking_boxes(masks: torch.Tensor) -> torch.Tensor:
    """``predict_video`` -> video writers: a frame's boxes are its masks' boxes."""
    from lang_sam.tracking import mask_boxes

    return mask_boxes(masks)


def _text_boxes(masks: torch.Tensor) -> torch.Tensor:
    """``label_image`` -> writers: the detector's boxes, continuous pixel-edge coordinates (a
    detector that found exactly these pixels gives their outer edges)."""
    out = []
    for m in masks.numpy():
        x, y, w, h = _to_bbox(m)
        out.append([x, y, x + w, y + h])
    return torch.tensor(out, dtype=torch.float32)


def _coco_of(path: str, masks: torch.Tensor, boxes: torch.Tensor) -> list[dict]:
    """The COCO annotations the path's writer makes of ``masks`` with ``boxes``."""
    from lang_sam.labeling.video_formats import CocoVideoRecord
    from lang_sam.results import TrackedFrame

    n, (h, w) = len(masks), masks.shape[1:]
    if path == "tracking":
        sink = CocoVideoRecord("clip", "clip.mp4")
        sink.add(TrackedFrame.checked(0, masks, boxes, torch.arange(1, n + 1), torch.ones(n), ["x"] * n, (h, w)))
        return sink.frames[0]["annotations"]
    return coco_image_record("a.png", w, h, masks, boxes, np.ones(n), ["x"] * n)["annotations"]


@pytest.mark.parametrize("path,boxes_of", [
    ("generate", _generate_boxes), ("text", _text_boxes), ("tracking", _tracking_boxes),
], ids=["everything-labelling", "text-labelling", "tracking"])
def test_coco_bbox_is_to_bbox_of_the_mask_on_every_path(path, boxes_of):
    """One box convention at the writers (xyxy, ``x1``/``y1`` exclusive): every path that reaches
    COCO gives a mask's ``bbox`` equal to ``toBbox`` of its RLE (a 1-pixel mask is 1 x 1)."""
    from pycocotools import mask as mask_util

    masks = torch.zeros((4, 20, 30), dtype=torch.bool)
    masks[0, 3:8, 5:12] = True  # 7 columns x 5 rows
    masks[1, 0:20, 0:30] = True  # the whole image
    masks[2, 19, 29] = True  # one pixel in the last corner
    masks[3, 2:4, 20:22] = True
    masks[3, 10, 25] = True  # two parts: the box spans both
    anns = _coco_of(path, masks, boxes_of(masks))
    assert len(anns) == len(masks)
    for ann, mask in zip(anns, masks.numpy()):
        assert ann["bbox"] == _to_bbox(mask)
        rle = dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode("ascii"))
        assert ann["bbox"] == mask_util.toBbox(rle).tolist()
    assert anns[0]["bbox"] == [5.0, 3.0, 7.0, 5.0] and anns[2]["bbox"] == [29.0, 19.0, 1.0, 1.0]
