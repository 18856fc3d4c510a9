"""The labelling pipeline: images in, dataset files out. ``lang-sam predict``, examples/label_folder.py,
the Ray path and tiling all run through it.

Three steps, split so that the model work can run anywhere (another process, a Ray actor) and the
files are written in one place:

1. :func:`collect_images`: the images named by files, folders and ``.txt`` lists, each with the
   path relative to its input (``rel``) that names its outputs;
2. :func:`label_image`: one image through the models (GroundingDINO boxes, classes, optional
   per-class NMS, SAM masks of the kept boxes) -> :class:`ImageLabels`. Writes nothing, holds no
   class id (ids are given in step 3, so that they do not depend on which worker finished first),
   and is picklable;
3. :class:`LabelRun`: an output folder being filled: its settings (``.lang-sam/run.json``), the
   per-image files and records (``.lang-sam/records/<rel>.json``, written last, so an image counts
   as done only when all its files are there), resume, and the run-wide COCO and YOLO files
   rebuilt from the records by :meth:`LabelRun.finish`.

:func:`label_folder` runs the three in one process. Output layout (``<rel>`` is an image's path
relative to the folder it was found in, without its extension):

- ``overlays/<rel>.png``: boxes, labels and masks drawn on the image;
- ``masks/<rel>/<index>_<class>.png``: one 0/255 PNG per instance;
- ``labelme/<rel>.json``;
- ``yolo/labels/<rel>.txt`` and ``yolo/data.yaml``;
- ``coco/annotations.json`` (``file_name`` = the image's path relative to its input folder).

Nothing here prints; progress goes through the ``progress`` callable given to :func:`label_folder`.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence, cast

import numpy as np

from lang_sam.errors import (
    ImageNotFoundError,
    InvalidArgumentError,
    InvalidImageError,
    InvalidPromptError,
    InvalidRunError,
    InvalidThresholdError,
    OutputCollisionError,
    RunStoppedError,
    name_params,
)
from lang_sam.labeling import formats as fmt
from lang_sam.labeling.atomic import (
    atomic_write_bytes, atomic_write_text, sweep_temp_files, temp_file_of, write_json,
)
from lang_sam.labeling.classes import ClassMap, class_nms
from lang_sam.labeling.lock import OutputLock
from lang_sam.masks import CropMask
from lang_sam.results import Detections
from lang_sam.tiling import TileSpec
from lang_sam.validation import check_prompt, check_threshold

if TYPE_CHECKING:
    from lang_sam.lang_sam import LangSAM

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGE_EXTENSIONS",
    "FORMATS",
    "DEFAULT_FORMATS",
    "ImageItem",
    "collect_images",
    "local_path",
    "parse_formats",
    "Layout",
    "LabelSettings",
    "ImageLabels",
    "label_image",
    "LabelRun",
    "RunSummary",
    "label_folder",
    "IMAGE_ERRORS",
    "OUTPUT_DIRS",
    "TILED_OVERLAY_MAX_PIXELS",
    "MANY_BOXES",
    "EVERYTHING_CLASS",
    "RUN_ERRORS",
    "failure_reason",
    "failure_kind",
    "ImageFailure",
]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
FORMATS = ("overlay", "masks", "coco", "labelme", "yolo")
DEFAULT_FORMATS = ("overlay", "coco")
STATE_DIR = ".lang-sam"
RUN_VERSION = 1
#: The folders a run writes in its output folder (``overwrite`` deletes only the files the
#: earlier run recorded there).
OUTPUT_DIRS = ("overlays", "masks", "labelme", "yolo", "coco", STATE_DIR)

#: An image with more boxes to segment than this gets a warning from :func:`label_image` (SAM's
#: time grows with the boxes: 531 boxes from random weights made one image take minutes).
MANY_BOXES = 300

#: The class name of every mask a run with ``everything`` (SAM's automatic mask generator) writes.
EVERYTHING_CLASS = "object"

#: With tiling, overlays of larger images are drawn on a copy downscaled to this many pixels.
TILED_OVERLAY_MAX_PIXELS = 16_000_000

#: What one image may raise that fails that image only (the run goes on and lists it): the image
#: is missing, undecodable, empty or over the pixel limit. Anything else (out of memory, a full
#: disk, a bug) would fail image after image: the run stops (:class:`RunStoppedError`).
IMAGE_ERRORS = (InvalidImageError, ImageNotFoundError)
#: What :func:`label_image` may raise that would be the same for every image: the run stops.
#: Checked before :data:`IMAGE_ERRORS` (they are ``ValueError`` s too).
RUN_ERRORS = (InvalidPromptError, InvalidThresholdError)


def failure_reason(exc: BaseException) -> str:
    """How a failed image's reason is listed: ``"<exception type>: <message>"``."""
    return f"{type(exc).__name__}: {exc}"


def failure_kind(exc: BaseException) -> str:
    """What an error raised while labelling or writing one image means for the run:
    ``"run"`` (:data:`RUN_ERRORS`: it would be the same for every image; the run raises it),
    ``"image"`` (:data:`IMAGE_ERRORS`: the image's own fault; it fails, the run goes on) or
    ``"stop"`` (anything else: out of memory, a full disk, a bug; the run stops). Applied by
    :meth:`LabelRun.settle`, and on Ray workers before an error is sent to the driver."""
    if isinstance(exc, RUN_ERRORS):  # first: they are ValueErrors, as InvalidImageError is
        return "run"
    return "image" if isinstance(exc, IMAGE_ERRORS) else "stop"


