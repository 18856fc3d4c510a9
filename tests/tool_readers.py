"""The annotation tools' own readers (Label Studio's SDK, Datumaro) for the tests of
``--format labelstudio`` / ``cvat``: installed apart by tests/tool-readers.txt into
``.tool-readers/`` (their numpy / pandas pins would downgrade the test environment's), found
there by :func:`use_readers`, which appends that folder to ``sys.path``: the environment's own
packages come first."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from lang_sam.masks import CropMask

READERS = Path(__file__).resolve().parents[1] / ".tool-readers"
INSTALL = "pip install --no-deps --target .tool-readers -r tests/tool-readers.txt"


def use_readers() -> None:
    """Make ``label_studio_sdk`` and ``datumaro`` importable; fail (never skip) saying how to
    install them when ``.tool-readers/`` is missing."""
    if not READERS.is_dir():
        pytest.fail(f"the annotation tools' readers are not installed in {READERS}: run {INSTALL!r} "
                    "from the repository root (the README's test command does)")
    if str(READERS) not in sys.path:
        sys.path.append(str(READERS))


# ------------------------------------------------------------------------------------------
# An image run of hand-made instances of every kind of shape, written by LabelRun
# ------------------------------------------------------------------------------------------
H, W = 40, 56
#: Class names, one with characters XML must escape.
NAMES = ["car", "wheel", 'sign "stop" & <go>']


def shaped_masks(seed: int) -> tuple[list[np.ndarray], list[str]]:
    """Masks of ``H x W`` that a writer can get wrong, with their class names: a disc, a ring (a
    hole), two blobs (two parts), a block in the bottom-right corner (touching two edges), a
    speck (no polygon over MIN_AREA pixels), an empty mask, and random pixels (every run length)."""
    yy, xx = np.mgrid[:H, :W]
    cx, cy = 14 + seed, 15
    disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= 81
    ring = ((xx - 38) ** 2 + (yy - 14) ** 2 <= 100) & ((xx - 38) ** 2 + (yy - 14) ** 2 > 16)
    blobs = np.zeros((H, W), bool)
    blobs[28:36, 3:14] = blobs[30:38, 20:33] = True
    corner = np.zeros((H, W), bool)
    corner[29:, 44:] = True
    speck = np.zeros((H, W), bool)
    speck[5, 5:8] = True
    noise = np.random.default_rng(seed).random((H, W)) < 0.4
    masks = [disc, ring, blobs, corner, speck, np.zeros((H, W), bool), noise]
    return masks, [NAMES[i % len(NAMES)] for i in range(len(masks))]


def shaped_run(out: Path, images: Path, formats, export=None):
    """Label every PNG of ``images`` (written here: two, one in a subfolder) with
    :func:`shaped_masks` through :class:`~lang_sam.labeling.run.LabelRun`; return the run."""
    import time

    from PIL import Image

    from lang_sam.labeling.run import ImageLabels, LabelRun, LabelSettings, collect_images

    for i, rel in enumerate(["a.png", "sub/b c.png"]):
        (images / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((H, W, 3), 40 * i, np.uint8)).save(images / rel)
    run = LabelRun(out, LabelSettings.create("car. wheel"), formats, export=export)
    try:
        for seed, item in enumerate(run.start(collect_images([images], exclude=out))):
            masks, names = shaped_masks(seed)
            boxes = np.array([[*CropMask.from_dense(m).bbox] if m.any() else [0, 0, 1, 1] for m in masks],
                             np.float32)
            scores = np.linspace(0.3, 0.9, len(masks)).astype(np.float32) + np.float32(seed / 100)
            run.write(ImageLabels(item=item, width=W, height=H, boxes=boxes, scores=scores, names=names,
                                  masks=[CropMask.from_dense(m) for m in masks]))
    finally:
        run.close(time.perf_counter())
    return run
