"""Benchmark lang-sam against the original algorithm, side by side, in one run.

    python benchmarks/bench.py --sam vit_b --gdino swint
    python benchmarks/bench.py --sam vit_h --gdino swinb

Full-size random-weight checkpoints of the real architectures are written to a temp folder first
(compute does not depend on weight values). Random GroundingDINO weights make all 900 queries pass
the box threshold; the checkpoint is therefore written with ``few_boxes=True`` (two LayerNorms set
so that a query's score no longer depends on the prompt and exactly ``--boxes`` queries, 16 by
default, pass 0.3 on the benchmark image; see lang_sam.models.detector.random_gdino_state_dict). Each side then
runs in its own fresh process, so cold start and peak memory are measured alike:

- original: the 2023 lang-segment-anything algorithm written plainly over groundingdino-py and
  segment-anything (``build_model`` + ``torch.load`` + ``load_state_dict``, ``sam_model_registry``,
  ``groundingdino.util.inference.predict``, ``SamPredictor``), with the configs' gradient
  checkpointing on as the original ran it. BERT is built from its config with random init where the
  original called ``BertModel.from_pretrained`` (no network here; its weights come from the
  GroundingDINO checkpoint either way);
- lang-sam: ``LangSAM(...).predict`` in float32, the same user code;
- lang-sam bf16: ``LangSAM(..., precision="bf16")``.

It prints each figure and the ratio lang-sam / original. Peak resident memory is the process's
``ru_maxrss`` after loading and two predicts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ["cup", "spoon", "table", "saucer", "coffee"]


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------------
# The original algorithm, written plainly (what lang-segment-anything 2023 did)
# ------------------------------------------------------------------------------------------------
class Original:
    def __init__(self, sam_type: str, gdino_type: str, weights: Path):
        import torch
        from groundingdino.models import build_model
        from groundingdino.util.misc import clean_state_dict
        from segment_anything import SamPredictor, sam_model_registry

        from lang_sam.models.detector import _read_config
        from lang_sam.models.text_encoder import BertTextEncoder, build_bert, load_tokenizer
        from lang_sam.patches import bundled_text_encoder
        from lang_sam.models.registry import get_spec

        gspec, sspec = get_spec("gdino", gdino_type), get_spec("sam", sam_type)
        args = _read_config(gspec.arch)
        args.use_checkpoint = args.use_transformer_ckpt = True  # as in groundingdino's configs
        with bundled_text_encoder(load_tokenizer, build_bert, BertTextEncoder):  # no hub download
            model = build_model(args)
        checkpoint = torch.load(weights / gspec.filename, map_location="cpu")
        model.load_state_dict(clean_state_dict(checkpoint["model"]), strict=False)
        self.groundingdino = model.eval()
        sam = sam_model_registry[sam_type]()
        sam.load_state_dict(torch.load(weights / sspec.filename), strict=True)
        self.sam = SamPredictor(sam)

    def predict(self, image_pil, text_prompt, box_threshold=0.3, text_threshold=0.25):
        import groundingdino.datasets.transforms as T
        import numpy as np
        import torch
        from groundingdino.util import box_ops
        from groundingdino.util.inference import predict

        transform = T.Compose([
            T.RandomResize([800], max_size=1333),
            T.ToTensor(),
            T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ])
        image_trans, _ = transform(image_pil, None)
        boxes, logits, phrases = predict(model=self.groundingdino, image=image_trans,
                                         caption=text_prompt, box_threshold=box_threshold,
                                         text_threshold=text_threshold, device="cpu")
        W, H = image_pil.size
        boxes = box_ops.box_cxcywh_to_xyxy(boxes) * torch.Tensor([W, H, W, H])
        masks = torch.tensor([])
        if len(boxes) > 0:
            image_array = np.asarray(image_pil)
            self.sam.set_image(image_array)
            transformed = self.sam.transform.apply_boxes_torch(boxes, image_array.shape[:2])
            masks, _, _ = self.sam.predict_torch(point_coords=None, point_labels=None,
                                                 boxes=transformed, multimask_output=False)
            masks = masks.cpu().squeeze(1)
        return masks, boxes, phrases, logits


# ------------------------------------------------------------------------------------------------
# One side, in its own process
# ------------------------------------------------------------------------------------------------
def run_side(side: str, sam_type: str, gdino_type: str, weights: Path, image_path: str,
             loop: int, out: Path) -> None:
    import torch
    from PIL import Image

    torch.manual_seed(0)
    image = Image.open(image_path).convert("RGB")
    t0 = time.perf_counter()
    if side == "original":
        model = Original(sam_type, gdino_type, weights)
    else:
        from lang_sam import LangSAM

        os.environ["LANG_SAM_WEIGHTS_DIR"] = str(weights)
        os.environ["LANG_SAM_OFFLINE"] = "1"
        model = LangSAM(sam_type, gdino_type=gdino_type, device="cpu",
                        precision="bf16" if side == "bf16" else "fp32")
    res = {"cold_start": time.perf_counter() - t0}
    t0 = time.perf_counter()
    first = model.predict(image, PROMPTS[0])
    res["first_predict"] = time.perf_counter() - t0
    res["boxes"] = len(first[1])
    torch.save({"masks": first[0], "boxes": first[1], "phrases": first[2], "logits": first[3]},
               out.with_suffix(".pt"))
    if side != "bf16":
        t0 = time.perf_counter()
        second = model.predict(image, PROMPTS[1])
        res["second_prompt"] = time.perf_counter() - t0
        res["second_boxes"] = len(second[1])
        res["peak_rss_mib"] = rss_mib()
        t0 = time.perf_counter()
        for prompt in PROMPTS[:loop]:
            model.predict(image, prompt)
        res[f"loop_{loop}_prompts"] = time.perf_counter() - t0
    out.write_text(json.dumps(res))


def write_weights(weights: Path, sam: str, gdino: str, boxes: int, image: str) -> None:
    """Full-size random ``sam`` + ``gdino`` checkpoints under their canonical names in ``weights``,
    GroundingDINO's with ``few_boxes`` so that ``boxes`` queries pass 0.3 on ``image``."""
    from lang_sam.models.registry import get_spec
    from lang_sam.testing import write_gdino_checkpoint, write_sam_checkpoint

    print(f"writing random {sam} + {gdino} checkpoints to {weights} ...", flush=True)
    write_sam_checkpoint(weights / get_spec("sam", sam).filename, sam)
    write_gdino_checkpoint(weights / get_spec("gdino", gdino).filename, gdino,
                           few_boxes=True, target_boxes=boxes, calibration_image=image)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="lang-sam vs the original algorithm")
    p.add_argument("--sam", default="vit_b")
    p.add_argument("--gdino", default="swint")
    p.add_argument("--image", default=str(ROOT / "assets" / "coffee.jpg"))
    p.add_argument("--loop", type=int, default=5, help="prompts in the loop on one image")
    p.add_argument("--boxes", type=int, default=16, help="boxes GroundingDINO finds on the image")
    p.add_argument("--weights", default=None, help="reuse a folder of checkpoints (canonical names)")
    p.add_argument("--report", default=None, help="re-print a finished run from its temp folder")
    p.add_argument("--side", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.side:
        run_side(args.side, args.sam, args.gdino, Path(args.weights), args.image, args.loop,
                 Path(args.out))
        return
    if args.report:  # re-print a finished run from its folder
        folder = Path(args.report)
        results = {side: json.loads((folder / f"{side}.json").read_text())
                   for side in ("original", "lang-sam", "bf16")}
        report(folder, results, args.loop)
        return

    import torch

    tmp = Path(tempfile.mkdtemp(prefix="lang-sam-bench-"))
    print(f"outputs in {tmp} (python benchmarks/bench.py --report {tmp} re-prints this run)")
    weights = Path(args.weights) if args.weights else tmp / "weights"
    if not args.weights:
        write_weights(weights, args.sam, args.gdino, args.boxes, args.image)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, image {args.image}, "
          f"SAM {args.sam} + GroundingDINO {args.gdino}", flush=True)
    results = {}
    for side in ("original", "lang-sam", "bf16"):
        out = tmp / f"{side}.json"
        cmd = [sys.executable, __file__, "--side", side, "--sam", args.sam, "--gdino", args.gdino,
               "--weights", str(weights), "--image", args.image, "--loop", str(args.loop),
               "--out", str(out)]
        subprocess.run(cmd, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        results[side] = json.loads(out.read_text())
        print(f"  {side:9} {results[side]}", flush=True)

    report(tmp, results, args.loop)


def report(tmp: Path, results: dict, loop: int) -> None:
    """Print the agreement and the table from one run's saved outputs."""
    import torch

    o, n, b = results["original"], results["lang-sam"], results["bf16"]
    ref = torch.load(tmp / "original.pt", weights_only=False)
    new = torch.load(tmp / "lang-sam.pt", weights_only=False)
    low = torch.load(tmp / "bf16.pt", weights_only=False)
    equal_boxes = torch.equal(ref["boxes"], new["boxes"]) and torch.equal(ref["logits"], new["logits"])
    agree = (ref["masks"] == new["masks"]).float().mean().item() if len(ref["boxes"]) else 1.0
    print(f"\nfirst predict: {o['boxes']} boxes; boxes and logits equal to the original: "
          f"{equal_boxes}; mask pixels agreeing: {agree * 100:.4f} %")
    if len(low["boxes"]) and len(ref["boxes"]):
        import torchvision

        iou = torchvision.ops.box_iou(low["boxes"], ref["boxes"])  # (bf16, fp32)
        best, match = iou.max(dim=1)
        pairs = [(i, j) for i, (b, j) in enumerate(zip(best.tolist(), match.tolist())) if b > 0.9]
        dlog = max(abs(low["logits"][i] - ref["logits"][j]).item() for i, j in pairs) if pairs else float("nan")
        mious = []
        for i, j in pairs:
            inter = (low["masks"][i] & ref["masks"][j]).sum().item()
            union = (low["masks"][i] | ref["masks"][j]).sum().item()
            mious.append(inter / union if union else 1.0)
        print(f"bf16 vs float32 original: {len(low['boxes'])} vs {len(ref['boxes'])} boxes, "
              f"{len(pairs)} matched at IoU > 0.9 (mean IoU {best.mean().item():.4f}); on matched "
              f"boxes max |score diff| {dlog:.4f}, mean mask IoU "
              f"{sum(mious) / max(len(mious), 1):.4f}")
    else:
        print(f"bf16 vs float32 original: {len(low['boxes'])} vs {len(ref['boxes'])} boxes")
    rows = [
        ("cold start (build + load)", o["cold_start"], n["cold_start"]),
        ("first predict", o["first_predict"], n["first_predict"]),
        ("second prompt, same image", o["second_prompt"], n["second_prompt"]),
        (f"{loop}-prompt loop, one image", o[f"loop_{loop}_prompts"], n[f"loop_{loop}_prompts"]),
        ("peak RSS, MiB (load + 2 predicts)", o["peak_rss_mib"], n["peak_rss_mib"]),
        ("bf16 first predict vs fp32 original", o["first_predict"], b["first_predict"]),
    ]
    print("\n| measure | original | lang-sam | ratio |\n| --- | ---: | ---: | ---: |")
    for name, a, c in rows:
        print(f"| {name} | {a:.1f} | {c:.1f} | {c / a:.2f}x |")


if __name__ == "__main__":
    main()
