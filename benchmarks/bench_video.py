"""Benchmark text-prompted video (LangSAM.predict_video): frames per second and memory vs length.

    python benchmarks/bench_video.py --sam sam2.1_hiera_tiny --gdino swint
    python benchmarks/bench_video.py --sam sam2.1_hiera_tiny sam2.1_hiera_large --weights /tmp/w

Full-size random-weight checkpoints of the real architectures are written first (into ``--weights``,
kept for the next run; compute does not depend on weight values): SAM 2.1 in Meta's ``.pt``
layout, GroundingDINO with ``few_boxes=True`` calibrated on the clip's key frames so that at most
``--boxes`` (3) boxes pass 0.3 on each (random GroundingDINO weights would pass all 900 queries, each
a SAM 2.1 object to follow; see lang_sam.models.detector.random_gdino_state_dict). Random SAM 2.1 weights
judge objects absent about half the time (object-presence logit about 0), so nothing would be
followed and SAM 2.1 would do no work; the bias of its object-score head's last layer is set to 10
so every object is present (its random masks cover about half the frame, so re-detections on key
frames overlap the tracks and are dropped: the 3 first objects are followed throughout).

The clip is ``--size`` 640x360, made by panning across ``assets/coffee.jpg`` (enlarged), written
as H.264 mp4 with lang_sam.video_io and read back through predict_video's own reader. Each run is
a fresh process (``--child``), so peak memory is measured alike:

- ``fps``: frames per second of predict_video (decode + detection on key frames + SAM 2.1), after
  loading, over ``--frames`` (60) frames, ``detect_every`` 10;
- ``peak RSS at 30 vs 90 frames``: ``ru_maxrss`` of a process that loads the models and tracks 30
  frames, and of one that tracks 90, both detecting on the first frame only (so they follow the same
  objects: with random weights a key frame may start new tracks, and memory grows with the number
  of objects, which is not what is measured here); the ratio is the memory growth with video length
  (target <= 1.15x). RSS after every ``--rss-every`` (10) frames is printed too.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "cup. spoon"
#: The last layer of SAM 2.1's object-score head (Meta's names): its bias sets the presence logit.
PRESENCE_BIAS = "sam_mask_decoder.pred_obj_score_head.layers.2.bias"


def rss_mib() -> float:
    """Current resident memory, MiB (Linux /proc)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_clip(path: Path, frames: int, width: int, height: int) -> Path:
    """A ``frames``-frame clip panning across the enlarged coffee photo, 30 fps."""
    import numpy as np
    from PIL import Image

    from lang_sam.video_io import VideoWriter

    photo = Image.open(ROOT / "assets" / "coffee.jpg").convert("RGB")
    scale = max(2 * width / photo.width, 1.3 * height / photo.height)
    photo = np.asarray(photo.resize((round(photo.width * scale), round(photo.height * scale))))
    span_x, span_y = photo.shape[1] - width, photo.shape[0] - height
    with VideoWriter(path, fps=30) as w:
        for i in range(frames):
            x = round(span_x * i / max(frames - 1, 1))
            y = round(span_y * 0.5 * (1 + np.sin(i / 15)) / 2)
            w.write(photo[y:y + height, x:x + width])
    return path


