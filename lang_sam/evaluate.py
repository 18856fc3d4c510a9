"""Score lang-sam's output against your own ground truth, and pick the engine and box threshold
that suit your images (``lang-sam eval``, ``lang-sam compare``).

    from lang_sam import evaluate

    report = evaluate.evaluate("labels/", "annotations.json", output="labels/eval")  # a run's COCO output
    report.summary["segm"]["AP"], report.breakdown["segm"]["car"]["AP50"]
    report = evaluate.evaluate("tracks/", "mot_gt/")  # a track run's MOT files: HOTA, MOTA, IDF1

    result = evaluate.compare("photos/", "annotations.json", sam_types=["vit_h", "sam2.1_hiera_large", "sam3"],
                              box_thresholds=evaluate.parse_thresholds("0.2:0.5:0.05"))
    result.best, result.command(result.best)

:func:`evaluate`: COCO (box and mask AP, AP50, AP75, AR, per class, pycocotools) or MOT (HOTA,
MOTA, IDF1, TrackEval), see :mod:`lang_sam.labeling.eval_metrics`; :func:`write_report` writes
``eval.json`` and a precision-recall PNG per IoU type (:mod:`lang_sam.labeling.eval_report`).

:func:`compare` labels every image with each engine at every box threshold and scores each
setting as :func:`evaluate` scores a ``lang-sam predict`` run of it. Each image is read and
encoded **once per engine** (an :class:`~lang_sam.engines.EncodedImage` handle: the detector's
features and the segmenter's embedding are computed once); each threshold is then answered from
that encoding by the labelling pipeline itself (:func:`~lang_sam.labeling.run.label_image`:
detection, class mapping, segmentation of the kept boxes), so every setting's result is exactly the
``lang-sam predict`` run's. Detecting once at the lowest threshold and filtering would be equal for
GroundingDINO's boxes and phrases (its ``box_threshold`` only keeps rows whose best token scores
over it, and a phrase depends on ``text_threshold`` alone; per-class NMS commutes with a score
cut), but not for the masks: box segmenters decode the kept boxes in chunks whose make-up changes
with the threshold (batched kernels differ in the last bits), and SAM 3 scores and segments with
its own heads. Threshold steps after the encoding cost the detector's text-conditioned head and
the mask decoding only.
"""

from __future__ import annotations

import gc
import logging
import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from lang_sam.errors import EvaluationInputError, InvalidArgumentError
from lang_sam.labeling.atomic import write_json
from lang_sam.labeling.eval_metrics import EvalReport, coco_scores, mot_scores, read_coco
from lang_sam.labeling.eval_report import plot_compare, plot_pr_curves, text_table

logger = logging.getLogger(__name__)

__all__ = ["EvalReport", "Comparison", "evaluate", "write_report", "mot_pairs", "parse_thresholds", "compare"]


def mot_pairs(pred: str | os.PathLike, gt: str | os.PathLike) -> dict[str, tuple[Path, Path]]:
    """``{sequence: (prediction file, ground-truth file)}``. ``pred``: a MOT file, a track run's
    folder (its ``mot/``) or a folder of ``.txt`` files (named ``<key>.txt``, searched
    recursively). ``gt``: a file (with a file ``pred``), or a folder holding ``<key>.txt`` or
    MOTChallenge's ``<key>/gt/gt.txt``.

    Raises:
        EvaluationInputError: a missing path, or no prediction with a ground truth of its name.
    """
    p, g = Path(pred), Path(gt)
    for path in (p, g):
        if not path.exists():
            raise EvaluationInputError(f"{path} does not exist", path=str(path), expected="a file or folder",
                                       got="nothing")
    if p.is_file():
        return {p.stem: (p, g if g.is_file() else _gt_file(g, p.stem) or g / f"{p.stem}.txt")}
    root = p / "mot" if (p / "mot").is_dir() else p
    pairs = {}
    for f in sorted(root.rglob("*.txt")):
        key = f.relative_to(root).with_suffix("").as_posix()
        found = _gt_file(g, key)
        if found is not None:
            pairs[key] = (f, found)
        else:
            logger.warning("%s has no ground truth in %s: not scored", f, g)
    if not pairs:
        raise EvaluationInputError(f"no MOT file of {root} has a ground truth in {g} (expected <name>.txt or "
                                   "<name>/gt/gt.txt for each prediction <name>.txt)", path=str(g),
                                   expected="matching sequence names", got="none")
    return pairs


