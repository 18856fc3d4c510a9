"""Feedback during long work (issue 19, item 4): ``python -m lang_sam.testing`` says what it writes,
a tiled image's progress shows tiles and boxes, and an image with very many boxes gets a warning
that says why it is slow and what to change. Tiny random-weight models; a few seconds each."""

from __future__ import annotations

import logging
import re

import pytest
from PIL import Image

from conftest import make_image
from lang_sam.cli import main


@pytest.fixture
def model_args(tiny_specs, sam_ckpt, gdino_ckpt):
    sam, gdino = tiny_specs
    return ["--sam-type", sam.name, "--sam-ckpt", str(sam_ckpt), "--gdino-type", gdino.name,
            "--gdino-ckpt", str(gdino_ckpt), "--device", "cpu"]


def test_testing_cli_names_itself_and_reports_each_checkpoint(tmp_path, tiny_specs, capsys):
    """It was silent for 1 min 48 s, and its help said ``usage: testing.py``."""
    from lang_sam.testing import main as testing_main

    with pytest.raises(SystemExit):
        testing_main(["--help"])
    assert capsys.readouterr().out.startswith("usage: python -m lang_sam.testing")
    sam, gdino = tiny_specs
    testing_main(["--to", str(tmp_path), "--sam", sam.name, "--gdino", gdino.name])
    err = capsys.readouterr().err.splitlines()
    assert [re.sub(r"\(.*", "", line) for line in err] == [
        f"[1/2] SAM {sam.name}: building random weights ...",
        f"[1/2] SAM {sam.name}: wrote {tmp_path / sam.filename} ",
        f"[2/2] GroundingDINO {gdino.name}: building random weights ...",
        f"[2/2] GroundingDINO {gdino.name}: wrote {tmp_path / gdino.filename} ",
    ]
    assert (tmp_path / sam.filename).is_file() and (tmp_path / gdino.filename).is_file()


@pytest.fixture(scope="module")
def tiled_image(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiled") / "wide.png"
    Image.fromarray(make_image(60, 110, 1)).save(path)  # 64-px tiles, 0.2 overlap: 2 x 1 tiles
    return path


@pytest.mark.slow
def test_label_image_reports_tiles_then_boxes(tiled_image, model, caplog):
    """A 3000x2000 image sat at ``0/1`` for an hour: nothing said how far it was. ``label_image``
    now reports each tile detected and the boxes segmented, ending at the totals."""
    from pathlib import PurePosixPath

    from lang_sam.labeling.run import ImageItem, LabelSettings, label_image
    from lang_sam.tiling import TileSpec

    tile = TileSpec(64, 0.2)
    events = []
    settings = LabelSettings.create("car. wheel", tile=tile)
    with caplog.at_level(logging.WARNING, logger="lang_sam"):
        labels = label_image(model, ImageItem(tiled_image, PurePosixPath("wide.png")), settings, ["coco"],
                             on_progress=lambda *e: events.append(e))
    assert not caplog.records  # a few boxes, under MANY_BOXES: no warning
    n_tiles = len(tile.grid(110, 60))
    detect = [(d, t) for s, d, t in events if s == "detect"]
    segment = [(d, t) for s, d, t in events if s == "segment"]
    assert n_tiles == 2 and detect == [(i, n_tiles) for i in range(n_tiles + 1)]
    assert events.index(("detect", n_tiles, n_tiles)) < events.index(("segment", 0, len(labels)))
    assert segment[0] == (0, len(labels)) and segment[-1] == (len(labels), len(labels))
    assert [d for d, _ in segment] == sorted(d for d, _ in segment)
    assert len(labels) > 0  # boxes were found, so the segment stage was really reported
    # without tiles: one detection step, then the boxes
    plain = []
    labels = label_image(model, ImageItem(tiled_image, PurePosixPath("wide.png")), LabelSettings.create("car"),
                         ["coco"], on_progress=lambda *e: plain.append(e))
    assert plain[:2] == [("detect", 0, 1), ("detect", 1, 1)]
    done = [d for s, d, t in plain[2:] if s == "segment" and t == len(labels)]
    assert len(done) == len(plain) - 2 and done[0] == 0 and done[-1] == len(labels) > 0
    assert done == sorted(set(done))  # boxes segmented so far, rising (one step per decoded chunk)


@pytest.mark.slow
def test_cli_bar_shows_tiles_and_boxes_of_the_image(tiled_image, tmp_path, model_args, capsys):
    rc = main(["predict", str(tiled_image), "--prompt", "car. wheel", "--output", str(tmp_path / "out"),
               "--tile", "64", "--format", "coco", *model_args])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "wide.png: detect 2/2 tile(s)" in err
    assert re.search(r"wide\.png: segment (\d+)/\1 box\(es\)", err), err


@pytest.mark.slow
def test_many_boxes_warn_why_and_what_to_change(tmp_path, model_args, model, monkeypatch, capsys, caplog):
    """531 boxes from random weights made a folder take 17 min, with nothing saying why. Over
    MANY_BOXES boxes, a warning names the cause and the settings to change: Python's names from
    the library, the flags from the command. (MANY_BOXES is lowered here: the tiny model finds
    a handful of boxes, not 300.)"""
    from pathlib import PurePosixPath

    from lang_sam.labeling import run
    from lang_sam.labeling.run import ImageItem, LabelSettings, label_image

    path = tmp_path / "a.png"
    Image.fromarray(make_image(60, 80, 1)).save(path)
    monkeypatch.setattr(run, "MANY_BOXES", 0)
    rc = main(["predict", str(path), "--prompt", "car. wheel", "--output", str(tmp_path / "out"), "-q",
               *model_args])
    err = capsys.readouterr().err
    assert rc == 0
    n = int(re.search(r"lang-sam: a\.png: (\d+) boxes to segment \(over 0\)", err).group(1))
    assert "--box-threshold (now 0.3)" in err and "--text-threshold (now 0.25)" in err and "--nms 0.5" in err
    assert "random (test) weights" in err and "box_threshold" not in err

    monkeypatch.setattr(run, "MANY_BOXES", n - 1)  # the same image in Python: n boxes, over n - 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lang_sam"):
        labels = label_image(model, ImageItem(path, PurePosixPath("a.png")), LabelSettings.create("car. wheel"),
                             ["coco"])
    assert len(labels) == n > 0
    [record] = caplog.records
    text = record.getMessage()
    assert f"a.png: {n} boxes to segment (over {n - 1})" in text
    assert "box_threshold (now 0.3)" in text and "text_threshold (now 0.25)" in text and "nms=0.5" in text
    assert "--" not in text
