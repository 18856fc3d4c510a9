"""One folder run for every input kind: files in, one output folder out.

An input kind (:class:`ItemKind`: images in :mod:`lang_sam.labeling.run`, videos in
:mod:`lang_sam.labeling.video_run`) supplies only what is its own: its item type and the suffixes
its files are collected by, its per-item work, the outputs it plans and writes, and what it adds
to the summary. Everything else is here, once:

1. :func:`~lang_sam.labeling.inputs.collect_files`: the files named by files, folders (searched
   recursively by suffix; folders holding a lang-sam run are skipped) and ``.txt`` lists, each
   with its path relative to its input (``rel``; ``key``, ``rel`` without its suffix, names the
   item's outputs);
2. :class:`FolderRun`: the output folder being filled: its lock
   (:class:`~lang_sam.labeling.lock.OutputLock`), its settings (``.lang-sam/run.json``, compared
   on resume), the written list (``.lang-sam/written``: every output listed before it is written,
   so a killed run still knows its files), the refusal to write over files lang-sam did not write,
   ``overwrite``, resume (an item whose record, ``.lang-sam/<kind.records>/<key>.json``, lists
   every output, all on disk, is skipped), the failure policy (:meth:`FolderRun.settle`) and the
   summary;
3. :func:`run_folder`: the two in one process, telling a :class:`~lang_sam.labeling.hooks.RunHooks`
   how it goes.

A Ray driver does step 1 and 2 itself and sends ``(run.kind, item)`` to workers: the kind object
is picklable, its :meth:`ItemKind.work` runs on a worker, and the driver settles each outcome
(:meth:`FolderRun.settle`, which writes through :meth:`ItemKind.write`). Nothing here prints.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Generic, Iterable, Sequence, TypeVar

from lang_sam.errors import InvalidArgumentError, InvalidRunError, OutputCollisionError, RunStoppedError
from lang_sam.labeling.atomic import sweep_temp_files, temp_file_of, write_json
from lang_sam.labeling.hooks import RunHooks
from lang_sam.labeling.inputs import STATE_DIR, FileItem, collect_files, local_path, read_json
from lang_sam.labeling.lock import OutputLock

logger = logging.getLogger(__name__)

__all__ = [
    "RUN_VERSION", "RUN_FLAGS", "failure_reason", "claim", "ItemKind", "ItemFailure", "FolderSummary",
    "FolderRun", "run_folder",
]

#: The version written in ``run.json``.
RUN_VERSION = 1

#: How the errors of a run name its arguments in Python (the CLI words them as flags:
#: :meth:`lang_sam.errors.LangSAMError.worded`).
RUN_FLAGS = {"resume": "resume=True", "overwrite": "overwrite=True"}


def failure_reason(exc: BaseException) -> str:
    """How a failed item's reason is listed: ``"<exception type>: <message>"``."""
    return f"{type(exc).__name__}: {exc}"


def claim(root: Path, rels: Sequence[str]) -> None:
    """Append ``rels`` (paths relative to the output folder ``root``; a folder as ``name/``) to
    ``.lang-sam/written`` before they are written: one short ``O_APPEND`` write, so that workers
    sharing the folder do not interleave within a line."""
    if rels:
        path = Path(root) / STATE_DIR / "written"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write("".join(r + "\n" for r in rels))


# --------------------------------------------------------------------------------------------
# An input kind
# --------------------------------------------------------------------------------------------

