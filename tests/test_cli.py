"""The ``lang-sam`` command, end to end on tiny random-weight models (in-process and in a subprocess).

Each predict costs seconds on a CPU, so the whole file labels only seven small images.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_image
from http_server import FileServer
from lang_sam.cli import main
from lang_sam.errors import InvalidRunError
from lang_sam.testing import tiny_sam_spec
from lang_sam.models.registry import register_model, unregister_model

ROOT = Path(__file__).resolve().parents[1]
HELPER = Path(__file__).with_name("cli_tiny.py")
ALL_FORMATS = "overlay,masks,coco,labelme,yolo"


@pytest.fixture
def model_args(tiny_specs, sam_ckpt, gdino_ckpt):
    sam, gdino = tiny_specs
    return ["--sam-type", sam.name, "--sam-ckpt", str(sam_ckpt), "--gdino-type", gdino.name,
            "--gdino-ckpt", str(gdino_ckpt), "--device", "cpu"]


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith((".tmp", ".incomplete"))]


def check_coco(out: Path, expected_files: set[str], class_names: list[str] | None = None):
    """Load annotations.json with pycocotools; every mask equals its PNG (when written)."""
    from pycocotools.coco import COCO

    coco = COCO(str(out / "coco" / "annotations.json"))
    images = coco.dataset["images"]
    assert {im["file_name"] for im in images} == expected_files
    assert len({im["id"] for im in images}) == len(images)
    anns = coco.dataset["annotations"]
    assert len({a["id"] for a in anns}) == len(anns)
    cats = {c["id"]: c["name"] for c in coco.dataset["categories"]}
    if class_names is not None:
        assert list(cats.values()) == class_names
    for im in images:
        key = im["file_name"].rsplit(".", 1)[0]
        img_anns = sorted(coco.loadAnns(coco.getAnnIds(imgIds=[im["id"]])), key=lambda a: a["id"])
        pngs = sorted((out / "masks" / key).glob("*.png")) if (out / "masks").is_dir() else None
        if pngs is not None:
            assert len(pngs) == len(img_anns)
        for i, a in enumerate(img_anns):
            mask = coco.annToMask(a).astype(bool)
            assert mask.shape == (im["height"], im["width"])
            assert a["area"] == int(mask.sum()) and a["iscrowd"] == 0 and 0 <= a["score"] <= 1
            assert a["category_id"] in cats
            x, y, w, h = a["bbox"]
            assert w >= 0 and h >= 0
            if pngs is not None:
                assert pngs[i].name.startswith(f"{i:03d}_")
                assert np.array_equal(np.asarray(Image.open(pngs[i])) > 0, mask)  # exact round trip
    return coco


# ------------------------------------------------------------------------------------------
# End to end
# ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_predict_folder_every_format(tmp_path, model_args, capsys, bomb_png):
    imgs = tmp_path / "imgs"
    (imgs / "sub").mkdir(parents=True)
    Image.fromarray(make_image(60, 80, 1)).save(imgs / "a.png")
    Image.fromarray(make_image(60, 80, 2)).save(imgs / "sub" / "a.PNG")  # same name, another folder
    Image.fromarray(make_image(50, 70, 3)).save(imgs / "b.jpg")
    (imgs / "bad.jpg").write_bytes(b"this is not a JPEG")
    (imgs / "huge.png").write_bytes(bomb_png.read_bytes())  # 30000x30000: over the pixel limit
    (imgs / "notes.md").write_text("not an image: ignored")
    out = tmp_path / "out"

    rc = main(["predict", str(imgs), "--classes", "car=car. automobile", "--classes", "wheel",
               "--output", str(out), "--format", "overlay,masks", "--format", "coco,labelme,yolo",
               "--nms", "0.9", "-q", *model_args])
    stdout = capsys.readouterr().out
    assert rc == 1
    assert "2 failed" in stdout and "3 labelled" in stdout
    failed = stdout.split("failed images:")[1]
    assert str(imgs / "bad.jpg") in failed and "a.png" not in failed
    assert f"{imgs / 'huge.png'}: ImageTooLargeError" in failed and "LANG_SAM_MAX_IMAGE_PIXELS" in failed
    assert not (out / "overlays" / "huge.png").exists()
    assert temp_files(out) == []

    keys = {"a": (60, 80), "sub/a": (60, 80), "b": (50, 70)}
    sources = {"a": "a.png", "sub/a": "sub/a.PNG", "b": "b.jpg"}
    for key, (h, w) in keys.items():
        overlay = np.asarray(Image.open(out / "overlays" / f"{key}.png"))
        assert overlay.shape == (h, w, 3)
    assert not (out / "overlays" / "bad.png").exists()

    check_coco(out, {"a.png", "sub/a.PNG", "b.jpg"}, ["car", "wheel"])

    yaml = (out / "yolo" / "data.yaml").read_text().splitlines()
    assert yaml[1:] == ["nc: 2", "names:", '  0: "car"', '  1: "wheel"']
    rows_total = 0
    for key, (h, w) in keys.items():
        rows = (out / "yolo" / "labels" / f"{key}.txt").read_text().splitlines()
        n_masks = len(list((out / "masks" / key).glob("*.png")))
        assert len(rows) <= n_masks
        rows_total += len(rows)
        for row in rows:
            parts = row.split()
            assert parts[0] in ("0", "1")
            xy = np.array(parts[1:], dtype=float)
            assert len(xy) % 2 == 0 and len(xy) >= 6
            assert (xy >= 0).all() and (xy <= 1).all()
    assert rows_total > 0  # the random model finds something, so the checks above ran

    for key, (h, w) in keys.items():
        path = out / "labelme" / f"{key}.json"
        d = json.loads(path.read_text())
        assert set(d) >= {"version", "flags", "shapes", "imagePath", "imageData", "imageHeight", "imageWidth"}
        assert (d["imageHeight"], d["imageWidth"]) == (h, w)
        assert (path.parent / d["imagePath"]).resolve() == (imgs / sources[key]).resolve()
        for s in d["shapes"]:
            assert s["label"] in ("car", "wheel") and s["shape_type"] == "polygon"
            pts = np.array(s["points"])
            assert pts.shape[1] == 2 and len(pts) >= 3
            assert (pts >= 0).all() and (pts[:, 0] < w).all() and (pts[:, 1] < h).all()

    # --resume: the three done images are skipped (no model is even loaded), the bad one fails again.
    # A record that does not cover the requested formats is not "complete": bad.jpg is retried,
    # fails again, and the stale record goes.
    stale_record = out / ".lang-sam" / "records" / "bad.json"
    stale_record.write_text(json.dumps({"file_name": "bad.jpg", "formats": ["overlay"], "outputs": {}}))
    run_wide = {"annotations.json", "data.yaml", "run.json", "bad.json"}  # rebuilt by every run
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name not in run_wide}
    assert len(stamps) > 10
    rc = main(["predict", str(imgs), "--classes", "car=car. automobile", "--classes", "wheel",
               "--output", str(out), "--format", ALL_FORMATS, "--nms", "0.9", "--resume", "-q", *model_args])
    stdout = capsys.readouterr().out
    assert rc == 1 and "0 labelled, 3 skipped" in stdout and "2 failed" in stdout
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert not stale_record.exists()
    check_coco(out, {"a.png", "sub/a.PNG", "b.jpg"}, ["car", "wheel"])

    # --resume with other settings is refused rather than mixing two runs in one folder.
    rc = main(["predict", str(imgs), "--classes", "car", "--output", str(out), "--resume", *model_args])
    err = capsys.readouterr().err
    assert rc == 2 and "other settings" in err and "classes" in err


@pytest.mark.slow
def test_resume_after_interrupt(tmp_path, model_args, tiny_specs, capsys):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    # Six images, so that the Ctrl-C sent once the first is recorded always lands mid-run: with
    # three, a run as quick as the tiny models' could finish before the signal arrived.
    names = [f"p{i}.png" for i in range(1, 7)]
    for i, name in enumerate(names):
        Image.fromarray(make_image(48, 64, 10 + i)).save(imgs / name)
    (imgs / "list.txt").write_text("p1.png\np2.png\n# a comment\n\n" + "".join(f"{n}\n" for n in names[2:]))
    out = tmp_path / "out"
    args = ["predict", str(imgs / "list.txt"), "--prompt", "car. wheel", "--output", str(out),
            "--format", ALL_FORMATS, "-q", *model_args]
    earlier = _earlier_run(out)  # an earlier run's outputs, and the user's own files, in this folder
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # SIGINT as a terminal's foreground process has it: a pytest started in the background (nohup,
    # `&` in a script) ignores SIGINT, its children inherit that, and Python then never raises
    # KeyboardInterrupt.
    proc = subprocess.Popen([sys.executable, str(HELPER), *args, "--overwrite"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    records = out / ".lang-sam" / "records"
    deadline = time.monotonic() + 300
    try:
        while not list(records.glob("p[1-6].json")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the first image took over 300 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)  # Ctrl-C while the second image is being labelled
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (stdout, stderr)
    assert "--resume" in stdout
    # --overwrite removed the earlier run's outputs (never resumed from, never mixed in) and kept
    # the user's files.
    assert not earlier["record"].exists() and not earlier["overlay"].exists() and not earlier["mask"].exists()
    assert earlier["user file"].exists() and earlier["user folder"].exists()
    done_before = sorted(p.stem for p in records.glob("*.json"))
    assert 1 <= len(done_before) < len(names)
    assert temp_files(out) == []
    check_coco(out, {f"{k}.png" for k in done_before})  # the interrupted run's partial file is valid
    # What a SIGKILL could leave: a temp file; the next run sweeps it.
    stale = out / "overlays" / ".p6.png.99999.tmp"
    stale.write_bytes(b"half a PNG")
    first = out / "overlays" / f"{done_before[0]}.png"
    first_stamp = first.stat().st_mtime_ns

    rc = main([*args, "--resume"])
    stdout = capsys.readouterr().out
    assert rc == 0, stdout
    assert f"{len(names) - len(done_before)} labelled, {len(done_before)} skipped" in stdout
    assert first.stat().st_mtime_ns == first_stamp  # done images were not redone
    assert temp_files(out) == []
    coco = check_coco(out, set(names))
    ids = [im["id"] for im in coco.dataset["images"]]
    assert sorted(ids) == list(range(1, len(names) + 1))
    # Open classes: ids in order of first appearance, the same in YOLO's data.yaml and COCO.
    run = json.loads((out / ".lang-sam" / "run.json").read_text())
    names = [c["name"] for c in run["classes"]["classes"]]
    assert [c["name"] for c in coco.dataset["categories"]] == names
    yaml = (out / "yolo" / "data.yaml").read_text()
    assert f"nc: {len(names)}" in yaml and all(f'{i}: "{n}"' in yaml for i, n in enumerate(names))


@pytest.mark.slow
def test_resumed_run_summary_counts_the_whole_output(tmp_path, model_args, capsys):
    """Issue 19, item 6: a resumed run printed this call's 7 detections while the files held 14; a
    class "car wheel" was printed as "classes: car wheel" (two?); a resume with nothing left drew
    an empty bar ("labelling: 0img") twice. Item 5: the summary says what each format holds."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray(make_image(60, 80, 1)).save(imgs / "a.png")
    out = tmp_path / "out"
    args = ["predict", str(imgs), "--prompt", "car wheel", "--output", str(out), "--format", "coco,yolo",
            *model_args]
    assert main([*args, "-q"]) == 0
    first = capsys.readouterr().out
    Image.fromarray(make_image(60, 80, 2)).save(imgs / "b.png")
    assert main([*args, "-q", "--resume"]) == 0
    second = capsys.readouterr().out
    coco = json.loads((out / "coco" / "annotations.json").read_text())
    total = len(coco["annotations"])
    now = int(re.search(r"(\d+) detection\(s\) in the 1 image\(s\) labelled now", second).group(1))
    assert total == now + int(re.search(r"(\d+) detection\(s\) in the 1 image", first).group(1))
    assert total > now > 0  # the random model finds something in each image, so the counts differ
    assert f"the output holds {total} detection(s) of 2 image(s)" in second
    yolo_rows = sum(len(p.read_text().splitlines()) for p in (out / "yolo" / "labels").glob("*.txt"))
    assert re.search(rf"instances written per format: coco {total} of {total}, yolo {yolo_rows} of {total}\b",
                     second), second
    names = [c["name"] for c in coco["categories"]]
    assert f"classes ({len(names)}): {', '.join(json.dumps(n) for n in names)}" in second

    assert main([*args, "--resume"]) == 0  # nothing left: no progress bar at all
    captured = capsys.readouterr()
    assert "labelling" not in captured.err and "0 labelled, 2 skipped" in captured.out
    assert f"the output holds {total} detection(s) of 2 image(s)" in captured.out


