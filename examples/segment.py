"""Segment what a text prompt names in an image, and save the overlay.

    python examples/segment.py assets/cat.jpg "cat" --output outputs/cat_overlay.png

The first run downloads the default checkpoints (SAM vit_h, 2.4 GiB; GroundingDINO Swin-B, 0.9 GiB)
into the torch hub cache, with a progress bar; later runs load them from disk. Pass --sam-ckpt /
--gdino-ckpt to use local files, or set LANG_SAM_OFFLINE=1 to forbid any download.

Exit status: 0 done; 3 the checkpoints are missing and could not be fetched (the message lists every
missing file and the ways to provide them; no traceback); 2 bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lang_sam import SAM_MODELS, GDINO_MODELS, LangSAM, MissingWeightsError
from lang_sam.labeling import detection_labels
from lang_sam.utils import draw_image, load_image


#: Exit status when the weights are missing (as ``lang-sam predict`` exits when models are unavailable).
EXIT_NO_WEIGHTS = 3


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image", help="path of the image to segment")
    p.add_argument("prompt", help='what to find, e.g. "car. wheel"')
    p.add_argument("--output", default=None, help="overlay PNG (default: outputs/<image>_overlay.png)")
    p.add_argument("--sam-type", default="vit_h", choices=sorted(SAM_MODELS))
    p.add_argument("--sam-ckpt", default=None, help="local SAM checkpoint file")
    p.add_argument("--gdino-type", default="swinb", choices=sorted(GDINO_MODELS))
    p.add_argument("--gdino-ckpt", default=None, help="local GroundingDINO checkpoint file")
    p.add_argument("--box-threshold", type=float, default=0.3)
    p.add_argument("--text-threshold", type=float, default=0.25)
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    return p.parse_args(argv)


def main(argv=None) -> Path:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.perf_counter()
    model = LangSAM(args.sam_type, args.sam_ckpt, gdino_type=args.gdino_type,
                    gdino_ckpt_path=args.gdino_ckpt, device=args.device)
    t1 = time.perf_counter()
    image = load_image(args.image)
    masks, boxes, phrases, logits = model.predict(image, args.prompt, args.box_threshold,
                                                  args.text_threshold)
    t2 = time.perf_counter()
    labels = detection_labels(phrases, logits)
    overlay = draw_image(np.asarray(image), masks, boxes, labels)
    out = Path(args.output or Path("outputs") / f"{Path(args.image).stem}_overlay.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    Image.fromarray(overlay).save(tmp, format="PNG")
    os.replace(tmp, out)
    print(f"loaded models in {t1 - t0:.1f} s on {model.device}; predicted in {t2 - t1:.1f} s")
    print(f"{len(boxes)} detections for {args.prompt!r}:")
    for phrase, score, box in zip(phrases, logits.tolist(), boxes.tolist()):
        print(f"  {phrase!r:30} {score:.3f}  box xyxy={[round(v, 1) for v in box]}")
    print(f"overlay written to {out}")
    return out


if __name__ == "__main__":
    try:
        main()
    except MissingWeightsError as exc:
        print(f"{Path(sys.argv[0]).name}: {exc}", file=sys.stderr)
        sys.exit(EXIT_NO_WEIGHTS)
