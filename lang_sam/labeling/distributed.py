"""Label or track a dataset on a Ray cluster (``lang-sam predict --ray``, ``lang-sam track --ray``).

One driver, :func:`run_on_ray`, and one worker, :class:`Worker`, serve every input kind: the
run's :class:`~lang_sam.labeling.folder_run.ItemKind` (``run.kind``, picklable) travels to the
workers and does the kind's work there. The driver (this process) finds the items and opens the
output folder (lock, settings check, resume skipping, records), sizes a pool of ``workers``
actors (``num_gpus=gpus_per_worker``, ``num_cpus=cpus_per_worker``) and sends them the items
left to do. Each actor loads its model on its first item (in a task, not its constructor: a
worker that dies loading it, out of memory, falls under the task retries instead of being
restarted forever) and works each item with ``kind.work``, the single-process run's function
(:func:`~lang_sam.labeling.run.label_image`, :func:`~lang_sam.labeling.video_run.track_video`);
an error is classified there by ``kind.failure_kind`` and a failing item never kills it. The
driver settles each result with ``run.settle`` (write through ``kind.write``, fail, or stop the
run: the policy of one process), then closes the run: the files, records, class ids and
failures of the command without ``--ray``; killed mid-run, it leaves what ``resume=True`` completes.

The kind chooses how items travel (``kind.batched``), as fault handling differs, and how an
outcome is packed for the trip (``kind.pack`` / ``kind.unpack``: image masks bit-packed). Images
go through Ray Data's ``map_batches``, back in input order (class ids follow it); only the
driver writes. Ray restarts a dead actor and retries its batch (``max_restarts=-1``,
``max_task_retries=`` :data:`TASK_RETRIES`, set explicitly: Ray Data's defaults are ``-1`` and
``-1``); a result met twice is written once. A batch whose worker died on it ``1 + TASK_RETRIES``
times is dropped (``max_errored_blocks``) and its images fail, so an image that always kills
its worker fails alone (one batch at a time per actor); past ``max_dead_batches`` the run stops
(:class:`RayJobError`). Videos go one per task through a plain actor pool, the actor writing
their files (``VideoKind.work``); one whose actor died fails.

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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generator, Mapping, Sequence, cast

import numpy as np

from lang_sam.errors import InvalidArgumentError, InvalidRunError, RayJobError, RayNotInstalledError, UnknownModelError
from lang_sam.hub import ModelSpec
from lang_sam.models.openvino import check_backend
from lang_sam.models.registry import DEFAULT_GDINO, DEFAULT_SAM, DEFAULT_TRACK_SAM, get_spec, register_model
from lang_sam.labeling.hooks import RunHooks
from lang_sam.labeling.folder_run import FolderRun, ItemFailure, ItemKind, failure_reason
from lang_sam.labeling.inputs import local_path
from lang_sam.labeling.run import DEFAULT_FORMATS, ImageItem, LabelRun, LabelSettings, RunSummary, collect_images, parse_formats
from lang_sam.settings import environment

if TYPE_CHECKING:
    from lang_sam.lang_sam import LangSAM

logger = logging.getLogger(__name__)

__all__ = [
    "RAY_INSTALL", "TASK_RETRIES", "MAX_DEAD_BATCHES", "Job", "RayOptions", "Worker", "run_on_ray",
    "label_dataset", "track_dataset", "import_ray",
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
#: The failure listed for an item whose result never came back (batched).
NO_RESULT = ("no result from the Ray workers: the worker {verbing} it died {n} times (killed, out "
             "of memory or crashed) or raised an unexpected error (see Ray's log above); run again "
             "with resume to retry it")
#: The failure listed for an item whose worker died while working it (actor pool).
NO_POOL_RESULT = ("no result from the Ray worker {verbing} it (killed, out of memory or crashed: "
                   "{exc}); run again with resume to retry it")


def import_ray():
    """``ray`` with Ray Data.

    Raises:
        RayNotInstalledError: Ray or Ray Data is not installed (the message names the install command).
    """
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayNotInstalledError(
            f"labelling on Ray needs Ray Data, which is not installed here ({exc}): {RAY_INSTALL}"
        ) from None
    return ray


# ---- The worker side: one worker for every input kind --------------------------------------

def _langsam(**kwargs: Any) -> LangSAM:
    from lang_sam import LangSAM

    return LangSAM(**kwargs)


@dataclass(frozen=True)
class Job:
    """What every actor needs, sent once per actor (picklable): ``load(**model)`` builds the model
    :meth:`~lang_sam.labeling.folder_run.ItemKind.work` takes (default a
    :class:`~lang_sam.LangSAM` of ``model``'s keyword arguments); ``specs``, registry entries
    registered on the actor first (types known only to the driver work too). :func:`run_on_ray`
    fills in the rest: ``kind``, the run's :class:`~lang_sam.labeling.folder_run.ItemKind`
    (``run.kind``: its settings and formats), ``threads`` (torch threads per actor) and
    ``model["device"]`` when it is None (``"cpu"`` without a GPU)."""

    model: Mapping[str, Any] = field(default_factory=dict)
    specs: tuple[ModelSpec, ...] = ()
    load: Callable[..., Any] = _langsam
    kind: ItemKind | None = None
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


class Worker:
    """The one Ray worker: it holds the run's kind (``job.kind``) and its model, and works each
    item with :meth:`ItemKind.work <lang_sam.labeling.folder_run.ItemKind.work>`, classifying an
    error there with :meth:`ItemKind.failure_kind <lang_sam.labeling.folder_run.ItemKind.failure_kind>`.
    :func:`run_on_ray` pickles the class and the :class:`Job` to each actor, builds one worker
    there and calls :meth:`result` per item. Subclass it only to inject faults (tests)."""

    def __init__(self, job: Job):
        import torch

        if job.kind is None:
            raise InvalidArgumentError("a Ray worker needs the run's kind (Job.kind, filled in by run_on_ray)")
        self.job, self.kind, self.loaded = job, job.kind, False
        self.model: Any = None
        self.error: BaseException | str | None = None
        if job.threads:
            torch.set_num_threads(job.threads)

    def load_model(self) -> Any:
        """The model of ``self.job`` (``job.load(**job.model)``), checked by ``kind.prepare``
        (a bad prompt fails here, once); what it raises fails the run."""
        model = self.job.load(**self.job.model)
        self.kind.prepare(model)
        return model

    def work(self, item: Any) -> Any:
        """One item's outcome, as ``kind.pack`` sends it to the driver."""
        return self.kind.pack(self.kind.work(self.model, item, None))

    def result(self, item: Any) -> bytes:
        """One item on the actor: the pickled ``("done", packed outcome)``, ``("failed",
        ItemFailure)``, or ``("fatal", error)`` for what fails every item alike (the models, the
        prompt: a ``"run"`` error). Pickled by Ray's cloudpickle, so values of classes the
        workers cannot import (a test's) travel too."""
        from ray import cloudpickle

        if not self.loaded:
            self.loaded = True
            try:
                _register(self.job.specs)
                self.model = self.load_model()
            except Exception as exc:  # the run's error, raised by the driver; not a dead actor
                logger.debug("worker could not load the models", exc_info=True)
                self.error = _portable(exc)
        if self.error is not None:
            return cloudpickle.dumps(("fatal", self.error))
        try:
            value = self.work(item)
        except Exception as exc:  # classified here, where the exception and its traceback are
            kind = self.kind.failure_kind(exc)
            if kind == "run":
                return cloudpickle.dumps(("fatal", _portable(exc)))
            if kind == "item":
                logger.debug("failure on %s", item.path, exc_info=True)
                return cloudpickle.dumps(("failed", ItemFailure(kind, _portable(exc))))
            # Out of memory, a bug: not this item's fault; the driver stops the run and logs this.
            return cloudpickle.dumps(("failed", ItemFailure(kind, failure_reason(exc), traceback.format_exc())))
        return cloudpickle.dumps(("done", value))


# ---- The driver side: one driver for every kind --------------------------------------------

@dataclass(frozen=True)
class RayOptions:
    """Where a run goes (``address``) and how its actor pool is sized (see :func:`label_dataset`).

    Raises:
        InvalidRunError: ``workers`` is not a whole number >= 1, ``gpus_per_worker`` a number
            >= 0, ``cpus_per_worker`` a number >= 0.01, ``batch_size`` a whole number >= 1 or
            ``max_dead_batches`` a whole number >= 0 (checked on construction).
    """

    workers: int | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: float | None = None
    batch_size: int = 1
    max_dead_batches: int = MAX_DEAD_BATCHES
    address: str | None = None

    def __post_init__(self):
        for name, minimum, integer in (("workers", 1, True), ("gpus_per_worker", 0, False),
                                       ("cpus_per_worker", 0.01, False), ("batch_size", 1, True),
                                       ("max_dead_batches", 0, True)):
            value = getattr(self, name)
            ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                   and value >= minimum and (not integer or float(value).is_integer()))
            if not ok:
                kind = "a whole number" if integer else "a number"
                raise InvalidRunError(f"{name} must be {kind} >= {minimum:g}, got {value!r}")


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


