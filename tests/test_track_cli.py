"""``lang-sam track`` (lang_sam.cli, lang_sam.labeling.video_run) end to end on generated mp4 clips
with the video test engines (tests/track_helpers.py): every format parsed back with its own
reader and checked against the clip's truth and against ``predict_video`` called directly;
resume after Ctrl-C; failed videos; usage errors and exit codes as ``lang-sam predict``'s."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from lang_sam.cli import main
from lang_sam.labeling import video_formats as vf
from lang_sam.labeling.video_run import TrackSettings, collect_videos, track_folder
from lang_sam.video_io import iter_frames
from track_helpers import (
    CLIPS, PROMPT, VideoEngines, files, read_mot, temp_files, truth_box, write_clip, write_clips,
)

av = pytest.importorskip("av")  # the [video] extra

ALL = ["--format", "mot,coco", "--format", "overlay", "--format", "masks"]


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    e = VideoEngines(tmp_path_factory.mktemp("engines"))
    yield e
    e.close()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return write_clips(tmp_path_factory.mktemp("clips") / "clips")


def track(engines, *args) -> int:
    return main(["track", *map(str, args), *engines.flags()])


@pytest.fixture(scope="module")
def reference(engines, clips, tmp_path_factory):
    """One run of every format over both clips: the output folder."""
    out = tmp_path_factory.mktemp("ref") / "out"
    assert track(engines, clips, "--prompt", PROMPT, "--output", out, "--detect-every", 3, *ALL) == 0
    return out


def direct(engines, path, every=3):
    model = engines.model()
    return list(model.predict_video(iter_frames(path), PROMPT, detect_every=every))


def test_every_format_is_written_at_its_path(reference):
    got = sorted(files(reference))
    want = ["coco/annotations.json", "mot/a.txt", "mot/sub/b.txt", "overlays/a.mp4", "overlays/sub/b.mp4"]
    want += [f"masks/a/{i:06d}.png" for i in range(12)] + [f"masks/sub/b/{i:06d}.png" for i in range(8)]
    assert [p for p in got if not p.startswith(".lang-sam/")] == sorted(want)
    assert temp_files(reference) == []


def test_mot_follows_the_objects(reference, engines, clips):
    for rel, (objects, n) in CLIPS.items():
        rows = read_mot(reference / "mot" / rel.replace(".mp4", ".txt"))
        # The same lines as the frames of predict_video called directly on the same file.
        want = [line for f in direct(engines, clips / rel) for line in vf.mot_lines(f)]
        assert (reference / "mot" / rel.replace(".mp4", ".txt")).read_text().splitlines() == want
        by_id: dict[int, dict[int, list[float]]] = {}
        for frame, tid, xywh, score in rows:
            by_id.setdefault(tid, {})[frame] = xywh
            assert score == pytest.approx(0.9)
        assert sorted(by_id) == list(range(1, len(objects) + 1))
        for tid, obj in zip(sorted(by_id), objects):  # ids in order of first appearance
            first = -(-obj[1] // 3) * 3  # found on the first key frame (0, 3, 6, ...) that shows it
            assert min(by_id[tid]) == first + 1 and max(by_id[tid]) == n  # MOT frames count from 1
            for frame, (x, y, w, h) in by_id[tid].items():
                assert np.allclose([x, y, x + w, y + h], truth_box(obj, frame - 1), atol=2)


def test_coco_has_one_image_per_frame_with_track_ids(reference):
    from pycocotools.coco import COCO

    coco = COCO(str(reference / "coco" / "annotations.json"))
    images = [coco.imgs[i] for i in sorted(coco.imgs)]
    assert [im["file_name"] for im in images] == \
        [f"a/{i:06d}.jpg" for i in range(12)] + [f"sub/b/{i:06d}.jpg" for i in range(8)]
    assert [(im["video"], im["frame_index"]) for im in images] == \
        [("a.mp4", i) for i in range(12)] + [("sub/b.mp4", i) for i in range(8)]
    assert all((im["width"], im["height"]) == (128, 96) for im in images)
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["red", "blue", "green"]
    mot = read_mot(reference / "mot" / "a.txt")
    anns = [a for im in images[:12] for a in coco.loadAnns(coco.getAnnIds(imgIds=[im["id"]]))]
    assert [(coco.imgs[a["image_id"]]["frame_index"] + 1, a["track_id"]) for a in anns] == \
        [(f, t) for f, t, _, _ in mot]
    for a, (_, _, xywh, score) in zip(anns, mot):
        assert np.allclose(a["bbox"], xywh, atol=0.01) and a["score"] == pytest.approx(score, abs=1e-4)
        m = coco.annToMask(a).astype(bool)
        ys, xs = np.nonzero(m)
        assert a["area"] == m.sum() > 0
        assert np.allclose([xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()], xywh)


def test_masks_pngs_hold_the_track_ids(reference):
    mot = read_mot(reference / "mot" / "a.txt")
    for frame, tid, (x, y, w, h), _ in mot:
        with Image.open(reference / "masks" / "a" / f"{frame - 1:06d}.png") as im:
            ids = np.asarray(im).astype(np.int64)
        assert ids.shape == (96, 128)
        inside = ids[int(y):int(y + h), int(x):int(x + w)]
        assert (inside == tid).mean() > 0.9  # solid rectangles: the box is the mask
        assert set(np.unique(ids)) <= {0, 1, 2}


def test_overlay_mp4_has_every_frame(reference, clips):
    for rel, (objects, n) in CLIPS.items():
        with av.open(str(reference / "overlays" / rel)) as c:
            stream = c.streams.video[0]
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
            assert float(stream.average_rate) == pytest.approx(10)
        assert len(frames) == n and frames[0].shape == (96, 128, 3)
        source = list(iter_frames(clips / rel))
        x0, y0, x1, y1 = truth_box(objects[0], n - 1).astype(int)
        # Inside the tracked object the overlay is tinted; the background is the clip's.
        assert np.abs(frames[-1][y0 + 3:y1 - 3, x0 + 3:x1 - 3].astype(int)
                      - source[-1][y0 + 3:y1 - 3, x0 + 3:x1 - 3]).mean() > 20
        assert np.abs(frames[-1][:, -4:].astype(int) - source[-1][:, -4:]).mean() < 6


def test_resume_after_ctrl_c_keeps_finished_videos_and_redoes_the_unfinished(
        engines, clips, reference, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    add = vf.TrackPngWriter.add

    def interrupted(self, frame, pixels=None):
        if "sub" in self.folder.as_posix() and frame.frame_index == 4:
            raise KeyboardInterrupt
        add(self, frame, pixels)

    monkeypatch.setattr(vf.TrackPngWriter, "add", interrupted)
    assert track(engines, clips, "--prompt", PROMPT, "--output", out, "--detect-every", 3, *ALL) == 130
    printed = capsys.readouterr().out
    assert "1 tracked" in printed and "interrupted" in printed and "--resume" in printed
    monkeypatch.undo()
    written = files(out)
    assert temp_files(out) == []
    assert "mot/a.txt" in written and "overlays/a.mp4" in written
    assert "mot/sub/b.txt" not in written and "overlays/sub/b.mp4" not in written  # nothing half-written
    assert ".lang-sam/videos/sub/b.json" not in written
    # Without --resume the folder is refused; with it, a is kept as it was and b is done.
    assert track(engines, clips, "--prompt", PROMPT, "--output", out, "--detect-every", 3, *ALL) == 2
    assert "--resume" in capsys.readouterr().err
    before = (out / "overlays" / "a.mp4").stat().st_mtime_ns
    assert track(engines, clips, "--prompt", PROMPT, "--output", out, "--detect-every", 3, *ALL,
                 "--resume") == 0
    assert "1 tracked, 1 skipped" in capsys.readouterr().out
    assert (out / "overlays" / "a.mp4").stat().st_mtime_ns == before
    got, want = files(out), files(reference)
    for name in want:
        if not name.startswith(".lang-sam/") and not name.startswith("overlays/"):
            assert got[name] == want[name], name


@pytest.mark.parametrize("change, flag", [(["--detect-every", "4"], "--detect-every"),
                                          (["--box-threshold", "0.5"], "--box-threshold"),
                                          (["--format", "mot"], "--format")])
def test_resume_with_other_settings_is_refused(engines, clips, tmp_path, capsys, change, flag):
    out = tmp_path / "out"
    assert track(engines, clips / "a.mp4", "--prompt", "red", "--output", out, "--format", "mot,masks") == 0
    args = ["--prompt", "red", "--output", out, "--format", "mot,masks", "--resume"]
    i = args.index(change[0]) if change[0] in args else None
    if i is not None:
        args[i + 1] = change[1]
    else:
        args += change
    assert track(engines, clips / "a.mp4", *args) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and flag in err


def test_a_broken_video_fails_alone(engines, clips, tmp_path, capsys):
    folder = tmp_path / "in"
    write_clip(folder / "good.mp4", *CLIPS["a.mp4"])
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    out = tmp_path / "out"
    assert track(engines, folder, "--prompt", PROMPT, "--output", out, "--format", "mot,coco") == 1
    printed = capsys.readouterr().out
    assert "1 tracked" in printed and "1 failed" in printed and "broken.mp4" in printed
    assert "InvalidVideoError" in printed
    assert sorted(p for p in files(out) if not p.startswith(".lang-sam")) == ["coco/annotations.json", "mot/good.txt"]
    data = json.loads((out / "coco" / "annotations.json").read_text())
    assert {im["video"] for im in data["images"]} == {"good.mp4"}


def test_progress_bar_counts_frames(engines, clips, tmp_path, capsys):
    assert track(engines, clips, "--prompt", "red", "--output", tmp_path / "o", "--format", "mot") == 0
    err = capsys.readouterr().err
    assert "tracking" in err and "20/20" in err and "frame" in err


@pytest.mark.parametrize("args, needle", [
    (["--format", "yolo"], "--format: unknown format 'yolo'"),
    (["--workers", "2"], "--workers: only with --ray"),
    (["--prompt", " . "], "prompt"),
    (["--box-threshold", "2"], "expected a number in [0, 1]"),
    (["--detect-every", "0"], "expected a whole number >= 1"),
])
def test_usage_errors_exit_2(engines, clips, tmp_path, capsys, args, needle):
    base = ["--prompt", "red", "--output", str(tmp_path / "o")]
    for k in range(0, len(args), 2):
        if args[k] in base:
            base[base.index(args[k]) + 1] = args[k + 1]
        else:
            base += args[k:k + 2]
    assert track(engines, clips, *base) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "o" / "mot").exists()


def test_missing_input_exits_2(engines, tmp_path, capsys):
    assert track(engines, tmp_path / "nope.mp4", "--prompt", "red", "--output", tmp_path / "o") == 2
    assert "input not found" in capsys.readouterr().err


def test_a_segmenter_that_cannot_track_is_a_usage_error(clips, tmp_path, capsys, sam_ckpt, gdino_ckpt,
                                                       tiny_specs):
    sam, gdino = tiny_specs  # SAM v1: no video memory
    code = main(["track", str(clips / "a.mp4"), "--prompt", "red", "--output", str(tmp_path / "o"),
                 "--sam-type", sam.name, "--sam-ckpt", str(sam_ckpt), "--gdino-type", gdino.name,
                 "--gdino-ckpt", str(gdino_ckpt), "--device", "cpu"])
    assert code == 2
    assert "cannot follow objects through a video" in capsys.readouterr().err
    assert temp_files(tmp_path) == [] and not (tmp_path / "o" / "mot").exists()


def test_collect_videos_finds_files_folders_and_lists(clips, tmp_path):
    (tmp_path / "list.txt").write_text(f"# clips\n{clips / 'a.mp4'}\nclips/sub/b.mp4\n")
    (tmp_path / "clips").symlink_to(clips)
    assert [i.rel.as_posix() for i in collect_videos([clips])] == ["a.mp4", "sub/b.mp4"]
    assert [i.key for i in collect_videos([clips / "sub" / "b.mp4"])] == ["b"]
    assert len(collect_videos([tmp_path / "list.txt"])) == 2


def test_track_folder_from_python(engines, clips, tmp_path):
    settings = TrackSettings.create("green", detect_every=2, sam_type="box_fill_video", gdino_type="color_detector")
    summary = track_folder(engines.model, [clips / "sub"], tmp_path / "o", settings, ["mot"])
    assert (summary.videos, summary.tracked, summary.frames, summary.tracks) == (1, 1, 8, 1)
    assert [r[:2] for r in read_mot(tmp_path / "o" / "mot" / "b.txt")] == [(f, 1) for f in range(1, 9)]


def test_track_folder_tells_its_hooks_each_frame_and_each_video(engines, clips, tmp_path):
    """The one hook vocabulary (labeling.hooks.RunHooks): the videos to do, one "frame" step per
    frame (total from the header), then done or failed; a resumed run is told only what is left."""
    from test_generic_run import Heard  # the generic run's recording hooks

    folder = tmp_path / "in"
    write_clip(folder / "b.mp4", [("green", 0, 99, (60, 20), (-1, 1), (18, 10))], 3)
    (folder / "c.mp4").write_bytes(b"not a video")
    settings = TrackSettings.create("green")
    heard = Heard()
    summary = track_folder(engines.model, [folder], tmp_path / "o", settings, ["mot"], hooks=heard)
    assert heard.events == [("start", ["b", "c"]), ("step", "b", "frame", 1, 3), ("step", "b", "frame", 2, 3),
                            ("step", "b", "frame", 3, 3), ("done", "b"), ("failed", "c", "InvalidVideoError")]
    assert (summary.tracked, [i.key for i, _ in summary.failed]) == (1, ["c"])
    again = Heard()
    summary = track_folder(engines.model, [folder], tmp_path / "o", settings, ["mot"], resume=True, hooks=again)
    assert again.events == [("start", ["c"]), ("failed", "c", "InvalidVideoError")] and summary.skipped == 1


def test_files_lang_sam_did_not_write_are_never_written_over(engines, clips, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "mot").mkdir(parents=True)
    (out / "mot" / "a.txt").write_text("my own notes\n")
    assert track(engines, clips, "--prompt", "red", "--output", out, "--format", "mot") == 2
    err = capsys.readouterr().err
    assert "did not write" in err and "(mot/a.txt)" in err
    assert (out / "mot" / "a.txt").read_text() == "my own notes\n"
    assert not (out / "mot" / "sub").exists()


@pytest.fixture(scope="module")
def sam2_ckpt(tmp_path_factory):
    """Tiny SAM 2.1 (the real architecture at 256 px, random weights; lang_sam.testing) as a
    Meta-layout .pt, registered."""
    from lang_sam.models.registry import register_model, unregister_model
    from lang_sam.testing import TINY_SAM2_VIDEO, tiny_sam2_spec, write_sam2_checkpoint

    spec = register_model(tiny_sam2_spec("tiny_sam2.1_track", TINY_SAM2_VIDEO))
    path = write_sam2_checkpoint(tmp_path_factory.mktemp("sam2") / spec.filename, TINY_SAM2_VIDEO, seed=0)
    yield spec.name, path
    unregister_model("sam", spec.name)


@pytest.mark.slow
def test_track_on_tiny_sam2(engines, sam2_ckpt, tmp_path):
    """The whole command on tiny SAM 2.1 (with the colour detector: a controlled number of boxes):
    every format agrees with predict_video on the same file and with the others."""
    from pycocotools.coco import COCO

    from lang_sam import LangSAM
    from plugin_engines import moving_clip

    name, ckpt = sam2_ckpt
    white = ("white", 0, 99, (20, 20), (6, 3), (30, 24))
    blue = ("blue", 1, 99, (90, 60), (-2, 0), (20, 20))  # found on key frame 2
    clip = tmp_path / "in" / "clip.mp4"
    write_clip(clip, [white, blue], 4, fps=5)
    out = tmp_path / "out"
    flags = ["--sam-type", name, "--sam-ckpt", str(ckpt), "--gdino-type", engines.det.name,
             "--gdino-ckpt", str(engines.det_ckpt), "--device", "cpu"]
    assert main(["track", str(clip.parent), "--prompt", "white. blue", "--output", str(out),
                 "--detect-every", "2", *ALL, *flags]) == 0
    model = LangSAM(name, str(ckpt), gdino_type=engines.det.name, gdino_ckpt_path=str(engines.det_ckpt),
                    device="cpu")
    direct = list(model.predict_video(iter_frames(clip), "white. blue", detect_every=2))
    assert (out / "mot" / "clip.txt").read_text().splitlines() == \
        [line for f in direct for line in vf.mot_lines(f)]
    assert any(len(f.track_ids) for f in direct)
    coco = COCO(str(out / "coco" / "annotations.json"))
    assert len(coco.imgs) == 4
    for f in direct:
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[f.frame_index + 1]))
        assert [a["track_id"] for a in anns] == f.track_ids.tolist()
        for a, m in zip(anns, f.masks.numpy()):
            assert np.array_equal(coco.annToMask(a).astype(bool), m)
        with Image.open(out / "masks" / "clip" / f"{f.frame_index:06d}.png") as im:
            assert np.array_equal(np.asarray(im).astype(np.int64), vf.track_id_image(f).astype(np.int64))
    with av.open(str(out / "overlays" / "clip.mp4")) as c:
        assert sum(1 for _ in c.decode(c.streams.video[0])) == 4


@pytest.mark.slow
def test_sigint_mid_video_exits_130_and_leaves_nothing_half_written(tmp_path):
    """A real Ctrl-C (SIGINT to the process) while a long video is being tracked: exit 130, the
    first video's files whole, the second's absent (no temporary file anywhere); --resume finishes."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from track_helpers import RED

    folder = tmp_path / "in"
    write_clip(folder / "a.mp4", [RED], 6)
    write_clip(folder / "b.mp4", [("green", 0, 9999, (60, 20), (0, 0), (18, 10))], 600)  # stays in view
    out = tmp_path / "out"
    cmd = [sys.executable, str(Path(__file__).with_name("track_tiny.py")), "track", str(tmp_path / "engines"),
           str(folder), "--prompt", "red. green", "--output", str(out), "--format", "mot,masks,overlay,coco"]
    (tmp_path / "engines").mkdir()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in test_cli
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if len(list((out / "masks").glob(".b.*.tmp/*.png"))) >= 20:  # b's PNGs, staged
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stdout and "--resume" in stdout
    names = files(out)
    assert temp_files(out) == [] and "mot/a.txt" in names and "overlays/a.mp4" in names
    assert "mot/b.txt" not in names and "overlays/b.mp4" not in names
    assert not any(n.startswith("masks/b/") for n in names)  # nor any of b's frames
    assert ".lang-sam/videos/b.json" not in names
    assert len(read_mot(out / "mot" / "a.txt")) == 6
    proc = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "1 tracked, 1 skipped" in proc.stdout
    assert len(read_mot(out / "mot" / "b.txt")) == 600


