"""``lang-sam eval`` / :mod:`lang_sam.evaluate` (issue 29 item 3): a run's COCO output scored
against a ground truth the tests make (known masks) gives AP 1.0 when it equals the truth and
exactly what pycocotools gives, called directly, for a perturbed one; a track run's MOT output
equal to the truth has HOTA 1.0, and a perturbed one TrackEval's own figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lang_sam import evaluate as ev
from lang_sam.cli import main
from lang_sam.errors import EvaluationInputError, InvalidArgumentError, InvalidRunError
from lang_sam.labeling import CocoBuilder, coco_image_record
from lang_sam.labeling.eval_metrics import box_iou_xywh, coco_scores
from lang_sam.masks import CropMask

H, W = 48, 64
#: Per image: (class, x0, y0, x1, y1) rectangles, the known masks.
OBJECTS = {
    "a.png": [("car", 4, 6, 30, 30), ("wheel", 36, 10, 60, 40)],
    "b.png": [("car", 10, 4, 50, 26), ("car", 2, 30, 20, 46)],
    "sub/c.png": [("wheel", 20, 20, 44, 44)],
}
CLASSES = ["car", "wheel"]


def rect(x0, y0, x1, y1) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def write_gt(path: Path) -> Path:
    """A COCO ground truth with RLE masks (via the run's own record writer) and no scores."""
    builder = CocoBuilder()
    for name, objs in OBJECTS.items():
        masks = [CropMask.from_dense(rect(*o[1:])) for o in objs]
        boxes = np.array([o[1:] for o in objs], np.float32)
        builder.add(coco_image_record(name, W, H, masks, boxes, np.ones(len(objs)), [o[0] for o in objs]))
    data = builder.to_dict(CLASSES)
    for a in data["annotations"]:
        del a["score"]
    path.write_text(json.dumps(data))
    return path


def write_pred(path: Path, objects: dict, *, class_names=CLASSES) -> Path:
    """A run's ``coco/annotations.json``: ``objects`` = {file: [(class, x0, y0, x1, y1, score)]}."""
    builder = CocoBuilder()
    for name, objs in objects.items():
        masks = [CropMask.from_dense(rect(*o[1:5])) for o in objs]
        boxes = np.array([o[1:5] for o in objs], np.float32).reshape(-1, 4)
        builder.add(coco_image_record(name, W, H, masks, boxes, [o[5] for o in objs], [o[0] for o in objs]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(builder.to_dict(class_names)))
    return path


PERFECT = {name: [(*o, 0.9 - 0.1 * i) for i, o in enumerate(objs)] for name, objs in OBJECTS.items()}
PERTURBED = {
    "a.png": [("car", 6, 8, 30, 30, 0.8), ("wheel", 36, 10, 60, 40, 0.3), ("car", 40, 0, 60, 8, 0.95)],
    "b.png": [("car", 10, 4, 44, 26, 0.7), ("wheel", 2, 30, 20, 46, 0.6)],
    "sub/c.png": [("wheel", 22, 18, 44, 40, 0.5)],
}


def pycocotools_stats(gt_path: Path, pred_path: Path, iou_type: str) -> np.ndarray:
    """pycocotools called as its README does, on the prediction's annotations as results."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(gt_path))
    pred = json.loads(pred_path.read_text())
    key = "bbox" if iou_type == "bbox" else "segmentation"
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": a["score"], key: a[key]}
               for a in pred["annotations"]]
    e = COCOeval(gt, gt.loadRes(results), iou_type)
    e.evaluate()
    e.accumulate()
    e.summarize()
    return e.stats


@pytest.fixture
def gt(tmp_path) -> Path:
    return write_gt(tmp_path / "gt.json")


def test_a_prediction_equal_to_the_truth_scores_1(gt, tmp_path):
    pred = write_pred(tmp_path / "run" / "coco" / "annotations.json", PERFECT)
    report = ev.evaluate(tmp_path / "run", gt)  # the run folder stands for its coco/annotations.json
    for iou_type in ("bbox", "segm"):
        assert report.summary[iou_type] == {"AP": 1.0, "AP50": 1.0, "AP75": 1.0, "AR": 1.0}
        assert {c: v["AP"] for c, v in report.breakdown[iou_type].items()} == {"car": 1.0, "wheel": 1.0}
        assert report.curves[iou_type]["car"]["precision"] == [1.0] * 101
    assert report.notes["predictions"] == 5 and report.notes["predictions_left_out"] == 0
    assert ev.evaluate(pred, gt).summary == report.summary


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_a_perturbed_prediction_scores_what_pycocotools_gives(gt, tmp_path, iou_type):
    pred = write_pred(tmp_path / "pred.json", PERTURBED)
    want = pycocotools_stats(gt, pred, iou_type)
    got = ev.evaluate(pred, gt).summary[iou_type]
    assert got == {"AP": want[0], "AP50": want[1], "AP75": want[2], "AR": want[8]}
    assert 0 < got["AP"] < 1


def test_classes_and_images_are_matched_by_name_and_the_rest_left_out(gt, tmp_path):
    renamed = {name: [({"car": "CAR", "wheel": "Wheel "}[o[0]], *o[1:]) for o in objs] for name, objs in PERFECT.items()}
    objects = {"a.png": renamed["a.png"] + [("bus", 0, 0, 5, 5, 0.99)],
               "elsewhere/b.png": renamed["b.png"], "sub/c.png": renamed["sub/c.png"], "new.png": []}
    pred = write_pred(tmp_path / "pred.json", objects, class_names=["Wheel ", "CAR", "bus"])
    report = ev.evaluate(pred, gt)
    assert report.summary["segm"]["AP"] == 1.0  # b.png found by its base name; "CAR" is car
    assert report.notes == {"images": 3, "images_not_in_gt": 1, "gt_images_not_predicted": 0, "predictions": 5,
                            "predictions_left_out": 1, "classes_not_in_gt": 1}


def test_only_the_images_the_run_labelled_are_scored(gt, tmp_path):
    pred = write_pred(tmp_path / "pred.json", {"a.png": PERFECT["a.png"]})
    report = ev.evaluate(pred, gt)
    assert report.summary["bbox"]["AP"] == pytest.approx(1.0) and report.notes["gt_images_not_predicted"] == 2


def test_no_detection_at_all_scores_0(gt, tmp_path):
    pred = write_pred(tmp_path / "pred.json", {name: [] for name in OBJECTS})
    assert ev.evaluate(pred, gt).summary["segm"] == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "AR": 0.0}


def test_a_ground_truth_without_masks_is_scored_on_boxes_only(gt, tmp_path, caplog):
    data = json.loads(gt.read_text())
    for a in data["annotations"]:
        del a["segmentation"], a["area"]
    report = coco_scores(json.loads(write_pred(tmp_path / "p.json", PERFECT).read_text()), data)
    assert list(report.summary) == ["bbox"] and report.summary["bbox"]["AP"] == 1.0
    assert "without a segmentation" in caplog.text


@pytest.mark.parametrize("make, words", [
    (lambda t, gt: (t / "missing.json", gt), "cannot be read"),
    (lambda t, gt: (write_pred(t / "p.json", {"zzz.png": []}), gt), "no predicted image is in the ground truth"),
    (lambda t, gt: (write_pred(t / "p.json", {"a.png": [("bus", 0, 0, 4, 4, 0.5)]}, class_names=["bus"]), gt),
     "no predicted class"),
    (lambda t, gt: ((t / "list.json").write_text("[]") and t / "list.json", gt), "not a COCO dataset"),
])
def test_inputs_that_cannot_be_scored_are_typed_errors(gt, tmp_path, make, words):
    pred, truth = make(tmp_path, gt)
    with pytest.raises(EvaluationInputError, match=words) as info:
        ev.evaluate(pred, truth)
    assert isinstance(info.value, (InvalidRunError, ValueError))


def test_lang_sam_eval_prints_the_table_and_writes_json_and_plots(gt, tmp_path, capsys):
    pred = write_pred(tmp_path / "run" / "coco" / "annotations.json", PERTURBED)
    assert main(["eval", "--pred", str(pred), "--gt", str(gt)]) == 0
    out = capsys.readouterr().out
    assert "masks:" in out and "boxes:" in out and "wheel" in out and "left out" not in out
    folder = pred.parent / "eval"
    saved = json.loads((folder / "eval.json").read_text())
    assert saved["summary"]["segm"]["AP"] == pytest.approx(pycocotools_stats(gt, pred, "segm")[0])
    for name in ("pr_bbox.png", "pr_segm.png"):
        with Image.open(folder / name) as im:
            assert im.format == "PNG" and im.size == (640, 480)
    assert main(["eval", "--pred", str(tmp_path / "nothing.json"), "--gt", str(gt)]) == 2


# --------------------------------------------------------------------------------------------
# MOT
# --------------------------------------------------------------------------------------------

#: Two objects over 6 frames: (frame, id, x, y, w, h).
TRACKS = [(f, 1, 10 + 2 * f, 10, 20, 30) for f in range(1, 7)] + [(f, 2, 80 - 3 * f, 40, 16, 16) for f in range(1, 7)]


def mot_text(rows, score: bool = True) -> str:
    return "".join(f"{f},{i},{x:.2f},{y:.2f},{w:.2f},{h:.2f},{'0.9000' if score else 1},-1,-1,-1\n"
                   for f, i, x, y, w, h in rows)


def test_tracks_equal_to_the_truth_have_hota_1(tmp_path):
    (tmp_path / "gt" / "clip" / "gt").mkdir(parents=True)
    (tmp_path / "gt" / "clip" / "gt" / "gt.txt").write_text(mot_text(TRACKS, score=False))
    (tmp_path / "run" / "mot").mkdir(parents=True)
    (tmp_path / "run" / "mot" / "clip.txt").write_text(mot_text([(f, i + 6, *b) for f, i, *b in TRACKS]))
    report = ev.evaluate(tmp_path / "run", tmp_path / "gt")
    assert report.summary["all"] == {"HOTA": 1.0, "DetA": 1.0, "AssA": 1.0, "MOTA": 1.0, "IDF1": 1.0, "IDSW": 0}
    assert list(report.breakdown["sequences"]) == ["clip"]


def test_perturbed_tracks_score_what_trackeval_gives(tmp_path):
    from trackeval.metrics import CLEAR, HOTA, Identity

    swapped = [(f, 3 - i if f > 3 else i, *b) for f, i, *b in TRACKS if (f, i) != (2, 2)]
    (tmp_path / "gt.txt").write_text(mot_text(TRACKS, score=False))
    (tmp_path / "pred.txt").write_text(mot_text(swapped))
    got = ev.evaluate(tmp_path / "pred.txt", tmp_path / "gt.txt").summary["all"]
    ids = [np.array([i - 1 for ff, i, *_ in TRACKS if ff == f]) for f in range(1, 7)]
    pids = [np.array([i - 1 for ff, i, *_ in swapped if ff == f]) for f in range(1, 7)]
    gtb = {f: np.array([b for ff, _, *b in TRACKS if ff == f]) for f in range(1, 7)}
    prb = {f: np.array([b for ff, _, *b in swapped if ff == f]) for f in range(1, 7)}
    data = {"num_timesteps": 6, "num_gt_ids": 2, "num_tracker_ids": 2, "num_gt_dets": 12, "num_tracker_dets": 11,
            "gt_ids": ids, "tracker_ids": pids, "similarity_scores": [box_iou_xywh(gtb[f], prb[f]) for f in range(1, 7)]}
    hota = HOTA().eval_sequence(data)
    clear = CLEAR({"PRINT_CONFIG": False}).eval_sequence(data)
    ident = Identity({"PRINT_CONFIG": False}).eval_sequence(data)
    assert got["HOTA"] == pytest.approx(float(np.mean(hota["HOTA"])), abs=1e-12) and got["HOTA"] < 1
    assert got["MOTA"] == pytest.approx(float(clear["MOTA"])) and got["IDSW"] == clear["IDSW"] == 2
    assert got["IDF1"] == pytest.approx(float(ident["IDF1"])) and got["IDF1"] < 1


def test_mot_ground_truth_rows_flagged_0_are_not_considered(tmp_path):
    ignored = "".join(f"{f},9,0,0,5,5,0,1,1\n" for f in range(1, 7))
    (tmp_path / "gt.txt").write_text(mot_text(TRACKS, score=False) + ignored)
    (tmp_path / "pred.txt").write_text(mot_text(TRACKS))
    assert ev.evaluate(tmp_path / "pred.txt", tmp_path / "gt.txt").summary["all"]["HOTA"] == 1.0


def test_box_iou_xywh():
    got = box_iou_xywh(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 1, 1]]))
    assert got.tolist() == [[1.0, 50 / 150, 0.0]]


@pytest.mark.parametrize("text, want", [
    ("0.2:0.5:0.05", [0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5]),
    ("0.3", [0.3]), ("0.3,0.1,0.3", [0.3, 0.1]), ([0.25, 0.5], [0.25, 0.5]), (0.4, [0.4]),
])
def test_parse_thresholds(text, want):
    assert ev.parse_thresholds(text) == want


@pytest.mark.parametrize("text", ["0.5:0.2:0.1", "0.2:0.5:0", "0.2:1.5:0.5", "x", ""])
def test_parse_thresholds_refuses(text):
    with pytest.raises(InvalidArgumentError):
        ev.parse_thresholds(text)


def test_lang_sam_eval_scores_a_track_run(tmp_path, capsys):
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "clip.txt").write_text(mot_text(TRACKS, score=False))
    (tmp_path / "run" / "mot" / "city").mkdir(parents=True)
    (tmp_path / "run" / "mot" / "city" / "day.txt").write_text(mot_text(TRACKS))  # no ground truth: not scored
    (tmp_path / "run" / "mot" / "clip.txt").write_text(mot_text(TRACKS))
    assert main(["eval", "--pred", str(tmp_path / "run"), "--gt", str(tmp_path / "gt")]) == 0
    out = capsys.readouterr().out
    assert "tracks:" in out and "HOTA" in out and "clip" in out and "city/day" not in out
    saved = json.loads((tmp_path / "run" / "eval" / "eval.json").read_text())
    assert saved["kind"] == "mot" and saved["summary"]["all"]["IDF1"] == 1.0
    assert not (tmp_path / "run" / "eval" / "pr_bbox.png").exists()
    assert main(["eval", "--pred", str(tmp_path / "run" / "mot" / "city"), "--gt", str(tmp_path / "gt")]) == 2