def _plan(ray, options: RayOptions, local: bool) -> _Plan:
    """Size the actor pool from the cluster's resources (see :func:`label_dataset`)."""
    workers, gpus, cpus = options.workers, options.gpus_per_worker, options.cpus_per_worker
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


def _batches(ray, todo: Sequence[Any], worker: type[Worker], job: Job, plan: _Plan,
             options: RayOptions) -> Generator[tuple[int, bytes], None, None]:
    """``(index in todo, result)`` through Ray Data's ``map_batches``, streamed in input order (a
    batch retried after its actor died may repeat an index; a dropped batch's items never come)."""
    batch_size = int(options.batch_size)
    per_block = max(batch_size, math.ceil(len(todo) / MAX_BLOCKS))
    per_block = math.ceil(per_block / batch_size) * batch_size
    rows = [{"index": i, "item": ray.cloudpickle.dumps(item)} for i, item in enumerate(todo)]
    blocks = math.ceil(len(rows) / per_block)
    logger.info("Ray: %d worker(s) x (%g CPU, %g GPU), %d %s", plan.workers, plan.cpus, plan.gpus,
                len(todo), _todo_noun(job))
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    ctx = ds.context  # this dataset's own copy: the process-wide DataContext is left alone
    ctx.execution_options.preserve_order = True  # class ids follow the input order, as in one process
    ctx.enable_progress_bars = False  # the caller's one bar replaces Ray Data's
    # A batch whose worker kept dying is dropped and its images fail; past max_dead_batches
    # such batches (the workers die whatever the image: e.g. out of memory loading the models)
    # Ray Data stops the run.
    ctx.max_errored_blocks = int(options.max_dead_batches)
    # Loading the models (or downloading them) and 50 s CPU images are legitimately slow.
    for name, value in (("print_on_execution_start", False), ("execution_no_progress_timeout_s", -1)):
        if hasattr(ctx, name):
            setattr(ctx, name, value)
    # No more actors than batches (each loads the models), and one batch at a time on each: a
    # batch queued behind one that kills its actor would die with it and be counted against its
    # own retries, so an image sharing a worker with a poison image could fail (seen in CI).
    strategy = ray.data.ActorPoolStrategy(size=min(plan.workers, blocks),
                                          max_tasks_in_flight_per_actor=1)
    env = environment()
    with warnings.catch_warnings():
        # Ray 2.60 deprecates passing max_restarts / max_task_retries as remote args, and offers
        # no other way to set them; they are set explicitly so Ray's defaults cannot change them.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        ds = ds.map_batches(
            _BatchWorker, fn_constructor_kwargs={"worker": worker, "job": job}, batch_size=batch_size,
            batch_format="numpy", compute=strategy, num_cpus=plan.cpus, num_gpus=plan.gpus or None,
            runtime_env={"env_vars": env} if env else None,
            max_restarts=-1,  # a dead actor is always replaced ...
            max_task_retries=TASK_RETRIES,  # ... and its batch retried this many times
        )
    for row in ds.iter_rows():
        yield int(row["index"]), row["result"]


