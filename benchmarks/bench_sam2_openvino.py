"""SAM 2.1 on OpenVINO against its PyTorch path, part by part, in one run (issue 27).

    python benchmarks/bench_sam2_openvino.py --sam sam2.1_hiera_tiny --frames 8

A full-size random-weight checkpoint of ``--sam`` is written in Meta's format first (compute does
not depend on weight values). Both engines load it in this process (PyTorch, then
``backend="openvino"``, fp32); the OpenVINO cache is a fresh temporary folder, so the conversion
times printed are cold ones, and a second OpenVINO load shows the cached start. Then, on a
640x360 frame, each side is timed on:

- image encoder: ``encode`` of a new image (Hiera + FPN neck, the high-resolution projections);
- three box prompts on that encoding (``predict``, prompt encoder + mask decoder: PyTorch on both);
- memory encoder, three objects: ``(3, 256, 64, 64)`` features and ``(3, 1, 1024, 1024)`` masks;
- memory attention, one object with a full memory (7 frames of 64x64 tokens + 16 object pointers);
- a tracked frame with three objects (median over ``--frames`` frames after the first; every part
  of transformers' tracking loop, what a video pays per frame).

Printed: seconds per side (median of ``--repeat``), the ratio OpenVINO / PyTorch, and the largest
difference of each part's outputs (fp32 should agree to about 1e-4).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sam", default="sam2.1_hiera_tiny")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()

    import numpy as np
    import torch

    from lang_sam.models.registry import get_spec
    from lang_sam.models.sam2 import Sam2Segmenter
    from lang_sam.testing import write_sam2_checkpoint

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"capability {torch.backends.cpu.get_cpu_capability()}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_sam2_ov_"))
    os.environ["LANG_SAM_OPENVINO_CACHE"] = str(tmp / "ov")
    spec = get_spec("sam", args.sam)
    path = write_sam2_checkpoint(tmp / spec.filename, spec)
    t = time.perf_counter()
    pt = Sam2Segmenter.from_spec(spec, path)
    print(f"load: pytorch {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    ov = Sam2Segmenter.from_spec(spec, path, backend="openvino")
    print(f"load: openvino, converting the image encoder {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    Sam2Segmenter.from_spec(spec, path, backend="openvino")
    print(f"load: openvino, from the cache {time.perf_counter() - t:.1f} s")

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (360, 640, 3), dtype=np.uint8) for _ in range(args.frames + 1)]
    boxes = torch.tensor([[40.0, 40.0, 240.0, 300.0], [260.0, 60.0, 420.0, 320.0], [450.0, 30.0, 620.0, 340.0]])
    rows = []

    def row(name: str, f_pt, f_ov, diff) -> None:
        a, out_a = timed(f_pt, args.repeat)
        b, out_b = timed(f_ov, args.repeat)
        rows.append((name, a, b, diff(out_a, out_b)))
        print(f"{name}: pytorch {a:.3f} s, openvino {b:.3f} s, {b / a:.2f}x", flush=True)

    enc_diff = lambda a, b: float((a.image_embed - b.image_embed).abs().max())  # noqa: E731
    row("image encoder", lambda: pt.encode(frames[0]), lambda: ov.encode(frames[0]), enc_diff)
    pt.set_image(frames[0], key="f0")
    ov.set_image(frames[0], key="f0")
    row("3 box prompts", lambda: pt.predict(boxes=boxes), lambda: ov.predict(boxes=boxes),
        lambda a, b: float((a.masks != b.masks).float().mean()))

    g = torch.Generator().manual_seed(0)
    feats, masks = torch.randn(3, 256, 64, 64, generator=g), torch.randn(3, 1, 1024, 1024, generator=g)
    with torch.no_grad():
        ov.model.memory_encoder(feats[:1], masks[:1])  # converts (once, cached)
        row("memory encoder, 3 objects", lambda: pt.model.memory_encoder(feats, masks),
            lambda: ov.model.memory_encoder(feats, masks), lambda a, b: float((a[0] - b[0]).abs().max()))
        hw, m = 64 * 64, 7 * 64 * 64 + 64
        x = dict(current_vision_features=torch.randn(hw, 1, 256, generator=g), memory=torch.randn(m, 1, 64, generator=g),
                 current_vision_position_embeddings=torch.randn(hw, 1, 256, generator=g),
                 memory_posision_embeddings=torch.randn(m, 1, 64, generator=g), num_object_pointer_tokens=64)
        small = dict(x, memory=x["memory"][:hw + 4], memory_posision_embeddings=x["memory_posision_embeddings"][:hw + 4],
                     num_object_pointer_tokens=4)  # converted on a small example: tracing holds every activation
        t = time.perf_counter()
        ov.model.memory_attention(**small)
        print(f"memory attention: first call, converting {time.perf_counter() - t:.1f} s")
        row("memory attention, 7 memories + 16 pointers", lambda: pt.model.memory_attention(**x),
            lambda: ov.model.memory_attention(**x), lambda a, b: float((a - b).abs().max()))

    per_frame: dict[str, list[float]] = {"pytorch": [], "openvino": []}
    agree = []
    sessions = {"pytorch": pt.start_video(), "openvino": ov.start_video()}
    for i, frame in enumerate(frames):
        steps = {}
        for name, engine in (("pytorch", pt), ("openvino", ov)):
            kw = dict(new_ids=[1, 2, 3], new_boxes=boxes) if i == 0 else {}
            t = time.perf_counter()
            steps[name] = engine.track(sessions[name], frame, **kw)
            if i:
                per_frame[name].append(time.perf_counter() - t)
        agree.append(float((steps["pytorch"].masks == steps["openvino"].masks).float().mean()))
    a, b = statistics.median(per_frame["pytorch"]), statistics.median(per_frame["openvino"])
    rows.append(("tracked frame, 3 objects (median)", a, b, min(agree)))
    print(f"tracked frame: pytorch {a:.2f} s ({1 / a:.2f} frames/s), openvino {b:.2f} s ({1 / b:.2f} frames/s), "
          f"{b / a:.2f}x; masks agree on >= {100 * min(agree):.4f} % of pixels")
    print("\n| part | PyTorch s | OpenVINO s | ratio | max diff |\n| --- | ---: | ---: | ---: | ---: |")
    for name, a, b, d in rows:
        print(f"| {name} | {a:.3f} | {b:.3f} | {b / a:.2f}x | {d:.2g} |")


if __name__ == "__main__":
    main()
