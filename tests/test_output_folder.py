"""An output folder belongs to one run at a time, and lang-sam deletes only what it wrote (issue 18
items 2 and 5), and a later run never labels an earlier run's outputs as photos (issue 14 item 11).

The model is not needed for any of this: images' labels are made by hand (:class:`ImageLabels`)
and written through :class:`LabelRun`, as ``label_image`` would hand them over.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lang_sam.cli import main
from lang_sam.errors import InvalidRunError, OutputCollisionError, OutputLockedError
from lang_sam.labeling.formats import write_instance_masks
from lang_sam.labeling.run import ImageLabels, LabelRun, LabelSettings, collect_images

FORMATS = ["overlay", "masks", "coco", "labelme", "yolo"]
SETTINGS = LabelSettings.create("car. wheel")


def _photo(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(path)
    return path


def _labels(run: LabelRun, item, n: int = 2) -> ImageLabels:
    """Labels of ``n`` detections for ``item``: masks that are rectangles, an overlay PNG."""
    h, w = 24, 32
    masks = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        masks[i, 2 + i:12 + i, 3 + i:20 + i] = True
    boxes = np.array([[3 + i, 2 + i, 20 + i, 12 + i] for i in range(n)], dtype=np.float32)
    overlay = Path(item.path).read_bytes()
    return ImageLabels(item=item, width=w, height=h, boxes=boxes, scores=np.full(n, 0.5, np.float32),
                       names=["car", "wheel"][:n] if n <= 2 else ["car"] * n, masks=masks,
                       overlay_png=overlay)


def _label_all(out: Path, inputs, formats=FORMATS, n: int = 2, **kw) -> LabelRun:
    items = collect_images(inputs, exclude=out)
    run = LabelRun(out, SETTINGS, formats, **kw)
    try:
        for item in run.start(items):
            run.write(_labels(run, item, n))
    finally:
        run.close(time.perf_counter())
    return run


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "lock"}


# ------------------------------------------------------------------------------------------
# One run at a time
# ------------------------------------------------------------------------------------------

def test_a_second_run_is_refused_while_the_first_holds_the_folder(tmp_path):
    out = tmp_path / "out"
    first = LabelRun(out, SETTINGS, FORMATS)
    first.start([])
    with pytest.raises(OutputLockedError) as caught:
        LabelRun(out, LabelSettings.create("dog"), FORMATS)
    err = caught.value
    assert isinstance(err, InvalidRunError)
    assert err.pid == os.getpid() and err.path == str(out) and err.host
    assert f"pid {os.getpid()}" in str(err)
    # The refused run changed nothing: the folder still says what the first run is doing.
    assert json.loads((out / ".lang-sam" / "run.json").read_text())["config"]["prompt"] == "car. wheel"
    first.release()
    LabelRun(out, LabelSettings.create("dog"), FORMATS).release()  # free again once released


_HOLDER = """
import sys, time
from lang_sam.labeling.run import LabelRun, LabelSettings
run = LabelRun(sys.argv[1], LabelSettings.create("cat"), ["overlay", "coco"])
print("holding", flush=True)
time.sleep(120)
"""


def test_the_lock_names_the_other_process_and_dies_with_it(tmp_path):
    """Two processes: the second is refused at once, told the first's pid and command; when the
    first is killed (SIGKILL: nothing of it runs), its lock goes with it and a new run proceeds."""
    out = tmp_path / "out"
    script = tmp_path / "hold_the_folder.py"
    script.write_text(_HOLDER)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE, text=True,
                            env=env)
    try:
        assert proc.stdout.readline().strip() == "holding"
        t0 = time.perf_counter()
        with pytest.raises(OutputLockedError) as caught:
            LabelRun(out, SETTINGS, ["overlay", "coco"])
        assert time.perf_counter() - t0 < 5  # refused at once, not after a wait
        assert caught.value.pid == proc.pid and "hold_the_folder.py" in caught.value.command
        assert str(proc.pid) in str(caught.value) and "hold_the_folder.py" in str(caught.value)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        run = LabelRun(out, LabelSettings.create("cat"), ["overlay", "coco"], resume=True)  # stale lock: no obstacle
        owner = json.loads((out / ".lang-sam" / "owner.json").read_text())
        assert owner["pid"] == os.getpid()
        run.release()
        assert not (out / ".lang-sam" / "owner.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_the_cli_refuses_a_folder_another_run_is_writing(tmp_path, capsys):
    """Issue 18: `--prompt cat` and `--prompt dog` into one folder both ran and mixed their records."""
    photo = _photo(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    with LabelRun(out, LabelSettings.create("cat"), ["overlay", "coco"]):
        before = _files(out)
        rc = main(["predict", str(photo), "--prompt", "dog", "--output", str(out)])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert f"pid {os.getpid()}" in err and "another lang-sam run" in err
        assert _files(out) == before


# ------------------------------------------------------------------------------------------
# Only what lang-sam wrote is lang-sam's
# ------------------------------------------------------------------------------------------

def test_a_users_own_folders_are_never_called_lang_sam_outputs(tmp_path, capsys):
    """Issue 18: a user's own coco/ folder was called an earlier run's output and --overwrite
    deleted it. Without a run record the folder is not a lang-sam run's; a run that would write
    over a file there is refused, with --overwrite too, and nothing is touched."""
    photo = _photo(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    (out / "coco").mkdir(parents=True)
    (out / "coco" / "annotations.json").write_text('{"mine": true}')
    (out / "overlays").mkdir()
    (out / "overlays" / "holiday.png").write_bytes(b"my picture")
    before = _files(out)
    for flags in ([], ["--overwrite"], ["--resume"]):
        rc = main(["predict", str(photo), "--prompt", "car", "--output", str(out), *flags])
        err = capsys.readouterr().err
        assert rc == 2, (flags, err)
        assert "coco/annotations.json" in err and "did not write" in err, err
        assert "earlier lang-sam run" not in err
        assert {k: v for k, v in _files(out).items() if not k.startswith(".lang-sam/")} == before
    with pytest.raises(OutputCollisionError) as caught:
        _label_all(out, [photo], ["overlay", "coco"])
    assert caught.value.files == ["coco/annotations.json"] and caught.value.path == str(out)
    # A run whose outputs miss the user's files goes ahead and leaves them alone.
    _label_all(out, [photo], ["overlay", "yolo"])
    assert (out / "overlays" / "a.png").is_file()
    assert {k: _files(out)[k] for k in before} == before


def test_overwrite_deletes_only_the_files_the_earlier_run_wrote(tmp_path):
    photos = [_photo(tmp_path / "in" / f"p{i}.png", i) for i in range(2)]
    out = tmp_path / "out"
    _label_all(out, [tmp_path / "in"])
    ours = set(_files(out))
    assert {"overlays/p0.png", "masks/p1/001_wheel.png", "coco/annotations.json", "yolo/data.yaml",
            "labelme/p0.json", "yolo/labels/p1.txt", ".lang-sam/records/p0.json"} <= ours
    # The user's files among the run's: in its folders, named like its temporary files, everywhere.
    mine = {
        "overlays/mine.png": b"mine", "masks/p0/999_notes.png": b"mine", "coco/extra.json": b"{}",
        "overlays/.holiday.png.123.tmp": b"looks like a temp file", ".x.1.tmp": b"mine too",
        "notes.txt": b"mine",
    }
    for rel, data in mine.items():
        (out / rel).write_bytes(data)
    with pytest.raises(InvalidRunError, match="overwrite=True"):
        _label_all(out, photos)
    # Refused: masks/p0/ holds a file the run did not write, where it writes p0's masks.
    with pytest.raises(OutputCollisionError, match="masks/p0/999_notes.png"):
        _label_all(out, photos, overwrite=True)
    (out / "masks" / "p0" / "999_notes.png").unlink()
    del mine["masks/p0/999_notes.png"]
    # A temporary file a killed run left for one of its own files goes; the user's stay.
    (out / "labelme" / ".p0.json.4242.tmp").write_bytes(b"half")
    run = LabelRun(out, SETTINGS, FORMATS, overwrite=True)
    run.start(collect_images(photos))
    after = _files(out)
    assert {rel: after.get(rel) for rel in mine} == mine
    assert not any(rel in after for rel in ours if not rel.startswith(".lang-sam/run.json"))
    assert not (out / "labelme").exists() and (out / "overlays").is_dir()  # emptied folders go
    run.release()


def test_a_run_killed_mid_image_still_knows_its_files(tmp_path):
    """The record is written last, so an image's files can be on disk without one: the run lists
    every file in .lang-sam/written before writing it, and --overwrite finds them there."""
    photo = _photo(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    run = LabelRun(out, SETTINGS, FORMATS)
    item = run.start(collect_images([photo]))[0]
    run.write(_labels(run, item))
    (out / ".lang-sam" / "records" / "a.json").unlink()  # as if killed before the record
    run.release()
    written = (out / ".lang-sam" / "written").read_text().split()
    assert "overlays/a.png" in written and "masks/a/000_car.png" in written
    assert (out / "overlays" / "a.png").is_file()
    with pytest.raises(InvalidRunError, match="overlays/"):
        LabelRun(out, SETTINGS, FORMATS)
    with LabelRun(out, SETTINGS, FORMATS, overwrite=True) as run:
        run.start([])
    assert not (out / "overlays" / "a.png").exists() and not (out / "masks").exists()


@pytest.mark.parametrize("resume", [True, False], ids=["resume", "overwrite"])
def test_a_run_killed_while_writing_a_mask_is_resumed_and_its_temp_file_swept(tmp_path, resume):
    """CI caught it (a Ray driver killed with -9): the killed run's ``.000_car.png.<pid>.tmp`` in
    ``masks/a/`` was taken for a file of the user's, and the resumed run refused to start."""
    photo = _photo(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    run = LabelRun(out, SETTINGS, FORMATS)
    item = run.start(collect_images([photo]))[0]
    run.write(_labels(run, item))
    run.release()
    record = out / ".lang-sam" / "records" / "a.json"
    record.unlink()  # killed before the record ...
    half = out / "masks" / "a" / ".000_car.png.4242.tmp"
    (out / "masks" / "a" / "000_car.png").rename(half)  # ... while its first mask was being written
    mine = out / "masks" / "a" / ".notes.png.1.tmp"  # the user's, named like a temporary file
    mine.write_bytes(b"mine")
    with pytest.raises(OutputCollisionError, match=r"masks/a/\.notes\.png\.1\.tmp") as caught, \
            LabelRun(out, SETTINGS, FORMATS, resume=resume, overwrite=not resume) as refused:
        refused.start(collect_images([photo]))
    assert caught.value.files == ["masks/a/.notes.png.1.tmp"]  # the killed run's temp file is not named
    mine.unlink()
    with LabelRun(out, SETTINGS, FORMATS, resume=resume, overwrite=not resume) as run:
        assert [i.rel.as_posix() for i in run.start(collect_images([photo]))] == ["a.png"]
        assert not half.exists()  # swept
        run.write(_labels(run, item))
    assert record.is_file() and (out / "masks" / "a" / "000_car.png").is_file()


def test_fewer_masks_on_resume_replace_only_the_runs_own(tmp_path):
    """Relabelling an image with fewer masks removes the earlier run's extra mask files."""
    photo = _photo(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    _label_all(out, [photo], n=3)
    assert sorted(p.name for p in (out / "masks" / "a").iterdir()) == ["000_car.png", "001_car.png",
                                                                     "002_car.png"]
    (out / ".lang-sam" / "records" / "a.json").unlink()  # a.png is to be labelled again
    run = LabelRun(out, SETTINGS, FORMATS, resume=True)
    [item] = run.start(collect_images([photo]))
    run.write(_labels(run, item, n=1))
    run.close(time.perf_counter())
    assert sorted(p.name for p in (out / "masks" / "a").iterdir()) == ["000_car.png"]


def test_write_instance_masks_leaves_other_files_alone(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "keep.png").write_bytes(b"mine")
    paths = write_instance_masks(tmp_path / "m", np.ones((1, 4, 4), bool), ["car"])
    assert [p.name for p in paths] == ["000_car.png"]
    assert (tmp_path / "m" / "keep.png").read_bytes() == b"mine"


# ------------------------------------------------------------------------------------------
# Inputs: an earlier run's outputs are not photos
# ------------------------------------------------------------------------------------------

def test_folders_holding_a_runs_outputs_are_not_inputs(tmp_path, caplog):
    """Issue 14: with the output folder inside the input folder, a later run (to another output
    folder) labelled the earlier run's overlays and mask PNGs as photos (2 photos became 9 inputs)."""
    photos = tmp_path / "photos"
    for i in range(2):
        _photo(photos / f"p{i}.png", i)
    _label_all(photos / "labels", [photos])
    assert len(list((photos / "labels").rglob("*.png"))) > 2  # overlays and masks, PNGs all
    (photos / "more").mkdir()
    _photo(photos / "more" / "p2.png", 2)
    with caplog.at_level(logging.WARNING, logger="lang_sam"):
        items = collect_images([photos], exclude=tmp_path / "labels2")
    assert [i.rel.as_posix() for i in items] == ["more/p2.png", "p0.png", "p1.png"]
    assert any("labels" in r.getMessage() and "lang-sam run" in r.getMessage() for r in caplog.records)
    # A run folder given as an input of its own is searched: the user asked for it.
    assert len(collect_images([photos / "labels" / "overlays"])) == 2
