"""Label a dataset on a Ray cluster: ``lang-sam predict --ray``, built on Ray Data.

It runs the labelling pipeline of :mod:`lang_sam.labeling.run`, split where that module splits it:

- the driver (this process) finds the images (:func:`collect_images`), opens the output folder
  (:class:`LabelRun`: settings check, resume skipping, records), and makes the images still to
  label a Ray dataset of ``{index, path, rel}`` rows;
- ``map_batches`` runs :class:`ImageLabeller` on a fixed pool of ``workers`` Ray actors
  (``num_gpus=gpus_per_worker``, ``num_cpus=cpus_per_worker``); each actor loads
  :class:`~lang_sam.LangSAM` once and calls :func:`label_image` per image, the function the
  single-process command calls. An image that fails (unreadable, too large) comes back as a failure
  row; it never kills the actor;
- the driver streams the results back in input order (``preserve_order``, ``iter_rows``; never
  ``take_all``) and settles each image with :meth:`LabelRun.settle` (write it, fail it, or stop
  the run: the failure policy of one process), then writes the run-wide files with
  :meth:`LabelRun.finish`. Files, records, class ids and failures are therefore those of
  ``lang-sam predict`` without ``--ray`` on the same folder and settings.

Faults: Ray restarts an actor that dies (killed, out of memory) and retries its tasks
(``max_restarts=-1``, ``max_task_retries=`` :data:`TASK_RETRIES`, set explicitly below; Ray
Data's own defaults, in ``ActorPoolMapOperator``, are ``-1`` and ``-1``, and its actor pool
assumes actors are always restarted). Only the driver writes, so a dead actor leaves no
half-written file, and a result that arrives twice is written once. A batch whose worker died on
it ``1 + TASK_RETRIES`` times is dropped by Ray Data (``max_errored_blocks``) and its images are
listed as failed, so one image that always kills its worker fails alone instead of retrying
forever (each actor holds one batch at a time, so no other batch dies with it); past ``max_dead_batches`` dropped batches the run stops (:class:`RayJobError`). The
models are loaded by an actor's first batch, not its constructor, so that a worker that dies while
loading them falls under these task retries (a constructor would be restarted forever). The
driver killed mid-run leaves a folder that ``resume=True`` completes.

``import lang_sam`` never imports this module; this module imports Ray only when a run starts.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import time
import traceback
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Callable, Generator, Iterable, Iterator, Mapping, Sequence

import numpy as np

from lang_sam.errors import InvalidRunError, RayJobError, RayNotInstalledError, UnknownModelError
from lang_sam.hub import ModelSpec
from lang_sam.models.registry import DEFAULT_GDINO, DEFAULT_SAM, DEFAULT_TRACK_SAM, get_spec, register_model
from lang_sam.labeling.run import (
    DEFAULT_FORMATS,
    ImageFailure,
    ImageItem,
    ImageLabels,
    LabelRun,
    LabelSettings,
    RunSummary,
    collect_images,
    failure_kind,
    failure_reason,
    label_image,
    local_path,
    parse_formats,
)
from lang_sam.masks import CropMask
from lang_sam.settings import environment

if TYPE_CHECKING:
    from lang_sam.lang_sam import LangSAM

logger = logging.getLogger(__name__)

__all__ = [
    "RAY_INSTALL", "TASK_RETRIES", "MAX_DEAD_BATCHES", "LabelJob", "ImageLabeller", "label_dataset",
    "import_ray", "TrackJob", "VideoTracker", "track_dataset",
]

#: The command that installs what a Ray run needs.
RAY_INSTALL = "pip install 'lang-sam[ray]'"
#: How many times a batch is retried after the actor labelling it died (then its images fail).
TASK_RETRIES = 3
#: How many batches may be dropped (their worker died on them ``1 + TASK_RETRIES`` times, their
#: images fail) before the run stops with :class:`RayJobError`.
MAX_DEAD_BATCHES = 10
#: At most this many Ray blocks (tasks) per run: each block holds ``batch_size`` images, or more
#: when the run has over ``MAX_BLOCKS * batch_size`` images, so a million images do not make a
#: million tasks (per-task overhead is a few ms; a block is also what a dead actor redoes).
MAX_BLOCKS = 10_000
#: The failure listed for an image whose result never came back.
NO_RESULT = ("no result from the Ray workers: the worker labelling it died {n} times (killed, out "
             "of memory or crashed) or raised an unexpected error (see Ray's log above); run again "
             "with resume to retry it")


def import_ray():
    """``ray`` with Ray Data, or :class:`RayNotInstalledError` naming the install command."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayNotInstalledError(
            f"labelling on Ray needs Ray Data, which is not installed here ({exc}): {RAY_INSTALL}"
        ) from None
    return ray


