"""``lang-sam compare``'s encode-once design against what it replaces: one ``lang-sam predict`` +
``lang-sam eval`` per box threshold.

    python benchmarks/compare_bench.py [--thresholds 0.2:0.4:0.05]

On the tiny random-weight stand-ins (``lang_sam.testing``: SAM v1 and GroundingDINO of the real
structure, tiny widths; GroundingDINO calibrated to a few boxes on the photos) over the three
photos of ``assets/``, one engine, it times in this process, back to back:

- ``compare``: :func:`lang_sam.evaluate.compare` (models loaded once, each image encoded once,
  every threshold from that encoding), loading included;
- ``separate``: per threshold, the models loaded, :func:`~lang_sam.labeling.run.label_folder`
  (what ``lang-sam predict`` runs) and :func:`~lang_sam.evaluate.evaluate` (``lang-sam eval``);
- ``separate, models loaded once``: the same with one model whose encoding cache is off (each
  run encodes every image, as separate processes would), loading not counted.

It checks that every setting's AP is the same both ways, and prints the ratios separate / compare.
The encoders' share of the time is larger on the real networks (a ViT-H image encoder, a Swin-B
backbone at 800 px) than on these stand-ins, so the real saving is at least this large per extra
threshold.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "cup. cat. person"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--thresholds", default="0.2:0.4:0.05")
    args = parser.parse_args()

    import torch

    from lang_sam import LangSAM
    from lang_sam.evaluate import compare, evaluate, parse_thresholds
    from lang_sam.labeling import LabelSettings, label_folder
    from lang_sam.models.registry import register_model
    from lang_sam.testing import tiny_gdino_spec, tiny_sam_spec, write_gdino_checkpoint, write_sam_checkpoint

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}")
    thresholds = parse_thresholds(args.thresholds)
    tmp = Path(tempfile.mkdtemp(prefix="compare-bench-"))
    photos = tmp / "photos"
    photos.mkdir()
    for name in ("coffee.jpg", "cat.jpg", "astronaut.jpg"):
        (photos / name).symlink_to(ROOT / "assets" / name)
    sam, gdino = register_model(tiny_sam_spec()), register_model(tiny_gdino_spec())
    write_sam_checkpoint(tmp / sam.filename, sam, seed=0)
    write_gdino_checkpoint(tmp / gdino.filename, gdino, seed=0, few_boxes=True, target_boxes=6,
                           calibration_image=[str(p) for p in sorted(photos.iterdir())], calibration_prompt=PROMPT)
    ckpts = {sam.name: tmp / sam.filename, gdino.name: tmp / gdino.filename}

    def load(**kw):
        return LangSAM(sam.name, str(ckpts[sam.name]), gdino_type=gdino.name, gdino_ckpt_path=str(ckpts[gdino.name]),
                       device="cpu", **kw)

    def run(model, t: float, out: Path) -> dict:
        settings = LabelSettings.create(PROMPT, box_threshold=t, sam_type=sam.name, gdino_type=gdino.name)
        label_folder(lambda: model, [photos], out, settings, ["coco"])
        return evaluate(out, gt).summary

    label_folder(lambda: load(), [photos], tmp / "truth",
                 LabelSettings.create(PROMPT, box_threshold=0.3, sam_type=sam.name, gdino_type=gdino.name), ["coco"])
    gt = tmp / "truth" / "coco" / "annotations.json"

    started = time.perf_counter()
    result = compare(photos, gt, sam_types=[sam.name], box_thresholds=thresholds, gdino_type=gdino.name,
                     device="cpu", checkpoints=ckpts)
    t_compare = time.perf_counter() - started

    started = time.perf_counter()
    separate = {t: run(load(), t, tmp / f"sep-{t}") for t in thresholds}
    t_separate = time.perf_counter() - started

    model = load(cache_size=0)
    started = time.perf_counter()
    for t in thresholds:
        run(model, t, tmp / f"one-{t}")
    t_loaded = time.perf_counter() - started

    for row in result.rows:
        want = separate[row["box_threshold"]]
        assert (row["mask AP"], row["box AP"]) == (want["segm"]["AP"], want["bbox"]["AP"]), row
    print(f"{len(thresholds)} thresholds x 3 photos, one engine; APs equal both ways")
    enc = result.rows[0]["encode_seconds_per_image"]
    print(f"image encoding: {enc:.2f} s per image, once; each threshold's detection + masks after it: "
          f"{sum(r['seconds_per_image'] - enc for r in result.rows) / len(result.rows):.2f} s per image")
    print(f"compare (load once, encode once):          {t_compare:7.1f} s")
    print(f"separate predict + eval per threshold:     {t_separate:7.1f} s  ({t_separate / t_compare:.2f}x compare)")
    print(f"separate, models loaded once, no cache:    {t_loaded:7.1f} s  ({t_loaded / t_compare:.2f}x compare)")


if __name__ == "__main__":
    main()