# ------------------------------------------------------------------------------------------
# An output folder that already holds a run: --resume, --overwrite, or a refusal
# ------------------------------------------------------------------------------------------

def _earlier_run(out: Path) -> dict[str, Path]:
    """What an earlier run left in ``out``, plus files of the user's own there."""
    files = {
        "run": out / ".lang-sam" / "run.json",
        "record": out / ".lang-sam" / "records" / "old.json",
        "overlay": out / "overlays" / "old.png",
        "mask": out / "masks" / "old" / "000_car.png",
        "labelme": out / "labelme" / "old.json",
        "yolo": out / "yolo" / "labels" / "old.txt",
        "coco": out / "coco" / "annotations.json",
        "user file": out / "notes.txt",
        "user folder": out / "raw" / "keep.png",
    }
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}" if path.suffix == ".json" else "x")
    # The earlier run's own account of what it wrote: the image's record lists its outputs, and
    # .lang-sam/written every file (the run-wide COCO file too) before it was written.
    ours = [k for k in files if not k.startswith("user") and k not in ("run", "record")]
    rel = {k: files[k].relative_to(out).as_posix() for k in files}
    files["record"].write_text(json.dumps({"file_name": "old.png", "outputs": {
        k: [rel[k]] for k in ours if k != "coco"}}))
    (out / ".lang-sam" / "written").write_text("".join(rel[k] + "\n" for k in ours))
    return files