# --------------------------------------------------------------------------------------------
# The worker side
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LabelJob:
    """What every actor needs, sent once per actor (picklable).

    ``model`` holds :class:`~lang_sam.LangSAM` keyword arguments; ``specs`` the registry entries of
    its model types as the driver knows them (registered in the actor, so types registered only
    in the driver work too); ``threads`` is the torch thread count per actor (None: torch's own).
    """

    settings: LabelSettings
    formats: tuple[str, ...]
    model: Mapping[str, Any]
    specs: tuple[ModelSpec, ...] = ()
    threads: int | None = None


def _register(specs: Sequence[ModelSpec]) -> None:
    for spec in specs:
        try:
            known = get_spec(spec.family, spec.name)
        except UnknownModelError:
            known = None
        if known != spec:
            register_model(spec, overwrite=True)


def _portable(exc: BaseException) -> BaseException | str:
    """``exc`` if it survives pickling, else its :func:`failure_reason` text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return failure_reason(exc)


def _pack(labels: ImageLabels) -> dict:
    """An :class:`ImageLabels` for the trip to the driver: each mask (a
    :class:`~lang_sam.masks.CropMask`, labelling's one form) as its bit-packed crop (8x smaller,
    exact) with its offset, never as a full-size array."""
    state = {f.name: getattr(labels, f.name) for f in fields(labels) if f.name != "item"}
    state["masks"] = [
        (np.packbits(m.mask, axis=None), m.mask.shape, m.x0, m.y0, m.image_size) for m in state["masks"]
    ]
    return state


def _unbits(bits: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    count = int(np.prod(shape))
    return np.unpackbits(bits, count=count)[:count].reshape(tuple(shape)).astype(bool)


def _unpack(state: dict, item: ImageItem) -> ImageLabels:
    state = dict(state)
    state["masks"] = [CropMask(_unbits(bits, shape), x0, y0, tuple(size))
                      for bits, shape, x0, y0, size in state["masks"]]
    return ImageLabels(item=item, **state)


class ImageLabeller:
    """The callable class Ray Data runs on each actor: one :class:`~lang_sam.LangSAM` per actor.

    ``__call__`` takes a numpy batch ``{"index": (B,) int64, "path": (B,) str, "rel": (B,) str}``
    and returns ``{"index": (B,) int64, "result": (B,) object}``, each result the pickled
    ``(kind, value)`` of one image: ``("done", packed ImageLabels)``, ``("failed",``
    :class:`ImageFailure` ``)`` (an image's own fault, or an error that stops the run, by
    :func:`failure_kind`), which the driver settles as one process would, or ``("fatal",
    exception)`` for what fails every image alike (the models could not be loaded, a prompt phrase
    over GroundingDINO's 256 tokens), which the driver raises.

    The models are loaded by the first call (:meth:`load_model`), not by ``__init__``: Ray Data
    restarts its actors without limit, so a process that died while loading (out of memory) in
    ``__init__`` would be restarted forever; in a call it is a task failure, which Ray retries
    :data:`TASK_RETRIES` times and then reports.
    """

    def __init__(self, job: LabelJob):
        import torch

        self.job = job
        self.classmap = job.settings.classmap()
        self.model = None
        self.error: BaseException | str | None = None
        if job.threads:
            torch.set_num_threads(job.threads)

    def load_model(self):
        """A :class:`~lang_sam.LangSAM` for ``job.model``, with the prompt checked against it."""
        from lang_sam import LangSAM

        _register(self.job.specs)
        model = LangSAM(**self.job.model)
        s = self.job.settings
        s.check(model)  # a bad prompt fails here, once
        return model

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.model is None and self.error is None:
            try:
                self.model = self.load_model()
            except Exception as exc:  # the run's error, raised by the driver; not a dead actor
                logger.debug("worker could not load the models", exc_info=True)
                self.error = _portable(exc)
        results = [
            self.label(ImageItem(Path(str(path)), PurePosixPath(str(rel))))
            for path, rel in zip(batch["path"], batch["rel"])
        ]
        out = np.empty(len(results), dtype=object)
        out[:] = results
        return {"index": np.asarray(batch["index"], dtype=np.int64), "result": out}

    def label(self, item: ImageItem) -> bytes:
        """One image through :func:`label_image`; the pickled ``(kind, value)`` result."""
        if self.error is not None:
            return pickle.dumps(("fatal", self.error))
        try:
            labels = label_image(self.model, item, self.job.settings, self.job.formats, self.classmap)
        except Exception as exc:  # classified here, where the exception and its traceback are
            kind = failure_kind(exc)
            if kind == "run":
                return pickle.dumps(("fatal", _portable(exc)))
            if kind == "image":
                logger.debug("failure on %s", item.path, exc_info=True)
                return pickle.dumps(("failed", ImageFailure(kind, _portable(exc))))
            # Out of memory, a bug: not this image's fault; the driver stops the run and logs this.
            return pickle.dumps(("failed", ImageFailure(kind, failure_reason(exc), traceback.format_exc())))
        return pickle.dumps(("done", _pack(labels)))


# --------------------------------------------------------------------------------------------
# The driver side
# --------------------------------------------------------------------------------------------

def _connect(ray, address: str | None) -> bool:
    """Connect to Ray; True when this call started it (and the run must shut it down)."""
    if ray.is_initialized():
        if address is not None:
            logger.info("Ray is already initialised in this process; ray_address=%r is not used", address)
        return False
    if address is None:
        ray.init(include_dashboard=False, logging_level=logging.WARNING)
    else:
        ray.init(address=address, logging_level=logging.WARNING)
    return True


@dataclass(frozen=True)
class _Plan:
    workers: int
    gpus: float
    cpus: float


def _plan(ray, workers: int | None, gpus: float | None, cpus: float | None, local: bool) -> _Plan:
    """Size the actor pool from the cluster's resources (see :func:`label_dataset`)."""
    total = ray.cluster_resources()
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    total_gpus, total_cpus = float(total.get("GPU", 0)), float(total.get("CPU", 0))
    if gpus is None:
        gpus = 1.0 if total_gpus >= 1 else 0.0
    if workers is None:
        if gpus > 0:
            workers = max(1, int(total_gpus // gpus))
        else:
            workers = max(1, sum(1 for n in nodes if n.get("CPU", 0) >= 1))
    if cpus is None:
        biggest = max((n.get("CPU", 0) for n in nodes), default=1)
        cpus = float(max(1, min(int(total_cpus // workers), int(biggest))))
    fits = any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes)
    if not fits:
        need = f"{cpus:g} CPU" + (f" and {gpus:g} GPU" if gpus else "")
        have = "; ".join(f"{n.get('CPU', 0):g} CPU, {n.get('GPU', 0):g} GPU" for n in nodes) or "none"
        if local:
            raise InvalidRunError(
                f"a worker needs {need}, which no node of this Ray instance has (nodes: {have}); "
                "ask for fewer CPUs or GPUs per worker"
            )
        logger.warning("a worker needs %s, which no node has now (nodes: %s); waiting for the "
                       "cluster to add one", need, have)
    return _Plan(workers=int(workers), gpus=float(gpus), cpus=float(cpus))


class _Arrivals:
    """The images whose results arrived, in input order, for the ``progress`` wrapper (it has a
    length, so a ``tqdm`` shows done / total). ``self.result`` is the current image's result."""

    def __init__(self, rows: Iterable[Mapping[str, Any]], todo: Sequence[ImageItem]):
        self.rows, self.todo = rows, todo
        self.seen = bytearray(len(todo))
        self.result: bytes | None = None

    def __len__(self) -> int:
        return len(self.todo)

    def __iter__(self) -> Iterator[ImageItem]:
        for row in self.rows:
            i = int(row["index"])
            if self.seen[i]:  # a retried task's result met twice: written once
                logger.info("a second result for %s ignored", self.todo[i].path)
                continue
            self.seen[i] = 1
            self.result = row["result"]
            yield self.todo[i]

    def missing(self) -> list[ImageItem]:
        return [item for item, seen in zip(self.todo, self.seen) if not seen]


def _check_count(name: str, value, *, minimum: float, integer: bool = False) -> None:
    if value is None:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= minimum
    if integer:
        ok = ok and float(value).is_integer()
    if not ok:
        kind = "a whole number" if integer else "a number"
        raise InvalidRunError(f"{name} must be {kind} >= {minimum:g}, got {value!r}")


def label_dataset(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    settings: LabelSettings,
    formats: Sequence[str] | str = DEFAULT_FORMATS,
    *,
    sam_ckpt: str | os.PathLike | None = None,
    gdino_ckpt: str | os.PathLike | None = None,
    device: str | None = None,
    precision: str = "fp32",
    cache_size: int = 2,
    resume: bool = False,
    overwrite: bool = False,
    workers: int | None = None,
    gpus_per_worker: float | None = None,
    cpus_per_worker: float | None = None,
    batch_size: int = 1,
    max_dead_batches: int = MAX_DEAD_BATCHES,
    progress: Callable[[Iterable[ImageItem]], Iterable[ImageItem]] | None = None,
    on_failure: Callable[[ImageItem, BaseException | str], None] | None = None,
    labeller: type = ImageLabeller,
    ray_address: str | None = None,
) -> RunSummary:
    """Label every image of ``inputs`` into ``output`` on Ray; return a :class:`RunSummary`.

    Inputs, ``settings`` (a :class:`LabelSettings`: prompt or classes, thresholds, ``nms``,
    ``tile`` (sliced inference on each worker), and the model types), ``formats``, output layout,
    ``resume``, ``overwrite``, the failure policy (:meth:`LabelRun.settle`) and the summary are
    those of :func:`lang_sam.labeling.run.label_folder`. The models are ``settings.sam_type`` /
    ``settings.gdino_type`` (None: the defaults, then named in the run's record), loaded on each
    worker with ``sam_ckpt`` / ``gdino_ckpt`` / ``device`` / ``precision`` / ``cache_size`` as in
    :class:`~lang_sam.LangSAM` (``ckpt_path``, ``gdino_ckpt_path``, ...). Paths, checkpoints
    included, must be readable under the same names on every Ray node (a shared filesystem), and
    ``output`` writable by this process (only the driver writes).

    Ray: ``ray_address=None`` starts a local Ray instance for the run (all this machine's CPUs and
    GPUs) unless this process is already connected or a Ray instance runs on this machine;
    ``"auto"`` or the head's ``"HOST:6379"`` joins a running cluster from one of its nodes
    (``ray.init(address=...)``; a Ray Client ``"ray://HOST:10001"`` address needs ``ray[client]``,
    which ``lang-sam[ray]`` does not install, and is untested). The actor pool:

    - ``gpus_per_worker``: GPUs per actor (fractions share a GPU: 0.5 puts two models on one);
      default 1 if the cluster has a GPU, else 0;
    - ``workers``: actors; default every GPU (``GPUs // gpus_per_worker``), or one per node on CPUs;
    - ``cpus_per_worker``: CPUs per actor and its torch threads; default the cluster's CPUs shared
      among the workers (at most one node's);
    - ``batch_size``: images per call of the labeller (each image is still labelled alone).

    ``device`` defaults to ``"cpu"`` for actors without a GPU. ``progress`` wraps the iterable of
    images as their results arrive (it has a length: e.g. ``tqdm``); ``on_failure`` hears of each
    failed image with its exception (or its text). The driver's lang-sam environment variables
    (:data:`lang_sam.settings.ENV_NAMES`) are set on the workers too. ``max_dead_batches``: how
    many batches may fail because their worker kept dying before the run stops (see the module
    doc). ``labeller`` is the callable class Ray runs (default :class:`ImageLabeller`; a subclass
    takes the same :class:`LabelJob`).

    Raises the errors of :func:`~lang_sam.labeling.run.label_folder`, what failed every worker
    alike (e.g. :class:`~lang_sam.errors.WeightsNotFoundError`,
    :class:`~lang_sam.errors.PromptTooLongError`), :class:`RayNotInstalledError`, and
    :class:`RayJobError` when Ray could not carry on.
    """
    started = time.perf_counter()
    if not isinstance(settings, LabelSettings):
        raise InvalidRunError(f"settings must be a LabelSettings (LabelSettings.create(prompt, ...)), "
                              f"got {type(settings).__name__}")
    sam_type, gdino_type = settings.sam_type or DEFAULT_SAM, settings.gdino_type or DEFAULT_GDINO
    settings = replace(settings, sam_type=sam_type, gdino_type=gdino_type)  # the record names the models
    formats = parse_formats(formats)
    _check_count("workers", workers, minimum=1, integer=True)
    _check_count("gpus_per_worker", gpus_per_worker, minimum=0)
    _check_count("cpus_per_worker", cpus_per_worker, minimum=0.01)
    _check_count("batch_size", batch_size, minimum=1, integer=True)
    _check_count("max_dead_batches", max_dead_batches, minimum=0, integer=True)
    specs = (get_spec("sam", sam_type), get_spec("gdino", gdino_type))
    ray = import_ray()

    out = local_path(output, "output")
    items = collect_images(inputs, exclude=out)
    run = LabelRun(out, settings, formats, resume=resume, overwrite=overwrite)
    try:
        todo = run.start(items)
    except BaseException:
        run.release()
        raise
    if not todo:  # a finished resumed run starts no Ray, as label_folder loads no model
        return run.close(started)

    started_ray = False
    try:
        started_ray = _connect(ray, ray_address)
        plan = _plan(ray, workers, gpus_per_worker, cpus_per_worker,
                     local=started_ray and ray_address is None)
        model = _model_options(plan, sam_type, sam_ckpt, gdino_type, gdino_ckpt, device, precision, cache_size)
        job = LabelJob(settings=settings, formats=tuple(run.formats), model=model, specs=specs,
                       threads=max(1, int(plan.cpus)))
        logger.info("Ray: %d worker(s) x (%g CPU, %g GPU), %d image(s) to label",
                    plan.workers, plan.cpus, plan.gpus, len(todo))
        results = _results(ray, todo, job, plan, int(batch_size), labeller, int(max_dead_batches))
        try:
            _drain(run, _Arrivals(results, todo), progress, on_failure)
        finally:
            results.close()  # stops Ray Data's execution (and its actors) if the loop ended early
    except KeyboardInterrupt:
        run.summary.interrupted = True
    except ray.exceptions.RayError as exc:
        raise RayJobError(f"the Ray run stopped: {exc}") from exc
    finally:
        try:
            run.close(started)
        finally:
            if started_ray:  # the wall time includes stopping the Ray instance the run started
                ray.shutdown()
                run.summary.seconds = time.perf_counter() - started
    return run.summary


def _model_options(plan, sam_type, sam_ckpt, gdino_type, gdino_ckpt, device, precision, cache_size) -> dict:
    """The ``LangSAM`` keyword arguments every worker builds its model with: checkpoint paths
    made absolute (workers may start elsewhere), the device ``"cpu"`` when the plan gives no GPU."""
    return dict(
        sam_type=sam_type, ckpt_path=_abspath(sam_ckpt), gdino_type=gdino_type,
        gdino_ckpt_path=_abspath(gdino_ckpt),
        device=device if device is not None else (None if plan.gpus > 0 else "cpu"),
        precision=precision, cache_size=cache_size,
    )


def _abspath(path: str | os.PathLike | None) -> str | None:
    return None if path is None else os.path.abspath(os.path.expanduser(os.fspath(path)))


def _results(ray, todo: Sequence[ImageItem], job: LabelJob, plan: _Plan, batch_size: int,
             labeller: type, max_dead_batches: int) -> Generator[Mapping[str, Any], None, None]:
    """The labeller's rows for ``todo``, streamed in input order."""
    per_block = max(batch_size, math.ceil(len(todo) / MAX_BLOCKS))
    per_block = math.ceil(per_block / batch_size) * batch_size
    rows = [{"index": i, "path": os.path.abspath(item.path), "rel": item.rel.as_posix()}
            for i, item in enumerate(todo)]
    blocks = math.ceil(len(rows) / per_block)
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    ctx = ds.context  # this dataset's own copy: the process-wide DataContext is left alone
    ctx.execution_options.preserve_order = True  # class ids follow the input order, as in one process
    ctx.enable_progress_bars = False  # the caller's one bar replaces Ray Data's
    # A batch whose worker kept dying is dropped and its images fail; past max_dead_batches
    # such batches (the workers die whatever the image: e.g. out of memory loading the models)
    # Ray Data stops the run.
    ctx.max_errored_blocks = max_dead_batches
    for name, value in (
        ("print_on_execution_start", False),
        # Loading the models (or downloading them) and 50 s CPU images are legitimately slow.
        ("execution_no_progress_timeout_s", -1),
    ):
        if hasattr(ctx, name):
            setattr(ctx, name, value)
    # No more actors than batches (each loads the models), and one batch at a time on each: a
    # batch queued behind one that kills its actor would die with it and be counted against its
    # own retries, so an image sharing a worker with a poison image could fail (seen in CI).
    strategy = ray.data.ActorPoolStrategy(size=min(plan.workers, blocks), max_tasks_in_flight_per_actor=1)
    env = environment()
    with warnings.catch_warnings():
        # Ray 2.60 deprecates passing max_restarts / max_task_retries as remote args, and offers
        # no other way to set them; they are set explicitly so Ray's defaults cannot change them.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        ds = ds.map_batches(
            labeller,
            fn_constructor_kwargs={"job": job},
            batch_size=batch_size,
            batch_format="numpy",
            compute=strategy,
            num_cpus=plan.cpus,
            num_gpus=plan.gpus or None,
            runtime_env={"env_vars": env} if env else None,
            max_restarts=-1,  # a dead actor is always replaced ...
            max_task_retries=TASK_RETRIES,  # ... and its batch retried this many times
        )
    yield from ds.iter_rows()


def _drain(run: LabelRun, arrivals: _Arrivals, progress, on_failure) -> None:
    """Settle each arrived result (:meth:`LabelRun.settle`); fail the images whose result never came."""
    for item in (progress(arrivals) if progress is not None else arrivals):
        assert arrivals.result is not None  # set before each item is yielded
        kind, value = pickle.loads(arrivals.result)
        if kind == "fatal":  # what failed every worker alike: the run's error
            raise value if isinstance(value, BaseException) else RayJobError(value)
        run.settle(item, _unpack(value, item) if kind == "done" else value, on_failure)
    for item in arrivals.missing():
        run.settle(item, ImageFailure("image", NO_RESULT.format(n=1 + TASK_RETRIES)), on_failure)


# --------------------------------------------------------------------------------------------
# Videos: one video per task (lang-sam track --ray)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrackJob:
    """What every video actor needs (picklable): the run's :class:`TrackSettings`, formats and
    output folder, and the model as in :class:`LabelJob`."""

    settings: Any
    formats: tuple[str, ...]
    output: str
    model: Mapping[str, Any]
    specs: tuple[ModelSpec, ...] = ()
    threads: int | None = None


class VideoTracker:
    """The Ray actor of ``lang-sam track --ray``: loads :class:`~lang_sam.LangSAM` on its first
    video and runs :func:`lang_sam.labeling.video_run.track_video` (the single-process command's
    one-video function) on each video it is given, writing that video's files and record into
    the shared output folder. :meth:`track` returns the pickled ``(kind, value)`` of one video:
    ``("done", record without its COCO frames)``, ``("failed", (kind, reason, traceback))`` (a
    ``"video"`` or ``"stop"`` failure, by :func:`~lang_sam.labeling.video_run.video_failure_kind`)
    or ``("fatal", exception)`` for what fails every video alike (the models, the prompt)."""

    def __init__(self, job: TrackJob):
        import torch

        self.job = job
        self.model: LangSAM | None = None
        self.error: BaseException | str | None = None
        if job.threads:
            torch.set_num_threads(job.threads)

    def track(self, path: str, rel: str) -> bytes:
        from lang_sam.labeling.video_run import VideoItem, track_video, video_failure_kind

        if self.model is None and self.error is None:
            try:
                from lang_sam import LangSAM

                _register(self.job.specs)
                model = LangSAM(**self.job.model)
                s = self.job.settings
                model.detector.prepare(s.prompt, s.box_threshold, s.text_threshold)
                self.model = model
            except Exception as exc:  # the run's error, raised by the driver
                logger.debug("worker could not load the models", exc_info=True)
                self.error = _portable(exc)
        if self.error is not None:
            return pickle.dumps(("fatal", self.error))
        item = VideoItem(Path(path), PurePosixPath(rel))
        try:
            record = track_video(self.model, item, self.job.settings, self.job.output, self.job.formats)
        except Exception as exc:
            kind = video_failure_kind(exc)
            if kind == "run":
                return pickle.dumps(("fatal", _portable(exc)))
            trace = traceback.format_exc() if kind == "stop" else None
            return pickle.dumps(("failed", (kind, failure_reason(exc), trace)))
        return pickle.dumps(("done", {k: v for k, v in record.items() if k != "coco"}))


def track_dataset(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    settings: Any,
    formats: Sequence[str] | str | None = None,
    *,
    sam_ckpt: str | os.PathLike | None = None,
    gdino_ckpt: str | os.PathLike | None = None,
    device: str | None = None,
    precision: str = "fp32",
    cache_size: int = 2,
    resume: bool = False,
    workers: int | None = None,
    gpus_per_worker: float | None = None,
    cpus_per_worker: float | None = None,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
    on_failure: Callable[[Any, BaseException | str], None] | None = None,
    ray_address: str | None = None,
):
    """Track every video of ``inputs`` into ``output`` on Ray, one video per task; return a
    :class:`~lang_sam.labeling.video_run.TrackSummary`.

    The driver (this process) finds the videos and opens the output folder
    (:class:`~lang_sam.labeling.video_run.TrackRun`: lock, settings, resume); a pool of
    ``workers`` :class:`VideoTracker` actors (sized as in :func:`label_dataset`) each run
    :func:`~lang_sam.labeling.video_run.track_video`, the function of the single-process
    command, on one video at a time and write its files (``output`` must be on a filesystem the
    workers share); the driver settles each video under the same failure policy and writes
    ``coco/annotations.json`` at the end. So the outputs equal those of ``lang-sam track``
    without ``--ray``. ``progress`` wraps the iterable of videos as they finish (it has a
    length); ``on_failure`` hears of each failed video. A worker that dies mid-video leaves that
    video without a record (its files are redone on resume); the video is listed as failed.
    """
    from lang_sam.labeling.video_run import (
        TrackRun, TrackSettings, collect_videos, parse_video_formats,
    )

    started = time.perf_counter()
    if not isinstance(settings, TrackSettings):
        raise InvalidRunError(f"settings must be a TrackSettings (TrackSettings.create(prompt, ...)), "
                              f"got {type(settings).__name__}")
    sam_type, gdino_type = settings.sam_type or DEFAULT_TRACK_SAM, settings.gdino_type or DEFAULT_GDINO
    settings = replace(settings, sam_type=sam_type, gdino_type=gdino_type)
    formats = parse_video_formats(formats)
    _check_count("workers", workers, minimum=1, integer=True)
    _check_count("gpus_per_worker", gpus_per_worker, minimum=0)
    _check_count("cpus_per_worker", cpus_per_worker, minimum=0.01)
    specs = (get_spec("sam", sam_type), get_spec("gdino", gdino_type))
    ray = import_ray()

    out = local_path(output, "output")
    items = collect_videos(inputs, exclude=out)
    run = TrackRun(out, settings, formats, resume=resume)
    try:
        todo = run.start(items)
    except BaseException:
        run.release()
        raise
    if not todo:
        return run.close(started)

    started_ray = False
    try:
        started_ray = _connect(ray, ray_address)
        plan = _plan(ray, workers, gpus_per_worker, cpus_per_worker,
                     local=started_ray and ray_address is None)
        model = _model_options(plan, sam_type, sam_ckpt, gdino_type, gdino_ckpt, device, precision, cache_size)
        job = TrackJob(settings=settings, formats=tuple(run.formats), output=os.path.abspath(out),
                       model=model, specs=specs, threads=max(1, int(plan.cpus)))
        env = environment()
        actor = ray.remote(max_restarts=-1)(VideoTracker).options(
            num_cpus=plan.cpus, num_gpus=plan.gpus or None,
            runtime_env={"env_vars": env} if env else None)
        pool = [actor.remote(job) for _ in range(min(plan.workers, len(todo)))]
        logger.info("Ray: %d worker(s) x (%g CPU, %g GPU), %d video(s) to track",
                    len(pool), plan.cpus, plan.gpus, len(todo))
        arrivals = _VideoArrivals(ray, pool, todo)
        for item in (progress(arrivals) if progress is not None else arrivals):
            assert arrivals.result is not None  # set before each item is yielded
            kind, value = arrivals.result
            if kind == "fatal":
                raise value if isinstance(value, BaseException) else RayJobError(value)
            run.settle(item, value if kind == "done" else tuple(value), on_failure)
    except KeyboardInterrupt:
        run.summary.interrupted = True
    except ray.exceptions.RayError as exc:
        raise RayJobError(f"the Ray run stopped: {exc}") from exc
    finally:
        try:
            run.close(started)
        finally:
            if started_ray:
                ray.shutdown()
                run.summary.seconds = time.perf_counter() - started
    return run.summary


class _VideoArrivals:
    """The videos as their tasks finish (one video in flight per actor), for the ``progress``
    wrapper (it has a length); ``self.result`` is the current video's unpickled result. A video
    whose actor died gets a ``"video"`` failure result."""

    def __init__(self, ray, pool: list, todo: Sequence[Any]):
        self.ray, self.pool, self.todo = ray, pool, todo
        self.result: tuple | None = None

    def __len__(self) -> int:
        return len(self.todo)

    def __iter__(self) -> Iterator[Any]:
        ray, queue = self.ray, list(enumerate(self.todo))
        running: dict[Any, tuple[int, Any]] = {}
        idle = list(self.pool)
        try:
            while queue or running:
                while queue and idle:
                    actor = idle.pop()
                    i, item = queue.pop(0)
                    ref = actor.track.remote(os.path.abspath(item.path), item.rel.as_posix())
                    running[ref] = (i, actor)
                done, _ = ray.wait(list(running), num_returns=1)
                ref = done[0]
                i, actor = running.pop(ref)
                try:
                    self.result = pickle.loads(ray.get(ref))
                    idle.append(actor)
                except ray.exceptions.RayActorError as exc:  # the worker died mid-video
                    self.result = ("failed", ("video", NO_VIDEO_RESULT.format(exc=exc), None))
                    idle.append(actor)  # Ray restarts it (max_restarts) or the next call fails too
                yield self.todo[i]
        finally:
            for ref in running:
                ray.cancel(ref, force=True)


#: The failure listed for a video whose worker died while tracking it.
NO_VIDEO_RESULT = ("no result from the Ray worker tracking it (killed, out of memory or crashed: "
                   "{exc}); run again with resume to retry it")