class _BatchWorker:
    """Ray Data's callable class: one :class:`Worker` per actor. A numpy batch ``{"index": (B,)
    int64, "item": (B,) pickled items}`` -> ``{"index": (B,) int64, "result": (B,) bytes}``."""

    def __init__(self, worker: type[Worker], job: Job):
        self.worker = worker(job)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = [self.worker.result(pickle.loads(item)) for item in batch["item"]]
        out = np.empty(len(results), dtype=object)
        out[:] = results
        return {"index": np.asarray(batch["index"], dtype=np.int64), "result": out}


def _pool(ray, todo: Sequence[Any], worker: type[Worker], job: Job, plan: _Plan,
          options: RayOptions) -> Generator[tuple[int, bytes], None, None]:
    """``(index in todo, result)`` as each task finishes, one item in flight per actor of a plain
    actor pool; an item whose actor died comes back ``("lost", why)`` (Ray restarts the actor)."""
    env = environment()
    actor = ray.remote(max_restarts=-1)(worker).options(
        num_cpus=plan.cpus, num_gpus=plan.gpus or None, runtime_env={"env_vars": env} if env else None)
    idle = [actor.remote(job) for _ in range(min(plan.workers, len(todo)))]
    logger.info("Ray: %d worker(s) x (%g CPU, %g GPU), %d %s", len(idle), plan.cpus, plan.gpus,
                len(todo), _todo_noun(job))
    queue = list(enumerate(todo))
    running: dict[Any, tuple[int, Any]] = {}
    try:
        while queue or running:
            while queue and idle:
                a = idle.pop()
                i, item = queue.pop(0)
                running[a.result.remote(item)] = (i, a)
            done, _ = ray.wait(list(running), num_returns=1)
            ref = done[0]
            i, a = running.pop(ref)
            idle.append(a)  # a dead one is restarted by Ray (max_restarts), or its next call fails too
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError as exc:  # the worker died mid-item
                result = pickle.dumps(("lost", NO_POOL_RESULT.format(verbing=_kind(job).verbing, exc=exc)))
            yield i, result
    finally:
        for ref in running:
            ray.cancel(ref, force=True)


