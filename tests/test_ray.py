"""``lang-sam predict --ray`` (lang_sam.labeling.distributed) on one local Ray instance, with the tiny models.

One Ray instance serves the whole module (``ray.init(num_cpus=2)``), and one single-process
``lang-sam predict`` run on the same folder is the reference every Ray run must equal, file for
file and byte for byte. Torch threads are pinned to one for the reference, as in the one-CPU
workers: float sums in another order move scores in the sixth decimal.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import make_image
from lang_sam.cli import main
from lang_sam.errors import RunStoppedError
from lang_sam.labeling.hooks import RunHooks
from lang_sam.labeling.inputs import collect_files
from lang_sam.labeling.run import LabelSettings

ROOT = Path(__file__).resolve().parents[1]
HELPER = Path(__file__).with_name("cli_tiny.py")
ALL_FORMATS = "overlay,masks,coco,labelme,yolo"
SETTINGS = ["--prompt", "car. wheel", "--nms", "0.9", "--format", ALL_FORMATS]
GOOD = ["a.png", "b.jpg", "sub/a.PNG"]
RAY = ["--ray", "--workers", "2", "--cpus-per-worker", "1"]

pytestmark = pytest.mark.slow  # a Ray instance and whole labelling runs: minutes per test


def car(tiny_specs) -> LabelSettings:
    """The settings of the Ray runs called from Python: prompt "car", the tiny models."""
    return LabelSettings.create("car", sam_type=tiny_specs[0].name, gdino_type=tiny_specs[1].name)


class Heard(RunHooks):
    """What a Ray driver told its hooks."""

    def __init__(self):
        self.started, self.done_items, self.failures = None, [], []

    def start(self, todo):
        self.started = [item.rel.as_posix() for item in todo]

    def done(self, item):
        self.done_items.append(item.rel.as_posix())

    def failed(self, item, error):
        self.failures.append((item.rel.as_posix(), error))


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_same_tree(out: Path, ref: Path) -> None:
    got, want = files(out), files(ref)
    assert sorted(set(got) - set(want)) == [] and sorted(set(want) - set(got)) == []
    assert [k for k in want if got[k] != want[k]] == []


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray instance for the module; its address, for drivers in other processes."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'lang-sam[ray]'")
    pytest.importorskip("ray.data", reason="Ray Data is not installed: pip install 'lang-sam[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The module's folder: ``imgs/`` (three images in two folders and a corrupt one); outputs go
    beside it, so LabelMe's relative ``imagePath`` is the same in every output."""
    root = tmp_path_factory.mktemp("ray")
    imgs = root / "imgs"
    (imgs / "sub").mkdir(parents=True)
    Image.fromarray(make_image(60, 80, 1)).save(imgs / "a.png")
    Image.fromarray(make_image(50, 70, 3)).save(imgs / "b.jpg")
    Image.fromarray(make_image(60, 80, 2)).save(imgs / "sub" / "a.PNG")
    (imgs / "bad.jpg").write_bytes(b"this is not a JPEG")
    return root


@pytest.fixture(scope="module")
def model_args(tiny_specs, sam_ckpt, gdino_ckpt):
    sam, gdino = tiny_specs
    return ["--sam-type", sam.name, "--sam-ckpt", str(sam_ckpt), "--gdino-type", gdino.name,
            "--gdino-ckpt", str(gdino_ckpt)]


@pytest.fixture(scope="module")
def reference(work, model_args):
    """Single-process ``lang-sam predict`` on the folder, one torch thread."""
    out = work / "reference"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("LANG_SAM_OFFLINE", "1")
            rc = main(["predict", str(work / "imgs"), "--output", str(out), *SETTINGS, "-q",
                       "--device", "cpu", *model_args])
    finally:
        torch.set_num_threads(threads)
    assert rc == 1  # bad.jpg
    records = sorted(p.relative_to(out / ".lang-sam" / "records").as_posix()
                     for p in (out / ".lang-sam" / "records").rglob("*.json"))
    assert records == ["a.json", "b.json", "sub/a.json"]
    coco = json.loads((out / "coco" / "annotations.json").read_text())
    assert coco["annotations"] and len(coco["categories"]) >= 1  # the checks below compare something
    return out


