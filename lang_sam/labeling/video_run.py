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
3. :class:`TrackRun`: the output folder being filled: the generic
   :class:`~lang_sam.labeling.folder_run.FolderRun` (lock, settings in ``.lang-sam/run.json``
   compared on resume, written list, failure policy) of a :class:`VideoKind`, whose run-wide
   ``coco/annotations.json`` is rebuilt from the videos' records when the run closes.

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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, cast

import numpy as np

from lang_sam.errors import (
    ImageNotFoundError,
    InvalidImageError,
    InvalidPromptError,
    InvalidRunError,
    InvalidThresholdError,
    InvalidVideoError,
    TrackingNotSupportedError,
    VideoNotFoundError,
)
from lang_sam.labeling import video_formats as vf
from lang_sam.labeling.atomic import sweep_temp_files, write_json
from lang_sam.labeling.cvat import CvatTrackWriter
from lang_sam.labeling.folder_run import FolderRun, FolderSummary, ItemKind, claim, run_folder
from lang_sam.labeling.inputs import STATE_DIR, FileItem, collect_files, parse_names, read_json
from lang_sam.labeling.hooks import RunHooks
from lang_sam.labeling.tool_formats import ExportOptions
from lang_sam.validation import BOX_THRESHOLD, TEXT_THRESHOLD, check_prompt, check_threshold
from lang_sam.video import DETECT_EVERY, FrameTap
from lang_sam.video_io import VIDEO_SUFFIXES

if TYPE_CHECKING:
    from lang_sam.lang_sam import LangSAM

logger = logging.getLogger(__name__)

__all__ = [
    "VIDEO_EXTENSIONS", "VideoItem", "collect_videos", "parse_video_formats", "TrackSettings",
    "track_video", "VideoKind", "TrackRun", "TrackSummary", "track_folder", "VIDEO_FAILURES",
    "TRACK_RUN_ERRORS",
]

#: What a folder is searched for (lower-cased suffixes); a file named directly may be any video.
VIDEO_EXTENSIONS = frozenset(VIDEO_SUFFIXES)
#: The folders a tracking run writes in its output folder.
OUTPUT_DIRS = ("mot", "coco", "overlays", "masks", "cvat", STATE_DIR)

#: What one video may raise that fails that video only (the run goes on and lists it).
VIDEO_FAILURES = (InvalidVideoError, VideoNotFoundError, InvalidImageError, ImageNotFoundError)
#: What would be the same for every video: the run raises it. Checked before :data:`VIDEO_FAILURES`.
TRACK_RUN_ERRORS = (InvalidPromptError, InvalidThresholdError, TrackingNotSupportedError)



# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VideoItem(FileItem):
    """A video to track: its path, and its path relative to the folder it was given in
    (``key``: ``rel`` without its suffix, the stem of every output of this video)."""


def collect_videos(inputs: Sequence[str | os.PathLike],
                   exclude: str | os.PathLike | None = None) -> list[VideoItem]:
    """The videos named by ``inputs``: video files (any suffix), folders (searched recursively for
    :data:`VIDEO_EXTENSIONS`, any case; folders holding a lang-sam run are skipped) and ``.txt``
    lists: see :func:`lang_sam.labeling.inputs.collect_files`.

    Raises:
        InvalidRunError: a missing input, no video at all, or two videos whose outputs would collide.
    """
    return collect_files(inputs, VideoKind, exclude)


def parse_video_formats(values: Sequence[str] | str | None) -> list[str]:
    """Formats from names, repeated or comma-separated (``None``:
    :data:`~lang_sam.labeling.video_formats.DEFAULT_VIDEO_FORMATS`).

    Raises:
        InvalidRunError: an unknown format, or none named.
    """
    return parse_names(values, vf.VIDEO_FORMATS, vf.DEFAULT_VIDEO_FORMATS)