def test_a_killed_runs_temporary_pngs_are_swept_on_resume(engines, clips, tmp_path):
    out = tmp_path / "out"
    assert track(engines, clips / "a.mp4", "--prompt", "red", "--output", out, "--format", "masks") == 0
    (out / ".lang-sam" / "videos" / "a.json").unlink()  # as if killed before the record
    stale = out / "masks" / "a" / ".000003.png.99999.tmp"
    stale.write_bytes(b"half a png")
    mine = out / "masks" / "a" / "notes.txt"  # not a frame's name: never written, never in the way
    mine.write_text("mine")
    assert track(engines, clips / "a.mp4", "--prompt", "red", "--output", out, "--format", "masks",
                 "--resume") == 0
    assert not stale.exists() and mine.read_text() == "mine"
    assert len(list((out / "masks" / "a").glob("*.png"))) == 12


def test_a_frame_png_lang_sam_did_not_write_is_refused(engines, clips, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "masks" / "a").mkdir(parents=True)
    (out / "masks" / "a" / "000003.png").write_bytes(b"someone's file")
    assert track(engines, clips / "a.mp4", "--prompt", "red", "--output", out, "--format", "masks") == 2
    assert "(masks/a/000003.png)" in capsys.readouterr().err
    assert (out / "masks" / "a" / "000003.png").read_bytes() == b"someone's file"