@dataclass(frozen=True)
class ImageFailure:
    """One image's error met in another process (a Ray worker), as :meth:`LabelRun.settle` takes
    it: ``kind`` its :func:`failure_kind` there (``"image"`` or ``"stop"``; a ``"run"`` error is
    the run's, raised as itself); ``error`` the exception, or its text where it is not sent
    (it does not survive pickling, or the run stops on it); ``trace`` the traceback text, logged
    by the process that writes when the run stops."""

    kind: str
    error: BaseException | str
    trace: str | None = None

    def __post_init__(self):
        if self.kind not in ("image", "stop"):
            raise InvalidArgumentError(f"ImageFailure.kind must be 'image' or 'stop', got {self.kind!r}")


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


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def local_path(value: str | os.PathLike, what: str) -> Path:
    """``value`` as a local :class:`~pathlib.Path` (``~`` expanded). Object storage (``s3://``,
    ``gs://``) and other URLs raise :class:`InvalidRunError` saying so, instead of being taken for
    a local folder named ``s3:``."""
    if _URL.match(os.fspath(value)):
        raise InvalidRunError(
            f"{what} {os.fspath(value)!r} is a URL; object storage (s3://, gs://) is not supported "
            "yet: mount the bucket as a filesystem (s3fs, gcsfuse) or copy the files to a local or "
            "shared folder, and give that path"
        )
    return Path(value).expanduser()


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


def _is_run_folder(folder: Path) -> bool:
    """True if ``folder`` holds a lang-sam run's outputs (its run record)."""
    return (folder / STATE_DIR / "run.json").is_file()


def _images_in(root: Path) -> tuple[list[Path], list[Path]]:
    """The image files under ``root`` (sorted by relative path), and the folders below ``root``
    that were not searched because they hold a lang-sam run's outputs."""
    found: list[Path] = []
    runs: list[Path] = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        keep = []
        for d in sorted(dirs):
            if d == STATE_DIR:
                continue
            if _is_run_folder(here / d):
                runs.append(here / d)
            else:
                keep.append(d)
        dirs[:] = keep
        found.extend(here / f for f in files if _is_image(here / f) and (here / f).is_file())
    found.sort(key=lambda f: f.relative_to(root).as_posix())
    return found, runs


def _read_list(list_file: Path) -> list[Path]:
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRunError(f"cannot read image list {str(list_file)!r}: {exc}") from exc
    out = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = local_path(line, f"image listed in {str(list_file)!r}:")
        out.append(p if p.is_absolute() else list_file.parent / p)
    return out


def collect_images(
    inputs: Sequence[str | os.PathLike], exclude: str | os.PathLike | None = None
) -> list[ImageItem]:
    """The images named by ``inputs``: image files, folders (searched recursively for
    :data:`IMAGE_EXTENSIONS`, any case) and ``.txt`` files listing paths (one per line, relative
    to the list's folder; ``#`` starts a comment).

    Each image's ``rel`` is its path relative to the folder given (a file given alone: its name;
    a list: the listed files' common folder). Files under ``exclude`` (the output folder) are
    skipped, and so are the folders met while searching a folder that hold a lang-sam run's
    outputs (a ``.lang-sam/run.json``: an earlier run's overlays and masks are not photos; a
    warning names them). A file met twice is kept once. Raises :class:`InvalidRunError` for a missing
    input, for no image at all, and for two images whose outputs would collide (same ``rel``
    without extension).
    """
    excl = Path(exclude).resolve() if exclude is not None else None
    items: list[ImageItem] = []
    skipped_runs: list[Path] = []
    seen: set[Path] = set()

    def add(path: Path, rel: PurePosixPath) -> None:
        real = path.resolve()
        if real in seen or _inside(real, excl):
            return
        seen.add(real)
        items.append(ImageItem(path, rel))

    for raw in inputs:
        p = local_path(raw, "input")
        if p.is_dir():
            found, runs = _images_in(p)
            skipped_runs.extend(runs)
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
            raise InvalidRunError(
                f"input not found: {str(raw)!r} (expected an image file, a folder or a .txt list)"
            )
    if skipped_runs:
        shown = ", ".join(str(r) for r in skipped_runs[:5])
        more = f" (+{len(skipped_runs) - 5} more)" if len(skipped_runs) > 5 else ""
        logger.warning(
            "skipped %d folder(s) holding a lang-sam run's outputs (overlays and masks are not "
            "photos): %s%s. Give such a folder as an input of its own to label its files.",
            len(skipped_runs), shown, more)
    if not items:
        raise InvalidRunError(
            f"no images found in {', '.join(map(str, inputs))} "
            f"(looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, any case)"
        )
    by_key: dict[str, ImageItem] = {}
    for item in items:
        other = by_key.setdefault(item.key.casefold(), item)
        if other is not item:
            raise InvalidRunError(
                f"{str(other.path)!r} and {str(item.path)!r} would write the same outputs "
                f"({item.key!r}); give their common parent folder instead, or rename one"
            )
    return items


def parse_formats(values: Sequence[str] | str | None) -> list[str]:
    """Output formats from names, comma-separated or not (``None``: :data:`DEFAULT_FORMATS`)."""
    if not values:
        return list(DEFAULT_FORMATS)
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for v in values:
        for f in v.split(","):
            f = f.strip().lower()
            if not f:
                continue
            if f not in FORMATS:
                raise InvalidRunError(f"unknown format {f!r}: expected some of {', '.join(FORMATS)}")
            if f not in out:
                out.append(f)
    if not out:
        raise InvalidRunError(f"no format named: expected some of {', '.join(FORMATS)}")
    return out


# --------------------------------------------------------------------------------------------
# Output layout
# --------------------------------------------------------------------------------------------