@pytest.mark.parametrize("left", ["everything", ".lang-sam"])
def test_output_folder_of_an_earlier_run_is_refused_without_resume_or_overwrite(tmp_path, capsys, left):
    """Issue 8: re-running into a used folder with other settings left the old run's files beside
    the new records. Now nothing runs, nothing is touched, and the message names both ways out."""
    Image.fromarray(make_image(20, 20)).save(tmp_path / "x.png")
    out = tmp_path / "out"
    files = _earlier_run(out)
    if left != "everything":  # the run's records alone are enough (its files were moved away)
        for path in out.iterdir():
            if path.name not in (left, "notes.txt", "raw"):
                shutil.rmtree(path)
    def files_there():  # but the folder's (empty) lock file, which stays once made
        return {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "lock"}

    before = files_there()
    rc = main(["predict", str(tmp_path / "x.png"), "--prompt", "car", "--output", str(out)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "--resume" in err and "--overwrite" in err
    assert ("overlays/" if left == "everything" else f"{left}/") in err  # what --overwrite would delete
    assert files_there() == before
    assert files["user file"].exists()


def test_resume_without_a_readable_earlier_run_is_refused(tmp_path, capsys):
    """--resume needs the earlier run's settings: outputs without them could be of anything."""
    Image.fromarray(make_image(20, 20)).save(tmp_path / "x.png")
    out = tmp_path / "out"
    files = _earlier_run(out)
    files["run"].write_text("not json")
    rc = main(["predict", str(tmp_path / "x.png"), "--prompt", "car", "--output", str(out), "--resume"])
    err = capsys.readouterr().err
    assert rc == 2 and "--overwrite" in err and "run.json" in err
    rc = main(["predict", str(tmp_path / "x.png"), "--prompt", "car", "--output", str(out), "--resume",
               "--overwrite"])
    assert rc == 2 and "not both" in capsys.readouterr().err
    assert all(p.exists() for p in files.values())


def test_overwrite_removes_only_lang_sam_outputs(tmp_path):
    """LabelRun(overwrite=True) (lang-sam predict --overwrite) deletes overlays/ masks/ labelme/
    yolo/ coco/ .lang-sam/ and keeps every other file of the folder."""
    from lang_sam.labeling.run import LabelRun, LabelSettings

    out = tmp_path / "out"
    files = _earlier_run(out)
    settings = LabelSettings.create("car")
    with pytest.raises(InvalidRunError, match="overwrite=True"):  # Python's words (the CLI: --overwrite)
        LabelRun(out, settings, ALL_FORMATS.split(","))
    run = LabelRun(out, settings, ALL_FORMATS.split(","), overwrite=True)
    assert not run.resumed and files["overlay"].exists()  # nothing goes before the run starts
    run.start([])
    for what, path in files.items():
        assert path.exists() == (what.startswith("user") or what == "run"), what
    assert json.loads(files["run"].read_text())["config"]["prompt"] == "car"  # the new run's
    assert sorted(p.name for p in out.iterdir()) == [".lang-sam", "notes.txt", "raw"]
    run.release()
    # and once the new run has written something, its folder is resumed, or refused, like any other
    with LabelRun(out, settings, ALL_FORMATS.split(","), resume=True) as again:
        assert again.resumed
        again.claim([out / "overlays" / "new.png"])
    (out / "overlays").mkdir()
    (out / "overlays" / "new.png").write_bytes(b"x")
    with pytest.raises(InvalidRunError, match="resume=True"):
        LabelRun(out, settings, ALL_FORMATS.split(","))


def test_a_new_or_foreign_folder_needs_no_flag(tmp_path):
    from lang_sam.labeling.run import LabelRun, LabelSettings

    settings = LabelSettings.create("car")
    with LabelRun(tmp_path / "new", settings) as run:  # does not exist yet
        run.start([])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    LabelRun(tmp_path / "mine", settings).release()  # holds only the user's files
    assert (tmp_path / "mine" / "notes.txt").exists()
    LabelRun(tmp_path / "fresh", settings, resume=True).release()  # nothing to resume: a new run
    # A run that stopped before its first image (missing weights, a bad prompt) left only its
    # run.json: nothing to mix with, so the corrected command needs no flag either.
    assert (tmp_path / "new" / ".lang-sam" / "run.json").is_file()
    other = LabelRun(tmp_path / "new", LabelSettings.create("wheel"))
    other.start([])
    assert other.config["prompt"] == "wheel"
    assert json.loads((tmp_path / "new" / ".lang-sam" / "run.json").read_text())["config"]["prompt"] == "wheel"


# ------------------------------------------------------------------------------------------
# Usage errors, info, download, entry points
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra,match", [
    ([], "--prompt"),
    (["--prompt", "car", "--classes", "car"], "not both"),
    (["--classes", "car=car", "--classes", "auto=car"], "both class"),
    (["--prompt", "car", "--format", "overlay,pdf"], "--format: unknown format 'pdf'"),
    (["--prompt", "car", "--box-threshold", "1.5"], r"\[0, 1\]"),
    (["--prompt", "car", "--nms", "x"], r"\[0, 1\]"),
    (["--prompt", " . "], "empty"),
    (["--prompt", "car", "--sam-type", "vit_x"], "invalid choice"),
    (["--prompt", "car", "--device", "gpu"], "device 'gpu' is not a device name.*available here: 'cpu'"),
    (["--prompt", "car", "--device", "cuda:99"], "device 'cuda:99'.*available here: 'cpu'"),
    (["--prompt", "car", "--format", "coco", "--polygons"], "--polygons applies to --format labelstudio or cvat; "
                                                          "the formats are coco"),
    (["--prompt", "car", "--format", "cvat", "--image-prefix", "https://h/"], "--image-prefix applies to --format "
                                                                            "labelstudio; the formats are cvat"),
])
def test_usage_errors_exit_2(tmp_path, extra, match, capsys, tiny_specs):
    Image.fromarray(make_image(20, 20)).save(tmp_path / "x.png")
    rc = main(["predict", str(tmp_path / "x.png"), "--output", str(tmp_path / "out"), *extra])
    assert rc == 2
    assert re.search(match, capsys.readouterr().err)
    assert not (tmp_path / "out").exists(), "a refused command leaves no output folder behind"


