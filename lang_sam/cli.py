"""The ``lang-sam`` command: label a folder of images, show where weights resolve, fetch weights.

    lang-sam predict photos/ --prompt "car. wheel" --output labels/ --format overlay,coco,yolo
    lang-sam predict photos/ --classes "car=car. automobile" --classes wheel --output labels/ --resume
    lang-sam info
    lang-sam download --sam-type vit_h --gdino-type swinb --to /data/weights

``main(argv)`` returns the exit status instead of exiting, so it can be called in-process:
0 success, 1 some images (or downloads) failed, 2 usage error, 130 interrupted.

Output layout of ``predict`` (``<rel>`` is an image's path relative to the folder it was found in,
without its extension):

- ``overlays/<rel>.png``: boxes, labels and masks drawn on the image;
- ``masks/<rel>/<index>_<class>.png``: one 0/255 PNG per instance;
- ``labelme/<rel>.json``;
- ``yolo/labels/<rel>.txt`` and ``yolo/data.yaml``;
- ``coco/annotations.json`` (``file_name`` = the image's path relative to its input folder);
- ``.lang-sam/run.json`` (the run's settings and classes) and ``.lang-sam/records/<rel>.json``
  (one record per finished image; ``--resume`` skips images whose record and outputs all exist, and
  ``annotations.json`` / ``data.yaml`` are rebuilt from the records).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

__all__ = ["main", "IMAGE_EXTENSIONS", "FORMATS", "DEFAULT_FORMATS", "collect_images"]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
FORMATS = ("overlay", "masks", "coco", "labelme", "yolo")
DEFAULT_FORMATS = ("overlay", "coco")
STATE_DIR = ".lang-sam"
RUN_VERSION = 1
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: Warnings third-party code emits on every run, which say nothing to a CLI user.
_NOISE = (
    "torch.meshgrid",
    "Importing from timm.models.layers is deprecated",
    "`torch.cuda.amp.autocast",
    "None of the inputs have requires_grad",
    "The `device` argument is deprecated",
)


class UsageError(ValueError):
    """A command line that cannot be run as given (exit status 2)."""


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageItem:
    """An image to label: its path, and its path relative to the folder it was given in."""

    path: Path
    rel: PurePosixPath

    @property
    def key(self) -> str:
        """``rel`` without its extension: the stem of every output of this image."""
        return self.rel.with_suffix("").as_posix()


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS


def _inside(p: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        p.relative_to(folder)
        return True
    except ValueError:
        return False


def _read_list(list_file: Path) -> list[Path]:
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read image list {str(list_file)!r}: {exc}") from exc
    out = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line).expanduser()
        out.append(p if p.is_absolute() else list_file.parent / p)
    return out


def collect_images(inputs: Sequence[str | os.PathLike], exclude: str | os.PathLike | None = None) -> list[ImageItem]:
    """The images named by ``inputs``: image files, folders (searched recursively for
    :data:`IMAGE_EXTENSIONS`, any case) and ``.txt`` files listing paths (one per line, relative
    to the list's folder; ``#`` starts a comment).

    Each image's ``rel`` is its path relative to the folder given (a file given alone: its name;
    a list: the listed files' common folder). Files under ``exclude`` (the output folder) are
    skipped, and a file met twice is kept once. Raises :class:`UsageError` for a missing input, for
    no image at all, and for two images whose outputs would collide (same ``rel`` without extension).
    """
    excl = Path(exclude).resolve() if exclude is not None else None
    items: list[ImageItem] = []
    seen: set[Path] = set()

    def add(path: Path, rel: PurePosixPath) -> None:
        real = path.resolve()
        if real in seen or _inside(real, excl):
            return
        seen.add(real)
        items.append(ImageItem(path, rel))

    for raw in inputs:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted(
                (f for f in p.rglob("*") if f.is_file() and _is_image(f)),
                key=lambda f: f.relative_to(p).as_posix(),
            )
            for f in found:
                add(f, PurePosixPath(f.relative_to(p).as_posix()))
        elif p.is_file() and p.suffix.lower() == ".txt":
            listed = _read_list(p)
            if listed:
                base = Path(os.path.commonpath([str(q.resolve().parent) for q in listed]))
                for q in listed:
                    add(q, PurePosixPath(q.resolve().relative_to(base).as_posix()))
        elif p.is_file():
            add(p, PurePosixPath(p.name))
        else:
            raise UsageError(f"input not found: {str(raw)!r} (expected an image file, a folder or a .txt list)")
    if not items:
        raise UsageError(
            f"no images found in {', '.join(map(str, inputs))} "
            f"(looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, any case)"
        )
    by_key: dict[str, ImageItem] = {}
    for item in items:
        other = by_key.setdefault(item.key.casefold(), item)
        if other is not item:
            raise UsageError(
                f"{str(other.path)!r} and {str(item.path)!r} would write the same outputs "
                f"({item.key!r}); give their common parent folder instead, or rename one"
            )
    return items


# --------------------------------------------------------------------------------------------
# Output layout and run state
# --------------------------------------------------------------------------------------------

class Layout:
    """Where each output of a ``predict`` run goes (see the module doc)."""

    def __init__(self, root: Path):
        self.root = root

    def overlay(self, key: str) -> Path:
        return self.root / "overlays" / f"{key}.png"

    def masks(self, key: str) -> Path:
        return self.root / "masks" / key

    def labelme(self, key: str) -> Path:
        return self.root / "labelme" / f"{key}.json"

    def yolo(self, key: str) -> Path:
        return self.root / "yolo" / "labels" / f"{key}.txt"

    @property
    def yolo_yaml(self) -> Path:
        return self.root / "yolo" / "data.yaml"

    @property
    def coco(self) -> Path:
        return self.root / "coco" / "annotations.json"

    @property
    def records(self) -> Path:
        return self.root / STATE_DIR / "records"

    def record(self, key: str) -> Path:
        return self.records / f"{key}.json"

    @property
    def run(self) -> Path:
        return self.root / STATE_DIR / "run.json"

    def rel(self, p: Path) -> str:
        return p.relative_to(self.root).as_posix()


_TMP_RE = re.compile(r"^\..+\.\d+\.tmp$")


def _sweep_temp_files(root: Path) -> int:
    """Remove temporary files a killed run left (``.<name>.<pid>.tmp``); return how many."""
    if not root.is_dir():
        return 0
    n = 0
    for p in root.rglob(".*.tmp"):
        if p.is_file() and _TMP_RE.match(p.name):
            p.unlink(missing_ok=True)
            n += 1
    return n


def _read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _complete_record(layout: Layout, item: ImageItem, formats: Sequence[str]) -> dict | None:
    """The image's saved record if every output of ``formats`` is on disk, else None."""
    rec = _read_json(layout.record(item.key))
    if not isinstance(rec, dict) or rec.get("file_name") != item.rel.as_posix():
        return None
    if not set(formats) <= set(rec.get("formats", ())):
        return None
    outputs = rec.get("outputs", {})
    for fmt in formats:
        for rel in outputs.get(fmt, ()):
            if not (layout.root / rel).is_file():
                return None
    return rec


# --------------------------------------------------------------------------------------------
# Argument parsing
# --------------------------------------------------------------------------------------------

def _unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value}")
    return value