class Layout:
    """Where each output of a run goes (see the module doc)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

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

    @property
    def written(self) -> Path:
        """Every file the run writes, listed before it is written (one relative path a line)."""
        return self.root / STATE_DIR / "written"

    def rel(self, p: Path) -> str:
        return p.relative_to(self.root).as_posix()


def _read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# Settings and one image
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LabelSettings:
    """What every image of a run is labelled with.

    Give ``prompt`` (each distinct phrase GroundingDINO returns becomes a class) or ``classes``
    (``"name=phrase. phrase"`` specs, see :meth:`ClassMap.parse`; the prompt is built from them).
    ``nms`` is the per-class NMS IoU (None: off). ``tile`` turns on sliced inference for large
    images (:class:`~lang_sam.tiling.TileSpec`; None: off). ``sam_type`` / ``gdino_type`` name the
    models in the run's record, so that resuming with other models is refused.

    ``everything`` (a dict of :meth:`LangSAM.generate` settings, ``{}`` for the SAM family's
    defaults) labels every mask SAM's
    automatic mask generator finds instead (:meth:`LangSAM.generate`; no prompt, no
    GroundingDINO): each is of the class :data:`EVERYTHING_CLASS` (``"object"``) and scored by
    SAM's predicted IoU; ``prompt`` is then ``""`` and ``classes``, ``nms`` and ``tile`` unset.
    """

    prompt: str
    classes: tuple[str, ...] | None = None
    box_threshold: float = 0.3
    text_threshold: float = 0.25
    nms: float | None = None
    sam_type: str | None = None
    gdino_type: str | None = None
    tile: TileSpec | None = None
    everything: Any = None

    @classmethod
    def create(
        cls,
        prompt: str | None = None,
        classes: Sequence[str] | str | None = None,
        *,
        box_threshold: float = 0.3,
        text_threshold: float = 0.25,
        nms: float | None = None,
        sam_type: str | None = None,
        gdino_type: str | None = None,
        tile: TileSpec | None = None,
        everything: Any = None,
    ) -> "LabelSettings":
        """Checked settings; raises :class:`InvalidRunError`, :class:`InvalidPromptError`,
        :class:`InvalidClassMapError` or :class:`InvalidThresholdError` naming what is wrong.
        ``everything``: a dict of :meth:`LangSAM.generate` settings (``{}``: the SAM family's
        defaults), checked now."""
        if everything is not None:
            return cls._everything(everything, prompt, classes, nms, tile, sam_type, gdino_type)
        if tile is not None and not isinstance(tile, TileSpec):
            raise InvalidRunError(f"tile must be a TileSpec or None, got {type(tile).__name__}")
        if classes is not None and prompt is not None:
            raise InvalidRunError(
                "give a prompt or classes, not both (with classes the prompt is built from the "
                "classes' phrases)"
            )
        if isinstance(classes, str):
            classes = [classes]
        if classes:
            classes = tuple(classes)
            prompt = ClassMap.parse(classes).prompt
        elif prompt is not None:
            check_prompt(prompt)
            classes = None
        else:
            raise InvalidRunError('name what to find: a prompt ("car. wheel") or classes ("car=car. automobile")')
        return cls(
            prompt=prompt,
            classes=classes,
            box_threshold=check_threshold("box_threshold", box_threshold),
            text_threshold=check_threshold("text_threshold", text_threshold),
            nms=None if nms is None else check_threshold("nms", nms),
            sam_type=sam_type,
            gdino_type=gdino_type,
            tile=tile,
        )

    @classmethod
    def _everything(cls, everything, prompt, classes, nms, tile, sam_type, gdino_type) -> "LabelSettings":
        from lang_sam.generate import GenerateSettings

        given = [name for name, v in (("prompt", prompt), ("classes", classes), ("nms", nms), ("tile", tile))
                 if v is not None]
        if given:
            raise InvalidRunError.naming(
                "everything labels every mask SAM's generator finds, with no prompt: give it without "
                + ", ".join(f"{{{g}}}" for g in given), **{g: g for g in given})
        if not isinstance(everything, dict):
            raise InvalidRunError(
                f"everything must be a dict of LangSAM.generate settings ({{}}: the SAM family's "
                f"defaults), got {type(everything).__name__}")
        try:  # names and values checked now, not per image
            GenerateSettings.for_engine(None, **everything)
        except InvalidArgumentError as exc:
            raise InvalidRunError(f"everything: {exc}") from None
        everything = {k: (_grids_json(v) if k == "point_grids" else v) for k, v in sorted(everything.items())}
        return cls(prompt="", sam_type=sam_type, gdino_type=gdino_type, everything=everything)

    def check(self, model: Any) -> None:
        """Check the settings against a loaded model before any image (a bad prompt fails once,
        not once per image): the detector's ``prepare``; nothing for ``everything``."""
        if self.everything is None:
            model.detector.prepare(self.prompt, self.box_threshold, self.text_threshold)

    def classmap(self) -> ClassMap:
        """A new :class:`ClassMap`: the fixed classes, or an empty open map."""
        return ClassMap.parse(self.classes) if self.classes else ClassMap()

    def config(self) -> dict:
        """The JSON-able settings stored in ``run.json`` and compared on resume."""
        return {
            "prompt": self.prompt,
            "classes": self.classmap().state() if self.classes else None,
            "box_threshold": self.box_threshold,
            "text_threshold": self.text_threshold,
            "nms": self.nms,
            "sam_type": self.sam_type,
            "gdino_type": self.gdino_type,
            "tile": self.tile.to_dict() if self.tile is not None else None,
            **({"everything": self.everything} if self.everything is not None else {}),
        }


@dataclass
class ImageLabels:
    """One image's labels from :func:`label_image`: computed, not yet written, picklable.

    ``boxes`` ``(N, 4)`` float32 xyxy in image pixels; ``masks`` ``N``
    :class:`~lang_sam.masks.CropMask` (each mask's crop and offset, tiled or not: the one form
    the writers read); ``scores`` ``(N,)`` float32 (the detector's), ``names`` the ``N`` class names,
    ``dropped`` how many detections matched no class, ``overlay_png`` the overlay's PNG bytes when
    it was asked for.
    """

    item: ImageItem
    width: int
    height: int
    boxes: np.ndarray
    scores: np.ndarray
    names: list[str]
    masks: list[CropMask]
    dropped: int = 0
    overlay_png: bytes | None = None

    def __len__(self) -> int:
        return len(self.names)