def _kind(job: Job) -> ItemKind:
    return cast(ItemKind, job.kind)


def _todo_noun(job: Job) -> str:
    return f"{_kind(job).noun}(s) to {_kind(job).verb}"


def _settle(run: FolderRun, todo: Sequence[Any], arrivals: Generator[tuple[int, bytes], None, None],
            hooks: RunHooks) -> None:
    """Settle each arrived result with ``run.settle`` (once per item; a packed outcome unpacked by
    ``run.kind.unpack``), then fail the items whose result never came."""
    seen = bytearray(len(todo))
    for i, result in arrivals:
        item = todo[i]
        if seen[i]:  # a retried task's result met twice: written once
            logger.info("a second result for %s ignored", item.path)
            continue
        seen[i] = 1
        kind, value = pickle.loads(result)
        if kind == "fatal":  # what failed every worker alike: the run's error
            raise value if isinstance(value, BaseException) else RayJobError(value)
        if kind == "done":
            value = run.kind.unpack(item, value)
        run.settle(item, ItemFailure("item", value) if kind == "lost" else value, hooks)
    for item, was_seen in zip(todo, seen):
        if not was_seen:
            run.settle(item, ItemFailure("item", NO_RESULT.format(verbing=run.kind.verbing, n=1 + TASK_RETRIES)), hooks)


