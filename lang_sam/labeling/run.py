"""The labelling pipeline: images in, dataset files out. ``lang-sam predict``, examples/label_folder.py,
the Ray path and tiling all run through it. Three steps, split so that the model work can run
anywhere (another process, a Ray actor) and the files are written in one place:

1. :func:`collect_images`: the images named by files, folders and ``.txt`` lists, each with the
   path relative to its input (``rel``) that names its outputs;
2. :func:`label_image`: one image through the models (GroundingDINO boxes, classes, optional
   per-class NMS, SAM masks of the kept boxes) -> :class:`ImageLabels`: writes nothing, holds no
   class id (given in step 3, not by which worker finished first), picklable;
3. :class:`LabelRun`: an output folder being filled: settings (``.lang-sam/run.json``), per-image
   files and records (``.lang-sam/records/<rel>.json``, written last: an image is done only when
   all its files are), resume, the run-wide COCO and YOLO files rebuilt from the records.

Steps 1 and 3 are the generic folder run (:mod:`lang_sam.labeling.folder_run`: lock, resume,
written list, failure policy, summary) of :class:`ImageKind`, what images add to it.
:func:`label_folder` runs the three in one process. Output layout (``<rel>``: an image's path
relative to the folder it was found in, without its extension):

- ``overlays/<rel>.png``: boxes, labels and masks drawn on the image;
- ``masks/<rel>/<index>_<class>.png``: one 0/255 PNG per instance;
- ``labelme/<rel>.json``;
- ``yolo/labels/<rel>.txt`` and ``yolo/data.yaml``;
- ``coco/annotations.json`` (``file_name`` = the image's path relative to its input folder);
- ``labelstudio/tasks.json`` + ``config.xml``, ``cvat/annotations.xml`` (:mod:`~lang_sam.labeling.tool_formats`).

Nothing here prints; progress goes through the ``hooks`` given to :func:`label_folder`.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, cast

import numpy as np

from lang_sam.errors import (
    ImageNotFoundError, InvalidArgumentError, InvalidImageError, InvalidPromptError, InvalidRunError,
    InvalidThresholdError, name_params,
)
from lang_sam.labeling import formats as fmt, tool_formats as tools
from lang_sam.labeling.atomic import atomic_write_bytes, atomic_write_text, write_json
from lang_sam.labeling.classes import ClassMap, class_nms
from lang_sam.labeling.folder_run import FolderRun, FolderSummary, ItemKind, run_folder
from lang_sam.labeling.inputs import STATE_DIR, FileItem, collect_files, local_path, parse_names, read_json
from lang_sam.labeling.hooks import RunHooks
from lang_sam.masks import CropMask
from lang_sam.results import Detections
from lang_sam.tiling import TileSpec
from lang_sam.validation import BOX_THRESHOLD, TEXT_THRESHOLD, check_prompt, check_threshold

if TYPE_CHECKING:
    from lang_sam.lang_sam import LangSAM

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGE_EXTENSIONS", "FORMATS", "DEFAULT_FORMATS", "ImageItem", "collect_images", "parse_formats",
    "Layout", "LabelSettings", "ImageLabels", "label_image", "ImageKind", "LabelRun", "RunSummary",
    "label_folder", "IMAGE_ERRORS", "OUTPUT_DIRS", "TILED_OVERLAY_MAX_PIXELS", "MANY_BOXES",
    "EVERYTHING_CLASS", "RUN_ERRORS",
]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
FORMATS = ("overlay", "masks", "coco", "labelme", "yolo", "labelstudio", "cvat")
DEFAULT_FORMATS = ("overlay", "coco")
#: The folders a run writes in its output folder (``overwrite`` deletes only the files the
#: earlier run recorded there).
OUTPUT_DIRS = ("overlays", "masks", "labelme", "yolo", "coco", "labelstudio", "cvat", STATE_DIR)

#: An image with more boxes to segment than this gets a warning from :func:`label_image` (SAM's
#: time grows with the boxes: 531 boxes from random weights made one image take minutes).
MANY_BOXES = 300

#: The class name of every mask a run with ``everything`` (SAM's automatic mask generator) writes.
EVERYTHING_CLASS = "object"

#: With tiling, overlays of larger images are drawn on a copy downscaled to this many pixels.
TILED_OVERLAY_MAX_PIXELS = 16_000_000

#: What one image may raise that fails that image only (the run goes on and lists it): the image
#: is missing, undecodable, empty or over the pixel limit. Anything else (out of memory, a full
#: disk, a bug) would fail image after image: the run stops (:class:`~lang_sam.errors.RunStoppedError`).
IMAGE_ERRORS = (InvalidImageError, ImageNotFoundError)
#: What :func:`label_image` may raise that would be the same for every image: the run stops.
#: Checked before :data:`IMAGE_ERRORS` (they are ``ValueError`` s too).
RUN_ERRORS = (InvalidPromptError, InvalidThresholdError)


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageItem(FileItem):
    """An image to label: its path, and its path relative to the folder it was given in
    (``key``: ``rel`` without its extension, the stem of every output of this image)."""


def collect_images(
    inputs: Sequence[str | os.PathLike], exclude: str | os.PathLike | None = None
) -> list[ImageItem]:
    """The images named by ``inputs``: image files, folders (searched recursively for
    :data:`IMAGE_EXTENSIONS`, any case) and ``.txt`` files listing paths: see
    :func:`lang_sam.labeling.inputs.collect_files` (an earlier run's overlays and masks are
    not photos: folders holding a lang-sam run are skipped, with a warning).

    Raises:
        InvalidRunError: a missing input, no image at all, or two images whose outputs would
            collide (same ``rel`` without extension).
    """
    return collect_files(inputs, ImageKind, exclude)


def parse_formats(values: Sequence[str] | str | None) -> list[str]:
    """Output formats from names, comma-separated or not (``None``: :data:`DEFAULT_FORMATS`).

    Raises:
        InvalidRunError: an unknown format, or none named.
    """
    return parse_names(values, FORMATS, DEFAULT_FORMATS)


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

    def rel(self, p: Path) -> str:
        return p.relative_to(self.root).as_posix()


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
    box_threshold: float = BOX_THRESHOLD
    text_threshold: float = TEXT_THRESHOLD
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
        box_threshold: float = BOX_THRESHOLD,
        text_threshold: float = TEXT_THRESHOLD,
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
    on_progress: Callable[[str, int, int], None] | None = None, image: Any = None,
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
    warning is logged saying why the image is slow and what to change. ``image``: the item's image
    already read, or its :class:`~lang_sam.engines.EncodedImage` (whose encodings are then reused:
    ``lang-sam compare`` labels one image at several thresholds); default: read ``item.path``.
    """
    from lang_sam import pipeline
    from lang_sam.engines import EncodedImage
    from lang_sam.utils import load_image

    classmap = classmap if classmap is not None else settings.classmap()
    encoded, image = (image, image.image) if isinstance(image, EncodedImage) else (None, image)
    image = load_image(item.path) if image is None else image
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
        model.engines, image if encoded is None else encoded, settings.prompt, settings.box_threshold, settings.text_threshold,
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
class RunSummary(FolderSummary[ImageItem]):
    """What a run did (with :class:`~lang_sam.labeling.folder_run.FolderSummary`'s ``failed``,
    ``skipped``, ``interrupted``, ``seconds``): ``images`` given.

    ``labelled``, ``detections`` and ``dropped`` (detections of no class) count this call's work;
    ``run_images`` and ``run_detections`` the whole run's, earlier (resumed) calls included: what
    the output files hold. ``export_dropped`` is, for the whole run and each format that writes
    instances, how many detections that format left out, by reason
    (:func:`lang_sam.labeling.formats.export_losses`): ``{"yolo": {"empty mask": 2}, "coco": {}}``;
    ``written(fmt)`` + its drops = ``run_detections``. ``uncounted`` is the number of images whose
    records (from an older lang-sam) hold no such counts.
    """

    given_field, finished_field = "images", "labelled"
    images: int = 0
    labelled: int = 0
    detections: int = 0
    dropped: int = 0
    classes: list[str] = field(default_factory=list)
    run_images: int = 0
    run_detections: int = 0
    export_dropped: dict[str, dict[str, int]] = field(default_factory=dict)
    uncounted: int = 0

    def written(self, fmt_name: str) -> int:
        """Instances of the whole run that format ``fmt_name`` holds."""
        return self.run_detections - sum(self.export_dropped.get(fmt_name, {}).values())

    @property
    def images_per_second(self) -> float:
        return self.labelled / self.seconds if self.seconds > 0 else 0.0