def label_image(
    model, item: ImageItem, settings: LabelSettings, formats: Sequence[str] = DEFAULT_FORMATS,
    classmap: ClassMap | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> ImageLabels:
    """Label one image: :func:`lang_sam.pipeline.run` with labelling's select steps: map phrases
    to classes (dropping those of no class), with ``settings.tile`` merge what two tiles found
    twice (:func:`lang_sam.pipeline.merge_tiles`, by class), per-class NMS if asked; then masks
    for the kept boxes, always as crops (:class:`~lang_sam.masks.CropMask`, the one form every
    writer reads). With tiling the overlay of an image over :data:`TILED_OVERLAY_MAX_PIXELS` is
    drawn on a downscaled copy.

    ``model`` is a :class:`~lang_sam.LangSAM`. ``classmap`` (default: ``settings.classmap()``)
    only names classes here; ids are given by :meth:`LabelRun.write`. Writes nothing.
    ``on_progress(stage, done, total)`` hears of the image's progress: ``"detect"`` in tiles (1
    without tiling), then ``"segment"`` in boxes. Over :data:`MANY_BOXES` boxes to segment, a
    warning is logged saying why the image is slow and what to change.
    """
    from lang_sam import pipeline
    from lang_sam.utils import load_image

    classmap = classmap if classmap is not None else settings.classmap()
    image = load_image(item.path)
    if settings.everything is not None:
        return _label_everything(model, item, image, settings, formats, on_progress)
    dropped = [0]  # detections that matched no class

    def to_classes(det: Detections) -> Detections:
        names = [classmap.match(p) for p in det.phrases]
        keep = [i for i, n in enumerate(names) if n is not None]
        dropped[0] = len(det) - len(keep)
        return det.take(keep).replace(phrases=[names[i] for i in keep])

    def nms(iou: float) -> pipeline.Select:
        def step(det: Detections) -> Detections:
            if not len(det):
                return det
            local = {n: i for i, n in enumerate(dict.fromkeys(det.phrases))}
            return det.take(class_nms(det.boxes, det.scores, [local[n] for n in det.phrases], iou))

        return step

    def warn_many(det: Detections) -> Detections:
        if len(det) > MANY_BOXES:
            _warn_many_boxes(item, len(det), settings)
        return det

    tile = settings.tile
    steps = [to_classes, pipeline.merge_tiles(tile) if tile is not None else None,
             nms(settings.nms) if settings.nms is not None else None, warn_many]
    out = pipeline.run(
        model.engines, image, settings.prompt, settings.box_threshold, settings.text_threshold,
        select=[s for s in steps if s is not None], tile=tile, collect=pipeline.CropMasks,
        progress=on_progress,
    )
    det = out.detections
    labels = ImageLabels(
        item=item, width=image.width, height=image.height,
        boxes=det.boxes.numpy().astype(np.float32).reshape(-1, 4),
        scores=det.scores.numpy().astype(np.float32).reshape(-1),
        names=det.phrases, masks=out.masks, dropped=dropped[0],
    )
    if "overlay" in formats:
        overlay = fmt.render_overlay(
            out.encoded.pixels if out.encoded is not None else image, out.masks, labels.boxes,
            fmt.detection_labels(det.phrases, labels.scores),
            max_pixels=None if tile is None else TILED_OVERLAY_MAX_PIXELS,
        )
        labels.overlay_png = _png_bytes(overlay)
    return labels


def _grids_json(grids: Any) -> Any:
    """``point_grids`` as JSON-able nested lists (the run's record holds the settings)."""
    return None if grids is None else [np.asarray(g, dtype=np.float64).tolist() for g in grids]


def _label_everything(model, item: ImageItem, image, settings: LabelSettings, formats: Sequence[str],
                      on_progress: Callable[[str, int, int], None] | None) -> ImageLabels:
    """:func:`label_image` for ``settings.everything``: every mask of :meth:`LangSAM.generate`,
    class :data:`EVERYTHING_CLASS`, scored by SAM's predicted IoU; boxes in the writers' convention
    (:meth:`GeneratedMasks.edge_boxes`: ``x1``/``y1`` exclusive)."""
    out = model.generate(image, progress=on_progress, **settings.everything)
    names = [EVERYTHING_CLASS] * len(out)
    labels = ImageLabels(
        item=item, width=image.width, height=image.height,
        boxes=out.edge_boxes().numpy().astype(np.float32).reshape(-1, 4),
        scores=out.iou_scores.numpy().astype(np.float32).reshape(-1),
        names=names, masks=out.crops(),
    )
    if "overlay" in formats:
        overlay = fmt.render_overlay(image, labels.masks, labels.boxes, fmt.detection_labels(names, labels.scores))
        labels.overlay_png = _png_bytes(overlay)
    return labels


def _warn_many_boxes(item: ImageItem, n: int, settings: LabelSettings) -> None:
    """The warning of :func:`label_image` for an image with over :data:`MANY_BOXES` boxes. Its
    parameters are named as in Python (``box_threshold``) and carried in the record's ``named``
    attribute (template, names), so that the CLI can word them as its flags."""
    template = (
        f"{item.rel}: {n} boxes to segment (over {MANY_BOXES}): SAM decodes a mask for each, so "
        "this image is slow. So many boxes mean thresholds too low for these weights, or random "
        f"(test) weights. Raise {{box_threshold}} (now {settings.box_threshold:g}) or "
        f"{{text_threshold}} (now {settings.text_threshold:g}), or drop overlapping boxes with "
        "{nms_on}."
    )
    params = {"box_threshold": "box_threshold", "text_threshold": "text_threshold", "nms_on": "nms=0.5"}
    logger.warning("%s", name_params(template, params), extra={"named": (template, params)})


def _png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# The output folder
# --------------------------------------------------------------------------------------------

@dataclass
class RunSummary:
    """What a run did. ``failed`` pairs each failed image with the reason.

    ``labelled``, ``detections`` and ``dropped`` (detections of no class) count this call's work;
    ``run_images`` and ``run_detections`` the whole run's, earlier (resumed) calls included: what
    the output files hold. ``export_dropped`` is, for the whole run and each format that writes
    instances, how many detections that format left out, by reason
    (:func:`lang_sam.labeling.formats.export_losses`): ``{"yolo": {"empty mask": 2}, "coco": {}}``;
    ``written(fmt)`` + its drops = ``run_detections``. ``uncounted`` is the number of images whose
    records (from an older lang-sam) hold no such counts.
    """

    output: Path
    formats: list[str]
    images: int = 0
    labelled: int = 0
    skipped: int = 0
    detections: int = 0
    dropped: int = 0
    failed: list[tuple[ImageItem, str]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    run_images: int = 0
    run_detections: int = 0
    export_dropped: dict[str, dict[str, int]] = field(default_factory=dict)
    uncounted: int = 0

    def written(self, fmt_name: str) -> int:
        """Instances of the whole run that format ``fmt_name`` holds."""
        return self.run_detections - sum(self.export_dropped.get(fmt_name, {}).values())

    @property
    def left(self) -> int:
        """Images neither done nor failed (after an interruption)."""
        return self.images - self.labelled - self.skipped - len(self.failed)

    @property
    def images_per_second(self) -> float:
        return self.labelled / self.seconds if self.seconds > 0 else 0.0


#: How the errors of :class:`LabelRun` name its arguments in Python (the CLI words them as flags:
#: :meth:`lang_sam.errors.LangSAMError.worded`).
_RUN_FLAGS = {"resume": "resume=True", "overwrite": "overwrite=True"}


class FolderRun:
    """What every run into an output folder shares (:class:`LabelRun`, and
    :class:`lang_sam.labeling.video_run.TrackRun`): the folder's lock (``self.lock``, an
    :class:`~lang_sam.labeling.lock.OutputLock`), given back by :meth:`close`, which ends the run
    with the subclass's ``finish()`` and times it into ``self.summary``."""

    lock: OutputLock
    summary: Any

    def finish(self) -> Any:
        raise NotImplementedError

    def release(self) -> None:
        """Give the output folder's lock back (done by :meth:`close`; a no-op when not held)."""
        self.lock.release()

    def close(self, started: float) -> Any:
        """End a run begun at ``started`` (``time.perf_counter()``): ``finish()``, where a Ctrl-C
        while the run-wide files are written marks the summary ``interrupted`` (the files are
        written atomically: old or new, never half), then the wall time into ``summary.seconds``;
        the output folder's lock is given back."""
        try:
            self.finish()
        except KeyboardInterrupt:
            self.summary.interrupted = True
        finally:
            self.release()
        self.summary.seconds = time.perf_counter() - started
        return self.summary


class LabelRun(FolderRun):
    """An output folder being filled by one run (see the module doc).

    Opening it takes the folder's lock (:class:`~lang_sam.labeling.lock.OutputLock`: a second run
    into the same folder raises :class:`~lang_sam.errors.OutputLockedError` at once, naming the
    first; :meth:`close` or :meth:`release` gives it back) and checks the folder and the settings.

    A folder is an earlier lang-sam run's only if it holds that run's record
    (``.lang-sam/run.json``). The files lang-sam wrote there are known from the run's own records:
    each image's record lists its outputs, and ``.lang-sam/written`` lists every file before it is
    written (so a run killed mid-image still knows its files). An earlier run's outputs are never
    mixed with a new run's:

    - ``resume=True`` continues the earlier run: the settings must equal those in
      ``.lang-sam/run.json`` (else :class:`InvalidRunError` says which differ) and the classes'
      ids are kept;
    - ``overwrite=True`` deletes the files the earlier run wrote (and its records), nothing else,
      and starts a new run;
    - neither: :class:`InvalidRunError`, naming both (``resume=True`` / ``overwrite=True``; the
      CLI words them ``--resume`` / ``--overwrite``).

    A folder without a run record, or whose run wrote no output yet (it stopped before its first
    image), needs neither. Files that lang-sam did not write are never deleted or written over:
    :meth:`start` raises :class:`~lang_sam.errors.OutputCollisionError` naming those that an
    output of this run would replace. Then, for each image, :meth:`settle` (which calls
    :meth:`write` or :meth:`fail`, or stops the run), and :meth:`finish` (or :meth:`close`) at the end.
    """

    def __init__(
        self,
        output: str | os.PathLike,
        settings: LabelSettings,
        formats: Sequence[str] = DEFAULT_FORMATS,
        *,
        resume: bool = False,
        overwrite: bool = False,
    ):
        out = local_path(output, "output")
        if resume and overwrite:
            raise InvalidRunError.naming("give {resume} or {overwrite}, not both", **_RUN_FLAGS)
        if out.exists() and not out.is_dir():
            raise InvalidRunError(f"output {str(out)!r} exists and is not a folder")
        self.layout = Layout(out)
        self.settings = settings
        self.formats = parse_formats(list(formats))
        self.config = settings.config()
        self.classmap = settings.classmap()
        self.done: dict[str, dict] = {}
        self.items: list[ImageItem] | None = None
        self.summary = RunSummary(output=out, formats=list(self.formats))
        self.lock = OutputLock(self.layout.root / STATE_DIR, out).acquire()
        try:
            self._open(out, resume, overwrite)
        except BaseException:
            self.release()
            raise

    def _open(self, out: Path, resume: bool, overwrite: bool) -> None:
        self.ours = self._written_before()
        earlier = self._earlier_outputs()
        state = _read_json(self.layout.run) if resume else None
        self.resumed = isinstance(state, dict) and state.get("version") == RUN_VERSION
        if self.resumed:
            assert isinstance(state, dict)  # resumed says so
            old = state.get("config", {})
            diff = [k for k in self.config if old.get(k) != self.config[k]]
            if diff:
                raise InvalidRunError.naming(
                    f"resume: {out} was labelled with other settings ("
                    + "; ".join(f"{{{k}}}: was {old.get(k)!r}, now {self.config[k]!r}" for k in diff)
                    + "). Use the same settings, another output folder, or {overwrite} "
                    "to delete that run's outputs and start again.",
                    **_RUN_FLAGS, **{k: k for k in diff},
                )
            self.classmap = ClassMap.from_state(state["classes"])
        elif earlier and not overwrite:
            listed = ", ".join(f"{name}/" for name in earlier)
            if resume:
                raise InvalidRunError.naming(
                    f"resume: {out} holds lang-sam outputs ({listed}) but no readable record of the "
                    f"run that made them ({self.layout.rel(self.layout.run)}), so they cannot be "
                    "resumed. Use {overwrite} to delete them and start again, or another output "
                    "folder.", **_RUN_FLAGS,
                )
            raise InvalidRunError.naming(
                f"{out} already holds the outputs of an earlier lang-sam run ({listed}). Use {{resume}} "
                "to finish that run with the same settings, {overwrite} to delete the files it wrote "
                "and start again (other files there are kept), or another output folder.", **_RUN_FLAGS,
            )
        elif resume:
            logger.info("resume: no earlier run in %s; starting afresh", out)
        self.overwrite = overwrite and not self.resumed

    def __enter__(self) -> "LabelRun":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _sweep(self, paths: Iterable[Path]) -> None:
        swept = sweep_temp_files(paths)
        if swept:
            logger.info("removed %d temporary file(s) left by an interrupted run", swept)

    def _written_before(self) -> set[str]:
        """The files (relative paths) that earlier runs in this folder wrote: none unless the folder
        holds a run record; then the files ``.lang-sam/written`` lists, those the images' records
        list, and the records themselves."""
        layout = self.layout
        if not layout.run.is_file():
            return set()
        ours: set[str] = set()
        try:
            text = layout.written.read_text(encoding="utf-8")
        except OSError:
            text = ""
        ours.update(line for line in text.splitlines() if line and not line.startswith(".."))
        if layout.records.is_dir():
            for path in layout.records.rglob("*.json"):
                ours.add(layout.rel(path))
                rec = _read_json(path)
                outputs = rec.get("outputs") if isinstance(rec, dict) else None
                if isinstance(outputs, dict):
                    ours.update(r for files in outputs.values() if isinstance(files, list)
                                for r in files if isinstance(r, str) and not r.startswith(".."))
        return ours

    def _earlier_outputs(self) -> list[str]:
        """The top folders (of :data:`OUTPUT_DIRS`) holding a file an earlier run wrote. A run
        record alone (a run that stopped before its first image: missing weights, a bad prompt)
        does not count."""
        tops = {rel.split("/", 1)[0] for rel in self.ours if (self.layout.root / rel).is_file()}
        return [name for name in OUTPUT_DIRS if name in tops]

    def _remove_earlier(self) -> int:
        """Delete the files earlier runs wrote (:meth:`_written_before`), their records and the
        folders left empty; nothing else. Returns how many files went."""
        root, n = self.layout.root, 0
        folders: set[Path] = set()
        for rel in sorted(self.ours):
            path = root / rel
            if path.is_file() or path.is_symlink():
                path.unlink()
                n += 1
            folders.update(p for p in path.parents if p != root and root in p.parents)
        for path in (self.layout.written, self.layout.run):
            path.unlink(missing_ok=True)
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            try:
                folder.rmdir()  # only if empty: files lang-sam did not write stay, and their folders
            except OSError:
                pass
        self.ours = set()
        return n

    def _claim(self, paths: Iterable[Path]) -> None:
        """Write ``paths`` into ``.lang-sam/written`` before they are written themselves."""
        new = [self.layout.rel(p) for p in paths]
        new = [rel for rel in new if rel not in self.ours]
        if not new:
            return
        with open(self.layout.written, "a", encoding="utf-8") as f:
            f.write("".join(rel + "\n" for rel in new))
        self.ours.update(new)

    def _planned(self, item: ImageItem) -> list[Path]:
        """The files this run's formats write for ``item`` whose names are known before its labels."""
        layout, out = self.layout, []
        if "overlay" in self.formats:
            out.append(layout.overlay(item.key))
        if "labelme" in self.formats:
            out.append(layout.labelme(item.key))
        if "yolo" in self.formats:
            out.append(layout.yolo(item.key))
        return out

    def _run_wide(self) -> list[Path]:
        """The run-wide files of this run's formats (COCO's annotations, YOLO's ``data.yaml``)."""
        return ([self.layout.coco] if "coco" in self.formats else []) + \
            ([self.layout.yolo_yaml] if "yolo" in self.formats else [])

    def _check_collisions(self, items: Sequence[ImageItem]) -> None:
        """Refuse to write over files lang-sam did not write (see :class:`OutputCollisionError`)."""
        layout = self.layout
        foreign: list[str] = []
        for path in self._run_wide() + [p for item in items for p in self._planned(item)]:
            if (path.exists() or path.is_symlink()) and layout.rel(path) not in self.ours:
                foreign.append(layout.rel(path))
        if "masks" in self.formats:
            for item in items:
                folder = layout.masks(item.key)
                if folder.is_dir():
                    # A killed run's temporary file of one of its own masks is not in the way:
                    # start() sweeps it.
                    foreign.extend(r for r in (layout.rel(p) for p in sorted(folder.iterdir()))
                                   if r not in self.ours and temp_file_of(r) not in self.ours)
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" (+{len(foreign) - 5} more)" if len(foreign) > 5 else "")
            raise OutputCollisionError(
                f"{layout.root} holds {len(foreign)} file(s) that lang-sam did not write where this "
                f"run writes its outputs ({shown}); they are never deleted or written over. Move "
                "them away, or choose another output folder.",
                path=str(layout.root), files=foreign,
            )

    def _save_state(self) -> None:
        write_json(self.layout.run, {"version": RUN_VERSION, "config": self.config,
                                     "classes": self.classmap.state()}, indent=1)

    def complete_record(self, item: ImageItem) -> dict | None:
        """The image's saved record if every output of this run's formats is on disk, else None."""
        rec = _read_json(self.layout.record(item.key))
        if not isinstance(rec, dict) or rec.get("file_name") != item.rel.as_posix():
            return None
        if not set(self.formats) <= set(rec.get("formats", ())):
            return None
        outputs = rec.get("outputs", {})
        for f in self.formats:
            for rel in outputs.get(f, ()):
                if not (self.layout.root / rel).is_file():
                    return None
        return rec

    def start(self, items: Sequence[ImageItem]) -> list[ImageItem]:
        """Take the run's images; return those still to label (on resume, complete ones are skipped).

        Refuses (:class:`~lang_sam.errors.OutputCollisionError`) before touching anything when an
        output would replace a file lang-sam did not write; then, with ``overwrite``, deletes the
        earlier run's files, and records this run's settings (``.lang-sam/run.json``)."""
        items = list(items)
        self._check_collisions(items)  # before anything is deleted or written
        # Temporary files of the files earlier runs wrote or this one will (a killed run's): only those.
        self._sweep([self.layout.root / rel for rel in self.ours] + self._run_wide()
                    + [p for item in items for p in self._planned(item)])
        if self.overwrite and self.ours:
            removed = self._remove_earlier()
            logger.info("overwrite: removed %d file(s) of the earlier run from %s", removed, self.layout.root)
        self._save_state()
        self.items = items
        self.summary.images = len(self.items)
        if self.resumed:
            for item in self.items:
                rec = self.complete_record(item)
                if rec is not None:
                    self.done[item.key] = rec
                    self.summary.skipped += 1
        return [item for item in self.items if item.key not in self.done]

    def write(self, labels: ImageLabels) -> dict:
        """Give the detections class ids, write the image's files, then its record (last)."""
        n_classes = len(self.classmap)
        ids = [self.classmap.id_of(n) for n in labels.names]
        if len(self.classmap) != n_classes:
            self._save_state()  # new classes are on disk before any output uses their ids
        item, layout = labels.item, self.layout
        height, width = labels.height, labels.width
        outputs: dict[str, list[str]] = {f: [] for f in self.formats}
        planned = self._planned(item) + [layout.record(item.key)]
        if "masks" in self.formats:
            folder = layout.masks(item.key)
            mask_paths = [folder / name for name in fmt.instance_mask_names(labels.names)]
            planned += mask_paths
        self._claim(planned)
        if "overlay" in self.formats:
            if labels.overlay_png is None:
                raise InvalidArgumentError(f"{item.rel}: the overlay was not rendered (label_image without 'overlay')")
            outputs["overlay"].append(layout.rel(atomic_write_bytes(layout.overlay(item.key), labels.overlay_png)))
        if "masks" in self.formats:
            if folder.is_dir():  # an earlier run's masks of this image (maybe more of them): ours only
                keep = set(mask_paths)
                for old in folder.iterdir():
                    if old not in keep and layout.rel(old) in self.ours and old.is_file():
                        old.unlink()
            folder.mkdir(parents=True, exist_ok=True)
            outputs["masks"] = [layout.rel(p) for p in fmt.write_instance_masks(folder, labels.masks, labels.names)]
        if "labelme" in self.formats:
            path = layout.labelme(item.key)
            try:
                image_path = Path(os.path.relpath(item.path.resolve(), path.parent.resolve())).as_posix()
            except ValueError:  # another drive (Windows): no relative path exists
                image_path = item.path.resolve().as_posix()
            write_json(path, fmt.labelme_dict(labels.masks, labels.names, (height, width), image_path), indent=1)
            outputs["labelme"].append(layout.rel(path))
        if "yolo" in self.formats:
            rows = fmt.yolo_lines(labels.masks, ids, (height, width))
            path = atomic_write_text(layout.yolo(item.key), "".join(r + "\n" for r in rows))
            outputs["yolo"].append(layout.rel(path))
        record = fmt.coco_image_record(item.rel.as_posix(), width, height, labels.masks, labels.boxes,
                                       labels.scores, labels.names)
        record.update(formats=list(self.formats), outputs=outputs, dropped=labels.dropped,
                      exports=fmt.export_losses(labels.masks, self.formats))
        write_json(layout.record(item.key), record)
        self.done[item.key] = record
        self.summary.labelled += 1
        self.summary.detections += len(labels)
        self.summary.dropped += labels.dropped
        return record

    def stopped(self, item: ImageItem, exc: BaseException | str) -> RunStoppedError:
        """The error that stops the run at ``item`` because of ``exc`` (not the image's fault):
        it says what finished, where the records are, and how to finish (resume)."""
        cause = exc if isinstance(exc, str) else failure_reason(exc)
        done = self.summary.labelled
        err = RunStoppedError.naming(
            f"the run stopped at {item.rel.as_posix()}: {cause}. This is not a fault of that image "
            f"(out of memory, a full disk, or a bug: the traceback is in the log), so the run did "
            f"not go on to the next one. {done} image(s) were labelled before it; their files and "
            f"records are in {self.layout.root} (records: {self.layout.rel(self.layout.records)}/), "
            "and the run-wide files cover them. Fix the cause, then run again with {resume} to "
            "label the rest.",
            resume="resume=True",
        )
        err.output, err.records, err.image = str(self.layout.root), str(self.layout.records), item.rel.as_posix()
        err.labelled, err.cause = done, cause
        return err

    def fail(self, item: ImageItem, exc: BaseException | str) -> None:
        """Note a failed image; an older record of it is stale now and goes."""
        why = exc if isinstance(exc, str) else failure_reason(exc)
        self.summary.failed.append((item, why))
        self.layout.record(item.key).unlink(missing_ok=True)

    def settle(
        self,
        item: ImageItem,
        outcome: ImageLabels | BaseException | ImageFailure,
        on_failure: Callable[[ImageItem, BaseException | str], None] | None = None,
    ) -> dict | None:
        """Settle one image under the run's failure policy, the one of :func:`label_folder` and of
        :func:`~lang_sam.labeling.distributed.label_dataset`: ``outcome`` is the image's
        :class:`ImageLabels` (written by :meth:`write`; an error while writing counts as one while
        labelling), the exception labelling it raised, or an :class:`ImageFailure` from another
        process. By :func:`failure_kind`:

        - ``"run"``: raised as it is (the run's error, not this image's);
        - ``"image"``: the image fails (:meth:`fail`, an INFO log line, ``on_failure(item, error)``)
          and None is returned: the run goes on;
        - ``"stop"``: logged at ERROR with its traceback, then the run stops: :meth:`stopped` is
          raised (chained to the exception).

        Returns the image's record when it was written.
        """
        stage = "labelling"
        if isinstance(outcome, ImageLabels):
            try:
                return self.write(outcome)
            except Exception as exc:  # a full disk, say
                stage, outcome = "writing", exc
        error: BaseException | str
        if isinstance(outcome, ImageFailure):  # its kind is "image" or "stop", never "run"
            kind, error, trace = outcome.kind, outcome.error, outcome.trace
        else:
            kind, error, trace = failure_kind(outcome), outcome, None
            if kind == "run":
                raise outcome
        if kind == "image":
            self.fail(item, error)
            logger.info("%s failed: %s", item.rel, error)
            if on_failure is not None:
                on_failure(item, error)
            return None
        cause = error if isinstance(error, BaseException) else None
        if trace is not None:
            logger.error("%s %s failed; the run stops\n%s", stage, item.rel, trace.rstrip())
        else:
            logger.error("%s %s failed; the run stops", stage, item.rel, exc_info=cause)
        raise self.stopped(item, error) from cause

    def finish(self) -> RunSummary:
        """Write the run-wide files (COCO, YOLO ``data.yaml``) from the records of the images done,
        and count the whole run's detections and what each format left out."""
        if self.items is None:  # never started (refused, or stopped before start): nothing to write
            return self.summary
        self._claim(self._run_wide())
        done = [self.done[item.key] for item in self.items if item.key in self.done]
        if "coco" in self.formats:
            builder = fmt.CocoBuilder()
            for rec in done:
                builder.add(rec)
            builder.write(self.layout.coco, self.classmap.names)
        s = self.summary
        s.run_images, s.run_detections, s.uncounted = len(done), 0, 0
        s.export_dropped = {f: {} for f in self.formats if f != "overlay"}
        for rec in done:
            s.run_detections += len(rec.get("annotations", ()))
            losses = rec.get("exports")
            if not isinstance(losses, dict):
                s.uncounted += 1
                continue
            for f, reasons in s.export_dropped.items():
                for why, n in losses.get(f, {}).items():
                    reasons[why] = reasons.get(why, 0) + int(n)
        if "yolo" in self.formats:
            atomic_write_text(self.layout.yolo_yaml, fmt.yolo_data_yaml(self.classmap.names))
        self.summary.classes = self.classmap.names
        return self.summary


# --------------------------------------------------------------------------------------------
# One process
# --------------------------------------------------------------------------------------------

def label_folder(
    model: LangSAM | Callable[[], LangSAM],
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    settings: LabelSettings,
    formats: Sequence[str] = DEFAULT_FORMATS,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: Callable[[Iterable[ImageItem]], Iterable[ImageItem]] | None = None,
    on_failure: Callable[[ImageItem, BaseException], None] | None = None,
    on_progress: Callable[[ImageItem, str, int, int], None] | None = None,
) -> RunSummary:
    """Label every image of ``inputs`` into ``output`` in this process; return a :class:`RunSummary`.

    ``model`` is a :class:`~lang_sam.LangSAM`, or a callable returning one, called only if some
    image is left to label (a finished resumed run loads no model). ``progress`` wraps the
    iterable of images to label (e.g. ``tqdm``); ``on_failure`` hears of each failed image;
    ``on_progress(item, stage, done, total)`` of the progress within an image (tiles detected,
    boxes segmented: see :func:`label_image`), which with tiling can take minutes.
    ``resume`` / ``overwrite``: what to do with an earlier run's outputs in ``output`` (see
    :class:`LabelRun`; with neither, such a folder raises :class:`InvalidRunError`).
    A failed image (unreadable, too large, ...) is listed in the summary and the run goes on;
    an error that is no image's fault stops the run (:meth:`LabelRun.settle`).
    Ctrl-C stops the run cleanly: the run-wide files are written for the images done, and the
    summary says ``interrupted``; run again with ``resume=True`` to finish.
    """
    started = time.perf_counter()
    out = local_path(output, "output")
    items = collect_images(inputs, exclude=out)
    run = LabelRun(out, settings, formats, resume=resume, overwrite=overwrite)
    try:
        todo = run.start(items)
        if todo and callable(model) and not hasattr(model, "predict"):
            model = model()
        if todo:
            # A bad prompt (a phrase over 256 tokens, ...) is said before any image, not once per image.
            settings.check(model)
    except BaseException:
        run.release()  # no image was written: the run-wide files are left as they were
        raise
    classmap = settings.classmap()
    try:
        for item in (progress(todo) if progress is not None and todo else todo):  # no bar for nothing
            step = None if on_progress is None else (
                lambda stage, done, total, item=item: on_progress(item, stage, done, total))
            outcome: ImageLabels | Exception
            try:
                outcome = label_image(model, item, settings, run.formats, classmap, step)
            except Exception as exc:  # judged by run.settle: the image fails, or the run stops
                outcome = exc
            # In one process a failure is always an exception (settle's text form comes from Ray).
            run.settle(item, outcome, cast("Callable[[ImageItem, BaseException | str], None] | None", on_failure))
    except KeyboardInterrupt:
        run.summary.interrupted = True
    finally:
        run.close(started)
    return run.summary
