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

``--frame-ratios``: the cost of one tracked frame, in one process (no GroundingDINO: the same three
boxes prompt every side on frame 0 of the clip), sam2.1_hiera_tiny full size:

- ``image``: one image encoding plus ``--boxes`` box prompts (Sam2Segmenter.encode + predict);
- ``ours``: Sam2Segmenter.track (lang_sam.models.sam2_tracking's memory attention), ``stock``: the
  same with transformers' own memory attention (the path before issue 27), ``meta``: Meta's
  ``SAM2VideoPredictor.propagate_in_video`` on the same weights, frames (our resized pixels, as
  tests/test_sam2.py gives them) and boxes;
- per side the median of the frames whose memory window is full (frame 7 on), wall and CPU time
  (``time.process_time``: steadier than wall time on a shared machine), the ratios
  ours / image, stock / image, ours / meta, ours / stock, and where ours' time goes (forward hooks
  on the image encoder, memory attention, mask decoder, memory encoder).

    python benchmarks/bench_video.py --frame-ratios --track-frames 9

``--frame-ratios --flops`` counts instead of timing (``torch.utils.flop_counter``: matrix products,
convolutions, attention): the arithmetic of the image step and of each tracked frame, split by
SAM 2.1 part. It is the same on every CPU and backend, so it bounds what any of them can reach.

    python benchmarks/bench_video.py --frame-ratios --flops --track-frames 9
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


def frame_ratios(args) -> None:
    """``--frame-ratios``: tracked frame / (image encoding + boxes), ours / stock / Meta's (module docstring)."""
    import statistics
    from contextlib import nullcontext

    import numpy as np
    import torch
    from PIL import Image

    import lang_sam.models.sam2 as sam2_module
    from lang_sam.models.registry import get_spec
    from lang_sam.models.sam2 import Sam2Segmenter
    from lang_sam.video_io import iter_frames

    args.weights = args.weights or Path(tempfile.mkdtemp(prefix="bench_video_w_"))
    work = Path(tempfile.mkdtemp(prefix="bench_video_"))
    width, height = (int(v) for v in args.size.split("x"))
    frames = list(iter_frames(make_clip(work / "clip.mp4", args.track_frames, width, height)))
    spec = get_spec("sam", args.sam[0])
    ckpt = args.weights / f"ratios_{spec.filename}"
    if not ckpt.exists():
        Sam2Segmenter.write_random_checkpoint(ckpt, spec.arch, 0, object_score=10.0)
    seg = Sam2Segmenter.from_spec(spec, ckpt)
    boxes = torch.tensor([[0.05, 0.1, 0.4, 0.9], [0.45, 0.2, 0.7, 0.7], [0.72, 0.05, 0.98, 0.95]])[:args.boxes]
    boxes = boxes * torch.tensor([width, height, width, height])
    clocks = {"wall": time.perf_counter, "cpu": time.process_time}

    def timed(fn):
        start = {k: c() for k, c in clocks.items()}
        fn()
        return {k: c() - start[k] for k, c in clocks.items()}

    if args.flops:
        return frame_flops(args, seg, frames, boxes)
    image = []
    for i in range(3):
        image.append(timed(lambda: (seg.use(seg.encode(frames[i])), seg.predict(boxes=boxes))))
    parts: dict[str, float] = {}
    # frame 7 on: the prompted frame and 6 tracked ones are the mask memories (num_maskmem 7); object
    # pointers (16 tokens each, up to 16 frames) keep growing but are a small part of the memory
    steady = min(seg.model.config.num_maskmem, len(frames) - 1)

    def hook_parts(net, on):
        hooks = []
        for name in ("vision_encoder", "memory_attention", "mask_decoder", "memory_encoder"):
            mod = getattr(net, name)
            hooks.append(mod.register_forward_pre_hook(lambda m, a: setattr(m, "_t0", time.process_time())))
            hooks.append(mod.register_forward_hook(
                lambda m, a, o, n=name: on() and parts.__setitem__(n, parts.get(n, 0.0) + time.process_time() - m._t0)))
        return hooks

    def ours(fast: bool):
        if not fast:
            sam2_module.fast_memory_attention = lambda model: nullcontext()
        try:
            session, times = seg.start_video(), []
            for i, f in enumerate(frames):
                new = dict(new_ids=list(range(1, len(boxes) + 1)), new_boxes=boxes) if i == 0 else {}
                times.append(timed(lambda: seg.track(session, f, **new)))
                print(f"{'ours' if fast else 'stock'} frame {i}: {times[-1]['wall']:.1f} s", file=sys.stderr, flush=True)
            return times
        finally:
            sam2_module.fast_memory_attention = fast_memory_attention

    from lang_sam.models.sam2_tracking import fast_memory_attention

    measuring = {"on": False}
    hooks = hook_parts(seg.model, lambda: measuring["on"])
    sides = {}
    wanted = args.sides.split(",")
    if "ours" in wanted:
        measuring["on"] = True
        sides["ours"] = ours(True)
        measuring["on"] = False
    for h in hooks:
        h.remove()
    if "stock" in wanted:
        sides["stock"] = ours(False)
    if "meta" in wanted:
        sides["meta"] = meta_frames(ckpt, frames, seg, boxes, work, timed)

    def med(times, clock):
        return statistics.median(t[clock] for t in times)

    row: dict = {"cpu": cpu_line(), "threads": torch.get_num_threads(), "size": args.size, "objects": len(boxes),
                 "frames": len(frames), "steady_from": steady}
    for clock in clocks:
        img = med(image, clock)
        row[f"image_plus_{len(boxes)}_boxes_{clock}_s"] = round(img, 2)
        for name, times in sides.items():
            row[f"{name}_frame_{clock}_s"] = round(med(times[steady:], clock), 2)
            row[f"{name}_per_frame_{clock}_s"] = [round(t[clock], 2) for t in times]
            row[f"ratio_{name}_over_image_{clock}"] = round(med(times[steady:], clock) / img, 2)
        for a, b in (("ours", "stock"), ("ours", "meta"), ("stock", "meta")):
            if a in sides and b in sides:
                row[f"ratio_{a}_over_{b}_{clock}"] = round(med(sides[a][steady:], clock) / med(sides[b][steady:], clock), 3)
    if "ours" in sides:
        total = sum(t["cpu"] for t in sides["ours"])
        row["ours_cpu_share"] = {k: round(v / total, 3) for k, v in parts.items()}
        row["ours_cpu_share"]["other"] = round(1 - sum(parts.values()) / total, 3)
    print(json.dumps(row, indent=1), flush=True)


