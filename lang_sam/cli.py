"""The ``lang-sam`` command: argument parsing; the work is done by the library (what it prints, by
:mod:`lang_sam.cli_report`).

    lang-sam predict photos/ --prompt "car. wheel" --output labels/ --format overlay,coco,yolo
    lang-sam predict photos/ --classes "car=car. automobile" --classes wheel --output labels/ --resume
    lang-sam predict drone/ --prompt car --tile 1024 --tile-overlap 0.2 --output labels/
    lang-sam predict photos/ --prompt "car. wheel" --output labels/ --ray [--ray-address auto]
    lang-sam track clips/ --prompt "car" --output tracks/ --format mot,coco,overlay,masks
    lang-sam predict photos/ --everything --points-per-side 32 --output masks/ --format coco,masks
    lang-sam info
    lang-sam download --sam-type vit_h --gdino-type swinb --to /data/weights
    lang-sam serve | app           (lang_sam.serving.server.serve / lang_sam.serving.app.launch)

Every flag is parsed here; the library is called with plain arguments, so an offline ``predict``
never imports :mod:`lang_sam.serving` (nor FastAPI or Gradio). ``predict`` runs
:func:`lang_sam.labeling.run.label_folder` (see there for the output layout), or
with ``--ray`` :func:`lang_sam.labeling.distributed.label_dataset` (the same pipeline on Ray Data).
``main(argv)`` returns the exit status instead of exiting, so it can be called in-process
(:data:`lang_sam.cli_report.EXIT_CODES`): 0 success, 1 some images failed, 2 usage error (bad flags
or input), 3 models or weights unavailable (missing and not downloadable, corrupt, wrong
architecture), 4 the run stopped on an error that is no image's fault (out of memory, a full disk),
130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from lang_sam import cli_geo
from lang_sam.cli_eval import add_eval_parsers, cmd_compare, cmd_eval
from lang_sam.cli_report import (
    EXIT_CODES, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_MODELS, EXIT_OK, EXIT_STOPPED, EXIT_USAGE, LogHandler,
    ProgressReporter, cli_message, print_summary,
)

__all__ = ["main", "build_parser", "build_serve_parser"]

logger = logging.getLogger(__name__)

def _epilog() -> str:
    return "exit status: " + "; ".join(f"{code} {what}" for code, what in EXIT_CODES.items())


def _unit_float(text: str) -> float:
    from lang_sam.errors import InvalidThresholdError
    from lang_sam.validation import check_threshold

    try:
        return check_threshold("value", float(text))
    except (ValueError, InvalidThresholdError):
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None


def _number(text: str, kind, minimum: float, what: str):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or value < minimum or (isinstance(value, float) and math.isnan(value)):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    return _number(text, int, 1, "a whole number >= 1")


def _positive(text: str) -> float:
    value = _number(text, float, 0, "a number > 0")
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    return _number(text, float, 0, "a number >= 0")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; model type choices are read from the registry now, not at import."""
    from lang_sam import __version__
    from lang_sam.models.registry import model_names
    from lang_sam.labeling.run import DEFAULT_FORMATS, FORMATS
    from lang_sam.validation import BOX_THRESHOLD, TEXT_THRESHOLD

    parser = argparse.ArgumentParser(
        prog="lang-sam",
        description="Segment objects in images from a text prompt (GroundingDINO + Segment Anything).",
        epilog=_epilog(),
    )
    parser.add_argument("--version", action="version", version=f"lang-sam {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log messages (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="{predict,track,eval,compare,info,download,serve,app}")

    p = sub.add_parser(
        "predict", help="label images, folders or .txt lists of images",
        description="Label images: GroundingDINO boxes from the prompt, SAM masks, written in the "
                    "chosen formats under --output, mirroring the inputs' relative paths.",
        epilog=_epilog(),
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders (searched recursively) or .txt files listing image paths")
    p.add_argument("--prompt", help='what to find, classes separated by ".": "car. wheel"')
    p.add_argument("--classes", action="append", metavar="SPEC",
                   help='a class and the prompt phrases that find it: "car=car. automobile" '
                        "(repeatable; replaces --prompt: the prompt becomes every phrase joined)")
    p.add_argument("--output", "-o", required=True, help="output folder")
    p.add_argument("--format", action="append", metavar="FMT",
                   help=f"output formats, repeatable or comma-separated: {','.join(FORMATS)} "
                        f"(default: {','.join(DEFAULT_FORMATS)})")
    p.add_argument("--polygons", action="store_true", help="labelstudio, cvat: instances as polygons, not masks")
    p.add_argument("--image-prefix", metavar="URL", help="labelstudio: an image is URL + its path relative to its "
                   "input (default: Label Studio's local files, /data/local-files/?d=<absolute path>)")
    p.add_argument("--resume", action="store_true",
                   help="finish the run in --output: skip images whose outputs are all complete "
                        "(same settings required)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete an earlier run's outputs in --output (overlays/ masks/ labelme/ yolo/ "
                        "coco/ labelstudio/ cvat/ .lang-sam/; other files are kept) and start again")
    p.add_argument("--nms", type=_unit_float, default=None, metavar="IOU",
                   help="per-class box non-maximum suppression at this IoU (default: off)")
    p.add_argument("--box-threshold", type=_unit_float, default=BOX_THRESHOLD, metavar="T",
                   help="keep boxes whose best token scores over T, in [0, 1] (default: %(default)s)")
    p.add_argument("--text-threshold", type=_unit_float, default=TEXT_THRESHOLD, metavar="T",
                   help="a box's phrase is its tokens scoring over T, in [0, 1] (default: %(default)s)")
    _add_tile_arguments(p)
    cli_geo.add_arguments(p)  # map rasters: --bands, --simplify
    _add_everything_arguments(p)
    _add_model_arguments(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r = _add_ray_arguments(
        p, "label on a Ray cluster (pip install 'lang-sam[ray]'); the same outputs as without --ray",
        "Ray Data", " (default: a Ray instance already running here, else a new local one)",
        ", fractions share a GPU")
    r.add_argument("--batch-size", type=_positive_int, default=None, metavar="B",
                   help="images per call of a worker (default: 1)")

    _add_track_parser(sub)
    add_eval_parsers(sub)  # eval, compare: lang_sam.cli_eval

    sub.add_parser("info", help="where each checkpoint resolves, and the device that would be used")

    sub.add_parser("serve", add_help=False,
                   help="HTTP server: POST /predict, GET /health, the demo at /gradio (lang-sam serve --help)")
    sub.add_parser("app", add_help=False, help="the Gradio web demo (lang-sam app --help)")

    d = sub.add_parser(
        "download", help="fetch and verify checkpoints ahead of time",
        description="Fetch and verify checkpoints now (default: the default SAM and GroundingDINO "
                    "types; naming any type fetches only the named ones).",
    )
    d.add_argument("--sam-type", action="append", choices=model_names("sam"), help="repeatable")
    d.add_argument("--gdino-type", action="append", choices=model_names("gdino"), help="repeatable")
    d.add_argument("--to", default=None, metavar="DIR",
                   help="put the files in DIR (then run with LANG_SAM_WEIGHTS_DIR=DIR)")
    d.add_argument("--token", default=None, metavar="TOKEN",
                   help="Hugging Face access token for gated models such as sam3 (default: $HF_TOKEN, "
                        "or the one huggingface-cli login stored)")
    return parser


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The model flags shared by ``lang-sam predict``, ``serve`` and ``app``. The type choices are
    read from the registry now (types registered before the parser is built are offered)."""
    from lang_sam.models.registry import DEFAULT_GDINO, DEFAULT_SAM, model_names

    p.add_argument("--sam-type", default=DEFAULT_SAM, choices=model_names("sam"),
                   help="SAM model (default: %(default)s)")
    p.add_argument("--sam-ckpt", default=None, help="local SAM checkpoint file")
    p.add_argument("--gdino-type", default=DEFAULT_GDINO, choices=model_names("gdino"),
                   help="GroundingDINO model (default: %(default)s)")
    p.add_argument("--gdino-ckpt", default=None, help="local GroundingDINO checkpoint file")
    p.add_argument("--device", default=None, help="cuda, cuda:1, mps or cpu (default: the best available)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16", "auto", "int8"],
                   help="compute precision (default: %(default)s); bf16 pays off where the device "
                        "computes it natively (CUDA, CPUs with AVX-512-BF16/AMX), auto picks it only there; "
                        "int8 (approximate) with --backend openvino")
    p.add_argument("--backend", default="pytorch", choices=["pytorch", "openvino"],
                   help="run the engines' heavy parts on PyTorch or OpenVINO (CPU; converted once, cached beside "
                        "the weights; the [openvino] extra) (default: %(default)s)")
    p.add_argument("--cache-size", type=int, default=2,
                   help="images whose encodings are kept (default: %(default)s)")


def _model_kwargs(args: argparse.Namespace) -> dict:
    """``LangSAM`` keyword arguments from the flags of :func:`_add_model_arguments`."""
    return dict(sam_type=args.sam_type, ckpt_path=args.sam_ckpt, gdino_type=args.gdino_type,
                gdino_ckpt_path=args.gdino_ckpt, device=args.device, precision=args.precision,
                cache_size=args.cache_size, backend=args.backend)


def _add_tile_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("large images (sliced inference)")
    g.add_argument("--tile", type=int, default=None, metavar="SIZE",
                   help="detect on overlapping SIZE-px tiles at full resolution, merge what two tiles "
                        "found, segment each box on its tile (default: off; try 1024)")
    g.add_argument("--tile-overlap", type=float, default=None, metavar="FRACTION",
                   help="fraction of a tile shared with its neighbours, in [0, 1) (default 0.2)")
    g.add_argument("--tile-merge", choices=("nms", "greedy"), default=None,
                   help="duplicates across tiles: keep the best box (nms, default) or merge the boxes "
                        "into their union (greedy)")


#: ``--everything``'s options: flag -> (LangSAM.generate setting, argparse type, help).
_EVERYTHING_OPTIONS = {
    "--points-per-side": ("points_per_side", "int", "grid points per image side (default 32)"),
    "--points-per-batch": ("points_per_batch", "int", "points decoded together (default 64)"),
    "--pred-iou-thresh": ("pred_iou_thresh", "unit",
                          "keep masks whose predicted IoU is over this (default: SAM v1 0.88, SAM 2 0.8)"),
    "--stability-score-thresh": ("stability_score_thresh", "unit", "keep masks at least this stable (default 0.95)"),
    "--box-nms-thresh": ("box_nms_thresh", "unit", "box IoU over which duplicate masks go (default 0.7)"),
    "--crop-n-layers": ("crop_n_layers", "count", "segment crops too: layer i has 2**i x 2**i crops (default 0)"),
    "--min-mask-region-area": ("min_mask_region_area", "count",
                               "remove holes and islands under this many pixels (default 0: off)"),
}


def _add_everything_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "segment everything", "--everything labels every mask SAM's automatic mask generator finds, "
        'class "object", scored by SAM\'s predicted IoU (no --prompt; GroundingDINO is not used)')
    g.add_argument("--everything", action="store_true",
                   help="every mask of each image instead of what a prompt names (LangSAM.generate)")
    kinds = {"int": _positive_int, "unit": _unit_float, "count": lambda t: int(_number(t, int, 0, "a whole number >= 0"))}
    for flag, (_, kind, text) in _EVERYTHING_OPTIONS.items():
        g.add_argument(flag, type=kinds[kind], default=None, metavar="N" if kind != "unit" else "T", help=text)


def everything_settings(args: argparse.Namespace) -> dict | None:
    """The :meth:`LangSAM.generate` settings of ``--everything`` and its options (only those
    given: the SAM family's defaults for the rest), or None without ``--everything``."""
    from lang_sam.errors import InvalidRunError

    given = {flag: getattr(args, name) for flag, (name, _, _) in _EVERYTHING_OPTIONS.items()
             if getattr(args, name, None) is not None}
    if not args.everything:
        if given:
            raise InvalidRunError(f"{', '.join(given)}: only with --everything")
        return None
    clash = [flag for flag, value in (("--prompt", args.prompt), ("--classes", args.classes), ("--nms", args.nms),
                                      ("--tile", args.tile)) if value is not None]
    if clash:
        raise InvalidRunError(f"--everything labels every mask, with no prompt: give it without {', '.join(clash)}")
    return {_EVERYTHING_OPTIONS[flag][0]: value for flag, value in given.items()}


def tile_spec(args: argparse.Namespace):
    """The :class:`~lang_sam.tiling.TileSpec` of ``--tile``/``--tile-overlap``/``--tile-merge``, or None."""
    from lang_sam.errors import InvalidRunError
    from lang_sam.tiling import TileSpec

    if args.tile is None:
        if args.tile_overlap is not None or args.tile_merge is not None:
            raise InvalidRunError("--tile-overlap and --tile-merge need --tile SIZE")
        return None
    return TileSpec(args.tile, 0.2 if args.tile_overlap is None else args.tile_overlap,
                    args.tile_merge or "nms")


# --------------------------------------------------------------------------------------------
# predict
# --------------------------------------------------------------------------------------------

def cmd_predict(args: argparse.Namespace) -> int:
    from lang_sam.errors import InvalidRunError
    from lang_sam.labeling.run import LabelSettings, parse_formats
    from lang_sam.labeling.tool_formats import ExportOptions
    from lang_sam.settings import max_image_pixels
    from lang_sam.validation import check_device

    if cli_geo.wants_raster(args):  # map rasters: --format gpkg,geojson,geotiff or --bands
        return cli_geo.cmd_predict_raster(args, _model_loader(args), tile_spec(args))
    try:
        formats = parse_formats(args.format)
    except InvalidRunError as exc:
        raise InvalidRunError(f"--format: {exc}") from None
    everything = everything_settings(args)
    if args.classes and args.prompt:
        raise InvalidRunError("give --prompt or --classes, not both (with --classes the prompt is "
                              "built from the classes' phrases)")
    if not args.classes and not args.prompt and everything is None:
        raise InvalidRunError('name what to find: --prompt "car. wheel" or --classes "car=car. automobile", '
                              "or label every mask with --everything")
    # Settings that are wrong for every image are usage errors, found before the output folder is made.
    check_device(args.device)
    try:
        max_image_pixels()
    except ValueError as exc:
        raise InvalidRunError(str(exc)) from None
    _check_ray_only(args, "--batch-size")
    settings = LabelSettings.create(
        args.prompt, args.classes, box_threshold=args.box_threshold,
        text_threshold=args.text_threshold, nms=args.nms, sam_type=args.sam_type,
        gdino_type=args.gdino_type, tile=tile_spec(args), everything=everything,
    )
    reporter = ProgressReporter("labelling", "img", quiet=args.quiet)
    export = ExportOptions.for_formats(formats, args.polygons, args.image_prefix)
    return _run(args, "label", settings, formats, reporter, overwrite=args.overwrite, export=export)


def _run(args: argparse.Namespace, kind: str, settings, formats: list[str], reporter: ProgressReporter,
         **options) -> int:
    """Run ``kind`` (``"label"``: :func:`~lang_sam.labeling.run.label_folder`, ``"track"``:
    :func:`~lang_sam.labeling.video_run.track_folder`; with ``--ray`` their Ray drivers in
    :mod:`lang_sam.labeling.distributed`) on the flags, with ``options`` (``overwrite=``) and
    ``reporter`` showing it; print its summary and return the exit status it calls for."""
    try:
        if args.ray:
            from lang_sam.labeling import distributed

            ray_run = distributed.label_dataset if kind == "label" else distributed.track_dataset
            if kind == "label":
                options["batch_size"] = args.batch_size or 1
            summary = ray_run(
                args.inputs, args.output, settings, formats, sam_ckpt=args.sam_ckpt,
                gdino_ckpt=args.gdino_ckpt, device=args.device, precision=args.precision, backend=args.backend,
                cache_size=args.cache_size, resume=args.resume, workers=args.workers,
                gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker,
                ray_address=args.ray_address, hooks=reporter, **options)
        else:
            run: Callable[..., Any]
            if kind == "label":
                from lang_sam.labeling.run import label_folder as run
            else:
                from lang_sam.labeling.video_run import track_folder as run
            summary = run(_model_loader(args), args.inputs, args.output, settings, formats,
                          resume=args.resume, hooks=reporter, **options)
    finally:
        reporter.close()
    return print_summary(summary)


def _model_loader(args: argparse.Namespace):
    """A callable loading the ``LangSAM`` of the model flags, which the run calls only when some
    item is left to do."""
    def load():
        from lang_sam import LangSAM

        print("lang-sam: loading models ...", file=sys.stderr)
        return LangSAM(**_model_kwargs(args))

    return load


def _check_ray_only(args: argparse.Namespace, *more: str) -> None:
    """Refuse the Ray flags (``--workers`` ..., and ``more``) without ``--ray``."""
    from lang_sam.errors import InvalidRunError

    flags = ("--ray-address", "--workers", "--gpus-per-worker", "--cpus-per-worker", *more)
    given = [flag for flag in flags if getattr(args, flag[2:].replace("-", "_")) is not None]
    if given and not args.ray:
        raise InvalidRunError(f"{', '.join(given)}: only with --ray")


# --------------------------------------------------------------------------------------------
# track
# --------------------------------------------------------------------------------------------

def _add_track_parser(sub) -> None:
    """``lang-sam track``: its flags (the model flags are ``predict``'s)."""
    from lang_sam.labeling.video_formats import DEFAULT_VIDEO_FORMATS, VIDEO_FORMATS
    from lang_sam.validation import BOX_THRESHOLD, TEXT_THRESHOLD
    from lang_sam.video import DETECT_EVERY

    t = sub.add_parser(
        "track", help="track objects through videos, folders of videos or .txt lists of videos",
        description="Track what the prompt names through each video: GroundingDINO detects on key "
                    "frames, a video segmenter (SAM 2.1) follows the objects in between, each with a "
                    "stable id; the tracks are written in the chosen formats under --output, "
                    "mirroring the inputs' relative paths (pip install 'lang-sam[video]').",
        epilog=_epilog(),
    )
    t.add_argument("inputs", nargs="+", metavar="VIDEO",
                   help="video files, folders (searched recursively) or .txt files listing video paths")
    t.add_argument("--prompt", required=True, help='what to track, classes separated by ".": "car. person"')
    t.add_argument("--output", "-o", required=True, help="output folder")
    t.add_argument("--format", action="append", metavar="FMT",
                   help=f"output formats, repeatable or comma-separated: {','.join(VIDEO_FORMATS)} "
                        f"(default: {','.join(DEFAULT_VIDEO_FORMATS)})")
    t.add_argument("--polygons", action="store_true", help="cvat: tracks as polygons, not masks")
    t.add_argument("--detect-every", type=_positive_int, default=DETECT_EVERY, metavar="N",
                   help="run the detector on the first frame with detections and every N frames after "
                        "it; new objects are found on those frames (default: %(default)s)")
    t.add_argument("--resume", action="store_true",
                   help="finish the run in --output: keep and skip videos whose outputs are complete, "
                        "redo unfinished ones (same settings required)")
    t.add_argument("--box-threshold", type=_unit_float, default=BOX_THRESHOLD, metavar="T",
                   help="keep boxes whose best token scores over T, in [0, 1] (default: %(default)s)")
    t.add_argument("--text-threshold", type=_unit_float, default=TEXT_THRESHOLD, metavar="T",
                   help="a box's phrase is its tokens scoring over T, in [0, 1] (default: %(default)s)")
    _add_model_arguments(t)
    from lang_sam.models.registry import DEFAULT_TRACK_SAM, model_names

    if DEFAULT_TRACK_SAM in model_names("sam"):  # predict's default (SAM v1) cannot track
        t.set_defaults(sam_type=DEFAULT_TRACK_SAM)
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_ray_arguments(t, "one video per task on a Ray cluster (pip install 'lang-sam[ray]'); the same "
                          "outputs as without --ray", "Ray", "", "")


def _add_ray_arguments(p: argparse.ArgumentParser, description: str, runs_on: str, address_default: str,
                       gpus_note: str):
    """The Ray flags predict and track share, in their group (returned: predict adds its own)."""
    r = p.add_argument_group("Ray", description)
    r.add_argument("--ray", action="store_true",
                   help=f"run on {runs_on}: a local Ray instance, or the cluster of --ray-address")
    r.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="join a running cluster from one of its nodes: auto, or the head's HOST:6379"
                        + address_default)
    r.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="model actors (default: one per GPU, or one per node without GPUs)")
    r.add_argument("--gpus-per-worker", type=_non_negative, default=None, metavar="G",
                   help=f"GPUs per actor{gpus_note} (default: 1 if the cluster has GPUs, else 0)")
    r.add_argument("--cpus-per-worker", type=_positive, default=None, metavar="C",
                   help="CPUs per actor, also its torch threads (default: the CPUs shared among the workers)")
    return r


def cmd_track(args: argparse.Namespace) -> int:
    from lang_sam.errors import InvalidRunError
    from lang_sam.labeling.tool_formats import ExportOptions
    from lang_sam.labeling.video_run import TrackSettings, parse_video_formats
    from lang_sam.validation import check_device

    try:
        formats = parse_video_formats(args.format)
    except InvalidRunError as exc:
        raise InvalidRunError(f"--format: {exc}") from None
    try:
        import av  # noqa: F401  (the [video] extra: say so before any model loads)
    except ImportError:
        raise InvalidRunError("lang-sam track reads videos with PyAV, which is not installed: "
                              "pip install 'lang-sam[video]'") from None
    check_device(args.device)
    _check_ray_only(args)
    settings = TrackSettings.create(
        args.prompt, box_threshold=args.box_threshold, text_threshold=args.text_threshold,
        detect_every=args.detect_every, sam_type=args.sam_type, gdino_type=args.gdino_type)
    # In one process, one bar over every frame to track; on Ray, over the videos as they finish.
    reporter = ProgressReporter("tracking", "video", quiet=args.quiet, frames=not args.ray)
    export = ExportOptions.for_formats(formats, args.polygons)
    return _run(args, "track", settings, formats, reporter, export=export)


# --------------------------------------------------------------------------------------------
# info, download
# --------------------------------------------------------------------------------------------

def cmd_info(args: argparse.Namespace) -> int:
    import torch

    from lang_sam import __version__
    from lang_sam.cli_report import backend_lines, checkpoint_lines
    from lang_sam.hub import download_dir
    from lang_sam.lang_sam import default_device
    from lang_sam.settings import ENV_WEIGHTS_DIR, is_offline, weights_dir

    offline = is_offline()
    print(f"lang-sam {__version__}, torch {torch.__version__}")
    print(f"device: {default_device()}", *backend_lines(), sep="\n")
    print(f"offline mode: {'on' if offline else 'off'} (LANG_SAM_OFFLINE / HF_HUB_OFFLINE)")
    print(f"{ENV_WEIGHTS_DIR}: {weights_dir() or '(not set)'}")
    print(f"downloads go to: {download_dir()}")
    print(*checkpoint_lines(offline), sep="\n")
    return EXIT_OK


def cmd_download(args: argparse.Namespace) -> int:
    from lang_sam.errors import ChecksumMismatchError, LangSAMError
    from lang_sam.hub import copy_atomic, load_checkpoint, resolve_checkpoint, sha256sum
    from lang_sam.models.registry import DEFAULT_GDINO, DEFAULT_SAM, get_spec
    from lang_sam.settings import ENV_WEIGHTS_DIR

    wanted = [("sam", n) for n in (args.sam_type or [])] + [("gdino", n) for n in (args.gdino_type or [])]
    if not wanted:
        wanted = [("sam", DEFAULT_SAM), ("gdino", DEFAULT_GDINO)]
    to = Path(args.to).expanduser().resolve() if args.to else None
    if to is not None:
        to.mkdir(parents=True, exist_ok=True)
    failures = 0
    for family, name in dict.fromkeys(wanted):
        spec = get_spec(family, name)
        label = f"{family} {name} ({spec.filename})"
        try:
            path = resolve_checkpoint(spec, download_to=to, token=args.token)
            note = ""
            if spec.files:  # a folder model (SAM 3): a local copy under --to, checked by its config
                if to is not None and path.resolve() != (to / spec.filename).resolve():
                    dest = to / spec.filename
                    dest.mkdir(parents=True, exist_ok=True)
                    for f in spec.files:
                        copy_atomic(path / f, dest / f)
                    note, path = f" (copied from {path})", dest
                print(f"{label}: {path}{note}: {_check_folder_config(spec, path)}")
                continue
            if to is not None and path.resolve().parent != to:
                dest = copy_atomic(path, to / spec.filename)
                note, path = f" (copied from {path})", dest
            if spec.sha256:
                actual = sha256sum(path)
                if actual != spec.sha256:
                    raise ChecksumMismatchError(
                        f"{path} has sha256 {actual}, expected {spec.sha256}: delete it and "
                        "download it again"
                    )
                check = "sha256 ok"
            else:
                load_checkpoint(path)
                check = "no published sha256; loads as a safe checkpoint"
            print(f"{label}: {path}{note}: {check}")
        except (LangSAMError, OSError) as exc:
            failures += 1
            print(f"lang-sam: {label}: {exc}", file=sys.stderr)
    if to is not None and not failures:
        print(f"use them with: {ENV_WEIGHTS_DIR}={to} LANG_SAM_OFFLINE=1 lang-sam predict ...")
    return EXIT_MODELS if failures else EXIT_OK


def _check_folder_config(spec, path: Path) -> str:
    """What ``lang-sam download`` can check of a folder model without loading it: every file is
    there and ``config.json`` names the expected network."""
    import json

    from lang_sam.errors import CheckpointMismatchError

    want = getattr(spec.arch, "model_types", None)
    try:
        got = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError) as exc:
        raise CheckpointMismatchError(f"{path / 'config.json'} cannot be read: {exc}") from exc
    if want is not None and got not in want:
        raise CheckpointMismatchError(f"{path} holds a {got!r} model, expected {' or '.join(map(repr, want))}")
    return f"{len(spec.files)} files, config.json model_type {got!r}"


# --------------------------------------------------------------------------------------------
# serve, app
# --------------------------------------------------------------------------------------------

#: The exit statuses of ``lang-sam serve`` / ``lang-sam app`` (those of ``lang-sam``), for ``--help``.
SERVE_EPILOG = ("exit status: 0 stopped normally; 2 usage error: bad flags or settings, or the port is "
                "in use; 3 models or weights unavailable: missing and not downloadable, corrupt, or "
                "of another architecture")


def build_serve_parser(command: str) -> argparse.ArgumentParser:
    """The parser of ``lang-sam serve`` (the HTTP server) or ``lang-sam app`` (the web demo alone),
    which own their flags: ``lang-sam serve --help``."""
    from lang_sam.serving.service import (
        DEFAULT_MAX_BODY_MB, DEFAULT_MAX_DETECTIONS, DEFAULT_MAX_FRAMES, DEFAULT_MAX_PIXELS,
    )

    what = {"serve": "lang-sam HTTP server", "app": "lang-sam web demo"}[command]
    p = argparse.ArgumentParser(prog=f"lang-sam {command}", description=what, epilog=SERVE_EPILOG)
    _add_model_arguments(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"largest image accepted, width x height (default {DEFAULT_MAX_PIXELS:,})")
    p.add_argument("--max-detections", type=int, default=DEFAULT_MAX_DETECTIONS,
                   help="detections kept per text request, the highest-scoring, and SAM prompts "
                        f"accepted per request (default {DEFAULT_MAX_DETECTIONS})")
    p.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES,
                   help=f"most frames of a video to track (POST /track, the demo's video tab; "
                        f"default {DEFAULT_MAX_FRAMES})")
    p.add_argument("--max-body-mb", type=float, default=DEFAULT_MAX_BODY_MB,
                   help=f"largest request body / upload in MiB (default {DEFAULT_MAX_BODY_MB})")
    p.add_argument("--allow-model-switch", action="store_true",
                   help="let clients pick another registered SAM / GroundingDINO type per request "
                        "(loads it on the server; off by default)")
    p.add_argument("--api-key", default=None,
                   help="require this key (default: $LANG_SAM_API_KEY, if set); /health stays open")
    port = {"serve": 8000, "app": 7860}[command]
    p.add_argument("--port", type=int, default=port, help="port to listen on (default: %(default)s)")
    if command == "serve":
        p.add_argument("--no-demo", action="store_true", help="do not mount the Gradio demo at /gradio")
    return p


