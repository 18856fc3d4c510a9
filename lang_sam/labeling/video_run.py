"""Tracking runs: videos in, track files out. ``lang-sam track``, with or without ``--ray``, runs
each video through :func:`track_video`, the one-video job.

1. :func:`collect_videos`: the videos named by files, folders (searched recursively for
   :data:`VIDEO_EXTENSIONS`) and ``.txt`` lists, each with its path relative to its input
   (``rel``; ``key`` is ``rel`` without its suffix and names the video's outputs);
2. :func:`track_video`: one video through :meth:`LangSAM.predict_video`, frame by frame, into the
   writers of :mod:`lang_sam.labeling.video_formats`; the video's record
   (``.lang-sam/videos/<key>.json``) is written last, so a video counts as done only when all its
   files are whole. Ctrl-C (or any error) mid-video removes its unfinished files (the overlay's
   temporary mp4, the staging folder of its per-frame PNGs), and a resumed run sweeps what a
   killed one left; a video that ends clearly short of its header's frame count is tracked as
   far as it goes and its record (and the run's summary) carries the warning;
3. :class:`TrackRun`: the output folder being filled: its lock, its settings
   (``.lang-sam/run.json``, compared on resume), the videos still to do, and the run-wide
   ``coco/annotations.json`` rebuilt from the videos' records by :meth:`TrackRun.finish`.

:func:`track_folder` runs them in one process; :func:`lang_sam.labeling.distributed.track_dataset`
runs step 2 on Ray workers (one video per task) and steps 1 and 3 in the driver. Nothing here
prints.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Callable, Sequence, cast

import numpy as np

from lang_sam.errors import (
    ImageNotFoundError,
    InvalidImageError,
    InvalidPromptError,
    InvalidRunError,
    InvalidThresholdError,
    InvalidVideoError,
    OutputCollisionError,
    RunStoppedError,
    TrackingNotSupportedError,
    VideoNotFoundError,
)
from lang_sam.labeling import video_formats as vf
from lang_sam.labeling.atomic import sweep_temp_files, write_json
from lang_sam.labeling.lock import OutputLock
from lang_sam.labeling.run import STATE_DIR, FolderRun, _is_run_folder, _read_json, _read_list, failure_reason, local_path
from lang_sam.validation import check_prompt, check_threshold
from lang_sam.video import DETECT_EVERY, FrameTap
from lang_sam.video_io import VIDEO_SUFFIXES

if TYPE_CHECKING:
    from lang_sam.lang_sam import LangSAM

logger = logging.getLogger(__name__)

__all__ = [
    "VIDEO_EXTENSIONS", "VideoItem", "collect_videos", "parse_video_formats", "TrackSettings",
    "track_video", "TrackRun", "TrackSummary", "track_folder", "VIDEO_FAILURES", "TRACK_RUN_ERRORS",
    "video_failure_kind",
]

#: What a folder is searched for (lower-cased suffixes); a file named directly may be any video.
VIDEO_EXTENSIONS = frozenset(VIDEO_SUFFIXES)
RUN_VERSION = 1
#: The folders a tracking run writes in its output folder.
OUTPUT_DIRS = ("mot", "coco", "overlays", "masks", STATE_DIR)

#: What one video may raise that fails that video only (the run goes on and lists it).
VIDEO_FAILURES = (InvalidVideoError, VideoNotFoundError, InvalidImageError, ImageNotFoundError)
#: What would be the same for every video: the run raises it. Checked before :data:`VIDEO_FAILURES`.
TRACK_RUN_ERRORS = (InvalidPromptError, InvalidThresholdError, TrackingNotSupportedError)


def video_failure_kind(exc: BaseException) -> str:
    """``"run"`` (:data:`TRACK_RUN_ERRORS`: raised as it is), ``"video"`` (:data:`VIDEO_FAILURES`:
    the video fails, the run goes on) or ``"stop"`` (anything else: out of memory, a full disk, a
    bug: the run stops with :class:`~lang_sam.errors.RunStoppedError`)."""
    if isinstance(exc, TRACK_RUN_ERRORS):
        return "run"
    return "video" if isinstance(exc, VIDEO_FAILURES) else "stop"


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VideoItem:
    """A video to track: its path, and its path relative to the folder it was given in."""

    path: Path
    rel: PurePosixPath

    @property
    def key(self) -> str:
        """``rel`` without its suffix: the stem of every output of this video."""
        return self.rel.with_suffix("").as_posix()


def _is_video(p: Path) -> bool:
    return p.suffix.lower() in VIDEO_EXTENSIONS


def collect_videos(inputs: Sequence[str | os.PathLike],
                   exclude: str | os.PathLike | None = None) -> list[VideoItem]:
    """The videos named by ``inputs``: video files (any suffix), folders (searched recursively for
    :data:`VIDEO_EXTENSIONS`, any case; folders holding a lang-sam run are skipped) and ``.txt``
    lists (one path a line, relative to the list's folder, ``#`` comments). ``rel`` as in
    :func:`lang_sam.labeling.run.collect_images`. Raises :class:`InvalidRunError` for a missing
    input, no video at all, or two videos whose outputs would collide."""
    excl = Path(exclude).resolve() if exclude is not None else None
    items: list[VideoItem] = []
    seen: set[Path] = set()

    def add(path: Path, rel: PurePosixPath) -> None:
        real = path.resolve()
        if real in seen or (excl is not None and (real == excl or excl in real.parents)):
            return
        seen.add(real)
        items.append(VideoItem(path, rel))

    for raw in inputs:
        p = local_path(raw, "input")
        if p.is_dir():
            found: list[Path] = []
            for folder, dirs, files in os.walk(p):
                here = Path(folder)
                dirs[:] = sorted(d for d in dirs if d != STATE_DIR and not _is_run_folder(here / d))
                found.extend(here / f for f in files if _is_video(here / f) and (here / f).is_file())
            for f in sorted(found, key=lambda f: f.relative_to(p).as_posix()):
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
                f"input not found: {str(raw)!r} (expected a video file, a folder of videos or a .txt list)")
    if not items:
        raise InvalidRunError(
            f"no videos found in {', '.join(map(str, inputs))} "
            f"(looked for {', '.join(sorted(VIDEO_EXTENSIONS))}, any case)")
    by_key: dict[str, VideoItem] = {}
    for item in items:
        other = by_key.setdefault(item.key.casefold(), item)
        if other is not item:
            raise InvalidRunError(
                f"{str(other.path)!r} and {str(item.path)!r} would write the same outputs "
                f"({item.key!r}); give their common parent folder instead, or rename one")
    return items


def parse_video_formats(values: Sequence[str] | str | None) -> list[str]:
    """Formats from names, repeated or comma-separated (``None``: :data:`~lang_sam.labeling.video_formats.DEFAULT_VIDEO_FORMATS`)."""
    if not values:
        return list(vf.DEFAULT_VIDEO_FORMATS)
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for v in values:
        for f in v.split(","):
            f = f.strip().lower()
            if not f:
                continue
            if f not in vf.VIDEO_FORMATS:
                raise InvalidRunError(f"unknown format {f!r}: expected some of {', '.join(vf.VIDEO_FORMATS)}")
            if f not in out:
                out.append(f)
    if not out:
        raise InvalidRunError(f"no format named: expected some of {', '.join(vf.VIDEO_FORMATS)}")
    return out


@dataclass(frozen=True)
class TrackSettings:
    """What every video of a run is tracked with: the prompt, GroundingDINO's thresholds,
    ``detect_every`` (detect on the first frame with detections, then every that many frames) and
    the model types (named in the run's record, so resuming with other models is refused)."""

    prompt: str
    box_threshold: float = 0.3
    text_threshold: float = 0.25
    detect_every: int = DETECT_EVERY
    sam_type: str | None = None
    gdino_type: str | None = None

    @classmethod
    def create(cls, prompt: str, *, box_threshold: float = 0.3, text_threshold: float = 0.25,
               detect_every: int = DETECT_EVERY, sam_type: str | None = None,
               gdino_type: str | None = None) -> "TrackSettings":
        """Checked settings (:class:`InvalidPromptError`, :class:`InvalidThresholdError`,
        :class:`InvalidRunError` for ``detect_every`` not a whole number >= 1)."""
        check_prompt(prompt)
        if isinstance(detect_every, bool) or not isinstance(detect_every, (int, np.integer)) or detect_every < 1:
            raise InvalidRunError(f"detect_every must be a whole number >= 1, got {detect_every!r}")
        return cls(prompt, check_threshold("box_threshold", box_threshold),
                   check_threshold("text_threshold", text_threshold), int(detect_every), sam_type, gdino_type)

    def config(self) -> dict:
        """The JSON-able settings stored in ``run.json`` and compared on resume."""
        return {"prompt": self.prompt, "box_threshold": self.box_threshold,
                "text_threshold": self.text_threshold, "detect_every": self.detect_every,
                "sam_type": self.sam_type, "gdino_type": self.gdino_type}


# --------------------------------------------------------------------------------------------
# One video
# --------------------------------------------------------------------------------------------

def record_path(root: Path, key: str) -> Path:
    """Where a video's record goes: ``.lang-sam/videos/<key>.json``."""
    return Path(root) / STATE_DIR / "videos" / f"{key}.json"


def planned_outputs(layout: vf.VideoLayout, key: str, formats: Sequence[str]) -> list[Path]:
    """The files of ``formats`` for one video whose names are known before it is tracked (the
    per-frame PNGs are not: their folder is ``layout.masks(key)``)."""
    out = []
    if "mot" in formats:
        out.append(layout.mot(key))
    if "overlay" in formats:
        out.append(layout.overlay(key))
    return out


def written_file(root: Path) -> Path:
    """``.lang-sam/written``: every output a tracking run writes, listed (relative path a line; a
    folder of per-frame PNGs as ``masks/<key>/``) before it is written, so that files of a video
    stopped before its record are still known as this run's."""
    return Path(root) / STATE_DIR / "written"


def claim(root: Path, rels: Sequence[str]) -> None:
    """Append ``rels`` to :func:`written_file` (one short ``O_APPEND`` write: Ray workers sharing
    the folder do not interleave within a line)."""
    if rels:
        path = written_file(root)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write("".join(r + "\n" for r in rels))


_FRAME_PNG = re.compile(r"^\d{6}\.png$")
_FRAME_PNG_TMP = re.compile(r"^\.\d{6}\.png\.\d+\.tmp$")


def _sweep_frame_pngs(folder: Path) -> None:
    """Remove what a killed run left of a video's per-frame PNGs: the staging folders
    (``.<folder name>.<pid>.tmp`` beside ``folder``, :func:`~lang_sam.labeling.video_formats.staging_folder`)
    and the temporary PNGs (``.<frame:06d>.png.<pid>.tmp``) that earlier versions wrote in
    ``folder``; nothing else is touched."""
    staged = re.compile(rf"^\.{re.escape(folder.name)}\.\d+\.tmp$")
    if folder.parent.is_dir():
        for p in folder.parent.iterdir():
            if staged.match(p.name) and p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
    if folder.is_dir():
        for p in folder.iterdir():
            if _FRAME_PNG_TMP.match(p.name) and p.is_file():
                p.unlink(missing_ok=True)


def probe_video(path: str | os.PathLike) -> tuple[int | None, float | None]:
    """``(frames, fps)`` of a video file from its container header (either None when unknown or
    unreadable): for progress bars and the overlay's frame rate."""
    from lang_sam.video_io import open_video

    try:
        source = open_video(path)
    except VIDEO_FAILURES:  # an unreadable video fails when it is tracked, with its own error
        return None, None
    return source.frame_count, source.fps


def track_video(
    model: Any,
    item: VideoItem,
    settings: TrackSettings,
    output: str | os.PathLike,
    formats: Sequence[str],
    *,
    on_frame: Callable[[VideoItem, int, int | None], None] | None = None,
) -> dict:
    """Track one video into ``output`` and return its record (also written, last, to
    ``.lang-sam/videos/<key>.json``): ``{"video", "formats", "outputs": {format: [files relative
    to output]}, "frames", "frames_declared" (the header's count, None when it gives none),
    "warnings" (e.g. that the video ended clearly short of that count), "tracks", "detections",
    "seconds", "coco": [per-frame COCO records]}`` (``coco`` only with that format).

    ``model`` is a :class:`~lang_sam.LangSAM` whose segmenter can track. Frames are decoded one at
    a time (:func:`lang_sam.video_io.open_video`), fed to ``model.predict_video`` and each
    :class:`~lang_sam.results.TrackedFrame` to the writers as it comes; ``on_frame(item, done,
    total)`` hears of each frame (``total`` from the header, None when unknown). On any error,
    Ctrl-C included, the writers' unfinished files are removed and the error re-raised; no record
    is written, so a resumed run does the video again. This is the function both the
    single-process command and each Ray task run.
    """
    from lang_sam.video_io import open_video

    started = time.perf_counter()
    root = Path(output)
    layout = vf.VideoLayout(root)
    record_file = record_path(root, item.key)
    record_file.unlink(missing_ok=True)  # a stale record must not outlive a redone video
    sweep_temp_files(planned_outputs(layout, item.key, formats) + [record_file])
    _sweep_frame_pngs(layout.masks(item.key))
    planned = [layout.rel(p) for p in planned_outputs(layout, item.key, formats)]
    claim(root, planned + ([layout.rel(layout.masks(item.key)) + "/"] if "masks" in formats else []))
    source = open_video(item.path)
    total = source.frame_count
    sinks = vf.open_sinks(layout, item.key, item.rel.as_posix(), formats, source.fps or 25.0)
    tap = FrameTap(source)
    frames = detections = 0
    tracks: set[int] = set()

    def count(tracked) -> None:
        nonlocal frames, detections
        frames += 1
        detections += len(tracked.phrases)
        tracks.update(int(t) for t in tracked.track_ids.tolist())
        if on_frame is not None:
            on_frame(item, frames, total)

    def no_frame() -> InvalidVideoError:
        return InvalidVideoError(f"{item.path}: no frame was decoded", source=str(item.path),
                                 expected="at least one frame", got="none")

    written = vf.feed_sinks(
        model.predict_video(tap, settings.prompt, detect_every=settings.detect_every,
                            box_threshold=settings.box_threshold, text_threshold=settings.text_threshold),
        tap, list(sinks.values()), no_frame=no_frame, on_frame=count)
    outputs = dict(zip(sinks, written))
    record = {"video": item.rel.as_posix(), "formats": list(formats), "outputs": outputs,
              "frames": frames, "frames_declared": source.frame_count,
              "warnings": [source.warning] if source.warning else [], "tracks": len(tracks),
              "detections": detections, "seconds": round(time.perf_counter() - started, 3)}
    if "coco" in sinks:
        record["coco"] = cast(vf.CocoVideoRecord, sinks["coco"]).frames  # open_sinks' "coco" sink
    write_json(record_file, record)
    return record


# --------------------------------------------------------------------------------------------
# The output folder
# --------------------------------------------------------------------------------------------

@dataclass
class TrackSummary:
    """What a tracking run did. ``tracked``, ``frames``, ``tracks`` and ``detections`` count this
    call's work; ``failed`` pairs each failed video with the reason; ``warnings`` each video
    tracked now with a warning of its record (a video that ended clearly short of its header's
    frame count); ``run_videos`` is the number of videos the output holds (resumed ones included)."""

    output: Path
    formats: list[str]
    videos: int = 0
    tracked: int = 0
    skipped: int = 0
    frames: int = 0
    tracks: int = 0
    detections: int = 0
    failed: list[tuple[VideoItem, str]] = field(default_factory=list)
    warnings: list[tuple[VideoItem, str]] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    run_videos: int = 0

    @property
    def left(self) -> int:
        """Videos neither done nor failed (after an interruption)."""
        return self.videos - self.tracked - self.skipped - len(self.failed)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class TrackRun(FolderRun):
    """An output folder being filled by one tracking run.

    Opening it takes the folder's lock (:class:`~lang_sam.labeling.lock.OutputLock`, as
    ``lang-sam predict``: a second run into the same folder is refused at once) and checks the
    folder: one holding an earlier tracking run (``.lang-sam/run.json``) needs ``resume=True`` and
    the same settings and formats (else :class:`InvalidRunError` says what differs); one holding an
    image labelling run is refused. :meth:`start` refuses (:class:`OutputCollisionError`) outputs
    that would replace files lang-sam did not write, and returns the videos still to do (with
    ``resume``, a video whose record lists all its files, all on disk, is skipped).
    :meth:`settle` applies the failure policy to each video's outcome; :meth:`close` writes
    ``coco/annotations.json`` from the records of every video done, in input order.
    """

    def __init__(self, output: str | os.PathLike, settings: TrackSettings, formats: Sequence[str],
                 *, resume: bool = False):
        out = local_path(output, "output")
        if out.exists() and not out.is_dir():
            raise InvalidRunError(f"output {str(out)!r} exists and is not a folder")
        self.root = out
        self.layout = vf.VideoLayout(out)
        self.settings = settings
        self.formats = parse_video_formats(list(formats))
        self.config = dict(settings.config(), formats=sorted(self.formats))
        self.summary = TrackSummary(output=out, formats=list(self.formats))
        self.items: list[VideoItem] | None = None
        self.done: dict[str, dict] = {}
        self.lock = OutputLock(out / STATE_DIR, out).acquire()
        try:
            self._open(resume)
        except BaseException:
            self.release()
            raise

    @property
    def run_file(self) -> Path:
        return self.root / STATE_DIR / "run.json"

    def _open(self, resume: bool) -> None:
        state = _read_json(self.run_file)
        if state is None:
            self.resumed = False
            if resume:
                logger.info("resume: no earlier run in %s; starting afresh", self.root)
            return
        if not isinstance(state, dict) or state.get("kind") != "track":
            raise InvalidRunError(
                f"{self.root} holds the outputs of a lang-sam image labelling run (lang-sam predict), "
                "not of a tracking run: choose another output folder")
        if not resume:
            raise InvalidRunError.naming(
                f"{self.root} already holds the outputs of an earlier lang-sam track run. Use {{resume}} "
                "to finish it with the same settings, or another output folder.", resume="resume=True")
        old = state.get("config", {})
        diff = [k for k in self.config if old.get(k) != self.config[k]]
        if diff:
            raise InvalidRunError.naming(
                f"resume: {self.root} was tracked with other settings ("
                + "; ".join(f"{{{k}}}: was {old.get(k)!r}, now {self.config[k]!r}" for k in diff)
                + "). Use the same settings, or another output folder.", **{k: k for k in diff})
        self.resumed = True

    def complete_record(self, item: VideoItem) -> dict | None:
        """The video's record if it is for this video and every file it lists is on disk."""
        rec = _read_json(record_path(self.root, item.key))
        if not isinstance(rec, dict) or rec.get("video") != item.rel.as_posix():
            return None
        if sorted(rec.get("formats", ())) != sorted(self.formats):
            return None
        for files in rec.get("outputs", {}).values():
            if not all((self.root / rel).is_file() for rel in files):
                return None
        return rec

    def _ours(self) -> set[str]:
        """Files (and ``folder/`` prefixes) the earlier runs here wrote: those listed in
        :func:`written_file` and in the videos' records."""
        try:
            ours = set(filter(None, written_file(self.root).read_text(encoding="utf-8").splitlines()))
        except OSError:
            ours = set()
        folder = self.root / STATE_DIR / "videos"
        if folder.is_dir():
            for path in folder.rglob("*.json"):
                rec = _read_json(path)
                if isinstance(rec, dict) and isinstance(rec.get("outputs"), dict):
                    ours.update(r for files in rec["outputs"].values() for r in files if isinstance(r, str))
        return ours

    def start(self, items: Sequence[VideoItem]) -> list[VideoItem]:
        """Take the run's videos; return those still to track (see the class doc)."""
        items = list(items)
        ours = self._ours() if self.run_file.is_file() else set()
        folders = tuple(r for r in ours if r.endswith("/"))

        def foreign_file(path: Path) -> bool:
            rel = self.layout.rel(path)
            return (path.exists() or path.is_symlink()) and rel not in ours and not rel.startswith(folders)

        paths = [p for item in items for p in planned_outputs(self.layout, item.key, self.formats)]
        if "masks" in self.formats:
            paths += [p for item in items if self.layout.masks(item.key).is_dir()
                      for p in sorted(self.layout.masks(item.key).iterdir()) if _FRAME_PNG.match(p.name)]
        if "coco" in self.formats:
            paths.append(self.layout.coco)
        foreign = [self.layout.rel(p) for p in paths if foreign_file(p)]
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" (+{len(foreign) - 5} more)" if len(foreign) > 5 else "")
            raise OutputCollisionError(
                f"{self.root} holds {len(foreign)} file(s) that lang-sam did not write where this run "
                f"writes its outputs ({shown}); they are never written over. Move them away, or "
                "choose another output folder.", path=str(self.root), files=foreign)
        write_json(self.run_file, {"kind": "track", "version": RUN_VERSION, "config": self.config}, indent=1)
        self.items = items
        self.summary.videos = len(items)
        if self.resumed:
            for item in items:
                rec = self.complete_record(item)
                if rec is not None:
                    self.done[item.key] = {k: v for k, v in rec.items() if k != "coco"}
                    self.summary.skipped += 1
        return [item for item in items if item.key not in self.done]

    def settle(self, item: VideoItem, outcome: dict | BaseException | tuple[str, str, str | None],
               on_failure: Callable[[VideoItem, BaseException | str], None] | None = None) -> dict | None:
        """One video's outcome: its record (done), the exception tracking it raised, or
        ``(kind, reason, traceback)`` from another process (kind by :func:`video_failure_kind`).
        ``"run"`` errors are raised; a ``"video"`` failure is listed (``on_failure`` hears of
        it) and the run goes on; ``"stop"`` raises :class:`RunStoppedError`."""
        if isinstance(outcome, dict):
            # The per-frame COCO records are read back from the record file by finish(), not held.
            self.done[item.key] = {k: v for k, v in outcome.items() if k != "coco"}
            s = self.summary
            s.tracked += 1
            s.frames += int(outcome.get("frames", 0))
            s.tracks += int(outcome.get("tracks", 0))
            s.detections += int(outcome.get("detections", 0))
            s.warnings.extend((item, str(w)) for w in outcome.get("warnings", ()))
            return outcome
        error: BaseException | str
        if isinstance(outcome, tuple):
            kind, error, trace = outcome
        else:
            kind, error, trace = video_failure_kind(outcome), outcome, None
        if kind == "run":
            raise error if isinstance(error, BaseException) else InvalidRunError(str(error))
        if kind == "video":
            why = error if isinstance(error, str) else failure_reason(error)
            self.summary.failed.append((item, why))
            logger.info("%s failed: %s", item.rel, why)
            if on_failure is not None:
                on_failure(item, error)
            return None
        cause = error if isinstance(error, BaseException) else None
        if trace:
            logger.error("tracking %s failed; the run stops\n%s", item.rel, trace.rstrip())
        else:
            logger.error("tracking %s failed; the run stops", item.rel, exc_info=cause)
        text = error if isinstance(error, str) else failure_reason(error)
        err = RunStoppedError.naming(
            f"the run stopped at {item.rel.as_posix()}: {text}. This is not a fault of that video "
            f"(out of memory, a full disk, or a bug: the traceback is in the log). "
            f"{self.summary.tracked} video(s) were tracked before it; their files are in {self.root}. "
            "Fix the cause, then run again with {resume} to track the rest.", resume="resume=True")
        err.output, err.image, err.labelled, err.cause = str(self.root), item.rel.as_posix(), self.summary.tracked, text
        raise err from cause

    def finish(self) -> TrackSummary:
        """Write ``coco/annotations.json`` from the records of the videos done (input order)."""
        if self.items is None:
            return self.summary
        done = [item for item in self.items if item.key in self.done]
        if "coco" in self.formats:
            claim(self.root, [self.layout.rel(self.layout.coco)])

            def frames(item: VideoItem) -> list[dict]:
                rec = _read_json(record_path(self.root, item.key))
                return rec.get("coco", []) if isinstance(rec, dict) else []

            write_json(self.layout.coco, vf.coco_dataset(frames(item) for item in done))
        self.summary.run_videos = len(done)
        return self.summary


def track_folder(
    model: LangSAM | Callable[[], LangSAM],
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    settings: TrackSettings,
    formats: Sequence[str] = vf.DEFAULT_VIDEO_FORMATS,
    *,
    resume: bool = False,
    on_start: Callable[[list[VideoItem]], None] | None = None,
    on_frame: Callable[[VideoItem, int, int | None], None] | None = None,
    on_failure: Callable[[VideoItem, BaseException | str], None] | None = None,
) -> TrackSummary:
    """Track every video of ``inputs`` into ``output`` in this process; return a :class:`TrackSummary`.

    ``model`` is a :class:`~lang_sam.LangSAM` or a callable returning one (called only if a video
    is left to do). ``on_start(todo)`` hears of the videos to do before the first;
    ``on_frame(item, done, total)`` of each frame; ``on_failure`` of each failed video. A video's
    own fault (undecodable, missing) fails it and the run goes on; Ctrl-C stops the run cleanly
    (``summary.interrupted``; the unfinished video leaves nothing half-written; ``resume=True``
    finishes the run).
    """
    started = time.perf_counter()
    out = local_path(output, "output")
    items = collect_videos(inputs, exclude=out)
    run = TrackRun(out, settings, formats, resume=resume)
    try:
        todo = run.start(items)
        if todo and callable(model) and not hasattr(model, "predict_video"):
            model = model()
        if todo:  # model is the LangSAM now (a loader was called above)
            cast("LangSAM", model).detector.prepare(settings.prompt, settings.box_threshold, settings.text_threshold)
    except BaseException:
        run.release()
        raise
    if on_start is not None:
        on_start(todo)
    try:
        for item in todo:
            outcome: dict | Exception
            try:
                outcome = track_video(model, item, settings, out, run.formats, on_frame=on_frame)
            except Exception as exc:  # judged by settle: the video fails, or the run stops
                outcome = exc
            run.settle(item, outcome, on_failure)
    except KeyboardInterrupt:
        run.summary.interrupted = True
    finally:
        run.close(started)
    return run.summary
