"""Label a folder of photos with the library: the steps `lang-sam predict` runs, one by one.

    python examples/label_folder.py assets/ --classes "cat=cat. kitten" --classes "cup=cup. mug" --output labels/

It uses the same pipeline as the command (lang_sam.labeling.run), written out so you can change a
step: find the images, open the output folder, label each image (GroundingDINO boxes, classes,
per-class NMS, SAM masks on one encoding of the image), write its files, then the run-wide COCO
and YOLO files. `lang_sam.labeling.label_folder(...)` does all of it in one call, and
`lang-sam predict photos/ --classes ... --output labels/ --resume` adds a progress bar and resume.
Weights resolve as for LangSAM(): pass --sam-ckpt/--gdino-ckpt, or set LANG_SAM_WEIGHTS_DIR.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lang_sam import LangSAM, TileSpec
from lang_sam.labeling import LabelRun, LabelSettings, collect_images, label_image


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("--classes", action="append", required=True, help='"name=phrase. phrase"')
    p.add_argument("--output", default="labels")
    p.add_argument("--nms", type=float, default=0.5, help="per-class NMS IoU")
    p.add_argument("--sam-type", default="vit_h")
    p.add_argument("--sam-ckpt", default=None)
    p.add_argument("--gdino-type", default="swinb")
    p.add_argument("--gdino-ckpt", default=None)
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run's outputs in --output")
    p.add_argument("--tile", type=int, default=None, help="large images: detect on SIZE-px tiles")
    args = p.parse_args(argv)

    # 1. What to find: stable class names and ids (0, 1, ...); the prompt is built from the phrases.
    #    With --tile, each image is sliced (README, "Large images") and masks are kept as crops.
    settings = LabelSettings.create(classes=args.classes, nms=args.nms, sam_type=args.sam_type,
                                    gdino_type=args.gdino_type,
                                    tile=TileSpec(args.tile) if args.tile else None)
    # 2. The images, each with the path relative to the folder that names its outputs.
    items = collect_images([args.folder], exclude=args.output)
    # 3. The output folder: COCO, YOLO and overlays; records in labels/.lang-sam/. A folder that
    #    holds an earlier run is refused unless overwrite=True (or resume=True) says what to do.
    run = LabelRun(args.output, settings, ["overlay", "coco", "yolo"], overwrite=args.overwrite)
    todo = run.start(items)

    model = LangSAM(args.sam_type, args.sam_ckpt, gdino_type=args.gdino_type,
                    gdino_ckpt_path=args.gdino_ckpt)
    for item in todo:
        labels = label_image(model, item, settings, run.formats)   # the model work; writes nothing
        run.write(labels)                                          # the image's files, then its record
        print(f"{item.path}: {len(labels)} instance(s): {', '.join(labels.names) or '-'}")
    summary = run.finish()                                         # annotations.json, data.yaml
    print(f"COCO, YOLO and overlays written under {summary.output}; classes: {', '.join(summary.classes)}")
    return summary.output


if __name__ == "__main__":
    main()