def _gt_file(folder: Path, key: str) -> Path | None:
    for candidate in (folder / f"{key}.txt", folder / key / "gt" / "gt.txt"):
        if candidate.is_file():
            return candidate
    return None


def evaluate(pred: str | os.PathLike, gt: str | os.PathLike, *, kind: str | None = None,
             output: str | os.PathLike | None = None) -> EvalReport:
    """Score a run's output ``pred`` against the ground truth ``gt``.

    ``kind``: ``"coco"`` (``pred`` a run folder or a COCO file whose annotations have scores,
    ``gt`` a COCO file; see :func:`~lang_sam.labeling.eval_metrics.coco_scores`) or ``"mot"``
    (see :func:`mot_pairs` and :func:`~lang_sam.labeling.eval_metrics.mot_scores`); default:
    COCO if ``gt`` is a ``.json`` file, else MOT. With ``output`` the report is also written there
    (:func:`write_report`).

    Raises:
        EvaluationInputError: unreadable or unmatched inputs.
        InvalidArgumentError: an unknown ``kind``.
        EngineUnavailableError: ``output`` given and matplotlib (the ``[eval]`` extra) missing.
    """
    kind = kind or ("coco" if Path(gt).suffix.lower() == ".json" else "mot")
    if kind == "coco":
        report = coco_scores(read_coco(pred, "prediction"), read_coco(gt, "ground truth"))
    elif kind == "mot":
        report = mot_scores(mot_pairs(pred, gt))
    else:
        raise InvalidArgumentError(f"kind must be 'coco' or 'mot', got {kind!r}")
    if output is not None:
        write_report(report, output)
    return report


def write_report(report: EvalReport, folder: str | os.PathLike) -> list[Path]:
    """``eval.json`` (:meth:`EvalReport.to_dict`) and, for COCO, ``pr_bbox.png`` / ``pr_segm.png``
    in ``folder`` (made if missing); the paths written.

    Raises:
        EngineUnavailableError: a COCO report and matplotlib (the ``[eval]`` extra) missing.
    """
    out = Path(folder)
    written = [write_json(out / "eval.json", report.to_dict(), indent=1)]
    return written + (plot_pr_curves(report, out) if report.kind == "coco" else [])


def parse_thresholds(text: str | float | Sequence[float]) -> list[float]:
    """``"0.2:0.5:0.05"`` (start:stop:step, both ends included), ``"0.2,0.3"`` or numbers -> the
    thresholds, each rounded to 6 decimals (so 0.2 + 3 * 0.05 is 0.35, not 0.35000000000000003).

    Raises:
        InvalidArgumentError: not numbers in [0, 1], or a range with a step <= 0 or stop < start.
    """
    from lang_sam.validation import check_threshold

    try:
        if isinstance(text, str) and ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            values = [start + i * step for i in range(int(round((stop - start) / step)) + 1)]
        elif isinstance(text, str):
            values = [float(v) for v in text.split(",") if v.strip()]
        else:
            values = [float(v) for v in ([text] if isinstance(text, (int, float)) else text)]
        out = [round(check_threshold("box_threshold", v), 6) for v in values]
    except ValueError:
        raise InvalidArgumentError(f"expected thresholds in [0, 1] as START:STOP:STEP (step > 0) or A,B,..., "
                                   f"got {text!r}") from None
    if not out:
        raise InvalidArgumentError(f"expected one threshold or more, got {text!r}")
    return list(dict.fromkeys(out))


