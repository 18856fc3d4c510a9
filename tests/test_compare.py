"""``lang-sam compare`` / :func:`lang_sam.evaluate.compare` (issue 29 item 4), on the tiny stand-in
engines (tiny SAM v1 and the plugin box-fill segmenter, tiny GroundingDINO): each image is encoded
once per engine however many thresholds are asked, and its table equals separate ``lang-sam
predict`` + ``lang-sam eval`` runs of each setting."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import make_image
from lang_sam import LangSAM, evaluate as ev
from lang_sam.cli import main
from lang_sam.hub.spec import ModelSpec
from lang_sam.models.detector import GroundingDINODetector
from lang_sam.models.registry import register_model, unregister_model
from lang_sam.models.segmenter import SamSegmenter
from lang_sam.labeling import LabelSettings, label_folder
from lang_sam.testing import TINY_GDINO, tiny_gdino_spec, write_gdino_checkpoint
from plugin_engines import BoxFill, BoxFillArch

PROMPT = "car. wheel"
THRESHOLDS = (0.3, 0.32)
GDINO = "tiny_gdino_128"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_specs, ckpt_dir):
    """Photos, a weights folder holding every engine's file (a tiny GroundingDINO calibrated to a
    few boxes on these photos), and a ground truth: a tiny-SAM ``predict`` run at 0.31 (so the
    settings neither all score 0 nor all 1)."""
    root = tmp_path_factory.mktemp("compare")
    photos = root / "photos"
    (photos / "sub").mkdir(parents=True)
    names = ["a.png", "sub/b.png"]
    for i, name in enumerate(names):
        Image.fromarray(make_image(96, 128, seed=i)).save(photos / name)
    weights = root / "weights"
    weights.mkdir()
    sam = tiny_specs[0]
    shutil.copy(ckpt_dir / sam.filename, weights / sam.filename)
    # GroundingDINO's input at 128 px, not the tiny spec's 320: the encodings are the test's cost
    gdino = register_model(tiny_gdino_spec(GDINO, replace(TINY_GDINO, image_size=128, max_size=171)))
    write_gdino_checkpoint(weights / gdino.filename, gdino, seed=0, few_boxes=True, target_boxes=6,
                           calibration_image=[str(photos / n) for n in names], calibration_prompt=PROMPT)
    spec = register_model(ModelSpec("sam", "box_fill", "box_fill.pth", BoxFillArch(), engine="plugin_engines:BoxFill"))
    torch.save({"inset": torch.tensor(1)}, weights / "box_fill.pth")
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("LANG_SAM_WEIGHTS_DIR", str(weights))
            mp.setenv("LANG_SAM_OFFLINE", "1")
            assert main(["predict", str(photos), "--prompt", PROMPT, "--sam-type", "tiny_sam", "--gdino-type",
                         GDINO, "--box-threshold", "0.31", "--output", str(root / "truth"), "--format",
                         "coco", "-q", "--device", "cpu"]) == 0
        yield photos, root / "truth" / "coco" / "annotations.json", weights
    finally:
        unregister_model("sam", spec.name)
        unregister_model("gdino", gdino.name)


@pytest.fixture(autouse=True)
def _weights(setup, monkeypatch):
    monkeypatch.setenv("LANG_SAM_WEIGHTS_DIR", str(setup[2]))


@pytest.fixture
def counted(monkeypatch):
    """Calls of each engine's image encoder, by engine class name."""
    calls: dict[str, int] = {}
    for cls, name in ((GroundingDINODetector, "encode_image"), (SamSegmenter, "encode"), (BoxFill, "encode")):
        original = getattr(cls, name)

        def wrapper(self, *args, _original=original, _cls=cls.__name__, **kwargs):
            calls[_cls] = calls.get(_cls, 0) + 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)
    return calls