def test_bad_pixel_limit_setting_is_one_usage_error_not_a_failure_per_image(tmp_path, monkeypatch, capsys):
    Image.fromarray(make_image(20, 20)).save(tmp_path / "x.png")
    monkeypatch.setenv("LANG_SAM_MAX_IMAGE_PIXELS", "lots")
    rc = main(["predict", str(tmp_path / "x.png"), "--prompt", "car", "--output", str(tmp_path / "out")])
    assert rc == 2 and "LANG_SAM_MAX_IMAGE_PIXELS must be a whole number" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_prompt_too_long_is_a_usage_error_before_any_image(tmp_path, model_args, capsys):
    Image.fromarray(make_image(20, 20)).save(tmp_path / "x.png")
    prompt = " ".join(f"thing{i}" for i in range(120))  # one phrase over GroundingDINO's 256 tokens
    rc = main(["predict", str(tmp_path / "x.png"), "--prompt", prompt, "--output", str(tmp_path / "out"),
               "-q", *model_args])
    assert rc == 2 and "GroundingDINO reads at most 256" in capsys.readouterr().err
    assert not list((tmp_path / "out").rglob("*.png"))


def test_input_errors_exit_2(tmp_path, capsys):
    rc = main(["predict", str(tmp_path / "missing"), "--prompt", "car", "--output", str(tmp_path / "o")])
    assert rc == 2 and "input not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    rc = main(["predict", str(tmp_path / "empty"), "--prompt", "car", "--output", str(tmp_path / "o")])
    assert rc == 2 and "no images found" in capsys.readouterr().err
    clash = tmp_path / "clash"
    clash.mkdir()
    Image.fromarray(make_image(20, 20)).save(clash / "a.png")
    Image.fromarray(make_image(20, 20)).save(clash / "a.JPG")
    rc = main(["predict", str(clash), "--prompt", "car", "--output", str(tmp_path / "o")])
    assert rc == 2 and "would write the same outputs" in capsys.readouterr().err
    assert main([]) == 2