class ItemKind:
    """What one input kind supplies to :class:`FolderRun` and :func:`run_folder`; subclass it (a
    picklable object: a Ray driver sends it to its workers with each item).

    Class attributes: ``item_type`` (built as ``item_type(path, rel)``; has ``path``, ``rel``,
    ``key``), ``suffixes`` (lower-cased, searched for in folders), ``noun`` (``"image"``: in
    messages and as what a failure is the fault of), ``source_noun`` (what skipped run folders'
    outputs are not, ``"photo"``), ``input_hint`` (what an input may be), ``verb`` / ``done_verb``
    (``"label"`` / ``"labelled"``, ``"labelling"`` as ``verbing``), ``records`` (the records'
    folder under ``.lang-sam/``), ``record_field`` (the record's field holding ``rel``),
    ``tag`` (written as ``run.json``'s ``"kind"``; a folder whose run has another tag is refused;
    None: no tag), ``output_dirs`` (the top folders its outputs go in), ``model_attr`` (what a
    loaded model has: a ``model`` without it is a loader, called when an item is left to do),
    ``run_errors`` (raised as they are: the same for every item), ``item_errors`` (the item
    fails, the run goes on; anything else stops the run), ``batched`` (on Ray: items go in Ray
    Data batches, retried when their worker dies, else one per task on an actor pool; see
    :mod:`lang_sam.labeling.distributed`). An instance holds the run's settings and ``formats``
    (the output format names it writes).
    """

    item_type: ClassVar[type] = FileItem
    suffixes: ClassVar[frozenset[str]] = frozenset()
    noun: ClassVar[str] = "item"
    source_noun: ClassVar[str] = "input"
    input_hint: ClassVar[str] = "a file, a folder"
    verb: ClassVar[str] = "process"
    verbing: ClassVar[str] = "processing"
    done_verb: ClassVar[str] = "processed"
    records: ClassVar[str] = "records"
    record_field: ClassVar[str] = "file_name"
    tag: ClassVar[str | None] = None
    output_dirs: ClassVar[tuple[str, ...]] = ()
    model_attr: ClassVar[str] = "predict"
    run_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    item_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    batched: ClassVar[bool] = False

    formats: list[str]

    def failure_kind(self, exc: BaseException) -> str:
        """What ``exc``, raised while working on or writing one item, means for the run: ``"run"``
        (:attr:`run_errors`, checked first: raised as it is), ``"item"`` (:attr:`item_errors`:
        the item fails, the run goes on) or ``"stop"`` (anything else: out of memory, a full disk,
        a bug: the run stops). Applied by :meth:`FolderRun.settle`, and by Ray workers before an
        error is sent to the driver."""
        if isinstance(exc, self.run_errors):
            return "run"
        return "item" if isinstance(exc, self.item_errors) else "stop"

    def prepare(self, model: Any) -> None:
        """Check the settings against the loaded ``model`` once before the first item (a bad
        prompt fails once, not once per item). Nothing by default."""

    def work(self, model: Any, item: Any, step: Callable[[str, int, int | None], None] | None) -> Any:
        """The item's outcome (anything but an exception or an :class:`ItemFailure`), computed
        where the model is (this process, or a Ray worker); ``step(stage, done, total)`` hears of
        the progress within it."""
        raise NotImplementedError

    def pack(self, outcome: Any) -> Any:
        """``outcome`` as a Ray worker sends it to the driver (picklable; smaller if need be).
        As it is by default."""
        return outcome

    def unpack(self, item: Any, packed: Any) -> Any:
        """The outcome of ``item`` from what :meth:`pack` made of it, on the driver."""
        return packed

    def planned(self, run: "FolderRun", item: Any) -> list[Path]:
        """The files ``item`` writes whose names are known before its work."""
        return []

    def existing(self, run: "FolderRun", item: Any) -> list[Path]:
        """Files already on disk that ``item``'s outputs would replace (per-instance files)."""
        return []

    def run_wide(self, run: "FolderRun") -> list[Path]:
        """The run-wide files (written by :meth:`finish`)."""
        return []

    def write(self, run: "FolderRun", item: Any, outcome: Any) -> dict:
        """Write ``item``'s outputs in ``run``'s folder (claim them first: :meth:`FolderRun.claim`),
        then its record (last: :meth:`FolderRun.record`), count it into ``run.summary`` and return
        the record. Runs where the run is (the driver, with Ray)."""
        raise NotImplementedError

    def complete(self, run: "FolderRun", record: dict) -> bool:
        """Whether ``record`` (the item's, read back on resume) covers ``run.formats`` and every
        file it lists is on disk."""
        if not set(run.formats) <= set(record.get("formats", ())):
            return False
        outputs = record.get("outputs", {})
        return all((run.root / rel).is_file() for f in run.formats for rel in outputs.get(f, ()))

    def keep(self, record: dict) -> dict:
        """What the run holds of a done item's record until :meth:`finish`."""
        return record

    def finish(self, run: "FolderRun", done: list) -> None:
        """Write the run-wide files from the items ``done`` (input order; their records are
        ``run.done[item.key]``) and complete ``run.summary``. Nothing by default."""