@dataclass(frozen=True)
class TrackSettings:
    """What every video of a run is tracked with: the prompt, GroundingDINO's thresholds,
    ``detect_every`` (detect on the first frame with detections, then every that many frames) and
    the model types (named in the run's record, so resuming with other models is refused)."""

    prompt: str
    box_threshold: float = BOX_THRESHOLD
    text_threshold: float = TEXT_THRESHOLD
    detect_every: int = DETECT_EVERY
    sam_type: str | None = None
    gdino_type: str | None = None

    @classmethod
    def create(cls, prompt: str, *, box_threshold: float = BOX_THRESHOLD, text_threshold: float = TEXT_THRESHOLD,
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
    if "cvat" in formats:
        out.append(layout.cvat(key))
    return out


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
    export: ExportOptions | None = None,
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
    is written, so a resumed run does the video again. ``export.shape``: masks or polygons in
    ``cvat`` (:class:`~lang_sam.labeling.cvat.CvatTrackWriter`). This is the function both the
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
    sinks = vf.open_sinks(layout, item.key, item.rel.as_posix(), [f for f in formats if f != "cvat"],
                          source.fps or vf.DEFAULT_FPS)
    if "cvat" in formats:
        sinks["cvat"] = CvatTrackWriter(layout.cvat(item.key), root, item.rel.as_posix(),
                                        (export or ExportOptions()).shape)
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
class TrackSummary(FolderSummary[VideoItem]):
    """What a tracking run did (with :class:`~lang_sam.labeling.folder_run.FolderSummary`'s
    ``failed``, ``skipped``, ``interrupted``, ``seconds``). ``tracked``, ``frames``, ``tracks``
    and ``detections`` count this call's work; ``warnings`` pairs each video tracked now with a
    warning of its record (a video that ended clearly short of its header's frame count);
    ``run_videos`` is the number of videos the output holds (resumed ones included)."""

    given_field, finished_field = "videos", "tracked"
    videos: int = 0
    tracked: int = 0
    frames: int = 0
    tracks: int = 0
    detections: int = 0
    warnings: list[tuple[VideoItem, str]] = field(default_factory=list)
    run_videos: int = 0

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class VideoKind(ItemKind):
    """Videos as an input kind of :class:`~lang_sam.labeling.folder_run.FolderRun`: collected by
    :data:`VIDEO_EXTENSIONS`, tracked by :func:`track_video` into ``output`` (where the model is:
    this process, or a Ray worker sharing the folder; picklable), which writes the video's files
    and record; the run only counts the record (:meth:`write`) and writes the run-wide COCO file."""

    item_type, suffixes, output_dirs, model_attr = VideoItem, VIDEO_EXTENSIONS, OUTPUT_DIRS, "predict_video"
    noun, source_noun, input_hint = "video", "video", "a video file, a folder of videos"
    verb, verbing, done_verb = "track", "tracking", "tracked"
    records, record_field, tag = "videos", "video", "track"
    run_errors, item_errors = TRACK_RUN_ERRORS, VIDEO_FAILURES

    def __init__(self, settings: TrackSettings, formats: Sequence[str], output: str | os.PathLike,
                 export: ExportOptions | None = None):
        self.settings, self.export = settings, export or ExportOptions()
        self.formats = parse_video_formats(list(formats))
        self.output = Path(os.path.abspath(output))  # absolute: Ray workers may start elsewhere

    def prepare(self, model: Any) -> None:
        cast("LangSAM", model).detector.prepare(self.settings.prompt, self.settings.box_threshold,
                                                self.settings.text_threshold)

    def work(self, model: Any, item: VideoItem, step: Callable[[str, int, int | None], None] | None) -> dict:
        on_frame = None if step is None else (lambda item, done, total: step("frame", done, total))
        return track_video(model, item, self.settings, self.output, self.formats, on_frame=on_frame,
                           export=self.export)

    def pack(self, outcome: dict) -> dict:
        """The record without its per-frame COCO records (read back from its file by :meth:`finish`)."""
        return self.keep(outcome)

    def planned(self, run: FolderRun, item: VideoItem) -> list[Path]:
        return planned_outputs(vf.VideoLayout(run.root), item.key, self.formats)

    def existing(self, run: FolderRun, item: VideoItem) -> list[Path]:
        folder = vf.VideoLayout(run.root).masks(item.key)
        if "masks" not in self.formats or not folder.is_dir():
            return []
        return [p for p in sorted(folder.iterdir()) if _FRAME_PNG.match(p.name)]

    def run_wide(self, run: FolderRun) -> list[Path]:
        return [vf.VideoLayout(run.root).coco] if "coco" in self.formats else []

    def write(self, run: FolderRun, item: VideoItem, outcome: dict) -> dict:
        """Count the video's record (:func:`track_video` wrote its files and the record)."""
        s = cast(TrackSummary, run.summary)
        s.tracked += 1
        s.frames += int(outcome.get("frames", 0))
        s.tracks += int(outcome.get("tracks", 0))
        s.detections += int(outcome.get("detections", 0))
        s.warnings.extend((item, str(w)) for w in outcome.get("warnings", ()))
        return outcome

    def complete(self, run: FolderRun, record: dict) -> bool:
        if sorted(record.get("formats", ())) != sorted(self.formats):
            return False
        return all((run.root / rel).is_file() for files in record.get("outputs", {}).values() for rel in files)

    def keep(self, record: dict) -> dict:
        # The per-frame COCO records are read back from the record file by finish(), not held.
        return {k: v for k, v in record.items() if k != "coco"}

    def finish(self, run: FolderRun, done: list) -> None:
        """``coco/annotations.json`` from the records of the videos done (input order)."""
        if "coco" in self.formats:
            layout = vf.VideoLayout(run.root)
            claim(run.root, [layout.rel(layout.coco)])

            def frames(item: VideoItem) -> list[dict]:
                rec = read_json(run.record(item.key))
                return rec.get("coco", []) if isinstance(rec, dict) else []

            write_json(layout.coco, vf.coco_dataset(frames(item) for item in done))
        cast(TrackSummary, run.summary).run_videos = len(done)


class TrackRun(FolderRun):
    """An output folder being filled by one tracking run: the generic
    :class:`~lang_sam.labeling.folder_run.FolderRun` of a :class:`VideoKind`.

    Opening it takes the folder's lock (as ``lang-sam predict``: a second run into the same folder
    is refused at once) and checks the folder: one holding an earlier tracking run
    (``.lang-sam/run.json``) needs ``resume=True`` and the same settings and formats; one holding
    an image labelling run is refused. :meth:`start` refuses outputs that would replace files
    lang-sam did not write, and returns the videos still to do (with ``resume``, a video whose
    record lists all its files, all on disk, is skipped); :meth:`settle` applies the failure
    policy; :meth:`close` writes ``coco/annotations.json`` from the records of every video done.

    Raises:
        InvalidRunError: an unknown format, an output that is a file, or a folder holding another
            run (an image labelling run; a tracking run without ``resume`` or with other settings).
        OutputLockedError: another run holds the folder.
    """

    kind: VideoKind
    summary: TrackSummary

    def __init__(self, output: str | os.PathLike, settings: TrackSettings, formats: Sequence[str],
                 *, resume: bool = False, export: ExportOptions | None = None):
        kind = VideoKind(settings, formats, output, export)
        self.settings = settings
        self.layout = vf.VideoLayout(Path(output))
        shape = {"cvat_shape": kind.export.shape} if "cvat" in kind.formats else {}  # in its files
        super().__init__(kind, output, dict(settings.config(), formats=sorted(kind.formats), **shape),
                         TrackSummary(output=Path(output), formats=list(kind.formats)), resume=resume)

    def _open(self, resume: bool, overwrite: bool) -> None:
        """Unlike an image run's: a folder holding a tracking run needs ``resume`` even when it
        holds no output yet, and there is no ``overwrite``."""
        self.ours = self._written_before()
        self.resumed = False
        state = read_json(self.run_file)
        if state is None:
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
        diff, said = self._config_diff(state)
        if diff:
            raise InvalidRunError.naming(
                f"resume: {self.root} was tracked with other settings ({said}). Use the same settings, "
                "or another output folder.", **{k: k for k in diff})
        self.resumed = True


def track_folder(
    model: LangSAM | Callable[[], LangSAM],
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    settings: TrackSettings,
    formats: Sequence[str] = vf.DEFAULT_VIDEO_FORMATS,
    *,
    resume: bool = False,
    hooks: RunHooks | None = None,
    export: ExportOptions | None = None,
) -> TrackSummary:
    """Track every video of ``inputs`` into ``output`` in this process; return a :class:`TrackSummary`.

    ``model`` is a :class:`~lang_sam.LangSAM` or a callable returning one (called only if a video
    is left to do). ``hooks`` (:class:`~lang_sam.labeling.hooks.RunHooks`) hears of the videos to
    do, of each frame (``step(item, "frame", done, total)``, ``total`` from the header or None)
    and of each video done or failed. A video's own fault (undecodable, missing) fails it and the
    run goes on; Ctrl-C stops the run cleanly (``summary.interrupted``; the unfinished video leaves
    nothing half-written; ``resume=True`` finishes the run). ``export``: how ``cvat`` writes
    instances (:class:`~lang_sam.labeling.tool_formats.ExportOptions`).

    Raises:
        InvalidRunError: a missing input, no video, colliding outputs, an unknown format, or an
            output folder holding another run (or an earlier one without ``resume``).
        OutputLockedError: another run holds ``output``.
        OutputCollisionError: an output would replace a file lang-sam did not write.
        InvalidPromptError: the prompt is refused by the detector (before any video).
        TrackingNotSupportedError: the segmenter cannot track.
        RunStoppedError: an error that is no video's fault (out of memory, a full disk, a bug).
    """
    return cast(TrackSummary, run_folder(
        VideoKind, lambda out: TrackRun(out, settings, formats, resume=resume, export=export), model, inputs, output, hooks))