@pytest.mark.slow
def test_compare_encodes_once_per_engine_and_equals_predict_plus_eval(setup, counted, tmp_path, capsys):
    photos, gt, _ = setup
    out = tmp_path / "cmp"
    assert main(["compare", str(photos), "--gt", str(gt), "--sam-type", "tiny_sam,box_fill", "--gdino-type",
                 GDINO, "--box-threshold", ",".join(map(str, THRESHOLDS)), "--prompt", PROMPT,
                 "--device", "cpu", "--output", str(out)]) == 0
    # 2 images, 2 engines, 2 thresholds: each image encoded once per engine, by each of its networks
    assert counted == {"GroundingDINODetector": 4, "SamSegmenter": 2, "BoxFill": 2}
    printed = capsys.readouterr().out
    saved = json.loads((out / "compare.json").read_text())
    rows = {(r["sam_type"], r["box_threshold"]): r for r in saved["rows"]}
    assert sorted(rows) == [(s, t) for s in ("box_fill", "tiny_sam") for t in THRESHOLDS]
    with Image.open(out / "compare.png") as im:
        assert im.format == "PNG"
    assert f"reproduce it: {saved['command']}" in printed and "best: " in printed
    aps = set()
    models = {}
    for (sam_type, t), row in sorted(rows.items()):
        # what `lang-sam predict ... --format coco` runs (cli._run), with each engine's model loaded once
        model = models.get(sam_type) or models.setdefault(sam_type, LangSAM(sam_type, gdino_type=GDINO, device="cpu"))
        run = tmp_path / f"{sam_type}-{t}"
        settings = LabelSettings.create(PROMPT, box_threshold=t, sam_type=sam_type, gdino_type=GDINO)
        assert label_folder(lambda: model, [photos], run, settings, ["coco"]).failed == []
        assert main(["eval", "--pred", str(run / "coco" / "annotations.json"), "--gt", str(gt)]) == 0
        want = json.loads((run / "coco" / "eval" / "eval.json").read_text())["summary"]
        got = {"segm": {"AP": row["mask AP"], "AP50": row["mask AP50"]}, "bbox": {"AP": row["box AP"], "AP50": row["box AP50"]}}
        assert got == {k: {m: want[k][m] for m in ("AP", "AP50")} for k in got}, (sam_type, t)
        aps.add(row["mask AP"])
    assert len(aps) > 1 and any(0 < ap < 1 for ap in aps)  # the settings differ, and not trivially
    best = max(saved["rows"], key=lambda r: r["mask AP"])
    assert saved["best"] == best and f"--sam-type {best['sam_type']}" in saved["command"]
    assert f"--box-threshold {best['box_threshold']}" in saved["command"]


@pytest.mark.slow
def test_compare_takes_the_prompt_from_the_ground_truth_and_names_the_command(setup, tmp_path):
    photos, gt, _ = setup
    result = ev.compare(photos, gt, sam_types=["box_fill"], box_thresholds="0.3", gdino_type=GDINO, device="cpu")
    assert [(r["sam_type"], r["box_threshold"]) for r in result.rows] == [("box_fill", 0.3)]
    names = [c["name"] for c in json.loads(gt.read_text())["categories"]]
    assert result.predict_args == ["--prompt", ". ".join(names)]
    assert result.command(result.best, "out").startswith(f"lang-sam predict {photos} --prompt ")
    assert result.command(result.best, "out").endswith(f"lang-sam eval --pred out/coco/annotations.json --gt {gt}")
    assert result.rows[0]["seconds_per_image"] >= result.rows[0]["encode_seconds_per_image"] > 0
    assert "box_fill" in result.table() and "*" in result.table()


@pytest.mark.parametrize("args, words", [
    (["--sam-type", ","], "SAM type"),
    (["--sam-type", "box_fill", "--box-threshold", "0.5:0.2:0.1"], "START:STOP:STEP"),
    (["--sam-type", "no_such_sam"], "no_such_sam"),
])
def test_compare_usage_errors_exit_2(setup, tmp_path, capsys, args, words):
    photos, gt, _ = setup
    assert main(["compare", str(photos), "--gt", str(gt), "--gdino-type", GDINO, "--device", "cpu",
                 "--output", str(tmp_path / "o"), *args]) == 2
    assert words in capsys.readouterr().err