# --------------------------------------------------------------------------------------------
# The image kind and its run
# --------------------------------------------------------------------------------------------

class ImageKind(ItemKind):
    """Images as an input kind of :class:`~lang_sam.labeling.folder_run.FolderRun`: collected by
    :data:`IMAGE_EXTENSIONS`, labelled by :func:`label_image` (where the model is: this process,
    or a Ray worker; picklable) and written by :meth:`LabelRun.write` (where the run is).
    ``classmap`` only names classes in :func:`label_image` (default ``settings.classmap()``);
    ids are given by the run."""

    item_type, suffixes, output_dirs, model_attr = ImageItem, IMAGE_EXTENSIONS, OUTPUT_DIRS, "predict"
    noun, source_noun, input_hint = "image", "photo", "an image file, a folder"
    verb, verbing, done_verb = "label", "labelling", "labelled"
    records, record_field = "records", "file_name"
    run_errors, item_errors = RUN_ERRORS, IMAGE_ERRORS  # run_errors first: ValueErrors, as InvalidImageError
    batched = True  # on Ray: Ray Data batches, back in input order (class ids follow it)

    def __init__(self, settings: LabelSettings, formats: Sequence[str] = DEFAULT_FORMATS,
                 classmap: ClassMap | None = None, export: tools.ExportOptions | None = None):
        self.settings, self.export = settings, export or tools.ExportOptions()
        self.formats = parse_formats(list(formats))
        self.classmap = classmap if classmap is not None else settings.classmap()

    def prepare(self, model: Any) -> None:
        self.settings.check(model)

    def work(self, model: Any, item: ImageItem, step: Callable[[str, int, int | None], None] | None) -> ImageLabels:
        return label_image(model, item, self.settings, self.formats, self.classmap,
                           cast("Callable[[str, int, int], None] | None", step))

    def pack(self, outcome: ImageLabels) -> dict:
        """The labels' fields but ``item``, each mask bit-packed (8x smaller, exact; never full-size)."""
        state = {f.name: getattr(outcome, f.name) for f in fields(outcome) if f.name != "item"}
        state["masks"] = [(np.packbits(m.mask, axis=None), m.mask.shape, m.x0, m.y0, m.image_size)
                          for m in outcome.masks]
        return state

    def unpack(self, item: ImageItem, packed: dict) -> ImageLabels:
        masks = [CropMask(np.unpackbits(bits, count=int(np.prod(shape))).reshape(tuple(shape)).astype(bool),
                          x0, y0, tuple(size)) for bits, shape, x0, y0, size in packed["masks"]]
        return ImageLabels(item=item, **dict(packed, masks=masks))

    def planned(self, run: FolderRun, item: ImageItem) -> list[Path]:
        layout, out = Layout(run.root), []
        if "overlay" in self.formats:
            out.append(layout.overlay(item.key))
        if "labelme" in self.formats:
            out.append(layout.labelme(item.key))
        if "yolo" in self.formats:
            out.append(layout.yolo(item.key))
        return out

    def existing(self, run: FolderRun, item: ImageItem) -> list[Path]:
        folder = Layout(run.root).masks(item.key)
        return sorted(folder.iterdir()) if "masks" in self.formats and folder.is_dir() else []

    def run_wide(self, run: FolderRun) -> list[Path]:
        layout = Layout(run.root)
        return ([layout.coco] if "coco" in self.formats else []) + \
            ([layout.yolo_yaml] if "yolo" in self.formats else []) + tools.tool_files(run.root, self.formats)

    def write(self, run: FolderRun, item: ImageItem, outcome: ImageLabels) -> dict:
        return cast(LabelRun, run).write(outcome)

    def finish(self, run: FolderRun, done: list) -> None:
        """COCO and YOLO's ``data.yaml`` from the records of the images done; the whole run's
        detections and what each format left out."""
        classes = cast(LabelRun, run).classmap.names
        records = [run.done[item.key] for item in done]
        run.claim(self.run_wide(run))
        if "coco" in self.formats:
            builder = fmt.CocoBuilder()
            for rec in records:
                builder.add(rec)
            builder.write(Layout(run.root).coco, classes)
        s = cast(RunSummary, run.summary)
        s.run_images, s.run_detections, s.uncounted = len(records), 0, 0
        s.export_dropped = {f: {} for f in self.formats if f != "overlay"}
        for rec in records:
            s.run_detections += len(rec.get("annotations", ()))
            losses = rec.get("exports")
            if not isinstance(losses, dict):
                s.uncounted += 1
                continue
            for f, reasons in s.export_dropped.items():
                for why, n in losses.get(f, {}).items():
                    reasons[why] = reasons.get(why, 0) + int(n)
        s.export_dropped.update(tools.write_tool_files(  # Label Studio and CVAT, rebuilt as COCO is
            run.root, self.formats, records, [i.path for i in done], classes, self.export,
            f"lang-sam {self.settings.sam_type or ''}".strip()))
        if "yolo" in self.formats:
            atomic_write_text(Layout(run.root).yolo_yaml, fmt.yolo_data_yaml(classes))
        s.classes = classes