def _absolute(item: Any) -> Any:
    """``item`` with its ``path`` absolute (workers may start in another folder)."""
    return replace(item, path=Path(os.path.abspath(item.path)))


def run_on_ray(output: str | os.PathLike, open_run: Callable[[Path], tuple[FolderRun, Sequence[Any]]],
               job: Job = Job(), options: RayOptions = RayOptions(), hooks: RunHooks | None = None,
               worker: type[Worker] = Worker) -> Any:
    """Run a folder run's items on Ray; return its summary. The one driver of every input kind.

    ``open_run(out)`` (``out``: ``output`` as a local path) finds the items and opens the run,
    returning ``(run, items)``: ``run`` a :class:`~lang_sam.labeling.folder_run.FolderRun`
    whose ``kind`` (an :class:`~lang_sam.labeling.folder_run.ItemKind`, picklable) is sent to
    the workers, ``items`` of ``run.kind.item_type`` (their ``path`` made absolute here). With
    nothing to do no Ray starts. Otherwise the driver connects (``options.address``), sizes the
    actor pool, completes ``job`` (see :class:`Job`), calls ``hooks.start(todo)``, sends the
    items to ``worker`` actors (each runs ``run.kind.work``; ``run.kind.batched`` chooses the
    dispatch: see the module doc), and settles each result as it arrives (``run.settle``, which
    writes through ``run.kind.write`` and tells ``hooks.done`` / ``hooks.failed``). Ctrl-C ends
    the run with ``summary.interrupted``; the run is closed in every case, and a Ray instance
    started here shut down (its time counted in ``summary.seconds``).

    Raises:
        RayNotInstalledError: Ray Data is not installed.
        InvalidRunError: no node can hold one worker of a local Ray instance started here;
            and what ``open_run`` and ``run.start`` raise (the run's folder, inputs, settings).
        RunStoppedError: an item failed by no fault of its own (``run.settle``).
        RayJobError: Ray could not carry on, or a worker's run error did not survive pickling.
        Exception: what failed every worker alike, as the worker raised it (e.g.
            :class:`~lang_sam.errors.WeightsNotFoundError`, :class:`~lang_sam.errors.PromptTooLongError`).
    """
    started = time.perf_counter()
    hooks = hooks if hooks is not None else RunHooks()
    ray = import_ray()
    out = local_path(output, "output")
    run, items = open_run(out)
    try:
        todo = run.start(items)
    except BaseException:
        run.release()
        raise
    if not todo:  # a finished resumed run starts no Ray, as a run in one process loads no model
        hooks.start(todo)
        return run.close(started)

    started_ray = False
    try:
        started_ray = _connect(ray, options.address)
        plan = _plan(ray, options, local=started_ray and options.address is None)
        model = dict(job.model)
        if "device" in model and model["device"] is None and not plan.gpus > 0:
            model["device"] = "cpu"
        job = replace(job, model=model, kind=run.kind, threads=max(1, int(plan.cpus)))
        hooks.start(todo)
        dispatch = _batches if run.kind.batched else _pool
        arrivals = dispatch(ray, [_absolute(item) for item in todo], worker, job, plan, options)
        try:
            _settle(run, todo, arrivals, hooks)
        finally:
            arrivals.close()  # stops Ray's work (and its actors) if the loop ended early
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


def _check_settings(settings: Any, cls: type) -> None:
    if not isinstance(settings, cls):
        raise InvalidRunError(f"settings must be a {cls.__name__} ({cls.__name__}.create(prompt, ...)), "
                              f"got {type(settings).__name__}")


