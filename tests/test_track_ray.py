"""``lang-sam track --ray`` (lang_sam.labeling.distributed.track_dataset) on one local Ray instance
with the video test engines: one video per task through the single-process command's one-video
function, so the outputs equal a run without ``--ray`` file for file (the overlay mp4s frame for
frame), and resume skips the videos done."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from lang_sam.cli import main
from lang_sam.video_io import iter_frames
from track_helpers import PROMPT, VideoEngines, files, temp_files, write_clips

pytestmark = pytest.mark.slow  # a Ray instance and its workers loading the models

RAY = ["--ray", "--workers", "2", "--cpus-per-worker", "1"]
FORMATS = ["--format", "mot,coco,overlay,masks", "--detect-every", "3"]


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'lang-sam[ray]'")
    # The workers import the test engines (tests/plugin_engines.py) by module name.
    here = str(Path(__file__).parent)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([here, *([old] if old else [])])
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield ray
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    e = VideoEngines(tmp_path_factory.mktemp("engines"))
    yield e
    e.close()


def outputs(root: Path) -> dict[str, bytes]:
    return {k: v for k, v in files(root).items() if not k.startswith((".lang-sam/", "overlays/"))}


def test_ray_equals_one_process_and_resumes(ray_instance, engines, tmp_path, capsys):
    clips = write_clips(tmp_path / "clips")
    ref, out = tmp_path / "ref", tmp_path / "out"
    args = [str(clips), "--prompt", PROMPT, *FORMATS, *engines.flags()]
    assert main(["track", *args, "--output", str(ref)]) == 0
    assert main(["track", *args, "--output", str(out), *RAY]) == 0
    assert "2 tracked" in capsys.readouterr().out
    assert outputs(out) == outputs(ref) and len(outputs(ref)) == 3 + 12 + 8
    for rel in ("a.mp4", "sub/b.mp4"):
        got = [f.astype(int) for f in iter_frames(out / "overlays" / rel)]
        want = [f.astype(int) for f in iter_frames(ref / "overlays" / rel)]
        assert len(got) == len(want) and all(np.abs(g - w).max() <= 2 for g, w in zip(got, want))
    assert temp_files(out) == []
    # A video without its record is unfinished: resumed on Ray, it alone is done again.
    (out / ".lang-sam" / "videos" / "sub" / "b.json").unlink()
    (out / "mot" / "sub" / "b.txt").unlink()
    kept = (out / "mot" / "a.txt").stat().st_mtime_ns
    assert main(["track", *args, "--output", str(out), *RAY, "--resume"]) == 0
    assert "1 tracked, 1 skipped" in capsys.readouterr().out
    assert (out / "mot" / "a.txt").stat().st_mtime_ns == kept
    assert outputs(out) == outputs(ref)