class LabelRun(FolderRun):
    """An output folder being filled by one image labelling run: the generic
    :class:`~lang_sam.labeling.folder_run.FolderRun` (lock, ``resume`` / ``overwrite``, written
    list, collisions, :meth:`settle`, :meth:`close`) of an :class:`ImageKind`, plus the run's
    :class:`ClassMap` (saved in ``.lang-sam/run.json``; a resumed run keeps its ids).

    Raises:
        InvalidRunError: see :class:`~lang_sam.labeling.folder_run.FolderRun`; an unknown format.
        OutputLockedError: another run holds the folder.
    """

    kind: ImageKind
    summary: RunSummary

    def __init__(
        self,
        output: str | os.PathLike,
        settings: LabelSettings,
        formats: Sequence[str] = DEFAULT_FORMATS,
        *,
        resume: bool = False,
        overwrite: bool = False,
        export: tools.ExportOptions | None = None,
    ):
        out = local_path(output, "output")
        kind = ImageKind(settings, formats, export=export)
        self.layout = Layout(out)
        self.settings = settings
        self.classmap = settings.classmap()
        super().__init__(kind, out, settings.config(), RunSummary(output=out, formats=list(kind.formats)),
                         resume=resume, overwrite=overwrite)

    def _open(self, resume: bool, overwrite: bool) -> None:
        super()._open(resume, overwrite)
        if self.resumed:
            state = read_json(self.run_file)
            self.classmap = ClassMap.from_state(cast(dict, state)["classes"])

    def state(self) -> dict:
        return dict(super().state(), classes=self.classmap.state())

    def write(self, labels: ImageLabels) -> dict:
        """Give the detections class ids, write the image's files, then its record (last).

        Raises:
            InvalidArgumentError: the run writes overlays and ``labels`` has none rendered.
        """
        n_classes = len(self.classmap)
        ids = [self.classmap.id_of(n) for n in labels.names]
        if len(self.classmap) != n_classes:
            self._save_state()  # new classes are on disk before any output uses their ids
        item, layout = labels.item, self.layout
        height, width = labels.height, labels.width
        outputs: dict[str, list[str]] = {f: [] for f in self.formats}
        planned = self.kind.planned(self, item) + [self.record(item.key)]
        if "masks" in self.formats:
            folder = layout.masks(item.key)
            mask_paths = [folder / name for name in fmt.instance_mask_names(labels.names)]
            planned += mask_paths
        self.claim(planned)
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
        write_json(self.record(item.key), record)
        self.done[item.key] = record
        self.summary.labelled += 1
        self.summary.detections += len(labels)
        self.summary.dropped += labels.dropped
        return record


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
    hooks: RunHooks | None = None,
    export: tools.ExportOptions | None = None,
) -> RunSummary:
    """Label every image of ``inputs`` into ``output`` in this process; return a :class:`RunSummary`.

    ``model`` is a :class:`~lang_sam.LangSAM`, or a callable returning one, called only if some
    image is left to label (a finished resumed run loads no model). ``hooks``
    (:class:`~lang_sam.labeling.hooks.RunHooks`) hears of the images to do, of the progress within
    each (``step``: tiles detected, boxes segmented, points generated: see :func:`label_image`;
    with tiling it can take minutes) and of each image done or failed.
    ``resume`` / ``overwrite``: what to do with an earlier run's outputs in ``output`` (see
    :class:`LabelRun`). ``export``: how ``labelstudio`` and ``cvat`` write instances
    (:class:`~lang_sam.labeling.tool_formats.ExportOptions`). A failed image (unreadable, too large, ...) is listed in the summary and
    the run goes on. Ctrl-C stops the run cleanly: the run-wide files are written for the images
    done, and the summary says ``interrupted``; run again with ``resume=True`` to finish.

    Raises:
        InvalidRunError: a missing input, no image, colliding outputs, an unknown format, or an
            output folder holding an earlier run without ``resume`` / ``overwrite`` (or with other
            settings).
        OutputLockedError: another run holds ``output``.
        OutputCollisionError: an output would replace a file lang-sam did not write.
        InvalidPromptError: the prompt is refused by the detector (before any image).
        RunStoppedError: an error that is no image's fault (out of memory, a full disk, a bug).
    """
    return cast(RunSummary, run_folder(
        ImageKind, lambda out: LabelRun(out, settings, formats, resume=resume, overwrite=overwrite, export=export),
        model, inputs, output, hooks))