def _startup_error(prog: str, exc: BaseException) -> int:
    """``exc`` as one line on stderr (no traceback); the exit status: 3 for models or weights that
    cannot be had or loaded, 2 for a setting that is wrong (an unavailable device, an unknown model
    type, a bad limit, a port in use), 1 otherwise."""
    from lang_sam.errors import MODEL_ERRORS, ModelLoadError, PortUnavailableError

    print(f"{prog}: error: {exc}", file=sys.stderr)
    if isinstance(exc, (*MODEL_ERRORS, ModelLoadError)):
        return EXIT_MODELS
    return EXIT_USAGE if isinstance(exc, (ValueError, PortUnavailableError)) else EXIT_FAILED


def cmd_serve(command: str, args: argparse.Namespace) -> int:
    """``lang-sam serve`` / ``lang-sam app`` with the flags of :func:`build_serve_parser`: settings
    checked, the port tried and (``serve``) the models loaded before anything listens."""
    from lang_sam.errors import LangSAMError
    from lang_sam.serving.service import ModelService, check_exposure, check_port
    from lang_sam.settings import api_key

    if command == "serve":
        import uvicorn  # noqa: F401  (the [server] extra: missing, say so before any model loads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    key = args.api_key or api_key()
    check_exposure(args.host, key)
    try:
        check_port(args.host, args.port)  # a port in use: say so before minutes of model loading
        service = ModelService(
            sam_type=args.sam_type, gdino_type=args.gdino_type, sam_ckpt=args.sam_ckpt,
            gdino_ckpt=args.gdino_ckpt, device=args.device, precision=args.precision, backend=args.backend,
            cache_size=args.cache_size, max_detections=args.max_detections,
            allow_model_switch=args.allow_model_switch,
        )
        if command == "serve":
            service.load()  # fail before listening if the weights are missing
    except (LangSAMError, ValueError) as exc:
        return _startup_error(f"lang-sam {command}", exc)
    # 0 on the command line: no limit
    limits = dict(host=args.host, port=args.port, max_pixels=args.max_pixels or None,
                  max_body_mb=args.max_body_mb or None, api_key=key, max_frames=args.max_frames or None)
    if command == "serve":
        from lang_sam.serving.server import serve

        serve(service, **limits, mount_demo=not args.no_demo)
    else:
        from lang_sam.serving.app import launch

        launch(service, **limits)
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lang-sam`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("serve", "app"):  # they own their flags (build_serve_parser)
        return cmd_serve(argv[0], build_serve_parser(argv[0]).parse_args(argv[1:]))
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    from lang_sam.errors import (
        MODEL_ERRORS, DeviceError, InvalidClassMapError, InvalidPromptError, InvalidRunError,
        InvalidThresholdError, InvalidTileError, LangSAMError, RunStoppedError, TrackingNotSupportedError,
        UnknownModelError,
    )

    pkg_logger = logging.getLogger("lang_sam")
    handler = LogHandler()
    old_level = pkg_logger.level
    pkg_logger.addHandler(handler)
    pkg_logger.setLevel(logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING)
    command = {"predict": cmd_predict, "track": cmd_track, "info": cmd_info,
               "download": cmd_download, "eval": cmd_eval, "compare": cmd_compare}[args.command]
    usage_errors: tuple[type[Exception], ...] = (
        InvalidRunError, InvalidClassMapError, InvalidPromptError, InvalidThresholdError, DeviceError,
        InvalidTileError, UnknownModelError, TrackingNotSupportedError)  # track: a SAM that cannot track
    try:
        return command(args)
    except usage_errors as exc:
        print(f"lang-sam {args.command}: error: {cli_message(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except MODEL_ERRORS as exc:
        print(f"lang-sam {args.command}: error: {cli_message(exc)}", file=sys.stderr)
        return EXIT_MODELS
    except RunStoppedError as exc:
        print(f"lang-sam {args.command}: error: {cli_message(exc)}", file=sys.stderr)
        return EXIT_STOPPED
    except (LangSAMError, OSError) as exc:
        print(f"lang-sam {args.command}: error: {cli_message(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("lang-sam: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        pkg_logger.removeHandler(handler)
        pkg_logger.setLevel(old_level)