# ------------------------------------------------------------------------------------------
# The same outputs as one process
# ------------------------------------------------------------------------------------------

def test_ray_outputs_equal_single_process(ray_address, work, reference, model_args, capsys):
    out = work / "ray"
    started = time.perf_counter()
    rc = main(["predict", str(work / "imgs"), "--output", str(out), *SETTINGS, "-q", *RAY, *model_args])
    stdout = capsys.readouterr().out
    assert rc == 1, stdout  # the corrupt image fails alone, as without --ray
    assert "4 image(s): 3 labelled, 0 skipped (already complete), 1 failed" in stdout
    failed = stdout.split("failed images:")[1]
    assert str(work / "imgs" / "bad.jpg") in failed and "InvalidImageError" in failed
    assert re.search(r"\d s/image|images/s", stdout)  # the rate, as without --ray
    # COCO json, YOLO txt and data.yaml, LabelMe json, instance masks, overlays, records, run.json.
    assert_same_tree(out, reference)
    logging.getLogger(__name__).info("ray run: %.1f s", time.perf_counter() - started)


def test_ray_with_tiles_equals_single_process_with_tiles(ray_address, work, model_args, capsys):
    """Issue 10: ``--tile`` works with ``--ray`` too: the worker slices the image, and the files
    equal a single-process tiled run's (one 80x60 image in 40-px tiles: six tiles)."""
    tiles = ["--prompt", "car. wheel", "--format", "coco,masks,yolo", "--tile", "40", "--tile-overlap", "0.25"]
    image = str(work / "imgs" / "a.png")
    ref = work / "tiled-reference"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["predict", image, "--output", str(ref), *tiles, "-q", "--device", "cpu", *model_args]) == 0
    finally:
        torch.set_num_threads(threads)
    coco = json.loads((ref / "coco" / "annotations.json").read_text())
    assert coco["annotations"]  # the comparison compares something
    capsys.readouterr()
    out = work / "tiled-ray"
    rc = main(["predict", image, "--output", str(out), *tiles, "-q", *RAY, *model_args])
    stdout = capsys.readouterr().out
    assert rc == 0 and "1 image(s): 1 labelled, 0 skipped (already complete), 0 failed" in stdout, stdout
    assert_same_tree(out, ref)
    run = json.loads((out / ".lang-sam" / "run.json").read_text())
    assert run["config"]["tile"]["size"] == 40  # the tiles are the run's settings (resume checks them)


def test_killed_actor_is_replaced_and_its_image_redone(ray_address, work, reference, tiny_specs,
                                                       sam_ckpt, gdino_ckpt):
    from lang_sam.labeling.distributed import Worker, label_dataset

    marker = work / "killed-once"

    class DyingLabeller(Worker):
        """Exits the actor's process on ``b.jpg``, once, in the middle of the run."""

        def work(self, item):
            if item.rel.as_posix() == "b.jpg" and not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)
            return super().work(item)

    out = work / "killed"
    settings = LabelSettings.create("car. wheel", nms=0.9, sam_type=tiny_specs[0].name,
                                    gdino_type=tiny_specs[1].name)
    summary = label_dataset(
        [work / "imgs"], out, settings, ALL_FORMATS.split(","), sam_ckpt=sam_ckpt, gdino_ckpt=gdino_ckpt,
        workers=2, cpus_per_worker=1, worker=DyingLabeller,
    )
    assert marker.exists()  # an actor did die
    assert int(marker.read_text()) != os.getpid()
    assert (summary.images, summary.labelled, summary.skipped) == (4, 3, 0)
    assert [item.rel.as_posix() for item, _ in summary.failed] == ["bad.jpg"]
    # Every image once: the same files, COCO ids 1..3 with no duplicate annotation id.
    assert_same_tree(out, reference)
    coco = json.loads((out / "coco" / "annotations.json").read_text())
    assert sorted(im["id"] for im in coco["images"]) == [1, 2, 3]
    assert len({a["id"] for a in coco["annotations"]}) == len(coco["annotations"])


