"""A tracking family registered from outside lang_sam (tests/plugin_tracking.py: ``BoxFollow``, a
video segmenter whose masks follow the prompt box) runs ``predict_video`` and ``python -m lang_sam
track`` unchanged: nothing in lang_sam names it; the engine answers the capability questions and
writes its own checkpoint (``lang_sam.testing.write_checkpoint``). The subprocess registers it
the way a plugin does, before the CLI runs (tests/plugin_tracking.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import plugin_tracking
from lang_sam import LangSAM
from lang_sam.models.base import engine_for
from lang_sam.models.registry import DEFAULT_TRACK_SAM, default_model, get_spec
from lang_sam.testing import write_checkpoint
from plugin_engines import BoxFollow, moving_clip
from track_helpers import RED, read_mot, truth_box

TESTS = Path(__file__).resolve().parent
N = 8


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """The plugin registered; its checkpoint, written by its engine's own writer, and the detector's."""
    sam_spec, det_spec = plugin_tracking.register()
    folder = tmp_path_factory.mktemp("plugin")
    sam = write_checkpoint(folder / sam_spec.filename, get_spec("sam", plugin_tracking.SAM_TYPE))
    det = folder / det_spec.filename
    torch.save({}, det)
    yield sam, det
    plugin_tracking.unregister()


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_the_engine_answers_the_capability_questions_and_writes_its_checkpoint(ckpts):
    spec = get_spec("sam", plugin_tracking.SAM_TYPE)
    cls = engine_for(spec)
    assert cls is BoxFollow and (cls.takes_boxes, cls.can_track, cls.segments_text) == (True, True, False)
    assert torch.load(ckpts[0])["step"].tolist() == list(plugin_tracking.STEP)
    assert default_model("sam", "track") == DEFAULT_TRACK_SAM != plugin_tracking.SAM_TYPE  # a plugin does not move it


def test_predict_video_follows_the_object_with_one_track(ckpts):
    sam, det = ckpts
    model = LangSAM(sam_type=plugin_tracking.SAM_TYPE, ckpt_path=str(sam), gdino_type=plugin_tracking.GDINO_TYPE,
                    gdino_ckpt_path=str(det), device="cpu")
    frames = list(model.predict_video(moving_clip(N, objects=[RED]), "red", detect_every=4))
    assert len(frames) == N
    assert {int(i) for f in frames for i in f.track_ids} == {int(frames[0].track_ids[0])}
    for i, f in enumerate(frames):
        assert len(f.track_ids) == 1 and f.masks.shape == (1, 96, 128)
        rows, cols = np.flatnonzero(np.asarray(f.masks[0]).any(1)), np.flatnonzero(np.asarray(f.masks[0]).any(0))
        got = [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
        assert box_iou(got, truth_box(RED, i)) > 0.9, (i, got, truth_box(RED, i))


@pytest.mark.slow  # a subprocess: python -m lang_sam track
def test_python_m_lang_sam_track_runs_the_plugin(ckpts, tmp_path):
    pytest.importorskip("av")  # the [video] extra
    from track_helpers import write_clip

    sam, det = ckpts
    write_clip(tmp_path / "clips" / "a.mp4", [RED], N)
    argv = ["lang-sam", "track", str(tmp_path / "clips"), "--prompt", "red", "--output", str(tmp_path / "out"),
            "--detect-every", "4", "--sam-type", plugin_tracking.SAM_TYPE, "--sam-ckpt", str(sam),
            "--gdino-type", plugin_tracking.GDINO_TYPE, "--gdino-ckpt", str(det), "--device", "cpu"]
    code = ("import runpy, sys\nimport plugin_tracking\nplugin_tracking.register()\n"
            f"sys.argv = {argv!r}\nrunpy.run_module('lang_sam', run_name='__main__', alter_sys=True)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=TESTS, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = read_mot(tmp_path / "out" / "mot" / "a.txt")
    assert [r[0] for r in rows] == list(range(1, N + 1)) and len({r[1] for r in rows}) == 1
    for frame, _, (x, y, w, h), _ in rows:
        assert box_iou([x, y, x + w, y + h], truth_box(RED, frame - 1)) > 0.8
