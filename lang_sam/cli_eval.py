"""``lang-sam eval`` and ``lang-sam compare``: their flags and what they print; the work is
:mod:`lang_sam.evaluate`'s. :mod:`lang_sam.cli` adds the two subcommands (:func:`add_eval_parsers`)
and dispatches to :func:`cmd_eval` / :func:`cmd_compare`.

    lang-sam eval --pred labels/coco/annotations.json --gt annotations.json [--output labels/eval]
    lang-sam eval --pred tracks/ --gt mot_gt/
    lang-sam compare photos/ --gt annotations.json --sam-type vit_h,sam2.1_hiera_large,sam3 \\
        --box-threshold 0.2:0.5:0.05
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lang_sam.cli_report import EXIT_OK

__all__ = ["add_eval_parsers", "cmd_eval", "cmd_compare"]


def add_eval_parsers(sub) -> None:
    """The ``eval`` and ``compare`` subparsers of ``lang-sam``'s ``sub``."""
    from lang_sam.models.registry import DEFAULT_GDINO
    from lang_sam.validation import TEXT_THRESHOLD

    e = sub.add_parser(
        "eval", help="score a run's COCO or MOT output against your ground truth",
        description="Score a run's COCO output against a COCO ground truth (box and mask AP, AP50, AP75, AR, "
                    "per class; pycocotools) or a track run's MOT files against MOT ground truth (HOTA, MOTA, "
                    "IDF1; TrackEval): a table here, eval.json and precision-recall PNGs in --output.")
    e.add_argument("--pred", required=True, metavar="PATH",
                   help="a run folder, its coco/annotations.json, a MOT .txt file or a folder of them")
    e.add_argument("--gt", required=True, metavar="PATH",
                   help="COCO ground truth (.json), or MOT ground truth: a .txt file or a folder of <name>.txt "
                        "or <name>/gt/gt.txt")
    e.add_argument("--kind", choices=("coco", "mot"), default=None,
                   help="what to score (default: coco for a .json --gt, else mot)")
    e.add_argument("--output", "-o", default=None, metavar="DIR",
                   help="where eval.json and the plots go (default: eval/ beside --pred)")

    c = sub.add_parser(
        "compare", help="score engines and box thresholds on your labelled images",
        description="Label the images with each SAM type at each box threshold (each image encoded once per "
                    "engine), score every setting against the COCO ground truth as 'lang-sam eval' does, print "
                    "and plot AP and time per image, and name the best setting with the command that "
                    "reproduces it.")
    c.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or .txt lists, as for predict")
    c.add_argument("--gt", required=True, metavar="FILE", help="COCO ground truth (.json) of those images")
    c.add_argument("--sam-type", required=True, metavar="TYPES",
                   help="SAM types to compare, comma-separated: vit_h,sam2.1_hiera_large,sam3")
    c.add_argument("--box-threshold", default="0.2:0.5:0.05", metavar="RANGE",
                   help="START:STOP:STEP (both ends included) or A,B,... (default: %(default)s)")
    c.add_argument("--text-threshold", type=float, default=TEXT_THRESHOLD, metavar="T",
                   help="a box's phrase is its tokens scoring over T (default: %(default)s)")
    c.add_argument("--prompt", default=None, help="what to find (default: the ground truth's category names)")
    c.add_argument("--classes", action="append", metavar="SPEC",
                   help='a class and its phrases, "car=car. automobile" (repeatable; as for predict)')
    c.add_argument("--gdino-type", default=DEFAULT_GDINO, help="GroundingDINO model (default: %(default)s)")
    c.add_argument("--device", default=None, help="cuda, cuda:1, mps or cpu (default: the best available)")
    c.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16", "auto"],
                   help="compute precision (default: %(default)s)")
    c.add_argument("--output", "-o", default="lang-sam-compare", metavar="DIR",
                   help="where compare.json and compare.png go (default: %(default)s)")


def _default_output(pred: str) -> Path:
    p = Path(pred)
    return (p if p.is_dir() else p.parent) / "eval"


def cmd_eval(args: argparse.Namespace) -> int:
    from lang_sam.evaluate import evaluate, write_report
    from lang_sam.labeling.eval_report import report_table

    report = evaluate(args.pred, args.gt, kind=args.kind)
    print(report_table(report))
    left = {k: v for k, v in report.notes.items() if k.endswith(("left_out", "not_in_gt", "not_predicted")) and v}
    if left:
        print("left out: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in left.items()))
    written = write_report(report, args.output or _default_output(args.pred))
    print("wrote " + ", ".join(str(p) for p in written))
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from lang_sam.evaluate import compare

    def heard(sam_type: str, done: int, total: int) -> None:
        print(f"lang-sam compare: {sam_type}: {done}/{total} images", file=sys.stderr)

    from lang_sam.errors import InvalidArgumentError, InvalidRunError
    from lang_sam.evaluate import parse_thresholds

    sam_types = [s.strip() for s in args.sam_type.split(",") if s.strip()]
    try:
        thresholds = parse_thresholds(args.box_threshold)
    except InvalidArgumentError as exc:
        raise InvalidRunError(f"--box-threshold: {exc}") from None
    if not sam_types:
        raise InvalidRunError(f"--sam-type: expected SAM types separated by commas, got {args.sam_type!r}")
    result = compare(args.inputs, args.gt, sam_types=sam_types, box_thresholds=thresholds,
                     gdino_type=args.gdino_type, text_threshold=args.text_threshold, prompt=args.prompt,
                     classes=args.classes, device=args.device, precision=args.precision, output=args.output,
                     on_image=heard)
    print(result.table())
    best = result.best
    print(f"best: {best['sam_type']} at box threshold {best['box_threshold']:g} ({result.metric} "
          f"{best[result.metric] if best[result.metric] is not None else '-'})")
    print(f"reproduce it: {result.command(best)}")
    print(f"wrote {Path(args.output) / 'compare.json'}, {Path(args.output) / 'compare.png'}")
    return EXIT_OK