@pytest.mark.parametrize("poison, healthy, retries", [("b.jpg", "a.png", 1), ("a.png", "b.jpg", 0)])
def test_image_that_always_kills_its_actor_fails_alone(ray_address, work, tiny_specs, sam_ckpt,
                                                       gdino_ckpt, monkeypatch, poison, healthy, retries):
    """CI caught the healthy image failing too: with two batches in flight on the one actor, the
    batch queued behind the poison one died with it. Poison first with no retries shows it at once."""
    from lang_sam.labeling import distributed

    class PoisonLabeller(distributed.Worker):
        def work(self, item):
            if item.rel.as_posix() == poison:
                os._exit(1)
            return super().work(item)

    monkeypatch.setattr(distributed, "TASK_RETRIES", retries)  # two deaths or one, not four
    out = work / f"poison-{poison}"
    hooks = Heard()
    summary = distributed.label_dataset(
        [work / "imgs" / "a.png", work / "imgs" / "b.jpg"], out, car(tiny_specs), "coco",
        sam_ckpt=sam_ckpt, gdino_ckpt=gdino_ckpt, workers=1, cpus_per_worker=1, worker=PoisonLabeller,
        hooks=hooks,
    )
    assert (summary.labelled, [i.rel.as_posix() for i, _ in summary.failed]) == (1, [poison])
    assert f"died {1 + retries} times" in summary.failed[0][1]
    assert hooks.failures == [(poison, summary.failed[0][1])]
    # The hooks heard the plan, then each image once, as the run settled it.
    assert hooks.started == ["a.png", "b.jpg"] and hooks.done_items == [healthy]
    coco = json.loads((out / "coco" / "annotations.json").read_text())
    assert [im["file_name"] for im in coco["images"]] == [healthy]


def test_workers_dying_while_loading_the_models_stop_the_run(ray_address, work, tiny_specs, sam_ckpt,
                                                             gdino_ckpt, monkeypatch):
    from lang_sam.labeling import distributed
    from lang_sam.errors import RayJobError

    class OutOfMemoryLoader(distributed.Worker):
        def load_model(self):
            os._exit(1)  # what the kernel's OOM killer does to a worker loading the models

    monkeypatch.setattr(distributed, "TASK_RETRIES", 1)
    with pytest.raises(RayJobError, match="the Ray run stopped"):
        distributed.label_dataset(
            [work / "imgs" / "a.png"], work / "oom", car(tiny_specs), "coco", sam_ckpt=sam_ckpt,
            gdino_ckpt=gdino_ckpt, workers=1, cpus_per_worker=1, max_dead_batches=0,
            worker=OutOfMemoryLoader,
        )
    assert not (work / "oom" / ".lang-sam" / "records").exists()


def test_what_fails_every_worker_is_the_runs_error(ray_address, work, model_args, tmp_path, capsys):
    """Weights missing on the workers end the run with the worker's error, as in one process
    (an over-long prompt phrase takes the same path, with exit status 2)."""
    missing = [*model_args[:2], "--sam-ckpt", str(tmp_path / "missing.pth"), *model_args[4:]]
    rc = main(["predict", str(work / "imgs" / "a.png"), "--output", str(tmp_path / "o"), "--prompt", "car",
               "-q", *RAY, *missing])
    assert rc == 3  # models or weights unavailable, as in one process
    err = capsys.readouterr().err
    assert "checkpoint file is missing" in err and str(tmp_path / "missing.pth") in err, err
    assert not list((tmp_path / "o").rglob("*.png"))


def test_an_unexpected_worker_error_stops_the_run(ray_address, work, tiny_specs, sam_ckpt, gdino_ckpt,
                                                  caplog):
    """Issue 14 item 7: an out-of-memory RuntimeError on a worker failed one image after another;
    now the driver stops the run at that image, with the worker's traceback in its log. The error
    is raised by lang_sam.pipeline.run, patched on the worker: label_dataset's workers run the one
    pipeline (item 2; tests/test_pipeline.py checks the other entry points)."""
    from lang_sam.labeling import distributed

    class OutOfMemoryOnB(distributed.Worker):
        def load_model(self):
            from lang_sam import pipeline

            real = pipeline.run

            def run(model, image, *args, **kwargs):
                if image.height == 50:  # b.jpg
                    raise RuntimeError("DefaultCPUAllocator: can't allocate memory (in pipeline.run)")
                return real(model, image, *args, **kwargs)

            pipeline.run = run  # this worker process only
            return super().load_model()

    out = work / "stopped"
    with caplog.at_level(logging.ERROR, logger="lang_sam"), pytest.raises(RunStoppedError) as err:
        distributed.label_dataset(
            [work / "imgs" / "a.png", work / "imgs" / "b.jpg"], out, car(tiny_specs), "coco",
            sam_ckpt=sam_ckpt, gdino_ckpt=gdino_ckpt, workers=1, cpus_per_worker=1,
            worker=OutOfMemoryOnB,
        )
    assert (err.value.image, err.value.labelled) == ("b.jpg", 1)
    assert "can't allocate memory (in pipeline.run)" in err.value.cause and "resume=True" in str(err.value)
    assert any("Traceback" in r.getMessage() and "b.jpg" in r.getMessage() for r in caplog.records)
    coco = json.loads((out / "coco" / "annotations.json").read_text())
    assert [im["file_name"] for im in coco["images"]] == ["a.png"]


