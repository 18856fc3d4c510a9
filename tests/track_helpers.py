"""What the tests of ``lang-sam track`` and its server, demo and Ray paths share: the video test
engines of tests/plugin_engines.py (a detector of coloured shapes and a box-fill segmenter that
follows them by colour) registered with checkpoint files, and generated clips written as mp4.

Engines that run the real SAM 2.1 architecture replace them in these tests once a tiny SAM 2.1
config is available (lang_sam.testing); the outputs checked here do not depend on which."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from lang_sam.hub import ModelSpec, register_model, unregister_model
from plugin_engines import BoxFillArch, moving_clip

SAM_TYPE, GDINO_TYPE = "box_fill_video", "color_detector"

# (colour, first frame, last frame, (x, y) at its first frame, (dx, dy) per frame, (w, h)) on 96x128 frames
RED = ("red", 0, 99, (10, 10), (2, 1), (16, 12))
BLUE_LATE = ("blue", 5, 99, (90, 60), (-1, 0), (14, 14))
GREEN = ("green", 0, 99, (60, 20), (-1, 1), (18, 10))

#: Clips of the tests: relative path -> (objects, frames).
CLIPS = {"a.mp4": ([RED, BLUE_LATE], 12), "sub/b.mp4": ([GREEN], 8)}
PROMPT = "red. blue. green"


class VideoEngines:
    """The two test engines registered, with their checkpoint files; :meth:`flags` for the CLI,
    :meth:`kwargs` for :class:`~lang_sam.LangSAM`, :meth:`close` unregisters them."""

    def __init__(self, folder: Path):
        self.sam = register_model(ModelSpec("sam", SAM_TYPE, "bfv.pth", BoxFillArch(),
                                            engine="plugin_engines:BoxFillVideo"), overwrite=True)
        self.det = register_model(ModelSpec("gdino", GDINO_TYPE, "colors.pth", None,
                                            engine="plugin_engines:ColorDetector"), overwrite=True)
        self.sam_ckpt, self.det_ckpt = folder / "bfv.pth", folder / "colors.pth"
        torch.save({"inset": torch.tensor(0)}, self.sam_ckpt)
        torch.save({}, self.det_ckpt)

    def flags(self) -> list[str]:
        return ["--sam-type", SAM_TYPE, "--sam-ckpt", str(self.sam_ckpt), "--gdino-type", GDINO_TYPE,
                "--gdino-ckpt", str(self.det_ckpt), "--device", "cpu"]

    def kwargs(self) -> dict:
        return dict(sam_type=SAM_TYPE, ckpt_path=str(self.sam_ckpt), gdino_type=GDINO_TYPE,
                    gdino_ckpt_path=str(self.det_ckpt), device="cpu")

    def model(self):
        from lang_sam import LangSAM

        return LangSAM(**self.kwargs())

    def close(self) -> None:
        unregister_model("sam", SAM_TYPE)
        unregister_model("gdino", GDINO_TYPE)


def write_clip(path: Path, objects, n: int, fps: float = 10) -> Path:
    """``moving_clip(n, objects)`` as an mp4 (H.264 crf 0: solid colours survive to within a few
    levels, edges within a pixel)."""
    from lang_sam.video_io import VideoWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, fps=fps, crf=0) as w:
        for frame in moving_clip(n, objects=objects):
            w.write(frame)
    return path


def write_clips(folder: Path, clips: dict = CLIPS) -> Path:
    for rel, (objects, n) in clips.items():
        write_clip(folder / rel, objects, n)
    return folder


def read_mot(path: Path) -> list[tuple[int, int, list[float], float]]:
    """MOT lines as ``(frame, id, [x, y, w, h], score)``, checking the ``-1,-1,-1`` tail."""
    out = []
    for row in csv.reader(path.read_text().splitlines()):
        assert len(row) == 10 and row[7:] == ["-1", "-1", "-1"], row
        out.append((int(row[0]), int(row[1]), [float(v) for v in row[2:6]], float(row[6])))
    return out


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def temp_files(root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in root.rglob("*.tmp")]


def truth_box(obj, i):
    """Where ``moving_clip`` draws ``obj`` on frame ``i`` (xyxy), or None."""
    name, first, last, (x, y), (dx, dy), (w, h) = obj
    if not first <= i <= last:
        return None
    x0, y0 = int(round(x + dx * (i - first))), int(round(y + dy * (i - first)))
    return np.array([x0, y0, x0 + w, y0 + h], float)
