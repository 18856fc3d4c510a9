"""Scores of a run against the user's own ground truth (``lang-sam eval``, :mod:`lang_sam.evaluate`).

- :func:`coco_scores`: a COCO prediction file (a run's ``coco/annotations.json``, or any COCO
  dataset whose annotations carry a ``score``) against a COCO ground truth, with pycocotools'
  ``COCOeval``: box (``bbox``) and mask (``segm``) AP, AP50, AP75 and AR (at 100 detections), each
  overall and per class, and each class's precision-recall curve at IoU 0.5.
- :func:`mot_scores`: MOTChallenge text files (a run's ``mot/<key>.txt``) against MOTChallenge
  ground truth, with TrackEval's HOTA, CLEAR (MOTA) and Identity (IDF1) metrics, per sequence
  and combined.

Matching: a predicted image is the ground-truth image of the same ``file_name`` (as a POSIX path;
else of the same base name, if only one has it); a predicted class is the ground-truth category of
the same name (case and surrounding spaces ignored). Predictions of other images or classes are
left out and counted in :attr:`EvalReport.notes`. The images scored are the ground-truth images
the prediction file lists (a run lists every image it labelled, those with no detection too).

pycocotools is called as its users call it: ``COCO.loadRes`` of the results, boxes alone for
``bbox`` and masks alone for ``segm`` (as detectron2 does, so that a mask's area is its own), then
``evaluate``, ``accumulate``, ``summarize``. Its prints are swallowed (library code prints
nothing). pycocotools reports ``-1`` for a metric with no ground truth: here that is ``None``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Sequence

import numpy as np

from lang_sam.errors import EvaluationInputError

logger = logging.getLogger(__name__)

__all__ = ["IOU_TYPES", "COCO_METRICS", "MOT_METRICS", "EvalReport", "coco_scores", "mot_scores",
           "read_coco", "read_mot", "box_iou_xywh"]

#: pycocotools' IoU types: boxes and masks.
IOU_TYPES = ("bbox", "segm")
#: The COCO figures reported, with their index in ``COCOeval.stats``.
COCO_METRICS = {"AP": 0, "AP50": 1, "AP75": 2, "AR": 8}
#: The tracking figures reported (TrackEval's names).
MOT_METRICS = ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW")

Score = float | None


@dataclass
class EvalReport:
    """What :func:`coco_scores` / :func:`mot_scores` found.

    - ``kind``: ``"coco"`` or ``"mot"``;
    - ``summary``: ``{"bbox": {"AP": ..., ...}, "segm": {...}}`` (COCO) or ``{"all": {"HOTA": ...}}``
      (MOT); values in [0, 1] (``IDSW`` a count), ``None`` where undefined;
    - ``breakdown``: per class (COCO: ``{"segm": {"car": {"AP": ...}}}``) or per sequence
      (MOT: ``{"sequences": {"clip": {"HOTA": ...}}}``);
    - ``curves``: COCO only, ``{"segm": {"car": {"recall": [...], "precision": [...]}}}`` at IoU
      0.5 on pycocotools' 101 recall points (precision 0 past the highest recall reached);
    - ``notes``: counts of what was matched and what was left out.
    """

    kind: str
    summary: dict[str, dict[str, Score]]
    breakdown: dict[str, dict[str, dict[str, Score]]] = field(default_factory=dict)
    curves: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The report as JSON-able dicts and lists."""
        return {"kind": self.kind, "summary": self.summary, "breakdown": self.breakdown,
                "curves": self.curves, "notes": self.notes}


# --------------------------------------------------------------------------------------------
# COCO
# --------------------------------------------------------------------------------------------

