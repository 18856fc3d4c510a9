"""GroundingDINO on PyTorch against OpenVINO float32, side by side in one process (issue 27).

    python benchmarks/bench_gdino_openvino.py --gdino swint --weights /tmp/w

Loads one full-size GroundingDINO checkpoint (``--weights``: a folder holding it under its canonical
name; random weights of the real architecture are written there first if it is missing: compute
does not depend on weight values) twice: ``backend="pytorch"`` and ``backend="openvino"``. The
OpenVINO parts are converted into a fresh cache folder first (timed: the one-time cost per image
shape and caption bucket), then loaded again from it (the cost of a later process). Then, for
``--repeat`` rounds each, alternating the two backends: ``encode_image`` (Swin backbone) and
``forward_text`` (BERT, text-image encoder, decoder, heads). Printed: medians, the ratio
OpenVINO / PyTorch, and the largest differences of the scores and boxes (pixels) of the queries.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gdino", default="swint")
    p.add_argument("--weights", required=True, help="folder of checkpoints (canonical names)")
    p.add_argument("--image", default=str(ROOT / "assets" / "coffee.jpg"))
    p.add_argument("--prompt", default="cup. spoon.")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--cache", default=None, help="converted-model cache folder (default: a fresh temp folder)")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    from lang_sam.models.detector import GroundingDINODetector, preprocess_caption
    from lang_sam.models.registry import get_spec
    from lang_sam.testing import write_gdino_checkpoint
    from lang_sam.validation import open_image

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = get_spec("gdino", args.gdino)
    path = Path(args.weights) / spec.filename
    if not path.exists():
        print(f"writing random {args.gdino} weights to {path} ...", flush=True)
        write_gdino_checkpoint(path, args.gdino, few_boxes=True, target_boxes=16, calibration_image=args.image)
    image, caption = open_image(args.image), preprocess_caption(args.prompt)
    print(f"CPU: {_cpu()}; torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads; image {image.width}x{image.height}; caption {caption!r}", flush=True)

    t = time.perf_counter()
    pt = GroundingDINODetector.from_spec(spec, path)
    print(f"pytorch: load {time.perf_counter() - t:.1f} s", flush=True)
    with tempfile.TemporaryDirectory() as temp:
        cache = args.cache or temp
        t = time.perf_counter()
        ov = GroundingDINODetector.from_spec(spec, path, backend="openvino", openvino_cache=cache)
        ov.forward_text(ov.encode_image(image), caption)
        print(f"openvino: load + convert (unless cached) + first predict {time.perf_counter() - t:.1f} s", flush=True)
        steps = [time.perf_counter()]
        ov = GroundingDINODetector.from_spec(spec, path, backend="openvino", openvino_cache=cache)
        steps.append(time.perf_counter())
        features = ov.encode_image(image)
        steps.append(time.perf_counter())
        ov.forward_text(features, caption)
        steps.append(time.perf_counter())
        load, image_s, text_s = (b - a for a, b in zip(steps, steps[1:]))
        print(f"openvino from the cache: load {load:.1f} s (weights sha256 included), first encode_image "
              f"{image_s:.1f} s, first forward_text {text_s:.1f} s (compilation included)", flush=True)
        times: dict[str, list[float]] = {k: [] for k in ("pt_image", "ov_image", "pt_text", "ov_text")}
        for _ in range(args.repeat):
            for name, det in (("pt", pt), ("ov", ov)):
                t = time.perf_counter()
                features = det.encode_image(image)
                times[f"{name}_image"].append(time.perf_counter() - t)
                t = time.perf_counter()
                scores, boxes = det.forward_text(features, caption)
                times[f"{name}_text"].append(time.perf_counter() - t)
                if name == "pt":
                    ref = scores, boxes
                else:
                    got = scores, boxes
    med = {k: statistics.median(v) for k, v in times.items()}
    for part in ("image", "text"):
        print(f"{part:5s}: pytorch {med[f'pt_{part}']:.2f} s, openvino {med[f'ov_{part}']:.2f} s, "
              f"ratio {med[f'ov_{part}'] / med[f'pt_{part}']:.2f}")
    total_pt, total_ov = med["pt_image"] + med["pt_text"], med["ov_image"] + med["ov_text"]
    print(f"detect: pytorch {total_pt:.2f} s, openvino {total_ov:.2f} s, ratio {total_ov / total_pt:.2f}")
    size = (image.height, image.width)
    pixels = (pt.to_pixels(ref[1], size) - pt.to_pixels(got[1], size)).abs().max().item()
    print(f"max |score diff| {(ref[0] - got[0]).abs().max().item():.2e}; max |box diff| "
          f"{pixels:.3f} px over {len(ref[1])} queries (in query order)", flush=True)
    # The two-stage query selection (topk over the encoder's scores) may order near-ties
    # differently: compare the detections over 0.3, each matched to the nearest.
    keep_ref, keep_got = ref[0].max(1)[0] > 0.3, got[0].max(1)[0] > 0.3
    a, b = pt.to_pixels(ref[1][keep_ref], size), pt.to_pixels(got[1][keep_got], size)
    print(f"detections over 0.3: pytorch {len(a)}, openvino {len(b)}")
    if len(a) and len(b):
        nearest = torch.cdist(a, b, p=1).argmin(1)
        sa, sb = ref[0][keep_ref].max(1)[0], got[0][keep_got].max(1)[0][nearest]
        print(f"matched detections: max |box diff| {(a - b[nearest]).abs().max().item():.3f} px, "
              f"max |score diff| {(sa - sb).abs().max().item():.2e}")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