def write_weights(weights: Path, sams: list[str], gdino: str, first_frame, boxes: int) -> None:
    import torch

    from lang_sam.models.registry import get_spec
    from lang_sam.testing import write_gdino_checkpoint

    weights.mkdir(parents=True, exist_ok=True)
    for name in sams:
        spec = get_spec("sam", name)
        path = weights / spec.filename
        if not path.exists():
            from lang_sam.models.sam2 import build_sam2_model
            from lang_sam.models.sam2_keys import transformers_to_meta

            t = time.perf_counter()
            torch.manual_seed(0)
            state = transformers_to_meta(build_sam2_model(spec).state_dict())
            # Random weights judge every object absent half the time (presence ~0.5), so nothing
            # would be followed. One bias makes every object present (its object-score logit +10);
            # the compute is unchanged.
            state[PRESENCE_BIAS] = torch.full_like(state[PRESENCE_BIAS], 10.0)
            torch.save({"model": state}, path.with_name(path.name + ".incomplete"))
            path.with_name(path.name + ".incomplete").replace(path)
            print(f"wrote {path} ({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t:.0f} s",
                  file=sys.stderr, flush=True)
    spec = get_spec("gdino", gdino)
    path = weights / spec.filename
    if not path.exists():
        t = time.perf_counter()
        write_gdino_checkpoint(path, gdino, 0, few_boxes=True, target_boxes=boxes, calibration_image=first_frame,
                               calibration_prompt=PROMPT)
        print(f"wrote {path} in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)


def child(args) -> None:
    """One measured run: load, track ``--frames`` frames of ``--clip``, print a JSON line."""
    import itertools
    import os

    os.environ["LANG_SAM_WEIGHTS_DIR"] = str(args.weights)
    os.environ["LANG_SAM_OFFLINE"] = "1"
    import torch

    from lang_sam import LangSAM
    from lang_sam.video_io import iter_frames

    t0 = time.perf_counter()
    model = LangSAM(sam_type=args.sam[0], gdino_type=args.gdino, device="cpu")
    load_s = time.perf_counter() - t0
    rss_loaded = rss_mib()
    frames = itertools.islice(iter_frames(args.clip), args.frames)
    times, rss, peaks, tracks, ids = [], [], [], [], set()
    t = time.perf_counter()
    for f in model.predict_video(frames, PROMPT, detect_every=args.detect_every):
        now = time.perf_counter()
        times.append(now - t)
        t = now
        tracks.append(len(f.track_ids))
        print(f"{args.sam[0]} frame {f.frame_index}: {times[-1]:.1f} s, tracks {f.track_ids.tolist()}, "
              f"RSS {rss_mib():.0f} MiB", file=sys.stderr, flush=True)
        ids.update(f.track_ids.tolist())
        if f.frame_index % args.rss_every == args.rss_every - 1:
            rss.append(round(rss_mib()))
            peaks.append(round(peak_rss_mib()))  # the process's peak so far: a run stopped here would report it
    print(json.dumps({
        "sam": args.sam[0], "gdino": args.gdino, "frames": len(times), "threads": torch.get_num_threads(),
        "load_s": round(load_s, 1), "total_s": round(sum(times), 1), "fps": round(len(times) / sum(times), 3),
        "fps_first_n": round(min(args.fps_frames, len(times)) / sum(times[:args.fps_frames]), 3),
        "median_frame_s": round(sorted(times)[len(times) // 2], 2), "max_frame_s": round(max(times), 2),
        "tracks_per_frame_mean": round(sum(tracks) / len(tracks), 2), "track_ids": len(ids),
        "rss_loaded_mib": round(rss_loaded), "rss_every_n_frames_mib": rss, "peak_so_far_every_n_frames_mib": peaks,
        "peak_rss_mib": round(peak_rss_mib()),
    }), flush=True)


def run_child(args, sam: str, frames: int, clip: Path, detect_every: int | None = None) -> dict:
    every = args.detect_every if detect_every is None else detect_every
    cmd = [sys.executable, __file__, "--child", "--sam", sam, "--gdino", args.gdino, "--weights", str(args.weights),
           "--clip", str(clip), "--frames", str(frames), "--detect-every", str(every),
           "--fps-frames", str(args.frames), "--rss-every", str(args.rss_every)]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, cwd=ROOT)  # stderr: progress
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sam", nargs="+", default=["sam2.1_hiera_tiny"])
    p.add_argument("--gdino", default="swint")
    p.add_argument("--weights", type=Path, default=None, help="folder of the random checkpoints (kept)")
    p.add_argument("--size", default="640x360")
    p.add_argument("--frames", type=int, default=60, help="frames of the fps clip")
    p.add_argument("--memory", default="30,90", help="frame counts whose peak RSS is compared")
    p.add_argument("--detect-every", type=int, default=10)
    p.add_argument("--boxes", type=int, default=3, help="boxes the detector finds on the first frame")
    p.add_argument("--skip-memory", action="store_true", help="fps only")
    p.add_argument("--rss-every", type=int, default=10, help="print RSS after every this many frames")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--clip", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--fps-frames", type=int, default=60, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    from lang_sam.video_io import iter_frames

    args.weights = args.weights or Path(tempfile.mkdtemp(prefix="bench_video_w_"))
    width, height = (int(v) for v in args.size.split("x"))
    short, long = (int(v) for v in args.memory.split(","))
    work = Path(tempfile.mkdtemp(prefix="bench_video_"))
    clip = make_clip(work / "clip.mp4", max(args.frames, long), width, height)
    import itertools

    from PIL import Image

    # Calibrated on every key frame of the fps run: at most --boxes on each.
    keys = [Image.fromarray(f) for f in itertools.islice(iter_frames(clip), 0, args.frames, args.detect_every)]
    write_weights(args.weights, args.sam, args.gdino, keys, args.boxes)
    summary = {}
    for sam in args.sam:
        f = run_child(args, sam, args.frames, clip)
        row = {"fps": f["fps"], "load_s": f["load_s"], "median_frame_s": f["median_frame_s"],
               "tracks_per_frame": f["tracks_per_frame_mean"], "track_ids": f["track_ids"]}
        if not args.skip_memory:
            # Memory against length with the objects fixed: detection on the first frame only, so
            # both runs follow the same objects and differ only in how many frames they saw.
            a, b = (run_child(args, sam, n, clip, detect_every=10**6) for n in (short, long))
            row.update({f"peak_rss_{short}": a["peak_rss_mib"], f"peak_rss_{long}": b["peak_rss_mib"],
                        "ratio": round(b["peak_rss_mib"] / a["peak_rss_mib"], 3),
                        f"rss_every_{args.rss_every}_frames_{long}": b["rss_every_n_frames_mib"],
                        # RSS now (not peak) after the last frame of each run: what the video's length adds
                        # once GroundingDINO's first pass (the peak) is over.
                        "rss_end_ratio": round(b["rss_every_n_frames_mib"][-1] / a["rss_every_n_frames_mib"][-1], 3)})
        summary[sam] = row
    print(json.dumps({"summary": summary, "gdino": args.gdino, "size": args.size,
                      "detect_every": args.detect_every}, indent=1))


if __name__ == "__main__":
    main()