def test_collect_images_skips_the_output_folder(tmp_path):
    from lang_sam.labeling.run import collect_images

    Image.fromarray(make_image(20, 20)).save(tmp_path / "a.TIF")
    (tmp_path / "out" / "overlays").mkdir(parents=True)
    Image.fromarray(make_image(20, 20)).save(tmp_path / "out" / "overlays" / "a.png")
    items = collect_images([tmp_path, tmp_path / "a.TIF"], exclude=tmp_path / "out")
    assert [(i.rel.as_posix(), i.key) for i in items] == [("a.TIF", "a")]


def test_info(tmp_path, monkeypatch, capsys, ckpt_dir, tiny_specs):
    monkeypatch.setenv("LANG_SAM_WEIGHTS_DIR", str(ckpt_dir))
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    from lang_sam.lang_sam import default_device

    assert f"device: {default_device()}" in out and "offline mode: on" in out
    assert f"tiny_sam: tiny_sam.pth: found: {ckpt_dir / 'tiny_sam.pth'}" in out
    assert f"tiny_gdino: tiny_gdino.pth: found: {ckpt_dir / 'tiny_gdino.pth'}" in out
    assert "vit_h (default): sam_vit_h_4b8939.pth: missing; offline mode is on" in out
    monkeypatch.delenv("LANG_SAM_OFFLINE")
    assert main(["info"]) == 0
    assert f"would be downloaded to {ckpt_dir / 'sam_vit_h_4b8939.pth'}" in capsys.readouterr().out