def _langsam_job(settings, default_sam: str, sam_ckpt, gdino_ckpt, device, precision: str,
                 cache_size: int, backend: str = "pytorch") -> tuple[Any, Job]:
    """``settings`` naming its model types (the defaults filled in, so the run's record names
    them), and the :class:`Job` of a LangSAM worker: their registry entries, and the ``LangSAM``
    keyword arguments every worker builds its model with (checkpoint paths made absolute:
    workers may start elsewhere)."""
    sam_type, gdino_type = settings.sam_type or default_sam, settings.gdino_type or DEFAULT_GDINO
    model = dict(sam_type=sam_type, ckpt_path=_abspath(sam_ckpt), gdino_type=gdino_type,
                 gdino_ckpt_path=_abspath(gdino_ckpt), device=device, precision=precision,
                 cache_size=cache_size, backend=check_backend(backend))
    job = Job(model=model, specs=(get_spec("sam", sam_type), get_spec("gdino", gdino_type)))
    return replace(settings, sam_type=sam_type, gdino_type=gdino_type), job


def _abspath(path: str | os.PathLike | None) -> str | None:
    return None if path is None else os.path.abspath(os.path.expanduser(os.fspath(path)))


# ---- The two kinds' entry points -----------------------------------------------------------

def label_dataset(
    inputs: Sequence[str | os.PathLike], output: str | os.PathLike, settings: LabelSettings,
    formats: Sequence[str] | str = DEFAULT_FORMATS, *, sam_ckpt: str | os.PathLike | None = None,
    gdino_ckpt: str | os.PathLike | None = None, device: str | None = None, precision: str = "fp32",
    backend: str = "pytorch",
    cache_size: int = 2, resume: bool = False, overwrite: bool = False, workers: int | None = None,
    gpus_per_worker: float | None = None, cpus_per_worker: float | None = None, batch_size: int = 1,
    max_dead_batches: int = MAX_DEAD_BATCHES, hooks: RunHooks | None = None,
    ray_address: str | None = None, worker: type[Worker] = Worker,
) -> RunSummary:
    """Label every image of ``inputs`` into ``output`` on Ray; return a :class:`RunSummary`.

    Inputs, ``settings`` (a :class:`LabelSettings`: prompt or classes, thresholds, ``nms``,
    ``tile``, the model types), ``formats``, output layout, ``resume``, ``overwrite``, the failure
    policy (:meth:`LabelRun.settle`) and the summary are those of
    :func:`lang_sam.labeling.run.label_folder`. The models are ``settings.sam_type`` /
    ``settings.gdino_type`` (None: the defaults, then named in the run's record), loaded on each
    worker with ``sam_ckpt`` / ``gdino_ckpt`` / ``device`` (default ``"cpu"`` for actors without a
    GPU) / ``precision`` / ``backend`` / ``cache_size`` as :class:`~lang_sam.LangSAM` takes them. Paths,
    checkpoints included, must be readable under the same names on every Ray node (a shared
    filesystem); only the driver writes ``output``. With ``backend="openvino"`` the converted
    parts are cached beside the checkpoints: the first worker converts (under a lock), the others
    and later runs load them; each worker's OpenVINO runs on its torch threads (``cpus_per_worker``).

    ``ray_address=None`` starts a local Ray instance (this machine's CPUs and GPUs) unless this
    process is connected or one runs here; ``"auto"`` or ``"HOST:6379"`` joins a cluster from
    one of its nodes (``"ray://HOST:10001"`` needs ``ray[client]``; untested). The actor pool:

    - ``gpus_per_worker``: GPUs per actor (0.5 puts two models on one GPU); default 1 if the
      cluster has a GPU, else 0;
    - ``workers``: actors; default every GPU (``GPUs // gpus_per_worker``), or one per node on CPUs;
    - ``cpus_per_worker``: CPUs per actor and its torch threads; default the cluster's CPUs shared
      among the workers (at most one node's);
    - ``batch_size``: images per call of a worker (each image is still labelled alone);
    - ``max_dead_batches``: batches that may fail because their worker kept dying before the run
      stops (see the module doc).

    ``hooks`` (a :class:`~lang_sam.labeling.hooks.RunHooks`) hears of the images to label, then
    of each one done or failed as it is settled. The driver's :data:`lang_sam.settings.ENV_NAMES`
    are set on the workers. ``worker``: the worker class (:class:`Worker`, or a subclass injecting
    faults in tests).

    Raises:
        InvalidRunError: ``settings`` is not a :class:`LabelSettings`, a Ray option is out of
            range (:class:`RayOptions`), no node can hold a worker, or what
            :func:`~lang_sam.labeling.run.label_folder` raises for the inputs and the output.
        UnknownModelError: a model type is not registered.
        RayNotInstalledError: Ray Data is not installed.
        RunStoppedError: an image failed by no fault of its own (out of memory, a bug).
        RayJobError: Ray could not carry on (e.g. over ``max_dead_batches`` batches dropped).
        Exception: what failed every worker alike, as raised there (e.g.
            :class:`~lang_sam.errors.WeightsNotFoundError`, :class:`~lang_sam.errors.PromptTooLongError`).
    """
    _check_settings(settings, LabelSettings)
    formats = parse_formats(formats)
    options = RayOptions(workers, gpus_per_worker, cpus_per_worker, batch_size, max_dead_batches, ray_address)
    settings, job = _langsam_job(settings, DEFAULT_SAM, sam_ckpt, gdino_ckpt, device, precision, cache_size,
                                 backend)

    def open_run(out: Path) -> tuple[LabelRun, list[ImageItem]]:
        items = collect_images(inputs, exclude=out)
        return LabelRun(out, settings, formats, resume=resume, overwrite=overwrite), items

    return run_on_ray(output, open_run, job, options, hooks, worker)


