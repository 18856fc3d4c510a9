"""Text-prompted video on SAM 3's video model (issue 16 item 4): ``predict_video`` with
``sam_type="sam3"`` runs transformers' Sam3VideoModel (a TextVideoSegmenter: it detects on every
frame and keeps its own ids), on a tiny random SAM 3 *video* folder (detector + tracker, as
facebook/sam3 holds) written by lang_sam.testing. No GroundingDINO anywhere.
"""

from __future__ import annotations

import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_image
from lang_sam import LangSAM
from lang_sam.errors import EngineUnavailableError, IgnoredArgumentWarning
from lang_sam.models.base import TextVideoSegmenter
from lang_sam.testing import write_sam3_folder
from lang_sam.tracking import mask_boxes
from lang_sam.video import video_types

pytest.importorskip("transformers.models.sam3_video", reason="SAM 3 video needs transformers>=5")

PROMPT = "cat. dog"


@pytest.fixture(scope="module")
def sam3v_dir(tmp_path_factory) -> Path:
    return write_sam3_folder(tmp_path_factory.mktemp("sam3v") / "sam3", "tiny", seed=0, video=True)


@pytest.fixture(scope="module")
def sam3v(sam3v_dir) -> LangSAM:
    return LangSAM(sam_type="sam3", ckpt_path=sam3v_dir, device="cpu")


def clip(n: int = 7, h: int = 48, w: int = 64) -> list[np.ndarray]:
    """A short clip: a random background with a bright square moving right."""
    base = make_image(h, w, seed=3)
    frames = []
    for i in range(n):
        f = base.copy()
        f[10:30, 4 + 4 * i:24 + 4 * i] = (250, 30, 30)
        frames.append(f)
    return frames


def reference(folder: Path, frames, phrases):
    """transformers called directly: Sam3VideoModel + Sam3VideoProcessor, streaming, one text
    prompt per phrase; per frame {object id: (mask, score, phrase)} (non-empty masks)."""
    from transformers import Sam3VideoModel, Sam3VideoProcessor

    model = Sam3VideoModel.from_pretrained(folder).eval()
    proc = Sam3VideoProcessor.from_pretrained(folder)
    session = proc.init_video_session(inference_device="cpu")
    proc.add_text_prompt(session, list(phrases))
    out = []
    for frame in frames:
        inputs = proc(images=frame, return_tensors="pt")
        with torch.inference_mode():
            o = model(inference_session=session, frame=inputs["pixel_values"][0])
        r = proc.postprocess_outputs(session, o, original_sizes=inputs["original_sizes"])
        names = {t: p for p, ids in r["prompt_to_obj_ids"].items() for t in ids}
        out.append({int(t): (m, float(s), names[int(t)])
                    for t, m, s in zip(r["object_ids"], r["masks"], r["scores"]) if m.any()})
    return out


def test_sam3_is_a_video_type_and_its_engine_tracks_text(sam3v):
    assert "sam3" in video_types()
    assert isinstance(sam3v.segmenter, TextVideoSegmenter) and sam3v.detector is sam3v.segmenter


@pytest.mark.slow  # two passes of the tiny video model over 6 frames on a 2-core CPU
def test_predict_video_equals_transformers_directly_with_stable_ids(sam3v, sam3v_dir):
    frames = clip(6)
    got = list(sam3v.predict_video(iter(frames), PROMPT))
    want = reference(sam3v_dir, frames, ("cat", "dog"))
    assert [f.frame_index for f in got] == list(range(len(frames)))
    assert sum(len(w) for w in want) > 0, "the tiny folder's thresholds should start some tracks"
    track_of: dict[int, int] = {}
    for f, w in zip(got, want):
        H, W = frames[0].shape[:2]
        assert f.image_size == (H, W) and f.masks.shape == (len(w), H, W) and f.masks.dtype == torch.bool
        assert f.track_ids.dtype == torch.int64 and f.scores.dtype == torch.float32
        assert f.track_ids.tolist() == sorted(f.track_ids.tolist())
        # ids: the engine's objects map one-to-one onto track ids, from 1 in order of appearance
        for obj in sorted(w):
            track_of.setdefault(obj, len(track_of) + 1)
        by_tid = {int(t): k for k, t in enumerate(f.track_ids)}
        assert sorted(by_tid) == sorted(track_of[o] for o in w)
        for obj, (mask, score, phrase) in w.items():
            k = by_tid[track_of[obj]]
            assert torch.equal(f.masks[k], mask.bool())
            assert f.scores[k].item() == pytest.approx(score, abs=1e-6) and f.phrases[k] == phrase
        assert torch.equal(f.boxes, mask_boxes(f.masks))
    assert sorted(track_of.values()) == list(range(1, len(track_of) + 1))