def test_a_video_that_fails_mid_way_leaves_none_of_its_frames(engines, clips, tmp_path, capsys):
    """A video whose frame 8 of 20 differs in size fails there (the run goes on): masks/<video>/
    holds none of the 8 PNGs written before (it kept them before), and no staging folder stays."""
    from track_helpers import lying_mov

    folder = tmp_path / "in"
    write_clip(folder / "good.mp4", *CLIPS["a.mp4"])
    lying_mov(folder / "bad.mov", [(64, 64)] * 8 + [(32, 32)] + [(64, 64)] * 11)
    out = tmp_path / "out"
    assert track(engines, folder, "--prompt", PROMPT, "--output", out, "--format", "mot,masks") == 1
    printed = capsys.readouterr().out
    assert "1 tracked" in printed and "1 failed" in printed and "frame 8 of" in printed
    names = files(out)
    assert not any(n.startswith("masks/bad") for n in names), sorted(names)
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["good"]  # no staging folder
    assert temp_files(out) == [] and len([n for n in names if n.startswith("masks/good/")]) == 12


def test_a_killed_runs_staged_pngs_are_swept_on_resume(engines, clips, tmp_path):
    out = tmp_path / "out"
    assert track(engines, clips / "a.mp4", "--prompt", "red", "--output", out, "--format", "masks") == 0
    (out / ".lang-sam" / "videos" / "a.json").unlink()  # as if killed before the record
    staged = out / "masks" / ".a.99999.tmp"  # a killed run's staging folder
    staged.mkdir()
    (staged / "000003.png").write_bytes(b"a frame of the killed run")
    other = out / "masks" / ".ab.99999.tmp"  # another video's name: not a's, left alone
    other.mkdir()
    assert track(engines, clips / "a.mp4", "--prompt", "red", "--output", out, "--format", "masks",
                 "--resume") == 0
    assert not staged.exists() and other.is_dir()
    assert len(list((out / "masks" / "a").glob("*.png"))) == 12


def test_a_cut_video_is_tracked_with_a_warning_in_the_summary_and_its_record(engines, tmp_path, capsys):
    from track_helpers import cut_clip

    folder = tmp_path / "in"
    cut_clip(write_clip(tmp_path / "whole.mp4", CLIPS["a.mp4"][0], 20), folder / "cut.mp4", 9)
    out = tmp_path / "out"
    assert track(engines, folder, "--prompt", PROMPT, "--output", out, "--format", "mot") == 0
    warning = "the video ended after 9 frame(s) while its header announces 20: 11 are missing (the file may be cut short)"
    printed = capsys.readouterr().out
    assert f"warnings:\n  {folder / 'cut.mp4'}: {warning}" in printed
    record = json.loads((out / ".lang-sam" / "videos" / "cut.json").read_text())
    assert (record["frames"], record["frames_declared"], record["warnings"]) == (9, 20, [warning])
    assert len({f for f, *_ in read_mot(out / "mot" / "cut.txt")}) <= 9
    summary = track_folder(engines.model(), [folder], tmp_path / "out2", TrackSettings.create(PROMPT), ["mot"])
    assert [(item.rel.as_posix(), w) for item, w in summary.warnings] == [("cut.mp4", warning)]
