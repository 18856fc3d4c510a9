"""SAM 2.1 image predict: lang-sam against GroundingDINO + Meta's SAM2ImagePredictor, in one run.

    python benchmarks/bench_sam2.py --sam sam2.1_hiera_tiny sam2.1_hiera_large --gdino swint

Needs Meta's ``sam2`` package as the reference (``SAM2_BUILD_CUDA=0 pip install
--no-build-isolation sam2==1.1.0``). Full-size random-weight checkpoints of the real architectures
are written first (compute does not depend on weight values): SAM 2.1 in Meta's format
(``lang_sam.testing.write_sam2_checkpoint``), GroundingDINO with ``few_boxes=True`` so that
``--boxes`` queries pass 0.3 on the image (see bench.py). Each side runs in its own fresh process:

- reference: the lang-segment-anything v0.2 algorithm written plainly: groundingdino-py's
  ``predict`` for boxes, then Meta's ``build_sam2`` + ``SAM2ImagePredictor.set_image`` +
  ``predict(box=boxes, multimask_output=False)``;
- lang-sam: ``LangSAM(sam_type=..., gdino_type=...).predict``.

Printed per SAM type: cold start, first predict, second prompt on the same image (lang-sam reuses
both image encodings; the reference re-runs everything), SAM 2.1 alone (a fresh image encoding and
the first predict's boxes decoded: the part this engine owns; GroundingDINO's text-dependent
transformer dominates the predicts on a CPU), the ratio lang-sam / reference, and whether the
masks agree.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ["cup", "spoon"]


class Reference:
    """GroundingDINO (groundingdino-py, plainly) + Meta's SAM2ImagePredictor."""

    def __init__(self, sam_type: str, gdino_type: str, weights: Path):
        import torch
        from groundingdino.models import build_model
        from groundingdino.util.misc import clean_state_dict
        from sam2.build_sam import build_sam2
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        from lang_sam.models.registry import get_spec
        from lang_sam.models.detector import _read_config
        from lang_sam.models.text_encoder import BertTextEncoder, build_bert, load_tokenizer
        from lang_sam.patches import bundled_text_encoder

        gspec, sspec = get_spec("gdino", gdino_type), get_spec("sam", sam_type)
        args = _read_config(gspec.arch)
        with bundled_text_encoder(load_tokenizer, build_bert, BertTextEncoder):  # no hub download
            model = build_model(args)
        checkpoint = torch.load(weights / gspec.filename, map_location="cpu")
        model.load_state_dict(clean_state_dict(checkpoint["model"]), strict=False)
        self.groundingdino = model.eval()
        sam = build_sam2(f"configs/sam2.1/{sspec.arch.meta_config}", str(weights / sspec.filename), device="cpu")
        self.sam = SAM2ImagePredictor(sam)

    def predict(self, image_pil, text_prompt, box_threshold=0.3, text_threshold=0.25):
        import groundingdino.datasets.transforms as T
        import numpy as np
        import torch
        from groundingdino.util import box_ops
        from groundingdino.util.inference import predict

        transform = T.Compose([T.RandomResize([800], max_size=1333), T.ToTensor(),
                               T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
        image_trans, _ = transform(image_pil, None)
        boxes, logits, phrases = predict(model=self.groundingdino, image=image_trans, caption=text_prompt,
                                         box_threshold=box_threshold, text_threshold=text_threshold,
                                         device="cpu")
        W, H = image_pil.size
        boxes = box_ops.box_cxcywh_to_xyxy(boxes) * torch.Tensor([W, H, W, H])
        masks = torch.tensor([])
        if len(boxes) > 0:
            self.sam.set_image(np.asarray(image_pil))
            masks, _, _ = self.sam.predict(box=boxes.numpy(), multimask_output=False)
            masks = torch.from_numpy(masks).reshape(len(boxes), -1, *masks.shape[-2:])[:, 0].bool()
        return masks, boxes, phrases, logits


def run_side(side: str, sam_type: str, gdino_type: str, weights: Path, image_path: str, out: Path) -> None:
    import torch
    from PIL import Image

    torch.manual_seed(0)
    image = Image.open(image_path).convert("RGB")
    t0 = time.perf_counter()
    if side == "reference":
        model = Reference(sam_type, gdino_type, weights)
    else:
        from lang_sam import LangSAM

        os.environ["LANG_SAM_WEIGHTS_DIR"] = str(weights)
        os.environ["LANG_SAM_OFFLINE"] = "1"
        model = LangSAM(sam_type, gdino_type=gdino_type, device="cpu")
    res = {"cold_start": time.perf_counter() - t0}
    with torch.no_grad():
        t0 = time.perf_counter()
        first = model.predict(image, PROMPTS[0])
        res["first_predict"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.predict(image, PROMPTS[1])
        res["second_prompt"] = time.perf_counter() - t0
        # SAM 2.1 alone on the first predict's boxes: a fresh image encoding + decoding (no cache).
        import numpy as np

        pixels, boxes = np.asarray(image), first[1]
        t0 = time.perf_counter()
        if side == "reference":
            model.sam.set_image(pixels)
            model.sam.predict(box=boxes.numpy(), multimask_output=False)
        else:
            model.segmenter.use(model.segmenter.encode(pixels))
            model.segmenter.predict(boxes=boxes)
        res["sam_only"] = time.perf_counter() - t0
    res["boxes"] = len(first[1])
    torch.save({"masks": first[0], "boxes": first[1]}, out.with_suffix(".pt"))
    out.write_text(json.dumps(res))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="SAM 2.1 in lang-sam vs Meta's SAM2ImagePredictor")
    p.add_argument("--sam", nargs="+", default=["sam2.1_hiera_tiny", "sam2.1_hiera_large"])
    p.add_argument("--gdino", default="swint")
    p.add_argument("--image", default=str(ROOT / "assets" / "coffee.jpg"))
    p.add_argument("--boxes", type=int, default=8, help="boxes GroundingDINO finds on the image")
    p.add_argument("--weights", default=None, help="reuse a folder of checkpoints (canonical names)")
    p.add_argument("--side", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.side:
        run_side(args.side, args.sam[0], args.gdino, Path(args.weights), args.image, Path(args.out))
        return

    import torch

    from lang_sam.models.registry import get_spec
    from lang_sam.testing import write_gdino_checkpoint, write_sam2_checkpoint

    tmp = Path(tempfile.mkdtemp(prefix="lang-sam-bench-sam2-"))
    weights = Path(args.weights) if args.weights else tmp / "weights"
    print(f"outputs in {tmp}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"image {args.image}, GroundingDINO {args.gdino}", flush=True)
    gfile = weights / get_spec("gdino", args.gdino).filename
    if not gfile.exists():
        write_gdino_checkpoint(gfile, args.gdino, few_boxes=True, target_boxes=args.boxes,
                               calibration_image=args.image)
    rows = []
    for sam in args.sam:
        sfile = weights / get_spec("sam", sam).filename
        if not sfile.exists():
            print(f"writing random {sam} (Meta's format) ...", flush=True)
            write_sam2_checkpoint(sfile, sam)
        results = {}
        for side in ("reference", "lang-sam"):
            out = tmp / f"{sam}-{side}.json"
            subprocess.run([sys.executable, __file__, "--side", side, "--sam", sam, "--gdino", args.gdino,
                            "--weights", str(weights), "--image", args.image, "--out", str(out)],
                           check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            results[side] = json.loads(out.read_text())
            print(f"  {sam} {side:9} {results[side]}", flush=True)
        a = torch.load(tmp / f"{sam}-reference.pt")
        b = torch.load(tmp / f"{sam}-lang-sam.pt")
        same = a["masks"].shape == b["masks"].shape and bool((a["masks"] == b["masks"]).all())
        agree = (a["masks"] == b["masks"]).float().mean().item() if a["masks"].shape == b["masks"].shape else 0.0
        rows.append((sam, results, same, agree))
    print("\n| SAM | | reference | lang-sam | ratio |\n|---|---|---|---|---|")
    for sam, results, same, agree in rows:
        for key in ("cold_start", "first_predict", "second_prompt", "sam_only"):
            if key not in results["reference"] or key not in results["lang-sam"]:
                continue
            r, ls = results["reference"][key], results["lang-sam"][key]
            print(f"| {sam} | {key.replace('_', ' ')} (s) | {r:.2f} | {ls:.2f} | {ls / r:.2f} |")
        print(f"| {sam} | boxes; masks equal | {results['reference']['boxes']} | "
              f"{results['lang-sam']['boxes']} | {same} ({agree:.6f} of pixels) |")


if __name__ == "__main__":
    main()
