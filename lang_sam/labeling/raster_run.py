"""Map rasters as an input kind of the one folder run (:mod:`lang_sam.labeling.folder_run`):
``lang-sam predict ortho.tif --prompt "building. tree" --format gpkg,geojson,geotiff`` and folders
of rasters get ``--resume``, the output lock, progress and the failure policy of every run.

Each raster is segmented by :func:`lang_sam.geo.predict_raster` (window by window) and written
(:mod:`lang_sam.labeling.geo_formats`) under the output folder, named by the raster's key (its
path relative to its input, without suffix):

- ``gpkg/<key>.gpkg`` (raster CRS), ``geojson/<key>.geojson`` (EPSG:4326),
  ``geotiff/<key>_instances.tif`` and ``geotiff/<key>_classes.tif``;
- ``json/<key>.json``: the raster's record (:func:`~lang_sam.labeling.geo_formats.geo_record`:
  pixel and map boxes), always written.

Class ids (1-based; 0 is background in the class raster) are the prompt's phrases in order
(``"building. tree"``: building 1, tree 2), the same for every raster of the run; a detected phrase
is matched to them as labelling runs match (:class:`~lang_sam.labeling.classes.ClassMap`), and a
detection matching none is left out (counted in the summary's ``unmatched``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, cast

import torch

from lang_sam.errors import GeoNotInstalledError, InvalidArgumentError, InvalidPromptError, InvalidRasterError
from lang_sam.errors import InvalidThresholdError
from lang_sam.geo import DEFAULT_TILE, GeoPrediction, predict_raster
from lang_sam.labeling import geo_formats
from lang_sam.labeling.atomic import write_json
from lang_sam.labeling.classes import ClassMap
from lang_sam.labeling.folder_run import FolderRun, FolderSummary, ItemKind, run_folder
from lang_sam.labeling.hooks import RunHooks
from lang_sam.labeling.inputs import FileItem
from lang_sam.results import TiledPrediction
from lang_sam.tiling import TileSpec
from lang_sam.validation import BOX_THRESHOLD, TEXT_THRESHOLD

logger = logging.getLogger(__name__)

__all__ = ["RASTER_EXTENSIONS", "RASTER_FORMATS", "RasterItem", "RasterSettings", "RasterSummary", "RasterKind",
           "label_rasters", "keep_classes", "open_raster_run"]

#: Files collected from folders as rasters (GeoTIFF / COG, JPEG 2000, VRT, ERDAS Imagine).
RASTER_EXTENSIONS = frozenset({".tif", ".tiff", ".jp2", ".vrt", ".img"})
#: What ``--format`` may name for rasters; ``json`` (the records) is always written.
RASTER_FORMATS = geo_formats.GEO_FORMATS


@dataclass(frozen=True)
class RasterItem(FileItem):
    pass


@dataclass(frozen=True)
class RasterSettings:
    """A raster run's settings: ``prompt``, thresholds, ``tile`` (the grid; default
    :data:`lang_sam.geo.DEFAULT_TILE`), ``bands`` (None: see :mod:`lang_sam.raster`), ``simplify``
    (a tolerance in map units for the vector outputs; None: pixel-exact outlines)."""

    prompt: str
    box_threshold: float = BOX_THRESHOLD
    text_threshold: float = TEXT_THRESHOLD
    tile: TileSpec = DEFAULT_TILE
    bands: tuple[int, ...] | None = None
    simplify: float | None = None

    def classes(self) -> ClassMap:
        """One class per prompt phrase, in the prompt's order."""
        return ClassMap.parse([self.prompt])

    def config(self) -> dict:
        return {"prompt": self.prompt, "box_threshold": self.box_threshold, "text_threshold": self.text_threshold,
                "tile": self.tile.to_dict(), "bands": list(self.bands) if self.bands else None,
                "simplify": self.simplify}


@dataclass
class RasterSummary(FolderSummary[RasterItem]):
    """What a raster run did: ``rasters`` given, ``labelled`` done now, ``instances`` written,
    ``unmatched`` detections left out (their phrase matched no class), ``failed_blocks`` pairs each
    raster with the blocks it could not read (the rest of it was done)."""

    given_field, finished_field = "rasters", "labelled"
    rasters: int = 0
    labelled: int = 0
    instances: int = 0
    unmatched: int = 0
    failed_blocks: list[tuple[RasterItem, list]] = field(default_factory=list)


def keep_classes(geo: GeoPrediction, classes: ClassMap) -> tuple[GeoPrediction, list[int], int]:
    """``geo`` without its detections whose phrase matches no class of ``classes``, their 1-based
    class ids, and how many were left out."""
    names = classes.names
    matched = [classes.match(p) for p in geo.prediction.phrases]
    keep = [i for i, m in enumerate(matched) if m is not None]
    p = geo.prediction
    idx = torch.tensor(keep, dtype=torch.int64)
    tp = TiledPrediction([p.masks[i] for i in keep], p.boxes[idx], [cast(str, matched[i]) for i in keep],
                         p.logits[idx], image_size=p.image_size,
                         iou_scores=None if p.iou_scores is None else p.iou_scores[idx], tiles=p.tiles)
    out = GeoPrediction(tp, geo.transform, geo.crs, geo.path, geo.failed, geo.simplify)
    return out, [names.index(cast(str, matched[i])) + 1 for i in keep], len(matched) - len(keep)