def track_dataset(
    inputs: Sequence[str | os.PathLike], output: str | os.PathLike, settings: Any,
    formats: Sequence[str] | str | None = None, *, sam_ckpt: str | os.PathLike | None = None,
    gdino_ckpt: str | os.PathLike | None = None, device: str | None = None, precision: str = "fp32",
    backend: str = "pytorch",
    cache_size: int = 2, resume: bool = False, workers: int | None = None,
    gpus_per_worker: float | None = None, cpus_per_worker: float | None = None,
    hooks: RunHooks | None = None, ray_address: str | None = None,
):
    """Track every video of ``inputs`` into ``output`` on Ray, one video per task; return a
    :class:`~lang_sam.labeling.video_run.TrackSummary`, the outputs of ``lang-sam track``.

    Arguments are :func:`~lang_sam.labeling.video_run.track_folder`'s and :func:`label_dataset`'s.
    Each actor writes its videos' files (:meth:`~lang_sam.labeling.video_run.VideoKind.work`) (``output`` must be on a filesystem
    the workers share); the driver settles each video and writes ``coco/annotations.json``. A
    worker that dies mid-video leaves it without a record (redone on resume), listed as failed.

    Raises:
        InvalidRunError: ``settings`` is not a ``TrackSettings``, a Ray option is out of range,
            or what :func:`~lang_sam.labeling.video_run.track_folder` raises for the folders.
        UnknownModelError, RayNotInstalledError, RunStoppedError, RayJobError, Exception: as
            :func:`label_dataset` (a video instead of an image).
    """
    from lang_sam.labeling.video_run import TrackRun, TrackSettings, collect_videos, parse_video_formats

    _check_settings(settings, TrackSettings)
    formats = parse_video_formats(formats)
    options = RayOptions(workers, gpus_per_worker, cpus_per_worker, address=ray_address)
    settings, job = _langsam_job(settings, DEFAULT_TRACK_SAM, sam_ckpt, gdino_ckpt, device, precision,
                                 cache_size, backend)

    def open_run(out: Path) -> tuple[TrackRun, list]:
        items = collect_videos(inputs, exclude=out)
        return TrackRun(out, settings, formats, resume=resume), items

    return run_on_ray(output, open_run, job, options, hooks)