@pytest.mark.parametrize("batched", [True, False])
def test_a_third_kind_runs_on_the_one_driver(ray_address, tmp_path, monkeypatch, batched):
    """Issue 26 item 2: the toy word-count kind of tests/test_generic_run.py, unchanged, runs
    through run_on_ray (either dispatch) into the files and summary of its run in one process,
    with the same failure policy and resume; neither the run nor the driver names it."""
    from ray import cloudpickle

    import test_generic_run as toy
    from lang_sam.labeling.distributed import Job, RayOptions, run_on_ray

    cloudpickle.register_pickle_by_value(toy)  # the workers cannot import the tests
    monkeypatch.setattr(toy.WordKind, "batched", batched)
    texts = tmp_path / "texts"
    (texts / "sub").mkdir(parents=True)
    for rel, text in [("a.txt2", "one two three"), ("sub/b.TXT2", "four five"), ("c.txt2", "BAD file")]:
        (texts / rel).write_text(text)

    def on_ray(out, hooks=None, **kw):
        def open_run(o):
            return toy.open_run(o, **kw), collect_files([texts], toy.WordKind, exclude=o)

        return run_on_ray(out, open_run, Job(load=toy.Splitter), RayOptions(workers=1, cpus_per_worker=1), hooks)

    ref, out = tmp_path / "ref", tmp_path / "out"
    want = toy.run(texts, ref)
    heard = toy.Heard()
    got = on_ray(out, heard)
    assert (got.texts, got.counted, got.skipped, got.words, got.run_words) == (3, 2, 0, 5, 5)
    assert got.failed == want.failed and [why for _, why in got.failed] == ["UnreadableText: c.txt2: unreadable"]
    assert [e[:2] for e in heard.events] == [("start", ["a", "c", "sub/b"]), ("done", "a"), ("failed", "c"),
                                             ("done", "sub/b")]
    assert_same_tree(out, ref)
    # Resumed, the done texts are skipped and the failed one is tried again, as in one process.
    (texts / "c.txt2").write_text("now it reads")
    want, got = toy.run(texts, ref, resume=True), on_ray(out, resume=True)
    assert (got.counted, got.skipped, got.failed, got.run_words) == (1, 2, [], 8) == (
        want.counted, want.skipped, want.failed, want.run_words)
    assert_same_tree(out, ref)
    # An error that is no item's fault stops the run, as in one process.
    (texts / "d.txt2").write_text("OOM")
    with pytest.raises(RunStoppedError, match="MemoryError: out of memory"):
        on_ray(out, resume=True)


# ------------------------------------------------------------------------------------------
# The driver killed mid-run, then --resume
# ------------------------------------------------------------------------------------------

