"""``lang-sam predict --everything`` and ``LabelSettings(everything=...)``: every mask of
``LangSAM.generate`` written by the labelling writers (COCO, YOLO seg, LabelMe, mask PNGs,
overlays), each parsed back and compared with ``generate``'s own masks; resume and usage errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_image
from lang_sam.cli import main
from lang_sam.errors import InvalidRunError
from lang_sam.labeling.hooks import RunHooks
from lang_sam.labeling.run import EVERYTHING_CLASS, LabelSettings, label_folder

ALL_FORMATS = "overlay,masks,coco,labelme,yolo"
#: Calibrated to the tiny random SAM (see tests/test_generate.py): keeps every candidate mask.
FLAGS = ["--points-per-side", "2", "--pred-iou-thresh", "0", "--stability-score-thresh", "0",
         "--box-nms-thresh", "1"]
SETTINGS = dict(points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)


@pytest.fixture
def model_args(tiny_specs, sam_ckpt, gdino_ckpt):
    sam, gdino = tiny_specs
    return ["--sam-type", sam.name, "--sam-ckpt", str(sam_ckpt), "--gdino-type", gdino.name,
            "--gdino-ckpt", str(gdino_ckpt), "--device", "cpu"]


def _images(root: Path) -> dict[str, np.ndarray]:
    (root / "sub").mkdir(parents=True)
    arrays = {"a.png": make_image(60, 80, 1), "sub/b.png": make_image(48, 64, 2)}
    for name, arr in arrays.items():
        Image.fromarray(arr).save(root / name)
    return arrays


@pytest.mark.slow
def test_predict_everything_every_format_parses_back(tmp_path, model_args, model, capsys):
    from pycocotools import mask as mask_util
    from pycocotools.coco import COCO

    imgs, out = tmp_path / "imgs", tmp_path / "out"
    arrays = _images(imgs)
    rc = main(["predict", str(imgs), "--everything", *FLAGS, "--output", str(out), "--format", ALL_FORMATS,
               "-q", *model_args])
    stdout = capsys.readouterr().out
    assert rc == 0, stdout
    assert "2 labelled" in stdout and f'classes (1): "{EVERYTHING_CLASS}"' in stdout

    expected = {name: model.generate(arr, **SETTINGS) for name, arr in arrays.items()}
    assert all(len(g) > 0 for g in expected.values())

    coco = COCO(str(out / "coco" / "annotations.json"))
    assert [c["name"] for c in coco.dataset["categories"]] == [EVERYTHING_CLASS]
    assert {im["file_name"] for im in coco.dataset["images"]} == set(arrays)
    for im in coco.dataset["images"]:
        gen = expected[im["file_name"]]
        anns = sorted(coco.loadAnns(coco.getAnnIds(imgIds=[im["id"]])), key=lambda a: a["id"])
        assert len(anns) == len(gen)
        for a, mask, box, area, score in zip(anns, gen.masks.numpy(), gen.boxes.tolist(), gen.areas.tolist(),
                                             gen.iou_scores.tolist()):
            assert np.array_equal(coco.annToMask(a).astype(bool), mask)
            assert a["area"] == area
            # the writers' box convention (x1/y1 exclusive): COCO's toBbox of the mask, one column
            # and row more than SAM's inclusive box
            assert a["bbox"] == pytest.approx([box[0], box[1], box[2] + 1 - box[0], box[3] + 1 - box[1]], abs=1e-3)
            assert a["bbox"] == mask_util.toBbox(coco.annToRLE(a)).tolist()
            assert a["score"] == pytest.approx(score, abs=1e-6)  # SAM's predicted IoU

        key = im["file_name"].rsplit(".", 1)[0]
        pngs = sorted((out / "masks" / key).glob("*.png"))
        assert [p.name for p in pngs] == [f"{i:03d}_{EVERYTHING_CLASS}.png" for i in range(len(gen))]
        for p, mask in zip(pngs, gen.masks.numpy()):
            assert np.array_equal(np.asarray(Image.open(p)) > 0, mask)

        h, w = arrays[im["file_name"]].shape[:2]
        assert np.asarray(Image.open(out / "overlays" / f"{key}.png")).shape == (h, w, 3)

        lm = json.loads((out / "labelme" / f"{key}.json").read_text())
        assert (lm["imageHeight"], lm["imageWidth"]) == (h, w)
        assert (out / "labelme" / Path(key).parent / lm["imagePath"]).resolve() == (imgs / im["file_name"]).resolve()
        for s in lm["shapes"]:
            pts = np.array(s["points"])
            assert s["label"] == EVERYTHING_CLASS and pts.shape[1] == 2 and len(pts) >= 3
            assert (pts >= 0).all() and (pts[:, 0] < w).all() and (pts[:, 1] < h).all()

        rows = (out / "yolo" / "labels" / f"{key}.txt").read_text().splitlines()
        assert len(rows) <= len(gen)
        for row in rows:
            parts = row.split()
            xy = np.array(parts[1:], dtype=float)
            assert parts[0] == "0" and len(xy) % 2 == 0 and len(xy) >= 6 and ((xy >= 0) & (xy <= 1)).all()
    assert (out / "yolo" / "data.yaml").read_text().splitlines()[1:] == ["nc: 1", "names:", f'  0: "{EVERYTHING_CLASS}"']
    config = json.loads((out / ".lang-sam" / "run.json").read_text())["config"]
    assert config["everything"] == dict(sorted(SETTINGS.items())) and config["prompt"] == ""

    # --resume with the same settings: nothing to do; with other generator settings: refused.
    rc = main(["predict", str(imgs), "--everything", *FLAGS, "--output", str(out), "--format", ALL_FORMATS,
               "--resume", "-q", *model_args])
    assert rc == 0 and "0 labelled, 2 skipped" in capsys.readouterr().out
    rc = main(["predict", str(imgs), "--everything", *FLAGS, "--points-per-side", "3", "--output", str(out),
               "--format", ALL_FORMATS, "--resume", "-q", *model_args])
    err = capsys.readouterr().err
    assert rc == 2 and "other settings" in err and "everything" in err


def test_label_folder_everything_reports_generate_progress(tmp_path, model):
    Image.fromarray(make_image(40, 50, 3)).save(tmp_path / "x.png")
    seen = []

    class Hooks(RunHooks):
        def step(self, item, stage, done, total):
            seen.append((stage, done, total))

    settings = LabelSettings.create(everything=dict(SETTINGS, points_per_side=1))
    summary = label_folder(model, [tmp_path / "x.png"], tmp_path / "out", settings, ["coco"], hooks=Hooks())
    assert summary.labelled == 1 and summary.classes == [EVERYTHING_CLASS]
    assert summary.detections == len(model.generate(make_image(40, 50, 3), **dict(SETTINGS, points_per_side=1)))
    assert seen == [("generate", 0, 1), ("generate", 1, 1)]


@pytest.mark.parametrize("extra,match", [
    (["--everything", "--prompt", "car"], "without --prompt"),
    (["--everything", "--classes", "car"], "without --classes"),
    (["--everything", "--tile", "512"], "without --tile"),
    (["--everything", "--nms", "0.5"], "without --nms"),
    (["--points-per-side", "8", "--prompt", "car"], "--points-per-side: only with --everything"),
    (["--everything", "--points-per-side", "0"], "whole number >= 1"),
    (["--everything", "--pred-iou-thresh", "2"], r"\[0, 1\]"),
    ([], "--everything"),  # the message for no prompt names the third way too
])
def test_everything_usage_errors_exit_2(tmp_path, extra, match, capsys, tiny_specs):
    Image.fromarray(make_image(20, 20)).save(tmp_path / "x.png")
    rc = main(["predict", str(tmp_path / "x.png"), "--output", str(tmp_path / "out"), *extra])
    assert rc == 2
    err = capsys.readouterr().err
    assert match in err or re.search(match, err), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kwargs,match", [
    (dict(everything={}, prompt="car"), "without prompt"),
    (dict(everything={}, nms=0.5), "without nms"),
    (dict(everything={"points_per_side": 0}), "points_per_side"),
    (dict(everything={"pointz": 1}), "unknown generate setting"),
    (dict(everything=[("points_per_side", 4)]), "a dict"),
])
def test_everything_settings_errors_are_run_errors(kwargs, match):
    with pytest.raises(InvalidRunError, match=match):
        LabelSettings.create(**kwargs)


def test_everything_settings_config_is_json_and_grids_are_lists():
    s = LabelSettings.create(everything={"point_grids": [np.array([[0.5, 0.5]])], "points_per_side": None})
    assert json.loads(json.dumps(s.config()))["everything"] == {"point_grids": [[[0.5, 0.5]]], "points_per_side": None}
    assert LabelSettings.create(prompt="car").config().get("everything") is None  # older runs' records match