@dataclass(frozen=True)
class ItemFailure:
    """One item's error met in another process (a Ray worker), as :meth:`FolderRun.settle` takes
    it: ``kind`` its :meth:`ItemKind.failure_kind` there (``"item"`` or ``"stop"``; a ``"run"``
    error is the run's, raised as itself); ``error`` the exception, or its text where it is not
    sent (it does not survive pickling, or the run stops on it); ``trace`` the traceback text,
    logged by the process that writes when the run stops.

    Raises:
        InvalidArgumentError: ``kind`` is neither ``"item"`` nor ``"stop"``.
    """

    kind: str
    error: BaseException | str
    trace: str | None = None

    def __post_init__(self):
        if self.kind not in ("item", "stop"):
            raise InvalidArgumentError(f"ItemFailure.kind must be 'item' or 'stop', got {self.kind!r}")


ItemT = TypeVar("ItemT")
_Run = TypeVar("_Run", bound="FolderRun")


@dataclass
class FolderSummary(Generic[ItemT]):
    """What every run's summary holds: ``failed`` pairs each failed item with the reason,
    ``skipped`` counts the items a resumed run found complete, ``seconds`` the wall time.
    A kind's summary adds its counts and names, in :attr:`given_field` and
    :attr:`finished_field`, those of the items given and the items done now (or overrides
    :meth:`began` and :attr:`finished`)."""

    given_field: ClassVar[str] = ""
    finished_field: ClassVar[str] = ""

    output: Path
    formats: list[str]
    skipped: int = 0
    failed: list[tuple[ItemT, str]] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0

    def began(self, items: int) -> None:
        """The run was given ``items`` items."""
        setattr(self, self.given_field, items)

    @property
    def finished(self) -> int:
        """Items done by this call (not skipped, not failed)."""
        return int(getattr(self, self.finished_field))

    @property
    def left(self) -> int:
        """Items neither done nor failed (after an interruption)."""
        return int(getattr(self, self.given_field)) - self.finished - self.skipped - len(self.failed)


# --------------------------------------------------------------------------------------------
# The output folder
# --------------------------------------------------------------------------------------------