@dataclass
class Comparison:
    """What :func:`compare` measured: ``rows``, one per engine and box threshold, each
    ``{"sam_type", "gdino_type", "box_threshold", "mask AP", "mask AP50", "box AP", "box AP50",
    "seconds_per_image", "encode_seconds_per_image"}`` (``seconds_per_image``: the image's
    encoding plus that threshold's detection and segmentation, what ``lang-sam predict`` would
    spend; mask figures None without ground-truth masks), ``best`` (the row of the highest mask
    AP, else box AP; the first of equals) and what :meth:`command` needs."""

    rows: list[dict]
    inputs: list[str]
    gt: str
    predict_args: list[str] = field(default_factory=list)

    @property
    def metric(self) -> str:
        return "mask AP" if any(r["mask AP"] is not None for r in self.rows) else "box AP"

    @property
    def best(self) -> dict:
        return max(self.rows, key=lambda r: -1.0 if r[self.metric] is None else r[self.metric])

    def command(self, row: dict, output: str = "labels") -> str:
        """The ``lang-sam predict`` + ``lang-sam eval`` lines that reproduce ``row``."""
        predict = ["lang-sam", "predict", *self.inputs, *self.predict_args, "--sam-type", row["sam_type"],
                   "--gdino-type", row["gdino_type"], "--box-threshold", str(row["box_threshold"]),
                   "--output", output, "--format", "coco"]
        ev = ["lang-sam", "eval", "--pred", f"{output}/coco/annotations.json", "--gt", self.gt]
        return " ".join(map(shlex.quote, predict)) + " && " + " ".join(map(shlex.quote, ev))

    def table(self) -> str:
        keys = ["mask AP", "mask AP50", "box AP", "box AP50", "seconds_per_image"]
        return text_table(["sam_type", "box_threshold", *keys, "best"],
                          [[r["sam_type"], f"{r['box_threshold']:g}", *(r[k] for k in keys),
                            "*" if r is self.best else ""] for r in self.rows])

    def to_dict(self) -> dict:
        return {"rows": self.rows, "best": self.best, "command": self.command(self.best), "metric": self.metric}