def test_download_to_folder(tmp_path, monkeypatch, capsys, sam_ckpt):
    data = sam_ckpt.read_bytes()
    with FileServer() as server:
        server.files["/w/tiny_dl.pth"] = data
        spec = register_model(tiny_sam_spec("tiny_dl", urls=(f"{server.url}/w/tiny_dl.pth",),
                                            sha256=hashlib.sha256(data).hexdigest()))
        try:
            monkeypatch.setenv("LANG_SAM_OFFLINE", "1")
            rc = main(["download", "--sam-type", "tiny_dl", "--to", str(tmp_path / "w")])
            assert rc == 3 and "offline mode is on" in capsys.readouterr().err  # weights unavailable
            monkeypatch.delenv("LANG_SAM_OFFLINE")
            rc = main(["download", "--sam-type", "tiny_dl", "--to", str(tmp_path / "w")])
            out = capsys.readouterr().out
            assert rc == 0 and "sha256 ok" in out
            assert (tmp_path / "w" / spec.filename).read_bytes() == data
            assert "LANG_SAM_WEIGHTS_DIR" not in os.environ  # --to does not leak into the caller
            # A file already in a cache is copied into --to rather than downloaded again.
            hub = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints"
            hub.mkdir(parents=True)
            (hub / spec.filename).write_bytes(data)
            n = len(server.requests)
            rc = main(["download", "--sam-type", "tiny_dl", "--to", str(tmp_path / "w2")])
            assert rc == 0 and len(server.requests) == n and "copied from" in capsys.readouterr().out
            assert (tmp_path / "w2" / spec.filename).read_bytes() == data
            assert temp_files(tmp_path) == []
        finally:
            unregister_model("sam", "tiny_dl")


@pytest.mark.slow
def test_python_dash_m_and_console_script():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    out = subprocess.run([sys.executable, "-m", "lang_sam", "--help"], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0 and "predict" in out.stdout and "download" in out.stdout
    out = subprocess.run([sys.executable, "-m", "lang_sam", "predict"], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 2
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"lang-sam": "lang_sam.cli:main"}


#: What an offline ``lang-sam predict`` has no use for: the serving layer and its web libraries.
SERVING = ("lang_sam.serving", "gradio", "fastapi", "uvicorn", "starlette")


@pytest.mark.slow
def test_offline_predict_imports_nothing_of_serving(tmp_path, model_args):
    """Issue 14 item 3: the model flags of ``lang-sam predict`` were built by
    ``lang_sam.serving.service``, so every offline run imported the serving package. The command
    now owns its flags; ``-X importtime`` lists every module the run imported, lazy ones included."""
    Image.fromarray(make_image(40, 50, 1)).save(tmp_path / "a.png")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-X", "importtime", str(HELPER), "predict", str(tmp_path / "a.png"),
                          "--prompt", "car", "--output", str(tmp_path / "out"), "-q", *model_args],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in run.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    assert {"lang_sam.cli", "lang_sam.labeling.run", "torch"} <= imported  # the listing saw the run
    assert (tmp_path / "out" / ".lang-sam" / "records" / "a.json").is_file()
    assert sorted(m for m in imported if any(m == s or m.startswith(s + ".") for s in SERVING)) == []


