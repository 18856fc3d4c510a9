"""Which failures are an image's own and which stop a run (issue 14 item 7).

Before: ``RuntimeError`` (out of memory among others) counted as one failed image, so a run out of
memory failed image after image through the whole dataset, its traceback at DEBUG. Now only the
image's own faults (missing, undecodable, empty, over the pixel limit) fail it; anything else stops
the run at once with a message saying what finished, where the records are, and to resume.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from PIL import Image

from conftest import make_image
from lang_sam.cli import main
from lang_sam.cli_report import EXIT_STOPPED
from lang_sam.errors import InvalidImageError, InvalidPromptError, RunStoppedError
from lang_sam.labeling.folder_run import ItemFailure
from lang_sam.labeling.hooks import RunHooks
from lang_sam.labeling.run import ImageItem, ImageLabels, LabelRun, LabelSettings, label_folder

OOM = "DefaultCPUAllocator: can't allocate memory: you tried to allocate 123456789 bytes"

pytestmark = pytest.mark.slow  # every test is a whole labelling run on the tiny models (18-47 s each under load)


@pytest.fixture
def photos(tmp_path) -> Path:
    """Four photos in name order: a.png, b.png (52 px high: the one that fails), c.png, d.png,
    and a corrupt file, bad.jpg (the image's own fault)."""
    d = tmp_path / "photos"
    d.mkdir()
    for name, h in (("a.png", 60), ("b.png", 52), ("c.png", 60), ("d.png", 60)):
        Image.fromarray(make_image(h, 80, len(name))).save(d / name)
    (d / "bad.jpg").write_bytes(b"not a JPEG")
    return d


def _out_of_memory_on(model, height: int, calls: list):
    """Make ``model``'s detector run out of memory on images ``height`` pixels high."""
    real = model.detector.detect

    def detect(features, *args, **kwargs):
        h = features.image_size[0]
        calls.append(h)
        if h == height:
            raise RuntimeError(OOM)
        return real(features, *args, **kwargs)

    model.detector.detect = detect
    return model


def test_out_of_memory_stops_the_run_at_once_and_resume_finishes_it(photos, tmp_path, model, caplog):
    out = tmp_path / "out"
    calls: list = []
    _out_of_memory_on(model, 52, calls)
    settings = LabelSettings.create("car")
    try:
        with caplog.at_level(logging.INFO, logger="lang_sam"), pytest.raises(RunStoppedError) as err:
            label_folder(model, [photos], out, settings, ["coco"])
    finally:
        del model.detector.detect  # the session's model is shared
    e = err.value
    assert isinstance(e, RuntimeError)
    assert (e.image, e.labelled, e.output) == ("b.png", 1, str(out))  # a.png, then b.png stopped it
    assert e.cause == f"RuntimeError: {OOM}" and isinstance(e.__cause__, RuntimeError)
    assert len(calls) == 2  # c.png and d.png were never tried
    msg = str(e)
    assert "b.png" in msg and "1 image(s) were labelled" in msg and "resume=True" in msg and str(out) in msg
    # The traceback is logged at ERROR, not hidden at DEBUG; bad.jpg (listed first) failed alone.
    [stop] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert stop.exc_info and "b.png" in stop.getMessage()
    records = sorted(p.name for p in (out / ".lang-sam" / "records").glob("*.json"))
    assert records == ["a.json"]
    coco = json.loads((out / "coco" / "annotations.json").read_text())
    assert [im["file_name"] for im in coco["images"]] == ["a.png"]  # the run-wide file covers what finished
    # Fixed (the memory is back): resume labels the rest, bad.jpg fails as the image's own fault.
    summary = label_folder(model, [photos], out, settings, ["coco"], resume=True)
    assert (summary.labelled, summary.skipped) == (3, 1)
    assert [i.rel.as_posix() for i, _ in summary.failed] == ["bad.jpg"]


def test_the_cli_exits_4_with_the_resume_command(photos, tmp_path, capsys, monkeypatch, tiny_specs,
                                                 sam_ckpt, gdino_ckpt):
    from lang_sam import LangSAM

    calls: list = []
    real_init = LangSAM.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        _out_of_memory_on(self, 52, calls)

    monkeypatch.setattr(LangSAM, "__init__", init)
    sam, gdino = tiny_specs
    rc = main(["predict", str(photos), "--prompt", "car", "--output", str(tmp_path / "out"), "-q",
               "--sam-type", sam.name, "--sam-ckpt", str(sam_ckpt), "--gdino-type", gdino.name,
               "--gdino-ckpt", str(gdino_ckpt), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == EXIT_STOPPED == 4, err
    assert "Traceback" in err and OOM in err  # the cause, logged with its traceback
    last = err.strip().splitlines()[-1]
    assert last.startswith("lang-sam predict: error: the run stopped at b.png") and "--resume" in last
    assert "resume=True" not in last


def test_an_images_own_fault_fails_that_image_only(photos, tmp_path, model):
    (photos / "empty.png").write_bytes(b"")
    summary = label_folder(model, [photos], tmp_path / "out", LabelSettings.create("car"), ["coco"])
    assert summary.labelled == 4
    assert sorted(i.rel.as_posix() for i, _ in summary.failed) == ["bad.jpg", "empty.png"]


# ------------------------------------------------------------------------------------------
# One policy for both executors (issue 14 item 3)
# ------------------------------------------------------------------------------------------

BAD = "cannot identify image file"
TRACE = f"Traceback (most recent call last):\n  File \"worker.py\", line 1, in label\nRuntimeError: {OOM}\n"


@pytest.mark.parametrize("outcome, expect", [
    ("labels", "written"),
    ("labels, record path taken", "stop: writing"),
    (InvalidImageError(BAD), "image"),
    (ItemFailure("item", f"InvalidImageError: {BAD}"), "image"),  # as a Ray worker sends it
    (InvalidPromptError("the prompt is empty"), "run"),
    (RuntimeError(OOM), "stop: labelling"),
    (ItemFailure("stop", f"RuntimeError: {OOM}", TRACE), "stop: labelling"),
], ids=["labels", "write-fails", "image-error", "image-error-from-worker", "run-error", "oom",
        "oom-from-worker"])
def test_one_failure_policy_for_one_process_and_ray_workers(tmp_path, caplog, outcome, expect):
    """label_folder's loop and the Ray driver each wrote the policy out (raise / fail / stop);
    both now call LabelRun.settle, so an error has the same effect raised here or sent by a worker."""
    item = ImageItem(tmp_path / "a.png", PurePosixPath("a.png"))
    heard: list = []
    finished: list = []

    class Hooks(RunHooks):
        def done(self, item):
            finished.append(item)

        def failed(self, item, error):
            heard.append((item, error))

    hooks = Hooks()
    run = LabelRun(tmp_path / "out", LabelSettings.create("car"), ["coco"])
    try:
        run.start([item])
        if isinstance(outcome, str):  # an image with nothing found
            if outcome.endswith("taken"):  # its record cannot be written: a folder is in the way
                (tmp_path / "out" / ".lang-sam" / "records" / "a.json").mkdir(parents=True)
            outcome = ImageLabels(item, 8, 6, np.zeros((0, 4), np.float32), np.zeros(0, np.float32), [],
                                  np.zeros((0, 6, 8), bool))
        with caplog.at_level(logging.INFO, logger="lang_sam"):
            if expect == "written":
                assert run.settle(item, outcome, hooks)["file_name"] == "a.png"
            elif expect == "image":
                assert run.settle(item, outcome, hooks) is None
            elif expect == "run":
                with pytest.raises(InvalidPromptError) as raised:
                    run.settle(item, outcome, hooks)
                assert raised.value is outcome  # the run's own error, as it was raised
            else:
                with pytest.raises(RunStoppedError) as stopped:
                    run.settle(item, outcome, hooks)
    finally:
        run.release()
    summary = run.summary
    assert summary.labelled == (expect == "written")
    assert finished == ([item] if expect == "written" else [])
    if expect == "image":
        assert summary.failed == [(item, f"InvalidImageError: {BAD}")]
        error = outcome.error if isinstance(outcome, ItemFailure) else outcome
        assert heard == [(item, error)]
        assert [r.getMessage() for r in caplog.records] == [f"a.png failed: {error}"]
        return
    assert summary.failed == [] and heard == []
    if not expect.startswith("stop"):
        assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
        return
    e = stopped.value
    assert (e.image, e.labelled) == ("a.png", 0) and "resume=True" in str(e)
    [log] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert log.getMessage().startswith(f"{expect[6:]} a.png failed; the run stops")
    if isinstance(outcome, ItemFailure):  # the worker's traceback, as text; nothing to chain
        assert e.cause == f"RuntimeError: {OOM}" and e.__cause__ is None
        assert log.getMessage().endswith(TRACE.rstrip()) and not log.exc_info
    else:
        assert isinstance(e.__cause__, (RuntimeError, OSError)) and log.exc_info[1] is e.__cause__
        assert e.cause.startswith("RuntimeError: " if expect.endswith("labelling") else "IsADirectoryError: ")


def test_a_worker_failure_is_item_or_stop_only():
    with pytest.raises(ValueError, match="'item' or 'stop', got 'run'"):
        ItemFailure("run", "InvalidPromptError: the prompt is empty")
