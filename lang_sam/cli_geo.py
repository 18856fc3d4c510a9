"""``lang-sam predict`` on map rasters: ``--format gpkg,geojson,geotiff`` (or ``--bands``) turns the
run into a raster run (:mod:`lang_sam.labeling.raster_run`), with the same ``--resume``, output
lock, progress and failure policy as an image run; ``--ray`` splits each raster's tiles across
workers (:func:`lang_sam.labeling.raster_ray.label_rasters_on_ray`)."""

from __future__ import annotations

import argparse
import sys

from lang_sam.cli_report import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, ProgressReporter
from lang_sam.errors import InvalidRunError

__all__ = ["GEO_FORMATS", "add_arguments", "wants_raster", "bands", "cmd_predict_raster"]

GEO_FORMATS = ("gpkg", "geojson", "geotiff")


def _names(values: list[str] | None) -> list[str]:
    return [n.strip() for v in values or () for n in v.split(",") if n.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``lang-sam predict``'s map raster flags."""
    g = p.add_argument_group("map rasters (with --format gpkg,geojson,geotiff)")
    g.add_argument("--bands", type=bands, default=None, metavar="B,G,R",
                   help="bands read as RGB, 1-based, e.g. 4,3,2 (default: the file's red/green/blue, else 1,2,3)")
    g.add_argument("--simplify", type=float, default=None, metavar="TOL",
                   help="simplify polygons to this tolerance in map units (default: off: pixel-exact outlines)")


def wants_raster(args: argparse.Namespace) -> bool:
    """Whether ``lang-sam predict``'s flags ask for a raster run: a map format, ``--bands`` or ``--simplify``."""
    return bool(set(_names(args.format)) & set(GEO_FORMATS)) or args.bands is not None or args.simplify is not None


def bands(text: str) -> tuple[int, ...]:
    """``--bands 3,2,1`` -> ``(3, 2, 1)``."""
    try:
        return tuple(int(b) for b in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected band numbers such as 3,2,1, got {text!r}") from None


def cmd_predict_raster(args: argparse.Namespace, load, tile) -> int:
    """Run the raster run of ``lang-sam predict``'s flags; print its summary; the exit status."""
    from lang_sam.geo import DEFAULT_TILE
    from lang_sam.labeling.raster_run import RasterSettings, label_rasters

    formats = _names(args.format)
    bad = [f for f in formats if f not in GEO_FORMATS]
    if bad or not formats:
        raise InvalidRunError(f"--format: a raster run writes {','.join(GEO_FORMATS)}; got {','.join(formats) or 'none'}")
    if args.classes or not args.prompt:
        raise InvalidRunError('a raster run needs --prompt "building. tree" (not --classes)')
    if args.simplify is not None and not args.simplify > 0:
        raise InvalidRunError(f"--simplify must be a tolerance > 0 in map units, got {args.simplify}")
    settings = RasterSettings(args.prompt, args.box_threshold, args.text_threshold, tile or DEFAULT_TILE, args.bands,
                              args.simplify)
    reporter = ProgressReporter("labelling", "raster", quiet=args.quiet)
    try:
        if args.ray:
            from lang_sam.labeling.raster_ray import label_rasters_on_ray

            summary = label_rasters_on_ray(
                args.inputs, args.output, settings, formats, sam_type=args.sam_type, gdino_type=args.gdino_type,
                sam_ckpt=args.sam_ckpt, gdino_ckpt=args.gdino_ckpt, device=args.device, resume=args.resume,
                overwrite=args.overwrite, workers=args.workers, ray_address=args.ray_address, hooks=reporter,
                cpus_per_worker=args.cpus_per_worker or 1.0, gpus_per_worker=args.gpus_per_worker or 0.0)
        else:
            summary = label_rasters(load, args.inputs, args.output, settings, formats, resume=args.resume,
                                    overwrite=args.overwrite, hooks=reporter)
    finally:
        reporter.close()
    print(f"lang-sam predict: {summary.rasters} raster(s): {summary.labelled} labelled, {summary.skipped} skipped "
          f"(already complete), {len(summary.failed)} failed" + (", interrupted" if summary.interrupted else ""))
    print(f"outputs in {summary.output}: {', '.join(summary.formats)}, json; {summary.instances} instance(s) "
          f"written; {summary.seconds:.1f} s")
    if summary.unmatched:
        print(f"{summary.unmatched} detection(s) matched no prompt phrase and were left out")
    for item, blocks in summary.failed_blocks:
        print(f"  {item.path}: {len(blocks)} block(s) could not be read (treated as nodata): {blocks}")
    if summary.failed:
        print("failed rasters:")
        for item, why in summary.failed:
            print(f"  {item.path}: {why}")
    sys.stdout.flush()
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary.failed else EXIT_OK