def test_a_hostile_checkpoint_is_one_line_not_a_traceback(tmp_path, capsys, tiny_specs, gdino_ckpt):
    """Issue 18: an 11-byte pickle declaring a huge string gave a 35-line MemoryError traceback.
    Issue 25: it is no longer unpickled at all (only torch's legacy magic number starts a legacy
    checkpoint), so nothing asks for 4 EiB."""
    import struct

    Image.fromarray(make_image(20, 20)).save(tmp_path / "x.png")
    bad = tmp_path / "sam.pth"
    bad.write_bytes(b"\x80\x04\x8d" + struct.pack("<Q", 2**62))
    sam, gdino = tiny_specs
    rc = main(["predict", str(tmp_path / "x.png"), "--prompt", "car", "--output", str(tmp_path / "out"),
               "--sam-type", sam.name, "--sam-ckpt", str(bad), "--gdino-type", gdino.name,
               "--gdino-ckpt", str(gdino_ckpt)])
    captured = capsys.readouterr()
    assert rc == 3
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert len(errors) == 1 and str(bad) in errors[0] and "not a PyTorch checkpoint" in errors[0], captured.err
    assert "Traceback" not in captured.err + captured.out


# ------------------------------------------------------------------------------------------
# Issue 19, item 6: each interface names its own parameters; exit statuses; --help
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case,cli_words,python_words", [
    ("both", ["--resume or --overwrite, not both"], ["resume=True or overwrite=True, not both"]),
    ("used folder", ["Use --resume to finish", "--overwrite to delete"],
     ["Use resume=True to finish", "overwrite=True to delete"]),
    ("other settings", ["--box-threshold: was 0.3, now 0.5", "or --overwrite to delete"],
     ["box_threshold: was 0.3, now 0.5", "or overwrite=True to delete"]),
])
def test_errors_name_cli_flags_in_the_cli_and_python_arguments_in_python(tmp_path, capsys, case, cli_words,
                                                                         python_words):
    """A user of the command read ``--resume (resume=True)``: half of it is not theirs. The command
    now says ``--resume``, the library ``resume=True``, from one error."""
    from lang_sam.labeling.run import LabelRun, LabelSettings

    Image.fromarray(make_image(20, 20)).save(tmp_path / "x.png")
    out = tmp_path / "out"
    with LabelRun(out, LabelSettings.create("car")) as earlier:  # an earlier run: its settings,
        earlier.start([])
        earlier.claim([out / "overlays" / "x.png"])  # and an output file it wrote
    (out / "overlays").mkdir()
    (out / "overlays" / "x.png").write_bytes(b"x")
    flags, kwargs = {"both": (["--resume", "--overwrite"], {"resume": True, "overwrite": True}),
                     "used folder": ([], {}),
                     "other settings": (["--resume", "--box-threshold", "0.5"], {"resume": True})}[case]
    rc = main(["predict", str(tmp_path / "x.png"), "--prompt", "car", "--output", str(out), *flags])
    err = capsys.readouterr().err
    assert rc == 2
    assert all(w in err for w in cli_words), err
    assert "=True" not in err and "box_threshold" not in err
    settings = LabelSettings.create("car", box_threshold=0.5 if case == "other settings" else 0.3)
    with pytest.raises(InvalidRunError) as info:
        LabelRun(out, settings, **kwargs)
    assert all(w in str(info.value) for w in python_words), str(info.value)
    assert "--" not in str(info.value)


def test_missing_weights_exit_3_not_1(tmp_path, monkeypatch, capsys):
    """Missing weights exited 1, like "some images failed"; now 3 (models or weights unavailable)."""
    Image.fromarray(make_image(20, 20)).save(tmp_path / "x.png")
    monkeypatch.setenv("LANG_SAM_WEIGHTS_DIR", str(tmp_path / "empty"))  # offline (conftest), no file
    rc = main(["predict", str(tmp_path / "x.png"), "--prompt", "car", "--output", str(tmp_path / "out"),
               "--device", "cpu", "-q"])
    err = capsys.readouterr().err
    assert rc == 3, err
    assert "lang-sam predict: error:" in err and "Traceback" not in err


