"""What the ``lang-sam`` command reports: its exit statuses, its log lines, the progress bar of a
run and the summary after it. :mod:`lang_sam.cli` parses the flags and calls the library; this
module only prints (to stdout the summaries, to stderr the bar and the log lines).

One :class:`ProgressReporter` (a :class:`~lang_sam.labeling.hooks.RunHooks`) shows every run,
``lang-sam predict`` and ``lang-sam track``, in one process or on Ray; one :func:`print_summary`
prints a :class:`~lang_sam.labeling.run.RunSummary` or a
:class:`~lang_sam.labeling.video_run.TrackSummary`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from lang_sam.labeling.hooks import RunHooks

__all__ = ["EXIT_CODES", "CLI_NAMES", "cli_message", "ProgressReporter", "print_summary", "backend_lines"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MODELS, EXIT_STOPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

#: Every exit status of ``lang-sam`` (also in ``--help`` and the README).
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILED: "some images failed (listed in the summary; the others are written)",
    EXIT_USAGE: "usage error: bad flags, settings or inputs; nothing was labelled",
    EXIT_MODELS: "models or weights unavailable: missing and not downloadable, corrupt, or of "
                 "another architecture",
    EXIT_STOPPED: "the run stopped on an error that is no image's fault (out of memory, a full disk): "
                  "the images done are written; fix the cause and run again with --resume",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C): run again with --resume to finish",
}

#: How the command names the library's parameters in messages (:meth:`LangSAMError.worded`).
CLI_NAMES = {
    "resume": "--resume", "overwrite": "--overwrite", "prompt": "--prompt", "classes": "--classes",
    "box_threshold": "--box-threshold", "text_threshold": "--text-threshold", "nms": "--nms",
    "sam_type": "--sam-type", "gdino_type": "--gdino-type", "tile": "--tile (and its options)",
    "nms_on": "--nms 0.5", "detect_every": "--detect-every", "formats": "--format",
    "everything": "--everything",
}


def backend_lines() -> list[str]:
    """``lang-sam info``'s lines on the backends: those usable here (OpenVINO's version, or how to
    install it) and the CPU threads torch and OpenVINO run on (torch's intra-op threads, the
    physical cores unless set otherwise)."""
    import torch

    from lang_sam.models.openvino import BACKENDS, openvino_version, physical_cores

    ov = openvino_version()
    usable = [b for b in BACKENDS if b != "openvino" or ov]
    state = f"OpenVINO {ov}" if ov else 'openvino: not installed (pip install "lang-sam[openvino]")'
    return [f"backends: {', '.join(usable)} (--backend; {state})",
            f"CPU threads: {torch.get_num_threads()} (torch and OpenVINO; {physical_cores()} physical cores; "
            f"CPU capability {torch.backends.cpu.get_cpu_capability()})"]


class LogHandler(logging.Handler):
    """The command's log lines, ``lang-sam: <message>`` on stderr, written around the progress bar
    (``tqdm.write``), with the parameters a record names (its ``named`` attribute: template and
    Python names) worded as this command's flags."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            from lang_sam.errors import name_params

            named = getattr(record, "named", None)
            if named:
                template, params = named
                text = name_params(template, {k: CLI_NAMES.get(k, v) for k, v in params.items()})
            else:
                text = record.getMessage()
            if record.exc_info:  # -vv: the traceback of a failed image
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            tqdm.write(f"lang-sam: {text}", file=sys.stderr)
        except Exception:  # a log line must never end the command
            self.handleError(record)


def cli_message(exc: BaseException) -> str:
    """``exc``'s message with the parameters it names worded as this command's flags."""
    from lang_sam.errors import LangSAMError

    return exc.worded(CLI_NAMES) if isinstance(exc, LangSAMError) else str(exc)


# --------------------------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------------------------

#: Within an image, how each stage of :meth:`ProgressReporter.step` reads in the bar's postfix.
_STAGES = {"detect": "detect {}/{} tile(s)", "generate": "generate {}/{} point(s)",
           "segment": "segment {}/{} box(es)"}


class ProgressReporter(RunHooks):
    """The progress bar (``tqdm`` on stderr) of one ``lang-sam predict`` or ``track`` run, and its
    ``lang-sam: skipped <path>: <error>`` lines; :meth:`close` it when the run returns.

    The bar counts items (``unit``: ``"img"``, ``"video"``), one per :meth:`done` or
    :meth:`failed`, each naming its item in the postfix; with ``frames=True`` (a local video run)
    it counts frames instead, one per ``"frame"`` :meth:`step`, the total summed from the
    containers' headers (:func:`lang_sam.labeling.video_run.probe_video`; unknown when one header
    gives none). Within an image, the ``"detect"`` / ``"segment"`` / ``"generate"`` steps show in
    the postfix, at most twice a second besides each stage's first and last. A run with nothing
    to do draws no bar. ``quiet``: no bar (the skipped lines are still written).
    """

    def __init__(self, desc: str, unit: str, *, quiet: bool = False, frames: bool = False):
        self.desc, self.unit, self.quiet, self.frames = desc, unit, quiet, frames
        self.bar: Any = None
        self._shown = 0.0  # when a within-image step was last shown

    def start(self, todo: Sequence[Any]) -> None:
        from tqdm.auto import tqdm

        if not todo:  # no bar for nothing
            return
        total: int | None = len(todo)
        if self.frames:
            from lang_sam.labeling.video_run import probe_video

            counts = [probe_video(item.path)[0] for item in todo]
            total = None if any(c is None for c in counts) else sum(c for c in counts if c is not None)
        self.bar = tqdm(total=total, desc=self.desc, unit="frame" if self.frames else self.unit,
                        file=sys.stderr, disable=self.quiet, dynamic_ncols=True)

    def step(self, item: Any, stage: str, done: int, total: int | None) -> None:
        if self.bar is None:
            return
        if stage == "frame":
            self.bar.update(1)
            if done == 1 or done == total:
                self.bar.set_postfix_str(item.rel.as_posix(), refresh=False)
            return
        # Within an image: tiles detected, then boxes segmented (a tiled image can take an hour).
        if self.bar.disable:
            return
        now = time.monotonic()
        if done not in (0, total) and now - self._shown < 0.5:
            return
        self._shown = now
        what = _STAGES.get(stage, _STAGES["segment"]).format(done, total)
        self.bar.set_postfix_str(f"{item.rel.as_posix()}: {what}")

    def done(self, item: Any) -> None:
        if self.bar is not None and not self.frames:
            self.bar.update(1)
            self.bar.set_postfix_str(item.rel.as_posix(), refresh=False)

    def failed(self, item: Any, error: BaseException | str) -> None:
        from tqdm import tqdm

        tqdm.write(f"lang-sam: skipped {item.path}: {error}", file=sys.stderr)
        self.done(item)

    def close(self) -> None:
        """End the bar (a no-op when none was drawn)."""
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Kind:
    """How :func:`print_summary` words one kind of run, and which summary fields it reads."""

    command: str
    noun: str  # "image": "image(s)", "failed images:"
    verb: str  # what was done to an item: "labelled"
    count: str  # the field of the items found
    done: str  # the field of the items done now
    written: dict[str, str]  # format -> what it writes under the output