def read_coco(path: str | os.PathLike, what: str) -> dict:
    """A COCO dataset file (``what``: ``"prediction"`` or ``"ground truth"``, for messages); a run
    folder stands for its ``coco/annotations.json``.

    Raises:
        EvaluationInputError: a missing or unreadable file, or one without ``images`` and
            ``annotations`` lists.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "coco" / "annotations.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EvaluationInputError(f"the {what} file {p} cannot be read as COCO JSON: {exc}", path=str(p),
                                   expected="a COCO JSON file", got=type(exc).__name__) from None
    got = sorted(data) if isinstance(data, dict) else type(data).__name__
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations")):
        raise EvaluationInputError(f"the {what} file {p} is not a COCO dataset: expected a JSON object with "
                                   f"'images' and 'annotations' lists, got {got}", path=str(p),
                                   expected="images, annotations", got=str(got))
    return data


def _quiet():
    """pycocotools prints its progress; the library does not."""
    return contextlib.redirect_stdout(io.StringIO())


def _image_index(gt: dict) -> tuple[dict[str, int], dict[str, list[int]]]:
    by_path = {PurePosixPath(str(im["file_name"]).replace("\\", "/")).as_posix(): im["id"] for im in gt["images"]}
    by_base: dict[str, list[int]] = {}
    for name, image_id in by_path.items():
        by_base.setdefault(PurePosixPath(name).name, []).append(image_id)
    return by_path, by_base


def _key(name: Any) -> str:
    return str(name).strip().casefold()


def _prepare_gt(gt: dict) -> dict:
    """A copy of ``gt`` with what COCOeval needs and a hand-made file may lack: ``iscrowd`` 0,
    ``area`` (the box's), ``id`` of each annotation."""
    gt = copy.deepcopy(gt)
    gt.setdefault("categories", [])
    for i, a in enumerate(gt["annotations"], start=1):
        a.setdefault("iscrowd", 0)
        a.setdefault("id", i)
        if "area" not in a:
            x, y, w, h = a.get("bbox", (0, 0, 0, 0))
            a["area"] = float(w) * float(h)
    return gt


def coco_scores(pred: dict, gt: dict, iou_types: Sequence[str] = IOU_TYPES) -> EvalReport:
    """Score the COCO prediction dataset ``pred`` against the COCO ground truth ``gt`` (both as
    dicts, see :func:`read_coco`); see the module doc for the matching and the figures.

    ``segm`` is scored only if every ground-truth annotation has a ``segmentation`` (else it is
    left out with a warning).

    Raises:
        EvaluationInputError: no predicted image is a ground-truth image, or no predicted class is a
            ground-truth category (nothing could be scored).
    """
    from pycocotools.coco import COCO

    gt = _prepare_gt(gt)
    by_path, by_base = _image_index(gt)
    image_of: dict[Any, int] = {}
    for im in pred["images"]:
        name = PurePosixPath(str(im["file_name"]).replace("\\", "/")).as_posix()
        found = by_path.get(name)
        if found is None and len(by_base.get(PurePosixPath(name).name, ())) == 1:
            found = by_base[PurePosixPath(name).name][0]
        if found is not None:
            image_of[im["id"]] = found
    category = {_key(c["name"]): c["id"] for c in gt["categories"]}
    pred_names = {c["id"]: c["name"] for c in pred.get("categories", [])}
    class_of = {cid: category[_key(n)] for cid, n in pred_names.items() if _key(n) in category}
    if not image_of:
        raise EvaluationInputError(
            f"no predicted image is in the ground truth: expected file_names such as "
            f"{sorted(by_path)[:3]}, got {[im['file_name'] for im in pred['images'][:3]]}",
            path="", expected="shared file_name", got="none shared")
    if pred_names and not class_of:
        raise EvaluationInputError(
            f"no predicted class is a ground-truth category: expected some of {sorted(category)}, got "
            f"{sorted(pred_names.values())} (name the classes as the ground truth does: --classes)",
            path="", expected="shared class names", got="none shared")
    kept = [a for a in pred["annotations"] if a["image_id"] in image_of and a["category_id"] in class_of]
    notes = {"images": len(image_of), "images_not_in_gt": len(pred["images"]) - len(image_of),
             "gt_images_not_predicted": len(by_path) - len(set(image_of.values())),
             "predictions": len(kept), "predictions_left_out": len(pred["annotations"]) - len(kept),
             "classes_not_in_gt": len(pred_names) - len(class_of)}
    with _quiet():
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
    types = list(iou_types)
    if "segm" in types and any("segmentation" not in a for a in gt["annotations"]):
        logger.warning("the ground truth has annotations without a segmentation: mask AP is not scored")
        types.remove("segm")
    report = EvalReport("coco", {}, notes=notes)
    image_ids = sorted(set(image_of.values()))
    for iou_type in types:
        results = []
        for a in kept:
            r = {"image_id": image_of[a["image_id"]], "category_id": class_of[a["category_id"]],
                 "score": float(a.get("score", 1.0))}
            if iou_type == "bbox":
                r["bbox"] = [float(v) for v in a["bbox"]]
            else:
                r["segmentation"] = copy.deepcopy(a["segmentation"])
            results.append(r)
        _score(report, coco_gt, results, iou_type, image_ids)
    return report


def _load_results(coco_gt, results: list[dict]):
    """``coco_gt.loadRes(results)``; an empty list (which loadRes cannot take) is an empty result."""
    from pycocotools.coco import COCO

    with _quiet():
        if results:
            return coco_gt.loadRes(results)
        res = COCO()
        res.dataset = {"images": list(coco_gt.dataset["images"]), "categories": list(coco_gt.dataset["categories"]),
                       "annotations": []}
        res.createIndex()
        return res


def _defined(values: np.ndarray) -> Score:
    values = values[values > -1]
    return float(np.mean(values)) if values.size else None


def _score(report: EvalReport, coco_gt, results: list[dict], iou_type: str, image_ids: list[int]) -> None:
    from pycocotools.cocoeval import COCOeval

    coco_dt = _load_results(coco_gt, results)
    with _quiet():
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    report.summary[iou_type] = {k: (None if ev.stats[i] < 0 else float(ev.stats[i])) for k, i in COCO_METRICS.items()}
    precision = ev.eval["precision"]  # (T IoUs, R recall points, K classes, A areas, M max dets)
    recall = ev.eval["recall"]  # (T, K, A, M)
    names = {c["id"]: c["name"] for c in coco_gt.dataset["categories"]}
    per_class, curves = {}, {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        per_class[names[cat_id]] = {"AP": _defined(p), "AP50": _defined(p[0]), "AP75": _defined(p[5]),
                                    "AR": _defined(recall[:, k, 0, -1])}
        if (p[0] > -1).any():
            curves[names[cat_id]] = {"recall": [float(r) for r in ev.params.recThrs],
                                     "precision": [max(float(v), 0.0) for v in p[0]]}
    report.breakdown[iou_type] = per_class
    report.curves[iou_type] = curves


# --------------------------------------------------------------------------------------------
# MOT
# --------------------------------------------------------------------------------------------

def read_mot(path: str | os.PathLike, *, ground_truth: bool = False) -> dict[int, list[tuple[int, np.ndarray]]]:
    """A MOTChallenge text file: ``{frame: [(id, xywh float64 (4,)), ...]}`` (frames 1-based, as
    written). In ground truth, rows whose 7th value is 0 (MOTChallenge's "not considered") are left out.

    Raises:
        EvaluationInputError: a missing file or a line that is not ``frame,id,x,y,w,h,...``.
    """
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EvaluationInputError(f"{p} cannot be read: {exc}", path=str(p), expected="a MOT text file",
                                   got=type(exc).__name__) from None
    out: dict[int, list[tuple[int, np.ndarray]]] = {}
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = [v.strip() for v in line.replace(" ", "").split(",")]
        try:
            frame, tid = int(float(parts[0])), int(float(parts[1]))
            box = np.array([float(v) for v in parts[2:6]], dtype=np.float64)
            flag = float(parts[6]) if len(parts) > 6 else 1.0
        except (ValueError, IndexError):
            raise EvaluationInputError(f"{p} line {n}: expected frame,id,x,y,w,h[,...], got {line!r}",
                                       path=str(p), expected="frame,id,x,y,w,h", got=line) from None
        if box.shape != (4,):
            raise EvaluationInputError(f"{p} line {n}: expected 4 box values, got {line!r}", path=str(p),
                                       expected="x,y,w,h", got=line)
        if ground_truth and flag == 0:
            continue
        out.setdefault(frame, []).append((tid, box))
    return out


def box_iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(A, B)`` IoU of boxes ``a`` ``(A, 4)`` and ``b`` ``(B, 4)``, each ``x, y, w, h`` pixels."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    ax1, ay1, bx1, by1 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    w = np.clip(np.minimum(ax1[:, None], bx1[None]) - np.maximum(a[:, 0][:, None], b[:, 0][None]), 0, None)
    h = np.clip(np.minimum(ay1[:, None], by1[None]) - np.maximum(a[:, 1][:, None], b[:, 1][None]), 0, None)
    inter = w * h
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _sequence_data(gt: dict, pred: dict) -> dict:
    """TrackEval's per-sequence input: ids renumbered from 0, box IoU as the similarity."""
    frames = max([*gt, *pred, 0])
    gt_ids = {t: i for i, t in enumerate(sorted({t for rows in gt.values() for t, _ in rows}))}
    pr_ids = {t: i for i, t in enumerate(sorted({t for rows in pred.values() for t, _ in rows}))}
    data: dict[str, Any] = {"num_timesteps": frames, "num_gt_ids": len(gt_ids), "num_tracker_ids": len(pr_ids),
                            "gt_ids": [], "tracker_ids": [], "similarity_scores": [],
                            "num_gt_dets": sum(map(len, gt.values())), "num_tracker_dets": sum(map(len, pred.values()))}
    for f in range(1, frames + 1):
        g, p = gt.get(f, []), pred.get(f, [])
        data["gt_ids"].append(np.array([gt_ids[t] for t, _ in g], dtype=int))
        data["tracker_ids"].append(np.array([pr_ids[t] for t, _ in p], dtype=int))
        data["similarity_scores"].append(box_iou_xywh(np.array([b for _, b in g]).reshape(-1, 4),
                                                      np.array([b for _, b in p]).reshape(-1, 4)))
    return data


def _mot_figures(hota: dict, clear: dict, identity: dict) -> dict[str, Score]:
    return {"HOTA": float(np.mean(hota["HOTA"])), "DetA": float(np.mean(hota["DetA"])),
            "AssA": float(np.mean(hota["AssA"])), "MOTA": float(clear["MOTA"]), "IDF1": float(identity["IDF1"]),
            "IDSW": int(clear["IDSW"])}


def mot_scores(pairs: Mapping[str, tuple[str | os.PathLike, str | os.PathLike]]) -> EvalReport:
    """HOTA, MOTA, IDF1 (TrackEval) of each sequence ``name -> (prediction file, ground-truth file)``
    and of all combined (TrackEval's own combination: summed counts, not a mean of the sequences).
    Box IoU is the similarity; CLEAR and Identity match at IoU 0.5, HOTA over 0.05 ... 0.95.

    Raises:
        EvaluationInputError: no sequence, or a file :func:`read_mot` cannot read.
    """
    from trackeval.metrics import CLEAR, HOTA, Identity

    if not pairs:
        raise EvaluationInputError("no sequence to score: expected prediction and ground-truth MOT files "
                                   "with the same names", path="", expected="one sequence or more", got="none")
    quiet = {"PRINT_CONFIG": False}
    metrics = (HOTA(), CLEAR(quiet), Identity(quiet))
    per_seq: dict[str, list[dict]] = {}
    for name, (pred_path, gt_path) in sorted(pairs.items()):
        data = _sequence_data(read_mot(gt_path, ground_truth=True), read_mot(pred_path))
        per_seq[name] = [m.eval_sequence(data) for m in metrics]
    combined = [m.combine_sequences({n: r[i] for n, r in per_seq.items()}) for i, m in enumerate(metrics)]
    return EvalReport("mot", {"all": _mot_figures(*combined)},
                      breakdown={"sequences": {n: _mot_figures(*r) for n, r in per_seq.items()}},
                      notes={"sequences": len(per_seq)})