def test_help_shows_defaults_exit_statuses_and_one_meaning_of_ray_address(capsys):
    from lang_sam.cli import build_parser
    from lang_sam.cli_report import EXIT_CODES

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    text = " ".join(sub.choices["predict"].format_help().split())  # argparse wraps lines anywhere
    assert re.search(r"--box-threshold T .*\(default: 0\.3\)", text)
    assert re.search(r"--text-threshold T .*\(default: 0\.25\)", text)
    assert re.search(r"--sam-type \{.*\} SAM model \(default: vit_h\)", text)
    for code, what in EXIT_CODES.items():
        assert f"{code} {' '.join(what.split())}" in text
    for argv, port in ((["serve", "--help"], 8000), (["app", "--help"], 7860)):
        with pytest.raises(SystemExit):
            main(argv)
        serve_help = " ".join(capsys.readouterr().out.split())
        assert f"--port PORT port to listen on (default: {port})" in serve_help
        assert "3 models or weights unavailable" in serve_help and "port is in use" in serve_help
    # --ray-address: help and the docs name the forms ray.init(address=...) takes, and the same ones
    ray_help = re.search(r"--ray-address ADDR (.*?) --workers", text).group(1)
    readme = " ".join(" ".join(p.read_text() for p in (ROOT / "docs" / "guides").glob("*.md")).split())
    for form in ("auto", "HOST:6379"):
        assert form in ray_help and f"`{form}`" in readme
    assert "ray://" not in ray_help  # Ray Client needs ray[client], which lang-sam[ray] does not install
    assert "needs `pip install \"ray[client]\"`" in readme
    assert "3 models or weights unavailable" in readme


@pytest.mark.parametrize("command", ["serve", "app"])
def test_serve_refuses_a_port_in_use_before_loading_models(command, tmp_path, monkeypatch, capsys):
    """``lang-sam serve`` loaded the models (minutes) and only then found its port taken. The
    weights are missing here, so reaching the models would exit 3: exit 2 with the port's message
    shows the port is checked first."""
    import socket

    monkeypatch.setenv("LANG_SAM_WEIGHTS_DIR", str(tmp_path))  # empty; offline (conftest)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        rc = main([command, "--port", str(port), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.strip() == (f"lang-sam {command}: error: cannot listen on 127.0.0.1:{port}: the port is in "
                           "use by another program; choose another --port")


# ------------------------------------------------------------------------------------------
# The one progress reporter (issue 26, item 2): items or frames, the postfix, skipped lines
# ------------------------------------------------------------------------------------------

def _items(*names):
    from pathlib import PurePosixPath

    from lang_sam.labeling.run import ImageItem

    return [ImageItem(Path("/in") / n, PurePosixPath(n)) for n in names]


def test_reporter_counts_each_item_once_and_names_the_skipped(capsys):
    """As a run's hooks: a failed item is counted by its ``failed`` call, the others by ``done``."""
    from lang_sam.cli_report import ProgressReporter

    todo = _items("a.png", "b.png", "c.png")
    reporter = ProgressReporter("labelling", "img")
    reporter.start(todo)
    for item in todo:
        assert reporter.bar.n == todo.index(item)  # the items before it, not itself yet
        if item.rel.name == "b.png":
            reporter.failed(item, ValueError("unreadable"))
        else:
            reporter.done(item)
    assert reporter.bar.total == 3 and reporter.bar.n == 3
    assert reporter.bar.postfix == "c.png"
    reporter.close()
    err = capsys.readouterr().err
    assert "lang-sam: skipped /in/b.png: unreadable" in err and "labelling" in err and "3/3" in err


def test_reporter_frames_within_image_steps_and_nothing_to_do(tmp_path, monkeypatch, capsys):
    from lang_sam.cli_report import ProgressReporter

    reporter = ProgressReporter("tracking", "video", frames=True)
    reporter.start([])
    assert reporter.bar is None  # nothing to do: no bar at all
    reporter.close()
    monkeypatch.setattr("lang_sam.labeling.video_run.probe_video", lambda path: (5, 25.0))
    a, b = _items("a.mp4", "b.mp4")
    reporter.start([a, b])
    for done in range(1, 6):
        reporter.step(a, "frame", done, 5)
    reporter.done(a)  # a frame bar counts frames, not videos
    assert (reporter.bar.n, reporter.bar.total, reporter.bar.unit) == (5, 10, "frame")
    reporter.close()
    images = ProgressReporter("labelling", "img")
    images.start([a])
    images.step(a, "detect", 0, 4)
    assert images.bar.postfix == "a.mp4: detect 0/4 tile(s)"
    images.step(a, "detect", 1, 4)  # within half a second of the last: not shown
    assert images.bar.postfix == "a.mp4: detect 0/4 tile(s)"
    images.step(a, "segment", 7, 7)  # a stage's last step is always shown
    assert images.bar.postfix == "a.mp4: segment 7/7 box(es)" and images.bar.n == 0
    images.close()
    assert "tracking" in capsys.readouterr().err
