"""One large raster's tiles split across Ray workers (``lang-sam predict ortho.tif --format gpkg
--ray``), merged as one process merges them.

The driver (this process) runs the raster run (:mod:`lang_sam.labeling.raster_run`: collection,
output lock, resume, records, writers, failure policy); only a raster's model work is spread:

1. the driver opens the raster (:class:`~lang_sam.raster.RasterSource`: the 8-bit stretch is
   computed once, here, and travels with the source, so every worker scales alike);
2. **detection**: the tile grid is dealt out to ``workers`` actors (each loads the models once,
   reads its own windows from the file: the raster must be readable at the same path on every
   node); each tile's detections come back with their tile number, are put in grid order and
   merged on the driver (:func:`lang_sam.pipeline.merge_tiles`), exactly as in one process;
3. **segmentation**: the windows SAM runs on (:func:`lang_sam.pipeline.window_plan`) are dealt out
   the same way; each worker runs :func:`lang_sam.pipeline.segment_window`, the single process's
   function, on the same window and boxes, so the masks are the same.

The result is the :class:`~lang_sam.geo.GeoPrediction` of :func:`lang_sam.geo.predict_raster`,
equal to it (tests/test_geo_ray.py), written by the same writers. Blocks that a worker could not
read are reported as in one process. Ray is imported when a run starts.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence, cast

import torch

from lang_sam.errors import InvalidArgumentError
from lang_sam.geo import GeoPrediction, open_raster
from lang_sam.hub import ModelSpec
from lang_sam.labeling.distributed import _connect, _register, import_ray
from lang_sam.labeling.folder_run import run_folder
from lang_sam.labeling.hooks import RunHooks
from lang_sam.labeling.raster_run import RASTER_FORMATS, RasterItem, RasterKind, RasterSettings, RasterSummary, open_raster_run
from lang_sam.models.registry import DEFAULT_GDINO, DEFAULT_SAM, get_spec
from lang_sam.raster import RasterSource, gdal_env
from lang_sam.results import Detections, TiledPrediction
from lang_sam import pipeline

logger = logging.getLogger(__name__)

__all__ = ["TileWorker", "RasterPool", "RayRasterKind", "predict_raster_on_ray", "label_rasters_on_ray"]


class TileWorker:
    """One actor: the models (loaded on first use), the sources it has opened."""

    def __init__(self, model: dict, specs: Sequence[ModelSpec], threads: int | None):
        _register(specs)
        if threads:
            torch.set_num_threads(threads)
        self.model_kwargs = dict(model)
        self.engines: Any = None
        self.sources: dict[tuple, RasterSource] = {}

    def _ready(self, src: RasterSource) -> tuple[Any, RasterSource]:
        if self.engines is None:
            from lang_sam import LangSAM

            self.engines = LangSAM(**self.model_kwargs).engines
        key = (src.path, src.bands, src.stretch)
        if key not in self.sources:
            self.sources = {key: src}  # one raster at a time
        return self.engines, self.sources[key]

    def detect(self, src: RasterSource, prompt: tuple[str, float, float], tiles: list) -> tuple[list, list]:
        """``(detections of each tile in tiles (i, tile); None where skipped), blocks that failed``."""
        engines, src = self._ready(src)
        prepared = engines.prepare(*prompt)
        with gdal_env():
            return [pipeline.detect_tile(engines, src, t, i, prepared) for i, t in tiles], list(src.failed)

    def segment(self, src: RasterSource, prompt: tuple[str, float, float], det: Detections, jobs: list
                ) -> tuple[list, list]:
        """``(indices, crops, iou scores)`` of every window of ``jobs`` ``(window, idx)``, failed blocks."""
        engines, src = self._ready(src)
        prepared = engines.prepare(*prompt)
        with gdal_env():
            out = [part for window, idx in jobs
                   for part in pipeline.segment_window(engines, src, window, det, idx, prepared)]
        return out, list(src.failed)


class RasterPool:
    """``workers`` :class:`TileWorker` actors; what :class:`RayRasterKind` works with (its
    ``predict`` attribute marks a loaded model for the folder run)."""

    def __init__(self, workers: int, model: dict, specs: Sequence[ModelSpec], cpus_per_worker: float = 1.0,
                 gpus_per_worker: float = 0.0):
        ray = import_ray()
        threads = max(1, int(cpus_per_worker))
        actor = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker)(TileWorker)
        self.actors = [actor.remote(model, list(specs), threads) for _ in range(workers)]

    def predict(self, src: RasterSource, settings: RasterSettings, step: Callable | None = None) -> GeoPrediction:
        return predict_raster_on_ray(self, src, settings, step)


def _deal(jobs: list, n: int) -> list[list]:
    """``jobs`` in ``n`` contiguous runs of near-equal length (neighbouring tiles share reads)."""
    k, r = divmod(len(jobs), n)
    out, at = [], 0
    for i in range(n):
        size = k + (1 if i < r else 0)
        out.append(jobs[at:at + size])
        at += size
    return [o for o in out if o]


def predict_raster_on_ray(pool: RasterPool, src: RasterSource, settings: RasterSettings,
                          step: Callable | None = None) -> GeoPrediction:
    """:func:`lang_sam.geo.predict_raster` with the tiles and windows dealt to ``pool``'s actors
    (see the module's text); the same result."""
    ray = import_ray()
    report = step or (lambda stage, done, total: None)
    prompt = (settings.prompt, settings.box_threshold, settings.text_threshold)
    W, H = src.size
    tiles = settings.tile.grid(W, H)
    n = len(pool.actors)
    failed: list = list(src.failed)
    report("detect", 0, len(tiles))
    runs = _deal(list(enumerate(tiles)), n)
    found = ray.get([pool.actors[k].detect.remote(src, prompt, run) for k, run in enumerate(runs)])
    parts = [d for dets, _ in found for d in dets if d is not None]  # grid order: the runs are contiguous
    for _, blocks in found:
        failed.extend(b for b in blocks if b not in failed)
    report("detect", len(tiles), len(tiles))
    det = pipeline.merge_tiles(settings.tile)(Detections.concat(parts, (H, W), tiles=tiles))
    groups = list(pipeline.window_plan(det.boxes, tiles, (H, W), settings.tile.size).items())
    masks: list = [None] * len(det)
    iou = torch.zeros((len(det),), dtype=torch.float32)
    report("segment", 0, len(det))
    if groups:
        done = ray.get([pool.actors[k].segment.remote(src, prompt, det, run)
                        for k, run in enumerate(_deal(groups, n))])
        for out, blocks in done:
            failed.extend(b for b in blocks if b not in failed)
            for part, crops, scores in out:
                for k, m, s in zip(part, crops, scores):
                    masks[k], iou[k] = m, s
    report("segment", len(det), len(det))
    tp = TiledPrediction(masks, det.boxes, det.phrases, det.scores, iou_scores=iou, image_size=(H, W), tiles=tiles)
    from affine import Affine

    return GeoPrediction(tp, src.transform if src.crs is not None else Affine.identity(), src.crs, src.path,
                         sorted(failed))


class RayRasterKind(RasterKind):
    """:class:`~lang_sam.labeling.raster_run.RasterKind` whose model is a :class:`RasterPool`."""

    def prepare(self, model: Any) -> None:
        from lang_sam.validation import check_prompt, check_threshold

        check_prompt(self.settings.prompt)
        check_threshold("box_threshold", self.settings.box_threshold)
        check_threshold("text_threshold", self.settings.text_threshold)

    def work(self, model: Any, item: RasterItem, step: Callable | None) -> GeoPrediction:
        with open_raster(item.path, self.settings.bands) as src:
            return cast(RasterPool, model).predict(src, self.settings, step)


def label_rasters_on_ray(inputs: Sequence[str | Path], output: str | Path, settings: RasterSettings,
                         formats: Sequence[str] = RASTER_FORMATS, *, sam_type: str = DEFAULT_SAM,
                         gdino_type: str = DEFAULT_GDINO, sam_ckpt: str | None = None, gdino_ckpt: str | None = None,
                         device: str | None = None, resume: bool = False, overwrite: bool = False,
                         workers: int | None = None, cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0,
                         ray_address: str | None = None, hooks: RunHooks | None = None) -> RasterSummary:
    """:func:`lang_sam.labeling.raster_run.label_rasters` with each raster's tiles and windows spread
    over ``workers`` Ray actors (default 2); the same outputs.

    Raises:
        RayNotInstalledError: Ray is not installed.
        InvalidArgumentError: ``workers`` under 1.
        What :func:`~lang_sam.labeling.raster_run.label_rasters` raises.
    """
    ray = import_ray()
    workers = 2 if workers is None else int(workers)
    if workers < 1:
        raise InvalidArgumentError(f"workers must be at least 1, got {workers}")
    specs = [get_spec("sam", sam_type), get_spec("gdino", gdino_type)]
    model = {"sam_type": sam_type, "ckpt_path": _abs(sam_ckpt), "gdino_type": gdino_type,
             "gdino_ckpt_path": _abs(gdino_ckpt), "device": device or ("cuda" if gpus_per_worker else "cpu")}
    started = _connect(ray, ray_address)
    kind = RayRasterKind(settings, formats)
    try:
        return cast(RasterSummary, run_folder(
            kind, lambda out: open_raster_run(kind, out, resume=resume, overwrite=overwrite),
            lambda: RasterPool(workers, model, specs, cpus_per_worker, gpus_per_worker), inputs, output, hooks))
    finally:
        if started:
            ray.shutdown()


def _abs(path: str | None) -> str | None:
    return None if path is None else os.path.abspath(path)