def test_resume_after_the_driver_is_killed(ray_address, work, reference, model_args, capsys):
    out = work / "resumed"
    args = ["predict", str(work / "imgs"), "--output", str(out), *SETTINGS, "-q", *model_args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    log = work / "driver.log"
    records = out / ".lang-sam" / "records"
    with open(log, "w") as sink:  # Ray forwards worker output to the driver: never a full pipe
        proc = subprocess.Popen(
            [sys.executable, str(HELPER), *args, "--ray", "--ray-address", ray_address, "--workers", "1",
             "--cpus-per-worker", "1"], env=env, stdout=sink, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        try:
            while not list(records.rglob("*.json")):
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the first image took over 300 s"
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)  # kill -9: no clean-up at all
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    done_before = sorted(p.relative_to(records).as_posix() for p in records.rglob("*.json"))
    assert 1 <= len(done_before) < 3, done_before
    first = out / "overlays" / done_before[0].replace(".json", ".png")
    first_stamp = first.stat().st_mtime_ns

    # Other settings are refused, as without --ray (before any Ray work).
    rc = main(["predict", str(work / "imgs"), "--output", str(out), "--prompt", "car", "--format",
               ALL_FORMATS, "--resume", "-q", *RAY, *model_args])
    err = capsys.readouterr().err
    assert rc == 2 and "other settings" in err

    rc = main([*args, "--resume", *RAY])
    stdout, err = capsys.readouterr()
    assert rc == 1, (stdout, err)  # bad.jpg again
    assert f"{3 - len(done_before)} labelled, {len(done_before)} skipped" in stdout
    assert first.stat().st_mtime_ns == first_stamp  # done images were not redone
    assert_same_tree(out, reference)


# ------------------------------------------------------------------------------------------
# Usage (no Ray work)
# ------------------------------------------------------------------------------------------

def test_ray_flag_without_ray_installed_exits_2(tmp_path, monkeypatch, capsys):
    Image.fromarray(make_image(20, 20)).save(tmp_path / "x.png")
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as when absent
    rc = main(["predict", str(tmp_path / "x.png"), "--prompt", "car", "--output", str(tmp_path / "o"),
               "--ray"])
    assert rc == 2
    assert "pip install 'lang-sam[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("extra,match", [
    (["--workers", "2"], "--workers: only with --ray"),
    (["--ray-address", "auto", "--cpus-per-worker", "1"],
     "--ray-address, --cpus-per-worker: only with --ray"),
    (["--ray", "--workers", "0"], "--workers: expected a whole number >= 1"),
    (["--ray", "--gpus-per-worker", "-1"], "expected a number >= 0"),
    (["--ray", "--cpus-per-worker", "0"], "expected a number > 0"),
])
def test_ray_usage_errors_exit_2(tmp_path, extra, match, capsys):
    Image.fromarray(make_image(20, 20)).save(tmp_path / "x.png")
    rc = main(["predict", str(tmp_path / "x.png"), "--prompt", "car", "--output", str(tmp_path / "o"),
               *extra])
    assert rc == 2
    assert re.search(match, capsys.readouterr().err)


@pytest.mark.parametrize("where", ["input", "output", "list"])
def test_object_storage_urls_are_refused_clearly(tmp_path, where, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a URL taken for a path would make a folder "gs:"
    Image.fromarray(make_image(20, 20)).save(tmp_path / "x.png")
    inputs, output = [str(tmp_path / "x.png")], str(tmp_path / "o")
    if where == "input":
        inputs = ["s3://bucket/photos"]
    elif where == "output":
        output = "gs://bucket/labels"
    else:
        (tmp_path / "list.txt").write_text("x.png\ns3://bucket/y.png\n")
        inputs = [str(tmp_path / "list.txt")]
    rc = main(["predict", *inputs, "--prompt", "car", "--output", output])
    err = capsys.readouterr().err
    assert rc == 2 and "is a URL; object storage (s3://, gs://) is not supported yet" in err
    assert not (tmp_path / "gs:").exists() and not (tmp_path / "o").exists()


def test_label_dataset_takes_label_folders_settings(tmp_path):
    """Issue 14 item 3: label_dataset took ~27 flat parameters where label_folder takes a
    LabelSettings; the flat form is gone (never released), and a prompt in its place is refused."""
    from lang_sam.errors import InvalidRunError
    from lang_sam.labeling.distributed import label_dataset

    with pytest.raises(InvalidRunError, match="settings must be a LabelSettings .*got str"):
        label_dataset([tmp_path], tmp_path / "o", "car")
    with pytest.raises(TypeError):
        label_dataset([tmp_path], tmp_path / "o", prompt="car")  # the old, flat form
    assert not (tmp_path / "o").exists()


def test_import_lang_sam_never_imports_ray():
    code = ("import sys, lang_sam, lang_sam.cli, lang_sam.labeling.distributed, lang_sam.labeling; "
            "sys.exit(1 if 'ray' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