def compare(
    inputs: Sequence[str | os.PathLike] | str | os.PathLike,
    gt: str | os.PathLike,
    *,
    sam_types: Sequence[str],
    box_thresholds: Sequence[float] | str,
    gdino_type: str | None = None,
    text_threshold: float | None = None,
    prompt: str | None = None,
    classes: Sequence[str] | None = None,
    device: str | None = None,
    precision: str = "fp32",
    checkpoints: dict[str, str | os.PathLike] | None = None,
    output: str | os.PathLike | None = None,
    on_image: Callable[[str, int, int], None] | None = None,
) -> Comparison:
    """Label the images of ``inputs`` (as ``lang-sam predict`` collects them) with each SAM type of
    ``sam_types`` (and ``gdino_type``) at each of ``box_thresholds`` (:func:`parse_thresholds`
    forms), and score each setting against the COCO ground truth ``gt`` as :func:`evaluate` does.
    One engine is loaded at a time; each image is encoded once per engine (see the module doc).

    What to find: ``classes`` (``"car=car. automobile"`` specs, as ``--classes``), else ``prompt``,
    else the ground truth's category names. ``checkpoints``: local files by model type name
    (default: resolved as ``LangSAM`` resolves them). With ``output``: ``compare.json`` and
    ``compare.png`` there. ``on_image(sam_type, done, total)`` hears of each image finished.

    Raises:
        EvaluationInputError: an unreadable ground truth, or one no setting can be scored on.
        InvalidArgumentError: no SAM type, bad thresholds.
        InvalidRunError: no image in ``inputs``; what ``lang-sam predict`` refuses.
        EngineUnavailableError: ``output`` given and matplotlib (the ``[eval]`` extra) missing.
    """
    from lang_sam.lang_sam import LangSAM
    from lang_sam.labeling import formats as fmt
    from lang_sam.labeling.run import LabelSettings, collect_images, label_image
    from lang_sam.models.registry import DEFAULT_GDINO, get_spec
    from lang_sam.utils import load_image
    from lang_sam.validation import TEXT_THRESHOLD

    truth = read_coco(gt, "ground truth")
    thresholds = parse_thresholds(box_thresholds)
    if not sam_types:
        raise InvalidArgumentError("expected one SAM type or more, got none")
    for name in sam_types:  # an unknown type: said before the first engine runs
        get_spec("sam", name)
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    items = collect_images(inputs)
    gdino_type = gdino_type or DEFAULT_GDINO
    text_threshold = TEXT_THRESHOLD if text_threshold is None else text_threshold
    if not classes and not prompt:
        prompt = ". ".join(str(c["name"]) for c in truth.get("categories", []))
    predict_args = [a for c in (classes or []) for a in ("--classes", c)] or ["--prompt", str(prompt)]
    if text_threshold != TEXT_THRESHOLD:
        predict_args += ["--text-threshold", str(text_threshold)]
    checkpoints = dict(checkpoints or {})
    rows = []
    for sam_type in dict.fromkeys(sam_types):
        settings = {t: LabelSettings.create(prompt if not classes else None, list(classes) if classes else None,
                                            box_threshold=t, text_threshold=text_threshold, sam_type=sam_type,
                                            gdino_type=gdino_type) for t in thresholds}
        classmaps = {t: s.classmap() for t, s in settings.items()}  # ids as each predict run gives them
        model = LangSAM(sam_type, checkpoints.get(sam_type), gdino_type=gdino_type,
                        gdino_ckpt_path=checkpoints.get(gdino_type), device=device, precision=precision)
        builders = {t: fmt.CocoBuilder() for t in thresholds}
        seconds = {t: 0.0 for t in thresholds}
        encode_seconds = 0.0
        for n, item in enumerate(items, start=1):
            started = time.perf_counter()
            enc = model.engines.encode(load_image(item.path), eager=True)
            encode_seconds += time.perf_counter() - started
            for t in thresholds:
                started = time.perf_counter()
                labels = label_image(model, item, settings[t], formats=(), classmap=classmaps[t], image=enc)
                seconds[t] += time.perf_counter() - started
                for name in labels.names:
                    classmaps[t].id_of(name)
                builders[t].add(fmt.coco_image_record(item.rel.as_posix(), labels.width, labels.height,
                                                      labels.masks, labels.boxes, labels.scores, labels.names))
            if on_image is not None:
                on_image(sam_type, n, len(items))
        del model
        gc.collect()
        for t in thresholds:
            report = coco_scores(builders[t].to_dict(classmaps[t].names), truth)
            rows.append(_row(report, sam_type, gdino_type, t, (encode_seconds + seconds[t]) / len(items),
                             encode_seconds / len(items)))
    result = Comparison(rows, [str(i) for i in inputs], str(gt), predict_args)
    if output is not None:
        write_json(Path(output) / "compare.json", result.to_dict(), indent=1)
        plot_compare(rows, Path(output) / "compare.png", result.metric)
    return result


def _row(report: EvalReport, sam_type: str, gdino_type: str, threshold: float, seconds: float,
         encode_seconds: float) -> dict[str, Any]:
    figure = {f"{name} {m}": report.summary.get(iou, {}).get(m)
              for iou, name in (("segm", "mask"), ("bbox", "box")) for m in ("AP", "AP50")}
    return {"sam_type": sam_type, "gdino_type": gdino_type, "box_threshold": threshold, **figure,
            "seconds_per_image": round(seconds, 4), "encode_seconds_per_image": round(encode_seconds, 4)}