def test_arguments_that_do_not_apply_are_warned_not_silent(sam3v):
    frames = clip(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list(sam3v.predict_video(iter(frames), PROMPT))  # defaults: no warning
    with pytest.warns(IgnoredArgumentWarning, match="detect_every=3, iou_threshold=0.7"):
        list(sam3v.predict_video(iter(frames), PROMPT, detect_every=3, iou_threshold=0.7))


@pytest.mark.slow
def test_memory_is_flat_with_video_length(sam3v):
    seg = sam3v.segmenter
    session = seg.start_video(seg.prepare(PROMPT, 0.3, 0.25))
    model, _ = seg.video_model()
    cfg = model.tracker_model.config
    window = max(cfg.num_maskmem, cfg.max_object_pointers_in_encoder) + 1
    frames = clip(window + 2)
    for f in frames:
        seg.track(session, f)
    s = session.inference
    assert len(s.processed_frames) == 1 and s.output_dict_per_obj
    for per_obj in s.output_dict_per_obj.values():
        assert len(per_obj["non_cond_frame_outputs"]) <= window
        assert len(per_obj["cond_frame_outputs"]) <= cfg.max_cond_frame_num


def test_the_image_only_folder_is_a_typed_mismatch_for_video(tmp_path):
    from lang_sam.errors import CheckpointMismatchError

    folder = write_sam3_folder(tmp_path / "img", "tiny", seed=0)
    model = LangSAM(sam_type="sam3", ckpt_path=folder, device="cpu")
    masks, _, _, _ = model.predict(Image.fromarray(make_image(40, 40, seed=1)), "cat")  # images still work
    assert masks.shape[1:] == (40, 40)
    with pytest.raises(CheckpointMismatchError, match="'sam3_video'"):
        list(model.predict_video(iter(clip(1)), "cat"))


def test_transformers_without_sam3_video_gives_a_typed_error(sam3v_dir, monkeypatch):
    """What transformers 4.57 gives: no Sam3VideoModel there (the engine is loaded first with the
    real transformers, then the video model is asked for)."""
    model = LangSAM(sam_type="sam3", ckpt_path=sam3v_dir, device="cpu")
    fake = types.ModuleType("transformers")
    fake.__version__ = "4.57.6"
    monkeypatch.setitem(sys.modules, "transformers", fake)
    with pytest.raises(EngineUnavailableError) as info:
        list(model.predict_video(iter(clip(1)), "cat"))
    err = info.value
    assert isinstance(err, ImportError) and err.installed == "4.57.6" and "transformers>=5.0" in str(err)


@pytest.mark.slow  # the CLI run and predict_video on the same 5 frames
def test_lang_sam_track_cli_runs_sam3_and_its_files_parse_back(sam3v, sam3v_dir, tmp_path):
    pytest.importorskip("av")  # the [video] extra
    from track_helpers import RED, read_mot, write_clip

    from lang_sam.cli import main
    from lang_sam.labeling import video_formats as vf
    from lang_sam.video_io import iter_frames

    video = write_clip(tmp_path / "in" / "a.mp4", [RED], 5)
    out = tmp_path / "out"
    assert main(["track", str(video), "--prompt", PROMPT, "--output", str(out), "--format", "mot,masks",
                 "--sam-type", "sam3", "--sam-ckpt", str(sam3v_dir), "--device", "cpu"]) == 0
    direct = list(sam3v.predict_video(iter_frames(video), PROMPT))
    text = (out / "mot" / "a.txt").read_text()
    assert text.splitlines() == [line for f in direct for line in vf.mot_lines(f)]
    rows = read_mot(out / "mot" / "a.txt")
    assert rows, "the tiny model's thresholds should give some objects"
    assert sorted({t for _, t, _, _ in rows}) == list(range(1, len({t for _, t, _, _ in rows}) + 1))
    for f in direct:  # the PNG of each frame holds each object's track id on its mask
        with Image.open(out / "masks" / "a" / f"{f.frame_index:06d}.png") as im:
            ids = np.asarray(im).astype(np.int64)
        assert ids.shape == f.image_size
        masks = f.masks.numpy()
        assert (ids[~masks.any(0)] == 0).all()  # overlapping masks: a pixel holds one of its ids
        for k, tid in enumerate(f.track_ids.tolist()):
            assert masks[k][ids == tid].all() and (ids[masks[k]] != 0).all()
        assert set(np.unique(ids)) <= {0, *f.track_ids.tolist()}


def test_track_ids_map_engine_ids_from_1_never_reused():
    """The id mapping of the text-video path, on a scripted engine: an engine id keeps its track id
    when it comes back, new engine ids get the next id, ids are ascending in each frame."""
    from lang_sam.models.base import TextTrackStep
    from lang_sam.video import _run_text

    script = [[7], [7, 3], [3], [], [9, 7]]

    class Scripted(TextVideoSegmenter):
        def prepare(self, text_prompt, box_threshold, text_threshold):
            return text_prompt

        def start_video(self, prepared, *, offload=True):
            return iter(script)

        def track(self, session, frame):
            ids = next(session)
            masks = torch.zeros((len(ids), 4, 5), dtype=torch.bool)
            for k, o in enumerate(ids):
                masks[k, o % 4, o % 5] = True
            return TextTrackStep(torch.tensor(ids, dtype=torch.int64), masks,
                                 torch.full((len(ids),), 0.5), [f"p{o}" for o in ids])

    from lang_sam.video_io import open_video

    frames = [np.zeros((4, 5, 3), np.uint8)] * len(script)
    got = list(_run_text(Scripted(), open_video(iter(frames)), None, True, None))
    assert [f.track_ids.tolist() for f in got] == [[1], [1, 2], [2], [], [1, 3]]
    assert [f.phrases for f in got] == [["p7"], ["p7", "p3"], ["p3"], [], ["p7", "p9"]]