class FolderRun:
    """An output folder being filled by one run of ``kind``.

    Opening it takes the folder's lock (:class:`~lang_sam.labeling.lock.OutputLock`: a second run
    into the same folder raises :class:`~lang_sam.errors.OutputLockedError` at once, naming the
    first; :meth:`close` or :meth:`release` gives it back) and checks the folder (:meth:`_open`):
    a folder holding an earlier run (its files are known from ``.lang-sam/written`` and the
    records) needs ``resume=True`` (the same ``config``, else :class:`InvalidRunError` says which
    settings differ) or ``overwrite=True`` (the files the earlier run wrote are deleted, nothing
    else). :meth:`start` refuses (:class:`OutputCollisionError`) outputs that would replace a file
    lang-sam did not write, and returns the items still to do; :meth:`settle` applies the failure
    policy to each item's outcome; :meth:`close` writes the run-wide files (``kind.finish``).

    Raises:
        InvalidRunError: ``resume`` and ``overwrite`` both given, the output is a file, or the
            folder holds an earlier run that may not be continued or replaced as asked.
        OutputLockedError: another run holds the folder.
    """

    def __init__(self, kind: ItemKind, output: str | os.PathLike, config: dict, summary: FolderSummary[Any],
                 *, resume: bool = False, overwrite: bool = False):
        out = local_path(output, "output")
        if resume and overwrite:
            raise InvalidRunError.naming("give {resume} or {overwrite}, not both", **RUN_FLAGS)
        if out.exists() and not out.is_dir():
            raise InvalidRunError(f"output {str(out)!r} exists and is not a folder")
        self.kind = kind
        self.root = out
        self.formats: list[str] = list(kind.formats)
        self.config = config
        self.summary = summary
        self.done: dict[str, dict] = {}
        self.items: list | None = None
        self.overwrite = False
        self.lock = OutputLock(out / STATE_DIR, out).acquire()
        try:
            self._open(resume, overwrite)
        except BaseException:
            self.release()
            raise

    # -- paths ---------------------------------------------------------------------------------

    @property
    def run_file(self) -> Path:
        """``.lang-sam/run.json``: the run's settings."""
        return self.root / STATE_DIR / "run.json"

    @property
    def written_file(self) -> Path:
        """``.lang-sam/written``: every output the run writes, listed before it is written."""
        return self.root / STATE_DIR / "written"

    @property
    def records(self) -> Path:
        """The folder of the items' records."""
        return self.root / STATE_DIR / self.kind.records

    def record(self, key: str) -> Path:
        """Where the record of the item of ``key`` goes (written last: the item is done)."""
        return self.records / f"{key}.json"

    def rel(self, p: Path) -> str:
        return p.relative_to(self.root).as_posix()

    # -- opening -------------------------------------------------------------------------------

    def state(self) -> dict:
        """What ``run.json`` holds."""
        tag = {"kind": self.kind.tag} if self.kind.tag is not None else {}
        return {**tag, "version": RUN_VERSION, "config": self.config}

    def _save_state(self) -> None:
        write_json(self.run_file, self.state(), indent=1)

    def _config_diff(self, state: dict) -> tuple[list[str], str]:
        """The settings that differ from the earlier run's (``state``), and how to say so."""
        old = state.get("config", {})
        diff = [k for k in self.config if old.get(k) != self.config[k]]
        said = "; ".join(f"{{{k}}}: was {old.get(k)!r}, now {self.config[k]!r}" for k in diff)
        return diff, said

    def _open(self, resume: bool, overwrite: bool) -> None:
        """Check the folder against an earlier run's (see the class doc)."""
        self.ours = self._written_before()
        earlier = self._earlier_outputs()
        state = read_json(self.run_file)
        if isinstance(state, dict) and self.kind.tag is not None and state.get("kind") != self.kind.tag:
            raise InvalidRunError(
                f"{self.root} holds the outputs of another kind of lang-sam run, not of a "
                f"{self.kind.noun} run: choose another output folder")
        self.resumed = resume and isinstance(state, dict) and state.get("version") == RUN_VERSION
        if self.resumed:
            assert isinstance(state, dict)  # resumed says so
            diff, said = self._config_diff(state)
            if diff:
                raise InvalidRunError.naming(
                    f"resume: {self.root} was {self.kind.done_verb} with other settings ({said}). Use "
                    "the same settings, another output folder, or {overwrite} to delete that run's "
                    "outputs and start again.", **RUN_FLAGS, **{k: k for k in diff})
        elif earlier and not overwrite:
            listed = ", ".join(f"{name}/" for name in earlier)
            if resume:
                raise InvalidRunError.naming(
                    f"resume: {self.root} holds lang-sam outputs ({listed}) but no readable record "
                    f"of the run that made them ({self.rel(self.run_file)}), so they cannot be "
                    "resumed. Use {overwrite} to delete them and start again, or another output "
                    "folder.", **RUN_FLAGS)
            raise InvalidRunError.naming(
                f"{self.root} already holds the outputs of an earlier lang-sam run ({listed}). Use "
                "{resume} to finish that run with the same settings, {overwrite} to delete the "
                "files it wrote and start again (other files there are kept), or another output "
                "folder.", **RUN_FLAGS)
        elif resume:
            logger.info("resume: no earlier run in %s; starting afresh", self.root)
        self.overwrite = overwrite and not self.resumed

    def _written_before(self) -> set[str]:
        """The files (relative paths; a folder as ``name/``) that earlier runs here wrote: none
        unless the folder holds a run record; then those ``.lang-sam/written`` lists, those the
        items' records list, and the records themselves."""
        if not self.run_file.is_file():
            return set()
        try:
            text = self.written_file.read_text(encoding="utf-8")
        except OSError:
            text = ""
        ours = {line for line in text.splitlines() if line and not line.startswith("..")}
        if self.records.is_dir():
            for path in self.records.rglob("*.json"):
                ours.add(self.rel(path))
                rec = read_json(path)
                outputs = rec.get("outputs") if isinstance(rec, dict) else None
                if isinstance(outputs, dict):
                    ours.update(r for files in outputs.values() if isinstance(files, list)
                                for r in files if isinstance(r, str) and not r.startswith(".."))
        return ours

    def _earlier_outputs(self) -> list[str]:
        """The top folders (of ``kind.output_dirs``) holding a file an earlier run wrote. A run
        record alone (a run that stopped before its first item) does not count."""
        tops = {rel.split("/", 1)[0] for rel in self.ours if (self.root / rel).is_file()}
        return [name for name in self.kind.output_dirs if name in tops]

    def _remove_earlier(self) -> int:
        """Delete the files earlier runs wrote, their records and the folders left empty; nothing
        else. Returns how many files went."""
        root, n = self.root, 0
        folders: set[Path] = set()
        for rel in sorted(self.ours):
            path = root / rel
            if path.is_file() or path.is_symlink():
                path.unlink()
                n += 1
            folders.update(p for p in path.parents if p != root and root in p.parents)
        for path in (self.written_file, self.run_file):
            path.unlink(missing_ok=True)
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            try:
                folder.rmdir()  # only if empty: files lang-sam did not write stay, and their folders
            except OSError:
                pass
        self.ours = set()
        return n

    def __enter__(self: _Run) -> _Run:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # -- the items -----------------------------------------------------------------------------

    def claim(self, paths: Iterable[Path]) -> None:
        """List ``paths`` in ``.lang-sam/written`` (those not listed yet) before they are written."""
        new = [rel for rel in (self.rel(p) for p in paths) if rel not in self.ours]
        claim(self.root, new)
        self.ours.update(new)

    def _check_collisions(self, items: Sequence) -> None:
        """Refuse to write over files lang-sam did not write (see :class:`OutputCollisionError`)."""
        folders = tuple(r for r in self.ours if r.endswith("/"))

        def foreign(rel: str) -> bool:
            return rel not in self.ours and not rel.startswith(folders) and temp_file_of(rel) not in self.ours

        kind = self.kind
        paths = kind.run_wide(self) + [p for item in items for p in kind.planned(self, item)]
        found = [self.rel(p) for p in paths if (p.exists() or p.is_symlink()) and foreign(self.rel(p))]
        # A killed run's temporary file of one of its own files is not in the way: start() sweeps it.
        found += [r for item in items for r in map(self.rel, kind.existing(self, item)) if foreign(r)]
        if found:
            shown = ", ".join(found[:5]) + (f" (+{len(found) - 5} more)" if len(found) > 5 else "")
            raise OutputCollisionError(
                f"{self.root} holds {len(found)} file(s) that lang-sam did not write where this "
                f"run writes its outputs ({shown}); they are never deleted or written over. Move "
                "them away, or choose another output folder.", path=str(self.root), files=found)

    def complete_record(self, item: Any) -> dict | None:
        """The item's saved record if it is this item's and every output of this run's formats is
        on disk, else None."""
        rec = read_json(self.record(item.key))
        if not isinstance(rec, dict) or rec.get(self.kind.record_field) != item.rel.as_posix():
            return None
        return rec if self.kind.complete(self, rec) else None

    def start(self, items: Sequence) -> list:
        """Take the run's items; return those still to do (on resume, complete ones are skipped).

        Raises:
            OutputCollisionError: an output would replace a file lang-sam did not write (raised
                before anything is deleted or written).
        """
        items = list(items)
        self._check_collisions(items)  # before anything is deleted or written
        # Temporary files of the files earlier runs wrote or this one will (a killed run's): only those.
        swept = sweep_temp_files([self.root / rel for rel in self.ours] + self.kind.run_wide(self)
                                 + [p for item in items for p in self.kind.planned(self, item)])
        if swept:
            logger.info("removed %d temporary file(s) left by an interrupted run", swept)
        if self.overwrite and self.ours:
            removed = self._remove_earlier()
            logger.info("overwrite: removed %d file(s) of the earlier run from %s", removed, self.root)
        self._save_state()
        self.items = items
        self.summary.began(len(items))
        if self.resumed:
            for item in items:
                rec = self.complete_record(item)
                if rec is not None:
                    self.done[item.key] = self.kind.keep(rec)
                    self.summary.skipped += 1
        return [item for item in items if item.key not in self.done]

    def fail(self, item: Any, exc: BaseException | str) -> None:
        """Note a failed item; an older record of it is stale now and goes."""
        why = exc if isinstance(exc, str) else failure_reason(exc)
        self.summary.failed.append((item, why))
        self.record(item.key).unlink(missing_ok=True)

    def stopped(self, item: Any, exc: BaseException | str) -> RunStoppedError:
        """The error that stops the run at ``item`` because of ``exc`` (not the item's fault): it
        says what finished, where the records are, and how to finish (resume)."""
        cause = exc if isinstance(exc, str) else failure_reason(exc)
        done, kind = self.summary.finished, self.kind
        return RunStoppedError.naming(
            f"the run stopped at {item.rel.as_posix()}: {cause}. This is not a fault of that "
            f"{kind.noun} (out of memory, a full disk, or a bug: the traceback is in the log), so the "
            f"run did not go on to the next one. {done} {kind.noun}(s) were {kind.done_verb} before "
            f"it; their files and records are in {self.root} (records: {self.rel(self.records)}/), "
            f"and the run-wide files cover them. Fix the cause, then run again with {{resume}} to "
            f"{kind.verb} the rest.",
            dict(output=str(self.root), records=str(self.records), image=item.rel.as_posix(),
                 labelled=done, cause=cause),
            resume="resume=True",
        )

    def settle(self, item: Any, outcome: Any, hooks: RunHooks | None = None) -> dict | None:
        """Settle one item under the run's failure policy, the one of :func:`run_folder` and of the
        Ray drivers: ``outcome`` is what :meth:`ItemKind.work` returned (written by
        :meth:`ItemKind.write`; an error while writing counts as one while working), the exception
        it raised, or an :class:`ItemFailure` from another process. By
        :meth:`ItemKind.failure_kind`:

        - ``"run"``: raised as it is (the run's error, not this item's);
        - ``"item"``: the item fails (:meth:`fail`, an INFO log line, ``hooks.failed(item, error)``)
          and None is returned: the run goes on;
        - ``"stop"``: logged at ERROR with its traceback, then the run stops.

        Returns the item's record when it was written (``hooks.done(item)`` is told).

        Raises:
            RunStoppedError: a ``"stop"`` error (chained to it in one process).
            Exception: a ``"run"`` error, as it is.
        """
        stage = self.kind.verbing
        if not isinstance(outcome, (BaseException, ItemFailure)):
            try:
                record = self.kind.write(self, item, outcome)
            except Exception as exc:  # a full disk, say
                stage, outcome = "writing", exc
            else:
                self.done[item.key] = self.kind.keep(record)
                if hooks is not None:
                    hooks.done(item)
                return record
        error: BaseException | str
        if isinstance(outcome, ItemFailure):  # its kind is "item" or "stop", never "run"
            kind, error, trace = outcome.kind, outcome.error, outcome.trace
        else:
            kind, error, trace = self.kind.failure_kind(outcome), outcome, None
            if kind == "run":
                raise outcome
        if kind == "item":
            self.fail(item, error)
            logger.info("%s failed: %s", item.rel, error)
            if hooks is not None:
                hooks.failed(item, error)
            return None
        cause = error if isinstance(error, BaseException) else None
        if trace is not None:
            logger.error("%s %s failed; the run stops\n%s", stage, item.rel, trace.rstrip())
        else:
            logger.error("%s %s failed; the run stops", stage, item.rel, exc_info=cause)
        raise self.stopped(item, error) from cause

    # -- the end -------------------------------------------------------------------------------

    def finish(self) -> Any:
        """Write the run-wide files from the records of the items done (``kind.finish``)."""
        if self.items is None:  # never started (refused, or stopped before start): nothing to write
            return self.summary
        self.kind.finish(self, [item for item in self.items if item.key in self.done])
        return self.summary

    def release(self) -> None:
        """Give the output folder's lock back (done by :meth:`close`; a no-op when not held)."""
        self.lock.release()

    def close(self, started: float) -> Any:
        """End a run begun at ``started`` (``time.perf_counter()``): :meth:`finish`, where a Ctrl-C
        while the run-wide files are written marks the summary ``interrupted`` (the files are
        written atomically: old or new, never half), then the wall time into ``summary.seconds``;
        the output folder's lock is given back."""
        try:
            self.finish()
        except KeyboardInterrupt:
            self.summary.interrupted = True
        finally:
            self.release()
        self.summary.seconds = time.perf_counter() - started
        return self.summary