_PREDICT = _Kind("predict", "image", "labelled", "images", "labelled",
                 {"overlay": "overlays/", "masks": "masks/", "labelme": "labelme/",
                  "yolo": "yolo/labels/ + yolo/data.yaml", "coco": "coco/annotations.json"})
_TRACK = _Kind("track", "video", "tracked", "videos", "tracked",
               {"mot": "mot/", "coco": "coco/annotations.json", "overlay": "overlays/", "masks": "masks/"})


def print_summary(summary: Any) -> int:
    """Print the summary of a ``lang-sam predict`` (:class:`~lang_sam.labeling.run.RunSummary`) or
    ``lang-sam track`` run (:class:`~lang_sam.labeling.video_run.TrackSummary`, told apart by its
    ``tracked`` field) on stdout; return the exit status it calls for: 130 interrupted, 1 some
    items failed, else 0."""
    kind = _TRACK if hasattr(summary, "tracked") else _PREDICT
    done = getattr(summary, kind.done)
    print(f"lang-sam {kind.command}: {getattr(summary, kind.count)} {kind.noun}(s): {done} {kind.verb}, "
          f"{summary.skipped} skipped (already complete), {len(summary.failed)} failed"
          + (", interrupted" if summary.interrupted else ""))
    outputs = f"outputs in {summary.output}: {', '.join(kind.written[f] for f in summary.formats)}"
    for line in (_track_lines if kind is _TRACK else _predict_lines)(summary, outputs):
        print(line)
    for title, rows in ((f"failed {kind.noun}s:", summary.failed),
                        # tracked, with a warning (a video cut short of its header's frame count)
                        ("warnings:", getattr(summary, "warnings", []))):
        if rows:
            print(title)
            for item, why in rows:
                print(f"  {item.path}: {why}")
    if summary.interrupted:
        print(f"interrupted: re-run the same command with --resume to finish ({summary.left} {kind.noun}(s) left)")
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary.failed else EXIT_OK


def _predict_lines(summary: Any, outputs: str) -> Iterator[str]:
    # Each class quoted: a class "car wheel" (one phrase, from a prompt without ".") is not two.
    yield f"{outputs}; classes ({len(summary.classes)}): {', '.join(map(json.dumps, summary.classes)) or '(none)'}"
    if summary.labelled:
        yield (f"{summary.detections} detection(s) in the {summary.labelled} image(s) labelled now; "
               f"{summary.seconds:.1f} s, {_rate(summary)}")
    if summary.dropped:
        yield f"{summary.dropped} detection(s) matched no class and were dropped"
    if summary.run_images != summary.labelled:  # a resumed run: the files hold earlier work too
        yield f"the output holds {summary.run_detections} detection(s) of {summary.run_images} image(s)"
    per_format = _per_format(summary)
    if per_format:
        yield f"instances written per format: {per_format}"


def _track_lines(summary: Any, outputs: str) -> Iterator[str]:
    yield outputs
    if summary.tracked:
        yield (f"{summary.frames} frame(s), {summary.tracks} track(s), {summary.detections} tracked "
               f"object(s) over all frames in the {summary.tracked} video(s) tracked now; "
               f"{summary.seconds:.1f} s, {summary.frames_per_second:.2f} frames/s")


def _rate(summary: Any) -> str:
    """Images per second, or seconds per image when an image takes over a second (a rate of
    ``0.000 images/s`` says nothing of an hour per image)."""
    if summary.labelled and summary.images_per_second < 1:
        return f"{summary.seconds / summary.labelled:.1f} s/image"
    return f"{summary.images_per_second:.2f} images/s"


def _per_format(summary: Any) -> str:
    """``"coco 14 of 14, yolo 11 of 14 (3 left out: 1 empty mask, 2 outline <= 100 px)"``: what each
    format that writes instances holds of the run's detections, and why it left the others out."""
    parts = []
    for f, reasons in summary.export_dropped.items():
        text = f"{f} {summary.written(f)} of {summary.run_detections}"
        if reasons:
            why = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
            text += f" ({sum(reasons.values())} left out: {why})"
        parts.append(text)
    if not summary.run_detections or not parts:
        return ""
    note = f" ({summary.uncounted} image(s) from an older lang-sam not counted)" if summary.uncounted else ""
    return ", ".join(parts) + note