def count_cpu_attention() -> None:
    """Teach ``FlopCounterMode`` the CPU's fused attention kernel (it knows only the CUDA ones):
    ``2 B H L S (E + Ev)``, the two matrix products of softmax(Q K^T) V."""
    import torch
    from torch.utils.flop_counter import flop_registry, register_flop_formula

    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if op in flop_registry or op.default in flop_registry:
        return

    @register_flop_formula(op, get_raw=True)
    def _flops(q, k, v, *args, out_val=None, **kwargs) -> int:
        b, h, length, e = q.shape
        return 2 * b * h * length * k.shape[-2] * (e + v.shape[-1])


def frame_flops(args, seg, frames, boxes) -> None:
    """``--flops``: the arithmetic (matrix products, convolutions and attention, as
    ``torch.utils.flop_counter`` counts them) of one image encoding + the boxes, and of each tracked
    frame of ``Sam2Segmenter.track`` with the same boxes on frame 0, split by SAM 2.1 part. Unlike
    the times, these do not depend on the CPU, the backend or the machine's load."""
    from torch.utils.flop_counter import FlopCounterMode

    count_cpu_attention()
    for param in seg.model.parameters():  # the counter's module tracker hooks outputs that need grad
        param.requires_grad_(False)
    parts = ("vision_encoder", "memory_attention", "mask_decoder", "memory_encoder", "prompt_encoder")

    def counted(fn) -> dict:
        with FlopCounterMode(display=False) as mode:
            fn()
        total = mode.get_total_flops()
        by_module = mode.get_flop_counts()
        split = {}
        for name in parts:  # a part called directly (encode's vision encoder) is named by its class
            names = {name, type(getattr(seg.model, name)).__name__}
            split[name] = sum(sum(ops.values()) for mod, ops in by_module.items() if mod.split(".")[-1] in names)
        split["other"] = total - sum(split.values())
        return {"total": total, **split}

    image = counted(lambda: (seg.use(seg.encode(frames[0])), seg.predict(boxes=boxes)))
    image_s = []
    for _ in range(3):
        start = time.perf_counter()
        seg.use(seg.encode(frames[0]))
        seg.predict(boxes=boxes)
        image_s.append(time.perf_counter() - start)
    session, tracked = seg.start_video(), []
    for i, f in enumerate(frames):
        new = dict(new_ids=list(range(1, len(boxes) + 1)), new_boxes=boxes) if i == 0 else {}
        tracked.append(counted(lambda: seg.track(session, f, **new)))
        print(f"frame {i}: {tracked[-1]['total'] / 1e9:.1f} GFLOP", file=sys.stderr, flush=True)
    steady = min(seg.model.config.num_maskmem, len(frames) - 1)
    last = tracked[-1]
    gflop = {k: round(v / 1e9, 1) for k, v in last.items()}
    row = {"objects": len(boxes), "frames": len(frames), "size": args.size, "steady_from": steady,
           f"image_plus_{len(boxes)}_boxes_gflop": {k: round(v / 1e9, 1) for k, v in image.items()},
           "tracked_frame_gflop_per_frame": [round(t["total"] / 1e9, 1) for t in tracked],
           "last_tracked_frame_gflop": gflop,
           "ratio_tracked_over_image": round(last["total"] / image["total"], 2),
           "ratio_without_memory_attention": round((last["total"] - last["memory_attention"]) / image["total"], 2)}
    # What the CPU can do at best: float32 matrix products (the kernels of attention and linear layers)
    rates = matmul_gflops()
    rate = max(rates.values())
    image_wall = min(image_s)
    row.update({"matmul_gflops": {k: round(v, 1) for k, v in rates.items()},
                f"image_plus_{len(boxes)}_boxes_s": round(image_wall, 2),
                "image_gflops": round(image["total"] / 1e9 / image_wall, 1),
                "tracked_frame_s_at_best_matmul_rate": round(last["total"] / 1e9 / rate, 2),
                "tracked_frame_s_target_1_5x_image": round(1.5 * image_wall, 2)})
    print(json.dumps(row, indent=1), flush=True)


