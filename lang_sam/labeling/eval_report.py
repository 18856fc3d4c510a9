"""What ``lang-sam eval`` / ``compare`` show and write: text tables, the JSON file, the plots.

- :func:`report_table`: an :class:`~lang_sam.labeling.eval_metrics.EvalReport` as a text table
  (overall, then per class or sequence);
- :func:`plot_pr_curves`: one PNG per IoU type, a precision-recall curve per class at IoU 0.5;
- :func:`plot_compare`: AP per engine against the box threshold (``lang-sam compare``).

Plots are drawn with matplotlib's object API on an Agg canvas (no pyplot, no global state, no
display) and written atomically (:mod:`lang_sam.labeling.atomic`). matplotlib is the ``[eval]``
extra; it is imported only here, inside the functions.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Sequence

from lang_sam.errors import EngineUnavailableError
from lang_sam.labeling.atomic import atomic_write_bytes
from lang_sam.labeling.eval_metrics import EvalReport

__all__ = ["format_score", "text_table", "report_table", "plot_pr_curves", "plot_compare", "MATPLOTLIB_INSTALL"]

MATPLOTLIB_INSTALL = "pip install 'lang-sam[eval]'"


def format_score(value: Any) -> str:
    """A score for a table: 3 decimals, ``-`` for None (undefined), whole counts as they are."""
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell, the first left-aligned and the rest right-aligned."""
    cells = [[str(h) for h in header]] + [[c if isinstance(c, str) else format_score(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for n, r in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report_table(report: EvalReport) -> str:
    """The report as text: one table per IoU type (COCO: ``all`` then each class) or one of the
    sequences (MOT: ``all`` then each sequence)."""
    parts = []
    for group, summary in report.summary.items():
        metrics = list(summary)
        title = {"bbox": "boxes", "segm": "masks"}.get(group, "tracks")
        detail = report.breakdown.get(group, report.breakdown.get("sequences", {}) if report.kind == "mot" else {})
        rows = [["all", *summary.values()]] + [[name, *(v.get(m) for m in metrics)] for name, v in detail.items()]
        parts.append(f"{title}:\n" + text_table(["class" if report.kind == "coco" else "sequence", *metrics], rows))
    return "\n\n".join(parts)


def _figure(width: float = 6.4, height: float = 4.8):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise EngineUnavailableError(f"the plots need matplotlib, which is not installed ({exc}): {MATPLOTLIB_INSTALL}",
                                     package="matplotlib", required="matplotlib>=3.7") from None
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())


def plot_pr_curves(report: EvalReport, folder: str | os.PathLike) -> list[Path]:
    """``pr_<bbox|segm>.png`` in ``folder``: each class's precision against recall at IoU 0.5
    (its AP50 is the area under it), the class's AP50 in the legend.

    Raises:
        EngineUnavailableError: matplotlib is not installed.
    """
    written = []
    for iou_type, curves in report.curves.items():
        fig = _figure()
        ax = fig.add_subplot()
        for name, curve in curves.items():
            ap50 = report.breakdown.get(iou_type, {}).get(name, {}).get("AP50")
            ax.plot(curve["recall"], curve["precision"], label=f"{name} (AP50 {format_score(ap50)})")
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
               title=f"precision-recall at IoU 0.5, {'masks' if iou_type == 'segm' else 'boxes'}")
        ax.grid(alpha=0.3)
        if curves:
            ax.legend(loc="lower left", fontsize="small")
        written.append(_save(fig, Path(folder) / f"pr_{iou_type}.png"))
    return written


def plot_compare(rows: Sequence[dict], path: str | os.PathLike, metric: str = "mask AP") -> Path:
    """``rows`` (``{"sam_type", "box_threshold", metric, "seconds_per_image"}``) as AP against the
    box threshold, a line per engine, each point's time per image beside it.

    Raises:
        EngineUnavailableError: matplotlib is not installed.
    """
    fig = _figure(7.2, 4.8)
    ax = fig.add_subplot()
    for engine in dict.fromkeys(r["sam_type"] for r in rows):
        mine = [r for r in rows if r["sam_type"] == engine]
        xs = [r["box_threshold"] for r in mine]
        ys = [r[metric] if r[metric] is not None else 0.0 for r in mine]
        ax.plot(xs, ys, marker="o", label=engine)
        for x, y, r in zip(xs, ys, mine):
            ax.annotate(f"{r['seconds_per_image']:.2g}s", (x, y), textcoords="offset points", xytext=(0, 5),
                        fontsize="x-small", ha="center")
    ax.set(xlabel="box threshold", ylabel=metric, ylim=(0, 1.05), title=f"{metric} per engine and box threshold "
           "(time per image)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)
