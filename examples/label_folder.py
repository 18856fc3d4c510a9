"""Label a folder of photos with the library (what `lang-sam predict` does, step by step).

    python examples/label_folder.py assets/ --classes "cat=cat. kitten" --classes "cup=cup. mug" --output labels/

For each image: one GroundingDINO + SAM pass with the classes' phrases as the prompt, phrases mapped
to stable class names with ClassMap, optional per-class NMS, then a COCO annotations.json for the
run, a YOLO label file per image and an overlay PNG. For resumable, interrupt-safe runs over large
folders use the command instead: `lang-sam predict photos/ --classes ... --output labels/ --resume`.
Weights resolve as for LangSAM(): pass --sam-ckpt/--gdino-ckpt, or set LANG_SAM_WEIGHTS_DIR.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lang_sam import LangSAM
from lang_sam.exports import (
    ClassMap,
    CocoBuilder,
    class_nms,
    coco_image_record,
    write_overlay,
    yolo_data_yaml,
    yolo_lines,
    atomic_write_text,
)
from lang_sam.utils import load_image

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("--classes", action="append", required=True, help='"name=phrase. phrase"')
    p.add_argument("--output", default="labels")
    p.add_argument("--nms", type=float, default=0.5, help="per-class NMS IoU (1 turns it off)")
    p.add_argument("--sam-type", default="vit_h")
    p.add_argument("--sam-ckpt", default=None)
    p.add_argument("--gdino-type", default="swinb")
    p.add_argument("--gdino-ckpt", default=None)
    args = p.parse_args(argv)

    classes = ClassMap.parse(args.classes)          # stable names and ids: 0, 1, ...
    model = LangSAM(args.sam_type, args.sam_ckpt, gdino_type=args.gdino_type,
                    gdino_ckpt_path=args.gdino_ckpt)
    out = Path(args.output)
    coco = CocoBuilder()
    folder = Path(args.folder)
    for path in sorted(q for q in folder.rglob("*") if q.suffix.lower() in EXTENSIONS):
        image = load_image(path)
        masks, boxes, phrases, logits = model.predict(image, classes.prompt)
        ids = [classes.class_id(phrase) for phrase in phrases]
        keep = [i for i, c in enumerate(ids) if c is not None]    # phrases of no class are dropped
        masks, boxes, logits = masks[keep], boxes[keep], logits[keep]
        ids = [ids[i] for i in keep]
        if len(ids) and args.nms < 1:
            kept = class_nms(boxes, logits, ids, args.nms).tolist()
            masks, boxes, logits, ids = masks[kept], boxes[kept], logits[kept], [ids[i] for i in kept]
        names = [classes.name(c) for c in ids]
        rel = path.relative_to(folder).with_suffix("")
        coco.add(coco_image_record(str(path.relative_to(folder)), image.width, image.height,
                                   masks, boxes, logits, names))
        atomic_write_text(out / "yolo" / "labels" / f"{rel}.txt",
                          "".join(f"{line}\n" for line in yolo_lines(masks, ids, (image.height, image.width))))
        write_overlay(out / "overlays" / f"{rel}.png", np.asarray(image), masks, boxes,
                      [f"{n} {s:.2f}" for n, s in zip(names, logits.tolist())])
        print(f"{path}: {len(ids)} instance(s): {', '.join(names) or '-'}")
    atomic_write_text(out / "yolo" / "data.yaml", yolo_data_yaml(classes.names))
    coco.write(out / "coco" / "annotations.json", classes.names)
    print(f"COCO, YOLO and overlays written under {out}")
    return out


if __name__ == "__main__":
    main()