def matmul_gflops(n: int = 2048, repeat: int = 5) -> dict[str, float]:
    """The best float32 GFLOP/s of an ``n x n`` matrix product on this CPU, with torch's threads:
    torch's, and OpenVINO's (a linear layer; where it is installed), which can differ a lot (MKL and
    oneDNN do not use every CPU alike)."""
    import numpy as np
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)

    def best(fn) -> float:
        fn()
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return 2 * n ** 3 / min(times) / 1e9

    rates = {"torch": best(lambda: a @ b)}
    try:
        import openvino as ov
        import openvino.opset13 as ops
    except ImportError:
        return rates
    x = ops.parameter([n, n], np.float32)
    model = ov.Model([ops.matmul(x, ops.constant(b.numpy()), False, True)], [x])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                      "INFERENCE_NUM_THREADS": torch.get_num_threads()})
    request, array = compiled.create_infer_request(), a.numpy()
    rates["openvino"] = best(lambda: request.infer([array]))
    return rates


def meta_frames(ckpt: Path, frames, seg, boxes, work: Path, timed) -> list[dict]:
    """Meta's SAM2VideoPredictor on ``frames`` (given our resized pixels) with ``boxes`` on frame 0:
    the time of each frame of ``propagate_in_video``."""
    import torch
    from PIL import Image
    from sam2.build_sam import build_sam2_video_predictor

    folder = work / "jpg"
    folder.mkdir(exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:05d}.jpg")
    predictor = build_sam2_video_predictor("configs/sam2.1/sam2.1_hiera_t.yaml", str(ckpt), device="cpu")
    times: list[dict] = []
    with torch.inference_mode():
        state = predictor.init_state(str(folder))
        state["images"] = torch.cat([seg._pixels(f) for f in frames])
        for obj_id, box in enumerate(boxes, 1):
            predictor.add_new_points_or_box(state, frame_idx=0, obj_id=obj_id, box=box.numpy())
        it = iter(predictor.propagate_in_video(state))
        while True:
            out: list = []
            t = timed(lambda: out.append(next(it, None)))
            if out[0] is None:
                break
            times.append(t)
            print(f"meta frame {len(times) - 1}: {t['wall']:.1f} s", file=sys.stderr, flush=True)
    return times


def cpu_line() -> str:
    """lscpu's model name and torch's CPU capability."""
    import torch

    try:
        name = next(line.split(":", 1)[1].strip() for line in
                    subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                    if line.startswith("Model name"))
    except (OSError, StopIteration):
        name = "unknown"
    return f"{name}, torch {torch.backends.cpu.get_cpu_capability()}"


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
    p.add_argument("--frame-ratios", action="store_true",
                   help="time one tracked frame against one image + boxes and Meta's predictor (docstring)")
    p.add_argument("--track-frames", type=int, default=9, help="frames of --frame-ratios (full memory from 7)")
    p.add_argument("--sides", default="ours,stock,meta", help="--frame-ratios: which of ours,stock,meta to time")
    p.add_argument("--flops", action="store_true",
                   help="--frame-ratios: count each step's arithmetic instead of timing it (any CPU gives the same)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--clip", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--fps-frames", type=int, default=60, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    if args.frame_ratios:
        return frame_ratios(args)
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