class RasterKind(ItemKind):
    """Rasters as an input kind (see the module's text); picklable (a Ray driver sends it)."""

    item_type, suffixes = RasterItem, RASTER_EXTENSIONS
    noun, source_noun, input_hint = "raster", "raster", "a raster file (GeoTIFF, JPEG 2000, VRT), a folder"
    verb, verbing, done_verb = "label", "labelling", "labelled"
    records, record_field, tag = "rasters", "file_name", "raster"
    output_dirs = ("gpkg", "geojson", "geotiff", "json")
    model_attr = "predict"
    run_errors = (InvalidPromptError, InvalidThresholdError, GeoNotInstalledError)
    item_errors = (InvalidRasterError,)

    def __init__(self, settings: RasterSettings, formats: Sequence[str] = RASTER_FORMATS):
        bad = [f for f in formats if f not in RASTER_FORMATS]
        if bad or not formats:
            raise InvalidArgumentError(f"raster formats must be among {list(RASTER_FORMATS)}, got {list(formats)}")
        self.settings = settings
        self.formats = list(dict.fromkeys(formats))

    def prepare(self, model: Any) -> None:
        engines = getattr(model, "engines", model)
        s = self.settings
        engines.prepare(s.prompt, s.box_threshold, s.text_threshold)  # a bad prompt fails once

    def work(self, model: Any, item: RasterItem, step: Callable[[str, int, int | None], None] | None) -> GeoPrediction:
        s = self.settings
        return predict_raster(model, item.path, s.prompt, s.box_threshold, s.text_threshold, tile=s.tile,
                              bands=s.bands, progress=cast("Callable[[str, int, int], None] | None", step))

    def paths(self, run: FolderRun, item: RasterItem) -> dict[str, list[Path]]:
        root, key = run.root, item.key
        return {"gpkg": [root / "gpkg" / f"{key}.gpkg"], "geojson": [root / "geojson" / f"{key}.geojson"],
                "geotiff": [root / "geotiff" / f"{key}_instances.tif", root / "geotiff" / f"{key}_classes.tif"],
                "json": [root / "json" / f"{key}.json"]}

    def planned(self, run: FolderRun, item: RasterItem) -> list[Path]:
        paths = self.paths(run, item)
        return [p for f in [*self.formats, "json"] for p in paths[f]]

    def write(self, run: FolderRun, item: RasterItem, outcome: GeoPrediction) -> dict:
        run.claim(self.planned(run, item) + [run.record(item.key)])
        outcome.simplify = self.settings.simplify
        geo, class_ids, unmatched = keep_classes(outcome, self.settings.classes())
        paths = self.paths(run, item)
        if "gpkg" in self.formats:
            geo_formats.write_gpkg(paths["gpkg"][0], geo, class_ids)
        if "geojson" in self.formats:
            geo_formats.write_geojson(paths["geojson"][0], geo, class_ids)
        if "geotiff" in self.formats:
            geo_formats.write_label_rasters(paths["geotiff"][0], paths["geotiff"][1], geo, class_ids)
        doc = geo_formats.geo_record(geo, item.rel.as_posix(), class_ids)
        write_json(paths["json"][0], doc)
        record = {"file_name": item.rel.as_posix(), "formats": self.formats,
                  "outputs": {f: [run.rel(p) for p in paths[f]] for f in [*self.formats, "json"]},
                  "instances": len(geo), "unmatched": unmatched, "failed_blocks": doc["failed_blocks"],
                  "classes": self.settings.classes().names}
        write_json(run.record(item.key), record)
        s = cast(RasterSummary, run.summary)
        s.labelled += 1
        s.instances += len(geo)
        s.unmatched += unmatched
        if geo.failed:
            s.failed_blocks.append((item, [list(b) for b in geo.failed]))
        return record


def open_raster_run(kind: RasterKind, output: str | Path, *, resume: bool = False,
                    overwrite: bool = False) -> FolderRun:
    """The :class:`FolderRun` of a raster run into ``output``."""
    return FolderRun(kind, output, {**kind.settings.config(), "formats": kind.formats},
                     RasterSummary(output=Path(output), formats=list(kind.formats)), resume=resume,
                     overwrite=overwrite)


def label_rasters(model: Any, inputs: Sequence[str | Path], output: str | Path, settings: RasterSettings,
                  formats: Sequence[str] = RASTER_FORMATS, *, resume: bool = False, overwrite: bool = False,
                  hooks: RunHooks | None = None) -> RasterSummary:
    """Segment every raster of ``inputs`` (files, folders searched for :data:`RASTER_EXTENSIONS`,
    ``.txt`` lists) into ``output`` in this process; return the :class:`RasterSummary`. ``model``:
    a :class:`~lang_sam.LangSAM` or a callable returning one (called only when a raster is left).

    Raises:
        InvalidArgumentError: a format that is not a raster format.
        InvalidRunError, OutputLockedError, OutputCollisionError, RunStoppedError: as
            :func:`lang_sam.labeling.folder_run.run_folder`.
        InvalidPromptError, InvalidThresholdError, GeoNotInstalledError: the same for every raster.
    """
    kind = RasterKind(settings, formats)
    return cast(RasterSummary, run_folder(kind, lambda out: open_raster_run(kind, out, resume=resume,
                                                                            overwrite=overwrite),
                                          model, inputs, output, hooks))
