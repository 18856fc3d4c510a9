"""Text-prompted video (issue 15, item 3): reading and writing videos (lang_sam.video_io) and the
whole predict_video path (lang_sam.video) on engines lang_sam does not know: a detector of
coloured shapes and a box-fill segmenter that follows them by colour (tests/plugin_engines.py),
over generated clips whose truth is known. The model-free id logic is tests/test_tracking.py."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch
from PIL import Image

from lang_sam import LangSAM
from lang_sam.errors import (
    InvalidArgumentError,
    InvalidPromptError,
    InvalidThresholdError,
    InvalidVideoError,
    LangSAMError,
    TrackingNotSupportedError,
    VideoNotFoundError,
)
from lang_sam.hub import ModelSpec
from lang_sam.models.registry import register_model, unregister_model
from lang_sam.results import TrackedFrame
from lang_sam.video_io import VideoWriter, iter_frames, natural_key, open_video
from plugin_engines import COLORS, BoxFillArch, BoxFillVideo, ColorDetector, moving_clip

av = pytest.importorskip("av")  # the [video] extra; installed in CI with the test extra


# ------------------------------------------------------------------------------------------
# Engines and clips
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def video_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("video_engines")
    sam = register_model(ModelSpec("sam", "box_fill_video", "bfv.pth", BoxFillArch(),
                                   engine="plugin_engines:BoxFillVideo"))
    det = register_model(ModelSpec("gdino", "color_detector", "colors.pth", None,
                                   engine="plugin_engines:ColorDetector"))
    torch.save({"inset": torch.tensor(0)}, d / "bfv.pth")
    torch.save({}, d / "colors.pth")
    try:
        yield LangSAM(sam.name, str(d / "bfv.pth"), gdino_type=det.name,
                      gdino_ckpt_path=str(d / "colors.pth"), device="cpu")
    finally:
        unregister_model("sam", sam.name)
        unregister_model("gdino", det.name)


def boxes_of(frames: list[TrackedFrame]) -> dict[int, dict[int, list[float]]]:
    """track id -> {frame index: box}."""
    out: dict[int, dict[int, list[float]]] = {}
    for f in frames:
        for tid, box in zip(f.track_ids.tolist(), f.boxes.tolist()):
            out.setdefault(tid, {})[f.frame_index] = box
    return out


def truth_box(obj, i):
    """Where ``moving_clip`` draws ``obj`` on frame ``i`` (xyxy, exclusive), or None."""
    name, first, last, (x, y), (dx, dy), (w, h) = obj
    if not first <= i <= last:
        return None
    x0, y0 = int(round(x + dx * (i - first))), int(round(y + dy * (i - first)))
    return [float(x0), float(y0), float(x0 + w), float(y0 + h)]


RED = ("red", 0, 99, (10, 10), (2, 1), (16, 12))
BLUE_LATE = ("blue", 9, 99, (90, 60), (-1, 0), (14, 14))
# Two objects crossing: red moves right, green moves left on the same row band, green on top.
RED_X = ("red", 0, 99, (4, 40), (3, 0), (18, 16))
GREEN_X = ("green", 0, 99, (106, 44), (-3, 0), (18, 10))

#: id -> (objects, frames, detect_every, prompt, expected tracks: track id -> (object index, first frame, last frame))
SCENARIOS = {
    "one object from frame 0": ([RED], 12, 4, "red", {1: (0, 0, 11)}),
    "an object appearing mid-video": ([RED, BLUE_LATE], 20, 4, "red. blue", {1: (0, 0, 19), 2: (1, 12, 19)}),
    "an empty start": ([("red", 5, 99, (10, 10), (2, 1), (16, 12))], 12, 4, "red", {1: (0, 5, 11)}),
    "nothing at all": ([], 6, 3, "red", {}),
    "an object vanishing": ([("red", 0, 6, (10, 10), (2, 1), (16, 12))], 14, 4, "red", {1: (0, 0, 6)}),
    "two objects crossing": ([RED_X, GREEN_X], 30, 5, "red. green", {1: (0, 0, 29), 2: (1, 0, 29)}),
    "detect on every frame": ([RED, BLUE_LATE], 14, 1, "red. blue", {1: (0, 0, 13), 2: (1, 9, 13)}),
}


@pytest.mark.parametrize("objects, n, every, prompt, expected", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_tracks_follow_the_objects_with_stable_ids(video_model, objects, n, every, prompt, expected):
    frames = list(video_model.predict_video(moving_clip(n, objects=objects), prompt, detect_every=every))
    assert [f.frame_index for f in frames] == list(range(n))
    assert all(isinstance(f, TrackedFrame) and f.image_size == (96, 128) for f in frames)
    tracks = boxes_of(frames)
    assert sorted(tracks) == sorted(expected)
    for tid, (k, first, last) in expected.items():
        seen = tracks[tid]
        assert min(seen) == first and max(seen) == last, (tid, sorted(seen))
        obj = objects[k]
        for i, box in seen.items():
            want = truth_box(obj, i)
            # Under another object (crossing), the visible part is smaller than the drawn box.
            assert want is not None and box[0] >= want[0] and box[1] >= want[1] and box[2] <= want[2] \
                and box[3] <= want[3], (tid, i, box, want)
        # The phrase and score are the detection's that started the track.
        f = next(f for f in frames if tid in f.track_ids.tolist())
        j = f.track_ids.tolist().index(tid)
        assert f.phrases[j] == obj[0] and abs(float(f.scores[j]) - 0.9) < 1e-6


def test_masks_boxes_and_order_agree(video_model):
    frames = list(video_model.predict_video(moving_clip(10, objects=[RED, BLUE_LATE]), "blue. red",
                                            detect_every=3))
    f = frames[-1]
    assert f.track_ids.tolist() == sorted(f.track_ids.tolist()) and len(f.track_ids) == 2
    assert f.masks.dtype == torch.bool and f.masks.shape == (2, 96, 128)
    for mask, box, phrase in zip(f.masks, f.boxes.tolist(), f.phrases):
        assert mask.sum() > 0
        ys, xs = np.nonzero(mask.numpy())
        assert box == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        frame = list(moving_clip(10, objects=[RED, BLUE_LATE]))[-1]
        assert (frame[mask.numpy()] == COLORS[phrase]).all()


def test_key_frames_are_the_first_detection_then_every_n(video_model):
    ColorDetector.detections = 0
    late = ("red", 3, 99, (10, 10), (1, 1), (16, 12))
    list(video_model.predict_video(moving_clip(20, objects=[late]), "red", detect_every=5))
    # frames 0, 1, 2 (nothing yet), 3 (first detection), then 8, 13, 18
    assert ColorDetector.detections == 3 + 4


def test_a_redetected_object_is_not_a_new_track_and_candidates_are_dropped(video_model, monkeypatch):
    sessions = []
    start = BoxFillVideo.start_video
    monkeypatch.setattr(BoxFillVideo, "start_video", lambda self, **kw: sessions.append(start(self, **kw))
                        or sessions[-1])
    frames = list(video_model.predict_video(moving_clip(21, objects=[RED]), "red", detect_every=5))
    assert {t for f in frames for t in f.track_ids.tolist()} == {1}
    (session,) = sessions
    # Key frames 0, 5, 10, 15, 20 each prompted a candidate; the four re-detections were dropped.
    assert [p[0] for p in session.prompted] == [0, 5, 10, 15, 20]
    assert session.dropped == [2, 3, 4, 5] and sorted(session.objects) == [1]


def test_a_key_frame_gives_at_most_max_candidates_the_best_scored(video_model, monkeypatch):
    calls, _, _ = _spy(monkeypatch, BoxFillVideo)
    # Five red squares, two of them under 50 pixels (the colour detector scores those 0.8, not 0.9).
    squares = [("red", 0, 99, (4 + 24 * k, 10), (0, 0), (6, 6) if k in (1, 3) else (12, 12)) for k in range(5)]
    out = list(video_model.predict_video(moving_clip(3, objects=squares), "red", detect_every=2, max_candidates=3))
    assert [len(c) for c in calls] == [3, 0, 3]
    first = out[0]
    assert len(first.track_ids) == 3 and all(abs(s - 0.9) < 1e-6 for s in first.scores.tolist())
    assert sorted(b[0] for b in first.boxes.tolist()) == [4, 52, 100]  # the three big ones


def test_a_vanished_track_ends_and_is_dropped(video_model, monkeypatch):
    sessions = []
    start = BoxFillVideo.start_video
    monkeypatch.setattr(BoxFillVideo, "start_video", lambda self, **kw: sessions.append(start(self, **kw))
                        or sessions[-1])
    short = ("red", 0, 4, (10, 10), (2, 1), (16, 12))
    back = ("red", 20, 99, (10, 10), (2, 1), (16, 12))  # the same colour again, after the track ended
    frames = list(video_model.predict_video(moving_clip(24, objects=[short, back]), "red", detect_every=20,
                                            lost_after=3))
    tracks = boxes_of(frames)
    assert sorted(tracks) == [1, 2] and max(tracks[1]) == 4 and min(tracks[2]) == 20
    assert sessions[0].dropped == [1]  # ended at frame 7 (3 empty frames), before the return


def test_an_iterable_a_folder_and_a_file_give_the_same_tracks(video_model, tmp_path):
    objects = [RED, BLUE_LATE]
    clip = list(moving_clip(14, objects=objects))
    for i, frame in enumerate(clip):
        Image.fromarray(frame).save(tmp_path / f"f{i}.png")  # f10 sorts after f9
    with VideoWriter(tmp_path / "clip.mp4", fps=10, crf=0) as w:
        for frame in clip:
            w.write(frame)
    runs = {
        "list": clip, "generator": (f for f in clip), "PIL images": [Image.fromarray(f) for f in clip],
        "folder": tmp_path, "file": tmp_path / "clip.mp4", "str path": str(tmp_path / "clip.mp4"),
    }
    results = {k: boxes_of(list(video_model.predict_video(v, "red. blue", detect_every=4))) for k, v in runs.items()}
    assert sorted(results["list"]) == [1, 2]
    for name, got in results.items():
        assert sorted(got) == [1, 2], name
        for tid in (1, 2):
            assert sorted(got[tid]) == sorted(results["list"][tid]), name
            # H.264 (crf 0 in yuv420p) blurs the colour edges by a pixel at most
            tol = 2 if name in ("file", "str path") else 0
            assert all(np.allclose(got[tid][i], results["list"][tid][i], atol=tol) for i in got[tid]), name


def test_memory_is_flat_with_video_length(video_model, monkeypatch):
    """Frames are not held: after frame i is yielded, earlier frames are freed; the session's
    state and the Python heap stay the same size whether 30 or 90 frames went through."""
    import tracemalloc

    sessions, alive = [], []
    start = BoxFillVideo.start_video
    monkeypatch.setattr(BoxFillVideo, "start_video", lambda self, **kw: sessions.append(start(self, **kw))
                        or sessions[-1])

    def frames(n):
        for f in moving_clip(n, objects=[RED_X, GREEN_X]):
            arr = f.view(np.ndarray)
            alive.append(weakref.ref(arr))
            yield arr

    def run(n):
        alive.clear()
        sizes, held = [], []
        tracemalloc.start()
        try:
            it = video_model.predict_video(frames(n), "red. green", detect_every=5)
            for f in it:
                held.append(sum(r() is not None for r in alive))
                sizes.append(sessions[-1].size())
                if f.frame_index == 10:
                    tracemalloc.reset_peak()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return sizes, held, peak

    sizes30, held30, peak30 = run(30)
    sizes90, held90, peak90 = run(90)
    assert max(held30) <= 2 and max(held90) <= 2  # the frame being processed (and at most one more)
    assert max(sizes90) == max(sizes30)  # the session's state does not grow with length
    assert peak90 <= 1.15 * peak30, (peak30, peak90)


def test_the_facade_passes_the_pipeline_defaults():
    import inspect

    from lang_sam.video import predict_video

    facade = inspect.signature(LangSAM.predict_video).parameters
    pipeline = inspect.signature(predict_video).parameters
    shared = [n for n in pipeline if n not in ("engines", "video", "text_prompt")]
    assert [n for n in facade if n not in ("self", "video", "text_prompt")] == shared
    assert all(facade[n].default == pipeline[n].default for n in shared)


def test_progress_counts_frames(video_model, tmp_path):
    calls = []
    list(video_model.predict_video(moving_clip(5, objects=[RED]), "red", progress=lambda *a: calls.append(a)))
    assert calls == [("track", i, None) for i in range(1, 6)]
    calls.clear()
    list(video_model.predict_video(list(moving_clip(3, objects=[RED])), "red", progress=lambda *a: calls.append(a)))
    assert calls == [("track", i, 3) for i in range(1, 4)]


def test_breaking_early_reads_no_further(video_model):
    read = []

    def frames():
        for i, f in enumerate(moving_clip(50, objects=[RED])):
            read.append(i)
            yield f

    for f in video_model.predict_video(frames(), "red"):
        if f.frame_index == 4:
            break
    assert read == [0, 1, 2, 3, 4]


# ------------------------------------------------------------------------------------------
# Errors: everything checkable is checked before the first frame is read
# ------------------------------------------------------------------------------------------

def _untouched():
    raise AssertionError("a frame was read before the arguments were checked")
    yield  # pragma: no cover


#: id -> (keyword arguments, error, the built-in it also is, words of the message)
BAD_CALLS = {
    "empty prompt": (dict(text_prompt=""), InvalidPromptError, ValueError, "prompt"),
    "box threshold": (dict(box_threshold=1.5), InvalidThresholdError, ValueError, "1.5"),
    "iou threshold 0": (dict(iou_threshold=0), InvalidThresholdError, ValueError, "(0, 1]"),
    "detect_every 0": (dict(detect_every=0), InvalidArgumentError, ValueError, "detect_every"),
    "detect_every float": (dict(detect_every=2.5), InvalidArgumentError, ValueError, "2.5"),
    "lost_after 0": (dict(lost_after=0), InvalidArgumentError, ValueError, "lost_after"),
    "max_candidates 0": (dict(max_candidates=0), InvalidArgumentError, ValueError, "max_candidates"),
}


@pytest.mark.parametrize("kwargs, error, builtin, words", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_arguments_fail_before_any_frame_is_read(video_model, kwargs, error, builtin, words):
    kwargs = {"text_prompt": "red", **kwargs}
    with pytest.raises(error) as e:
        video_model.predict_video(_untouched(), **kwargs)
    assert isinstance(e.value, builtin) and isinstance(e.value, LangSAMError) and words in str(e.value)


def test_a_segmenter_that_cannot_track_names_those_that_can(model, video_model):
    with pytest.raises(TrackingNotSupportedError) as e:
        model.predict_video(_untouched(), "car")
    err = e.value
    assert isinstance(err, TypeError) and err.sam_type == model.sam_type
    assert "box_fill_video" in err.video_types and "box_fill_video" in str(err)
    assert not any(t.startswith("vit_") for t in err.video_types)


def _frames(*items):
    yield from items


GOOD = np.zeros((8, 10, 3), np.uint8)
#: id -> (video, error, the built-in, words, the bad frame's index)
BAD_VIDEOS = {
    "missing file": (lambda t: t / "nope.mp4", VideoNotFoundError, FileNotFoundError, "nope.mp4", None),
    "not a video": (lambda t: (t / "x.mp4").write_bytes(b"not a video at all" * 50) and t / "x.mp4",
                    InvalidVideoError, ValueError, "x.mp4", None),
    "empty folder": (lambda t: (t / "empty").mkdir() or t / "empty", InvalidVideoError, ValueError,
                     "frame images", None),
    "one image": (lambda t: GOOD, InvalidVideoError, ValueError, "one image", None),
    "a number": (lambda t: 3, InvalidVideoError, ValueError, "got a int", None),
}
BAD_FRAMES = {
    "a string frame": (_frames(GOOD, "frame.png"), "got a str", 1),
    "a 2x2x5 array": (_frames(GOOD, GOOD, np.zeros((2, 2, 5), np.uint8)), "(2, 2, 5)", 2),
    "a different size": (_frames(GOOD, np.zeros((9, 10, 3), np.uint8)), "expected a 10x8 frame", 1),
    "a float frame out of range": (_frames(np.full((8, 10, 3), 7.0)), "[0, 1]", 0),
}


@pytest.mark.parametrize("make, error, builtin, words, index", BAD_VIDEOS.values(), ids=BAD_VIDEOS.keys())
def test_a_bad_video_is_a_typed_error_before_tracking(video_model, tmp_path, make, error, builtin, words, index):
    with pytest.raises(error) as e:
        video_model.predict_video(make(tmp_path), "red")
    assert isinstance(e.value, builtin) and words in str(e.value)


@pytest.mark.parametrize("frames, words, index", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
def test_a_bad_frame_names_its_index_and_what_was_expected(video_model, frames, words, index):
    it = video_model.predict_video(frames, "red")
    with pytest.raises(InvalidVideoError) as e:
        list(it)
    assert e.value.frame_index == index and f"frame {index}" in str(e.value) and words in str(e.value)
    assert e.value.expected and e.value.got


def test_an_undecodable_frame_in_a_folder(video_model, tmp_path):
    Image.fromarray(GOOD).save(tmp_path / "1.png")
    (tmp_path / "2.png").write_bytes(b"garbage")
    with pytest.raises(InvalidVideoError) as e:
        list(video_model.predict_video(tmp_path, "red"))
    assert e.value.frame_index == 1 and "2.png" in str(e.value)


# ------------------------------------------------------------------------------------------
# video_io
# ------------------------------------------------------------------------------------------

def test_natural_order():
    names = ["f10.png", "f2.png", "F1.png", "f1b.png", "f100.png"]
    assert sorted(names, key=natural_key) == ["F1.png", "f1b.png", "f2.png", "f10.png", "f100.png"]


@pytest.mark.parametrize("size", [(48, 64), (37, 51)], ids=["even", "odd (padded)"])
def test_writer_round_trip_and_metadata(tmp_path, size):
    H, W = size
    clip = list(moving_clip(12, size=size, objects=[("red", 0, 99, (2, 2), (2, 1), (10, 8))]))
    path = tmp_path / "sub" / "out.mp4"
    with VideoWriter(path, fps=12.5, crf=0) as w:
        for f in clip:
            w.write(f)
    assert path.is_file() and not [p for p in path.parent.iterdir() if p != path]
    src = open_video(path)
    assert src.kind == "file" and src.fps == 12.5 and src.frame_count == 12
    assert src.image_size == (H + H % 2, W + W % 2)
    back = list(src)
    assert len(back) == 12 and all(b.dtype == np.uint8 and b.flags.c_contiguous for b in back)
    err = [np.abs(b[:H, :W].astype(int) - f.astype(int)).mean() for b, f in zip(back, clip)]
    assert max(err) < 3, err  # near-lossless (yuv420p chroma)
    assert [b.shape for b in back] == [(H + H % 2, W + W % 2, 3)] * 12


def test_a_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with VideoWriter(path, fps=5) as w:
            w.write(GOOD)
            raise RuntimeError("interrupted")
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]
    with pytest.raises(InvalidVideoError, match="expected a 10x8 frame"):
        with VideoWriter(tmp_path / "b.mp4", fps=5) as w:
            w.write(GOOD)
            w.write(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InvalidVideoError, match="at least one frame"):
        VideoWriter(tmp_path / "c.mp4").close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_folder_and_iterable_metadata(tmp_path):
    for i in (3, 1, 2):
        Image.fromarray(np.full((6, 7, 3), i, np.uint8)).save(tmp_path / f"{i}.jpg")
    (tmp_path / "notes.txt").write_text("not a frame")
    src = open_video(tmp_path)
    assert (src.kind, src.frame_count, src.image_size, src.fps) == ("folder", 3, (6, 7), None)
    assert [int(f[0, 0, 0]) for f in src] == [1, 2, 3]
    gen = open_video(f for f in [GOOD])
    assert (gen.kind, gen.frame_count, gen.image_size) == ("frames", None, None)
    assert len(list(gen)) == 1 and gen.image_size == (8, 10)
    gray = list(iter_frames([np.zeros((4, 5), np.uint8), Image.new("L", (5, 4))]))
    assert [g.shape for g in gray] == [(4, 5, 3)] * 2


# ------------------------------------------------------------------------------------------
# The whole path on SAM 2.1 (a tiny random config of the real architecture), and on GroundingDINO
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sam2_model(tmp_path_factory, video_model):
    """Tiny SAM 2.1 (from a Meta-layout .pt) with the colour detector: a controlled number of boxes
    (GroundingDINO's random weights give 60 boxes of score 1.0, each a SAM 2.1 object to follow)."""
    from lang_sam.testing import TINY_SAM2_VIDEO, tiny_sam2_spec, write_sam2_checkpoint

    # SAM 2.1's real structure with a tiny Hiera, one memory-attention layer, 256-px input.
    d = tmp_path_factory.mktemp("sam2")
    write_sam2_checkpoint(d / "tiny_sam2.1.pt", TINY_SAM2_VIDEO)  # Meta's layout
    torch.save({}, d / "colors.pth")
    spec = register_model(tiny_sam2_spec("tiny_sam2.1_video", TINY_SAM2_VIDEO, filename="tiny_sam2.1.pt"))
    try:
        yield LangSAM(spec.name, str(d / "tiny_sam2.1.pt"), gdino_type="color_detector",
                      gdino_ckpt_path=str(d / "colors.pth"), device="cpu")
    finally:
        unregister_model("sam", spec.name)


def _spy(monkeypatch, cls):
    """Record what the pipeline asks of a video segmenter class: the new ids of each track call,
    (call index, ids) of each drop, and the sessions started."""
    calls, drops, sessions = [], [], []
    track, drop, start = cls.track, cls.drop, cls.start_video
    monkeypatch.setattr(cls, "track", lambda self, session, frame, **kw: calls.append(
        [int(i) for i in kw.get("new_ids", ())]) or track(self, session, frame, **kw))
    monkeypatch.setattr(cls, "drop", lambda self, session, ids: drops.append(
        (len(calls) - 1, [int(i) for i in ids])) or drop(self, session, ids))
    monkeypatch.setattr(cls, "start_video", lambda self, **kw: sessions.append(start(self, **kw)) or sessions[-1])
    return calls, drops, sessions


def _check_frames(out, n, size):
    """Structure every run must have; returns track id -> (phrase, score)."""
    assert [f.frame_index for f in out] == list(range(n)) and all(f.image_size == size for f in out)
    started = {}
    for f in out:
        ids = f.track_ids.tolist()
        assert ids == sorted(ids) and f.masks.shape == (len(ids), *size)
        for tid, mask, box, phrase, score in zip(ids, f.masks, f.boxes.tolist(), f.phrases, f.scores.tolist()):
            ys, xs = np.nonzero(mask.numpy())
            assert len(ys) and box == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert started.setdefault(tid, (phrase, score)) == (phrase, score)
    assert sorted(started) == list(range(1, len(started) + 1))  # ids from 1, no gaps
    return started


@pytest.mark.slow
def test_sam2_follows_objects_of_a_generated_mp4(sam2_model, tmp_path, monkeypatch):
    from lang_sam.models.sam2 import Sam2Segmenter

    white = ("white", 0, 99, (20, 20), (6, 3), (30, 24))
    blue = ("blue", 3, 99, (90, 60), (-2, 0), (20, 20))  # appears on frame 3, detected on key frame 4
    path = tmp_path / "clip.mp4"
    with VideoWriter(path, fps=5) as w:
        for frame in moving_clip(6, size=(96, 128), objects=[white, blue]):
            w.write(frame)
    calls, drops, sessions = _spy(monkeypatch, Sam2Segmenter)
    out = list(sam2_model.predict_video(path, "white. blue", detect_every=2, lost_after=2))
    started = _check_frames(out, 6, (96, 128))
    assert calls == [[1], [], [2], [], [3, 4], []]  # every frame fed once; candidates on key frames
    assert 1 in started and started[1][0] == "white"
    # Bookkeeping on the real session: candidates that did not become tracks were dropped on their
    # own frame, tracks empty for 2 frames were dropped later; the session follows exactly the rest.
    candidates = {c for cs in calls for c in cs}
    dropped = {i for _, ids in drops for i in ids}
    assert set(sessions[0].object_ids) == candidates - dropped
    rejected = {i for k, ids in drops for i in ids if i in calls[k]}
    assert len(started) == len(candidates - rejected)  # every kept candidate is a track, shown
    assert sessions[0].stored_frames() < 40  # SAM 2.1's pruned window, not the video


@pytest.mark.slow
def test_groundingdino_key_frames_never_track_one_object_twice(tmp_path, monkeypatch, gdino_ckpt, tiny_specs):
    """Tiny GroundingDINO (random: 60 boxes, most overlapping) through predict_video with the
    box-fill video segmenter: of each key frame's candidates, those kept as tracks overlap no other
    track by the IoU threshold, and every other candidate overlaps one."""
    from lang_sam.tracking import mask_iou

    spec = register_model(ModelSpec("sam", "box_fill_video_g", "bfv.pth", BoxFillArch(),
                                    engine="plugin_engines:BoxFillVideo"))
    torch.save({"inset": torch.tensor(0)}, tmp_path / "bfv.pth")
    try:
        m = LangSAM(spec.name, str(tmp_path / "bfv.pth"), gdino_type=tiny_specs[1].name,
                    gdino_ckpt_path=str(gdino_ckpt), device="cpu")
        frames = list(moving_clip(3, size=(96, 128), objects=[RED, BLUE_LATE]))
        frames = [np.ascontiguousarray((f.astype(np.int16) + np.arange(128)[None, :, None] // 8).clip(0, 255)
                                       .astype(np.uint8)) for f in frames]  # a gradient: many colours
        out = list(m.predict_video(frames, "square", box_threshold=0.0, text_threshold=0.0, detect_every=2,
                                   max_candidates=100))
        started = _check_frames(out, 3, (96, 128))
        # The candidates of frame 0, as the segmenter sees them.
        boxes, _, _ = m.predict_dino(frames[0], "square", 0.0, 0.0)
        assert len(boxes) > len(started) > 1
        cand = m.segmenter.track(m.segmenter.start_video(), frames[0], new_ids=list(range(len(boxes))),
                                 new_boxes=boxes).masks
        kept = out[0].masks
        assert (mask_iou(kept, kept) - torch.eye(len(kept)) < 0.5).all()
        best = mask_iou(cand, kept).max(1).values
        assert ((best >= 0.5) | (cand.sum((1, 2)) == 0)).all()
    finally:
        unregister_model("sam", spec.name)


# ------------------------------------------------------------------------------------------
# Limits while probing and decoding (issue 25, item 2); files cut short (item 5)
# ------------------------------------------------------------------------------------------

_PEAK_RSS = r"""
import resource, sys
from lang_sam.errors import VideoTooLargeError
from lang_sam.video_io import iter_frames, open_video
path, how = sys.argv[1], sys.argv[2]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    if how == "open":
        open_video(path, max_pixels=40_000_000)
    else:  # frame 0 (64x64) passes the probe; frame 1 (16000x16000) is met while decoding
        list(open_video(path, max_pixels=40_000_000))
    print("no error")
except VideoTooLargeError as exc:
    print(exc.got, exc.frame_index)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


@pytest.mark.parametrize("how", ["open", "decode"])
def test_a_frame_over_max_pixels_is_refused_without_being_decoded(tmp_path, how):
    """The .mov says 64x64 and holds a 16000x16000 PNG (768 MB decoded): with ``max_pixels``,
    FFmpeg's probe (in open_video) and decoder (iterating) refuse it; the child process's peak
    RSS grows by less than 100 MB (it grew by ~730 MB when av.open probed without a limit)."""
    import subprocess
    import sys

    from track_helpers import lying_mov

    path = lying_mov(tmp_path / "big.mov", [(16000, 16000)] if how == "open" else [(64, 64), (16000, 16000)])
    out = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(path), how], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    refused, grew = out.stdout.splitlines()
    assert refused == f"16000x16000 = 256,000,000 pixels per frame {0 if how == 'open' else 1}"
    assert int(grew) < 100, f"peak RSS grew by {grew} MB"


def test_max_pixels_refusals_are_typed(tmp_path):
    from lang_sam.errors import VideoTooLargeError
    from track_helpers import lying_mov

    path = lying_mov(tmp_path / "two.mov", [(64, 64), (640, 480)])
    source = open_video(path, max_pixels=64 * 64)  # frame 0 passes the probe
    with pytest.raises(VideoTooLargeError) as e:
        list(source)
    assert isinstance(e.value, InvalidVideoError) and isinstance(e.value, ValueError)
    assert (e.value.frame_index, e.value.limit, e.value.what) == (1, 64 * 64, "pixels")
    assert "640x480 = 307,200 pixels" in str(e.value)
    # no size in the header, and a first frame that does not decode: unknown size, refused
    bad = lying_mov(tmp_path / "bad.mov", [b"not a png"], (0, 0))
    with pytest.raises(InvalidVideoError, match="frame size its header or its first frame gives"):
        open_video(bad, max_pixels=10**6)
    # without a limit the library reads as before (and fails on the frame)
    assert open_video(bad).image_size is None


@pytest.mark.parametrize("fmt, codec, name", [("mpeg", "mpeg2video", "a.mpg"), ("flv", "flv", "a.flv")])
def test_containers_probed_only_by_decoding_are_refused_under_a_limit(tmp_path, fmt, codec, name):
    path = tmp_path / name
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(3):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    assert len(list(iter_frames(path))) == 3  # the library reads them
    with pytest.raises(InvalidVideoError, match="found only by decoding"):
        open_video(path, max_pixels=10**6)


def test_the_limit_is_exact_on_the_frame_size(tmp_path):
    """FFmpeg's check rounds the width up to 64; the reader's own check is width x height."""
    from lang_sam.errors import VideoTooLargeError
    from track_helpers import lying_mov

    path = lying_mov(tmp_path / "v.mov", [(300, 200)], (300, 200))
    assert len(list(open_video(path, max_pixels=300 * 200))) == 1
    with pytest.raises(VideoTooLargeError):
        open_video(path, max_pixels=300 * 200 - 1)


@pytest.mark.parametrize("declared, read, missing", [
    (None, 5, 0), (20, 20, 0), (20, 21, 0), (20, 18, 0), (20, 17, 3), (20, 9, 11),
    (1000, 980, 0), (1000, 979, 21), (3, 1, 0), (3, 0, 3),
])
def test_count_shortfall(declared, read, missing):
    from lang_sam.video_io import count_shortfall

    assert count_shortfall(declared, read) == missing


def test_a_cut_file_is_read_to_its_end_and_warned_about(tmp_path, caplog):
    """An mp4 (index first) cut after 9 of its 20 frames (as the issue's, cut to 60%): its header
    still says 20; the 9 frames are yielded and the source's warning (logged too) says 11 are
    missing (before, nothing said so)."""
    from track_helpers import cut_clip

    whole = tmp_path / "whole.mp4"
    with VideoWriter(whole, fps=10, crf=0) as w:
        for frame in moving_clip(20):
            w.write(frame)
    cut = cut_clip(whole, tmp_path / "cut.mp4", 9)
    source = open_video(cut)
    assert source.frame_count == 20
    with caplog.at_level("WARNING", logger="lang_sam.video_io"):
        n = len(list(source))
    assert n == source.frames_read == 9
    assert source.warning == ("the video ended after 9 frame(s) while its header announces 20: "
                              "11 are missing (the file may be cut short)")
    assert [r.getMessage() for r in caplog.records] == [f"{cut}: {source.warning}"]
    whole_source = open_video(whole)
    assert len(list(whole_source)) == 20 and whole_source.warning is None