# --------------------------------------------------------------------------------------------
# One process
# --------------------------------------------------------------------------------------------

def run_folder(kind: ItemKind | type[ItemKind], open_run: Callable[[Path], FolderRun], model: Any,
               inputs: Sequence[str | os.PathLike], output: str | os.PathLike,
               hooks: RunHooks | None = None) -> Any:
    """Run every item of ``inputs`` (:func:`~lang_sam.labeling.inputs.collect_files` by ``kind``)
    into ``output`` in this process; return the run's summary.

    ``open_run(output)`` opens the :class:`FolderRun`. ``model`` is what ``kind.work`` takes, or a
    callable returning it (called only if some item is left to do: a finished resumed run loads
    no model). ``hooks`` hears how it goes (:class:`~lang_sam.labeling.hooks.RunHooks`). A failed
    item is listed in the summary and the run goes on; an error that is no item's fault stops the
    run (:meth:`FolderRun.settle`). Ctrl-C stops the run cleanly: the run-wide files are written
    for the items done, and the summary says ``interrupted``; run again with ``resume=True``.

    Raises:
        InvalidRunError: see :func:`~lang_sam.labeling.inputs.collect_files` and :class:`FolderRun`.
        OutputLockedError: another run holds ``output``.
        OutputCollisionError: see :meth:`FolderRun.start`.
        RunStoppedError: see :meth:`FolderRun.settle`.
    """
    started = time.perf_counter()
    out = local_path(output, "output")
    items = collect_files(inputs, kind, exclude=out)
    run = open_run(out)
    try:
        todo = run.start(items)
        if todo and callable(model) and not hasattr(model, run.kind.model_attr):
            model = model()
        if todo:
            run.kind.prepare(model)
    except BaseException:
        run.release()  # no item was written: the run-wide files are left as they were
        raise
    if hooks is not None:
        hooks.start(todo)
    try:
        for item in todo:
            step = None if hooks is None else (
                lambda stage, done, total, item=item: hooks.step(item, stage, done, total))
            try:
                outcome = run.kind.work(model, item, step)
            except Exception as exc:  # judged by run.settle: the item fails, or the run stops
                outcome = exc
            run.settle(item, outcome, hooks)
    except KeyboardInterrupt:
        run.summary.interrupted = True
    finally:
        run.close(started)
    return run.summary