def _parse_formats(values: Sequence[str] | None) -> list[str]:
    if not values:
        return list(DEFAULT_FORMATS)
    out: list[str] = []
    for v in values:
        for f in v.split(","):
            f = f.strip().lower()
            if not f:
                continue
            if f not in FORMATS:
                raise UsageError(f"unknown --format {f!r}: expected some of {', '.join(FORMATS)}")
            if f not in out:
                out.append(f)
    if not out:
        raise UsageError(f"--format names no format: expected some of {', '.join(FORMATS)}")
    return out


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; model type choices are read from the registry now, not at import."""
    from lang_sam import __version__
    from lang_sam.weights import DEFAULT_GDINO, DEFAULT_SAM, GDINO_MODELS, SAM_MODELS

    parser = argparse.ArgumentParser(
        prog="lang-sam",
        description="Segment objects in images from a text prompt (GroundingDINO + Segment Anything).",
    )
    parser.add_argument("--version", action="version", version=f"lang-sam {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log messages (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="{predict,info,download,serve,app}")

    p = sub.add_parser(
        "predict", help="label images, folders or .txt lists of images",
        description="Label images: GroundingDINO boxes from the prompt, SAM masks, written in the "
                    "chosen formats under --output, mirroring the inputs' relative paths.",
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
    p.add_argument("--resume", action="store_true",
                   help="skip images whose outputs are all complete (same settings required)")
    p.add_argument("--nms", type=_unit_float, default=None, metavar="IOU",
                   help="per-class box non-maximum suppression at this IoU (default: off)")
    p.add_argument("--box-threshold", type=_unit_float, default=0.3)
    p.add_argument("--text-threshold", type=_unit_float, default=0.25)
    p.add_argument("--sam-type", default=DEFAULT_SAM, choices=sorted(SAM_MODELS))
    p.add_argument("--sam-ckpt", default=None, help="local SAM checkpoint file")
    p.add_argument("--gdino-type", default=DEFAULT_GDINO, choices=sorted(GDINO_MODELS))
    p.add_argument("--gdino-ckpt", default=None, help="local GroundingDINO checkpoint file")
    p.add_argument("--device", default=None, help="cuda, cuda:1, mps or cpu (default: the best available)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    sub.add_parser("info", help="where each checkpoint resolves, and the device that would be used")

    sub.add_parser("serve", add_help=False,
                   help="HTTP server: POST /predict, GET /health, the demo at /gradio (lang-sam serve --help)")
    sub.add_parser("app", add_help=False, help="the Gradio web demo (lang-sam app --help)")

    d = sub.add_parser(
        "download", help="fetch and verify checkpoints ahead of time",
        description="Fetch and verify checkpoints now (default: the default SAM and GroundingDINO "
                    "types; naming any type fetches only the named ones).",
    )
    d.add_argument("--sam-type", action="append", choices=sorted(SAM_MODELS), help="repeatable")
    d.add_argument("--gdino-type", action="append", choices=sorted(GDINO_MODELS), help="repeatable")
    d.add_argument("--to", default=None, metavar="DIR",
                   help="put the files in DIR (then run with LANG_SAM_WEIGHTS_DIR=DIR)")
    return parser


# --------------------------------------------------------------------------------------------
# predict
# --------------------------------------------------------------------------------------------

def _run_config(args: argparse.Namespace, prompt: str, classmap) -> dict:
    return {
        "prompt": prompt,
        "classes": classmap.state() if classmap.fixed else None,
        "box_threshold": args.box_threshold,
        "text_threshold": args.text_threshold,
        "nms": args.nms,
        "sam_type": args.sam_type,
        "gdino_type": args.gdino_type,
    }


def _label_one(model, item: ImageItem, layout: Layout, formats: Sequence[str], prompt: str,
               classmap, args: argparse.Namespace, save_state) -> tuple[dict, int]:
    """Predict one image and write its outputs, then its record (last). Returns (record, dropped)."""
    import numpy as np
    import torch

    from lang_sam import exports
    from lang_sam.utils import load_image

    image = load_image(item.path)
    width, height = image.size
    boxes, logits, phrases = model.predict_dino(image, prompt, args.box_threshold, args.text_threshold)
    n_classes = len(classmap)
    ids = [classmap.class_id(p) for p in phrases]
    keep = [i for i, c in enumerate(ids) if c is not None]
    dropped = len(ids) - len(keep)
    if len(classmap) != n_classes:
        save_state()  # new classes are on disk before any output uses their ids
    boxes, logits = boxes[keep], logits[keep]
    ids = [ids[i] for i in keep]
    if args.nms is not None and ids:
        k = exports.class_nms(boxes, logits, ids, args.nms)
        boxes, logits, ids = boxes[k], logits[k], [ids[i] for i in k.tolist()]
    if len(boxes):
        masks = model.predict_sam(image, boxes).squeeze(1).cpu().numpy()
    else:
        masks = np.zeros((0, height, width), dtype=bool)
    boxes_np = boxes.cpu().numpy() if isinstance(boxes, torch.Tensor) else np.asarray(boxes)
    scores = logits.cpu().numpy() if isinstance(logits, torch.Tensor) else np.asarray(logits)
    names = [classmap.name(c) for c in ids]

    outputs: dict[str, list[str]] = {f: [] for f in formats}
    if "overlay" in formats:
        labels = [f"{n} {s:.2f}" for n, s in zip(names, scores.tolist())]
        p = exports.write_overlay(layout.overlay(item.key), np.asarray(image), masks, boxes_np, labels)
        outputs["overlay"].append(layout.rel(p))
    if "masks" in formats:
        folder = layout.masks(item.key)
        folder.mkdir(parents=True, exist_ok=True)
        paths = exports.write_instance_masks(folder, masks, names)
        outputs["masks"] = [layout.rel(p) for p in paths]
    if "labelme" in formats:
        path = layout.labelme(item.key)
        try:
            image_path = Path(os.path.relpath(item.path.resolve(), path.parent.resolve())).as_posix()
        except ValueError:  # another drive (Windows): no relative path exists
            image_path = item.path.resolve().as_posix()
        exports.write_json(path, exports.labelme_dict(masks, names, (height, width), image_path), indent=1)
        outputs["labelme"].append(layout.rel(path))
    if "yolo" in formats:
        rows = exports.yolo_lines(masks, ids, (height, width))
        path = exports.atomic_write_text(layout.yolo(item.key), "".join(r + "\n" for r in rows))
        outputs["yolo"].append(layout.rel(path))
    record = exports.coco_image_record(item.rel.as_posix(), width, height, masks, boxes_np, scores, names)
    record.update(formats=list(formats), outputs=outputs, dropped=dropped)
    exports.write_json(layout.record(item.key), record)
    return record, dropped


def _finish(layout: Layout, items: Sequence[ImageItem], done: dict[str, dict], formats: Sequence[str],
            classmap) -> None:
    """Write the run-wide files (COCO, YOLO data.yaml) from the records of the images done."""
    from lang_sam import exports

    if "coco" in formats:
        builder = exports.CocoBuilder()
        for item in items:
            if item.key in done:
                builder.add(done[item.key])
        builder.write(layout.coco, classmap.names)
    if "yolo" in formats:
        exports.atomic_write_text(layout.yolo_yaml, exports.yolo_data_yaml(classmap.names))


def cmd_predict(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from lang_sam import exports
    from lang_sam.errors import InvalidPromptError, InvalidThresholdError, LangSAMError
    from lang_sam.exports import ClassMap
    from lang_sam.validation import check_prompt

    formats = _parse_formats(args.format)
    if args.classes and args.prompt:
        raise UsageError("give --prompt or --classes, not both (with --classes the prompt is built "
                         "from the classes' phrases)")
    if args.classes:
        classmap = ClassMap.parse(args.classes)  # InvalidClassMapError is a usage error
        prompt = classmap.prompt
    elif args.prompt:
        check_prompt(args.prompt)
        classmap, prompt = ClassMap(), args.prompt
    else:
        raise UsageError('name what to find: --prompt "car. wheel" or --classes "car=car. automobile"')
    out = Path(args.output).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output {str(out)!r} exists and is not a folder")
    items = collect_images(args.inputs, exclude=out)
    layout = Layout(out)
    out.mkdir(parents=True, exist_ok=True)
    swept = _sweep_temp_files(out)
    if swept:
        logger.info("removed %d temporary file(s) left by an interrupted run", swept)

    config = _run_config(args, prompt, classmap)
    state = _read_json(layout.run) if args.resume else None
    if isinstance(state, dict) and state.get("version") == RUN_VERSION:
        old = state.get("config", {})
        diff = [k for k in config if old.get(k) != config[k]]
        if diff:
            raise UsageError(
                f"--resume: {out} was labelled with other settings ("
                + "; ".join(f"{k}: was {old.get(k)!r}, now {config[k]!r}" for k in diff)
                + "). Use the same settings, another --output, or drop --resume to start over."
            )
        classmap = ClassMap.from_state(state["classes"])
    else:
        if args.resume:
            logger.info("--resume: no earlier run in %s; starting afresh", out)
        state = None
        # A fresh run numbers its classes anew: records of an earlier run must not be resumed from.
        shutil.rmtree(layout.records, ignore_errors=True)

    def save_state() -> None:
        exports.write_json(layout.run, {"version": RUN_VERSION, "config": config,
                                        "classes": classmap.state()}, indent=1)

    save_state()

    done: dict[str, dict] = {}
    skipped = 0
    if state is not None:
        for item in items:
            rec = _complete_record(layout, item, formats)
            if rec is not None:
                done[item.key] = rec
                skipped += 1
    todo = [item for item in items if item.key not in done]

    model = None
    if todo:  # nothing left to do (a finished --resume) needs no model
        from lang_sam import LangSAM

        print(f"lang-sam: {len(items)} image(s), {skipped} already done; loading models ...",
              file=sys.stderr)
        model = LangSAM(args.sam_type, args.sam_ckpt, gdino_type=args.gdino_type,
                        gdino_ckpt_path=args.gdino_ckpt, device=args.device)
        model.detector.split_prompt(prompt)  # a phrase over 256 tokens: say so before the first image

    failed: list[tuple[ImageItem, str]] = []
    dropped_total = 0
    processed = 0
    interrupted = False
    usage_error: Exception | None = None
    bar = tqdm(todo, desc="labelling", unit="img", file=sys.stderr, disable=args.quiet, dynamic_ncols=True)
    try:
        for item in bar:
            bar.set_postfix_str(item.rel.as_posix(), refresh=False)
            try:
                record, dropped = _label_one(model, item, layout, formats, prompt, classmap, args, save_state)
            except (InvalidPromptError, InvalidThresholdError) as exc:
                usage_error = exc  # the same for every image: stop now
                break
            except (LangSAMError, OSError, ValueError, RuntimeError) as exc:
                failed.append((item, f"{type(exc).__name__}: {exc}"))
                layout.record(item.key).unlink(missing_ok=True)  # an older record is stale now
                tqdm.write(f"lang-sam: skipped {item.path}: {exc}", file=sys.stderr)
                logger.debug("failure on %s", item.path, exc_info=True)
                continue
            done[item.key] = record
            dropped_total += dropped
            processed += 1
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        try:
            _finish(layout, items, done, formats, classmap)
        except KeyboardInterrupt:
            interrupted = True

    if usage_error is not None:
        print(f"lang-sam predict: error: {usage_error}", file=sys.stderr)
        return EXIT_USAGE
    written = ", ".join(
        {"overlay": "overlays/", "masks": "masks/", "labelme": "labelme/",
         "yolo": "yolo/labels/ + yolo/data.yaml", "coco": "coco/annotations.json"}[f] for f in formats
    )
    print(f"lang-sam predict: {len(items)} image(s): {processed} labelled, {skipped} skipped "
          f"(already complete), {len(failed)} failed" + (", interrupted" if interrupted else ""))
    print(f"outputs in {out}: {written}; classes: {', '.join(classmap.names) or '(none)'}")
    if dropped_total:
        print(f"{dropped_total} detection(s) matched no class and were dropped")
    if failed:
        print("failed images:")
        for item, why in failed:
            print(f"  {item.path}: {why}")
    if interrupted:
        print(f"interrupted: re-run the same command with --resume to finish "
              f"({len(items) - len(done) - len(failed)} image(s) left)")
        return EXIT_INTERRUPTED
    return EXIT_FAILED if failed else EXIT_OK


# --------------------------------------------------------------------------------------------
# info, download
# --------------------------------------------------------------------------------------------

def cmd_info(args: argparse.Namespace) -> int:
    import torch

    from lang_sam import __version__
    from lang_sam.lang_sam import default_device
    from lang_sam.weights import (
        DEFAULT_GDINO, DEFAULT_SAM, ENV_WEIGHTS_DIR, GDINO_MODELS, SAM_MODELS,
        candidate_paths, download_dir, get_spec, is_offline,
    )

    offline = is_offline()
    print(f"lang-sam {__version__}, torch {torch.__version__}")
    print(f"device: {default_device()}")
    print(f"offline mode: {'on' if offline else 'off'} (LANG_SAM_OFFLINE / HF_HUB_OFFLINE)")
    print(f"{ENV_WEIGHTS_DIR}: {os.environ.get(ENV_WEIGHTS_DIR) or '(not set)'}")
    print(f"downloads go to: {download_dir()}")
    for family, names, default in (("sam", SAM_MODELS, DEFAULT_SAM), ("gdino", GDINO_MODELS, DEFAULT_GDINO)):
        print(f"{'SAM' if family == 'sam' else 'GroundingDINO'} checkpoints:")
        for name in sorted(names):
            spec = get_spec(family, name)
            looked = candidate_paths(spec)
            found = next((p for p in looked if p.is_file()), None)
            mark = " (default)" if name == default else ""
            if found is not None:
                where = f"found: {found}"
            elif offline:
                where = "missing; offline mode is on, so it cannot be downloaded"
            elif spec.sources():
                where = f"missing; would be downloaded to {download_dir() / spec.filename}"
            else:
                where = "missing; no download source"
            print(f"  {name}{mark}: {spec.filename}: {where}")
            if found is None:
                print(f"      looked in: {', '.join(str(p.parent) for p in looked)}")
    return EXIT_OK


def _copy_atomic(src: Path, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def cmd_download(args: argparse.Namespace) -> int:
    from lang_sam.errors import LangSAMError
    from lang_sam.weights import (
        DEFAULT_GDINO, DEFAULT_SAM, ENV_WEIGHTS_DIR, get_spec, load_checkpoint,
        resolve_checkpoint, sha256sum,
    )

    wanted = [("sam", n) for n in (args.sam_type or [])] + [("gdino", n) for n in (args.gdino_type or [])]
    if not wanted:
        wanted = [("sam", DEFAULT_SAM), ("gdino", DEFAULT_GDINO)]
    to = Path(args.to).expanduser().resolve() if args.to else None
    saved = os.environ.get(ENV_WEIGHTS_DIR)
    if to is not None:
        to.mkdir(parents=True, exist_ok=True)
        os.environ[ENV_WEIGHTS_DIR] = str(to)  # resolution looks there first and downloads into it
    failures = 0
    try:
        for family, name in dict.fromkeys(wanted):
            spec = get_spec(family, name)
            label = f"{family} {name} ({spec.filename})"
            try:
                path = resolve_checkpoint(spec)
                note = ""
                if to is not None and path.resolve().parent != to:
                    dest = to / spec.filename
                    _copy_atomic(path, dest)
                    note, path = f" (copied from {path})", dest
                if spec.sha256:
                    actual = sha256sum(path)
                    if actual != spec.sha256:
                        raise LangSAMError(
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
    finally:
        if to is not None:
            if saved is None:
                os.environ.pop(ENV_WEIGHTS_DIR, None)
            else:
                os.environ[ENV_WEIGHTS_DIR] = saved
    if to is not None and not failures:
        print(f"use them with: {ENV_WEIGHTS_DIR}={to} LANG_SAM_OFFLINE=1 lang-sam predict ...")
    return EXIT_FAILED if failures else EXIT_OK


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lang-sam`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("serve", "app"):  # they own their flags (lang_sam.server / lang_sam.app)
        if argv[0] == "serve":
            from lang_sam.server import main as run
        else:
            from lang_sam.app import main as run
        return run(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    from lang_sam.errors import InvalidClassMapError, InvalidPromptError, LangSAMError

    pkg_logger = logging.getLogger("lang_sam")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("lang-sam: %(message)s"))
    old_level = pkg_logger.level
    pkg_logger.addHandler(handler)
    pkg_logger.setLevel(logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING)
    command = {"predict": cmd_predict, "info": cmd_info, "download": cmd_download}[args.command]
    try:
        with warnings.catch_warnings():
            for text in _NOISE:
                warnings.filterwarnings("ignore", message=re.escape(text))
            return command(args)
    except (UsageError, InvalidClassMapError, InvalidPromptError) as exc:
        print(f"lang-sam {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (LangSAMError, OSError) as exc:
        print(f"lang-sam {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("lang-sam: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        pkg_logger.removeHandler(handler)
        pkg_logger.setLevel(old_level)
