"""Segment everything: ``lang_sam.generate.generate`` (what ``LangSAM.generate`` runs) against
Segment Anything's ``SamAutomaticMaskGenerator`` on the same full-size random-weight SAM network
and the same photo, alternating, in one process.

    python benchmarks/generate_bench.py [--sam vit_b] [--points-per-side 16] [--repeats 2]

Compute does not depend on weight values (random weights keep few masks after SAM's default
filters, so a second setting keeps every mask: the filters, NMS and mask encoding then run on all
of them). Prints seconds per call for each setting and the lang-sam / reference ratio.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lang_sam.generate import GenerateSettings, generate
from lang_sam.models.registry import get_spec
from lang_sam.models.segmenter import SamSegmenter, build_sam_model

PHOTO = Path(__file__).resolve().parents[1] / "assets" / "coffee.jpg"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sam", default="vit_b")
    ap.add_argument("--points-per-side", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--exact-only", action="store_true", help="skip the fast-attention rows")
    args = ap.parse_args()
    from segment_anything import SamAutomaticMaskGenerator

    torch.manual_seed(0)
    net = build_sam_model(get_spec("sam", args.sam))
    image = np.asarray(Image.open(PHOTO).convert("RGB"))
    rows = {"SAM's defaults": {}, "keep every mask": dict(pred_iou_thresh=0.0, stability_score_thresh=0.0)}
    for fast in (False,) if args.exact_only else (False, True):
        seg = SamSegmenter(net, fast_attention=fast, cache_size=0)  # no cache: every call encodes
        for label, extra in rows.items():
            kw = dict(points_per_side=args.points_per_side, **extra)
            ours, ref, n = [], [], None
            for _ in range(args.repeats):
                t = time.perf_counter()
                out = generate(seg, image, GenerateSettings(**kw))
                ours.append(time.perf_counter() - t)
                if not fast:
                    t = time.perf_counter()
                    anns = SamAutomaticMaskGenerator(net, **kw).generate(image)
                    ref.append(time.perf_counter() - t)
                    assert len(anns) == len(out)
                n = len(out)
            name = f"{label}, {'fast attention' if fast else 'exact attention'}"
            line = f"{name}: {n} masks; lang-sam {min(ours):.1f} s"
            if ref:
                line += f", reference {min(ref):.1f} s, ratio {min(ours) / min(ref):.2f}x"
            print(line, flush=True)


if __name__ == "__main__":
    main()
