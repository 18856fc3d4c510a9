"""The generic folder run (issue 26, item 2): a third input kind is a small module on top of it.

The toy kind below lives in this file only: text files whose work is counting words, one JSON per
file. It runs through :func:`lang_sam.labeling.folder_run.run_folder` and
:class:`~lang_sam.labeling.folder_run.FolderRun` with no edit to either: collection by suffix,
the lock, resume, the failure policy, the written list, the summary and the hooks are theirs.
"""

from __future__ import annotations

import json
import pickle
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from lang_sam.errors import InvalidRunError, OutputCollisionError, OutputLockedError, RunStoppedError
from lang_sam.labeling.atomic import write_json
from lang_sam.labeling.folder_run import FolderRun, FolderSummary, ItemFailure, ItemKind, run_folder
from lang_sam.labeling.inputs import FileItem, collect_files
from lang_sam.labeling.hooks import RunHooks

# ------------------------------------------------------------------------------------------
# The toy kind: all a new input kind writes
# ------------------------------------------------------------------------------------------


class UnreadableText(ValueError):
    """A text file's own fault: it fails, the run goes on."""


class BadPattern(ValueError):
    """The same for every file: the run raises it."""


@dataclass(frozen=True)
class TextItem(FileItem):
    pass


@dataclass
class WordSummary(FolderSummary[TextItem]):
    texts: int = 0
    counted: int = 0
    words: int = 0
    run_words: int = 0

    def began(self, items: int) -> None:
        self.texts = items

    @property
    def finished(self) -> int:
        return self.counted


class WordKind(ItemKind):
    item_type = TextItem
    suffixes = frozenset({".txt2"})  # not .txt: those are lists of inputs
    noun, verb, verbing, done_verb = "text", "count", "counting", "counted"
    records, record_field, tag = "texts", "file", "words"
    output_dirs = ("counts",)
    model_attr = "split"
    run_errors = (BadPattern,)
    item_errors = (UnreadableText,)

    def __init__(self, formats=("json",)):
        self.formats = list(formats)

    def work(self, model, item, step):
        text = item.path.read_text(encoding="utf-8")
        if text.startswith("BAD"):
            raise UnreadableText(f"{item.rel}: unreadable")
        if text.startswith("OOM"):
            raise MemoryError("out of memory")
        if text.startswith("PATTERN"):
            raise BadPattern("the pattern is wrong")
        words = model.split(text)
        if step is not None:
            step("words", len(words), len(words))
        return len(words)

    def planned(self, run, item):
        return [run.root / "counts" / f"{item.key}.json"]

    def write(self, run, item, outcome):
        run.claim(self.planned(run, item) + [run.record(item.key)])
        out = self.planned(run, item)[0]
        write_json(out, {"words": outcome})
        record = {"file": item.rel.as_posix(), "formats": self.formats, "outputs": {"json": [run.rel(out)]},
                  "words": outcome}
        write_json(run.record(item.key), record)
        run.summary.counted += 1
        run.summary.words += outcome
        return record

    def run_wide(self, run):
        return [run.root / "counts" / "total.json"]

    def finish(self, run, done):
        run.claim(self.run_wide(run))
        total = sum(run.done[item.key]["words"] for item in done)
        write_json(self.run_wide(run)[0], {"texts": len(done), "words": total})
        run.summary.run_words = total


class Splitter:
    """The toy's "model"."""

    loads = 0

    def split(self, text: str) -> list[str]:
        return text.split()


def open_run(out, resume=False, overwrite=False):
    return FolderRun(WordKind(), out, {"lower": False}, WordSummary(output=out, formats=["json"]),
                     resume=resume, overwrite=overwrite)


class Heard(RunHooks):
    """Every hook call as an event tuple (tests/test_track_cli.py uses it too)."""

    def __init__(self):
        self.events: list = []

    def start(self, todo):
        self.events.append(("start", [i.key for i in todo]))

    def step(self, item, stage, done, total):
        self.events.append(("step", item.key, stage, done, total))

    def done(self, item):
        self.events.append(("done", item.key))

    def failed(self, item, error):
        self.events.append(("failed", item.key, type(error).__name__))


def run(texts, out, *, hooks=None, **kw):
    def load():
        Splitter.loads += 1
        return Splitter()

    return run_folder(WordKind, lambda o: open_run(o, **kw), load, [texts], out, hooks)


@pytest.fixture
def texts(tmp_path) -> Path:
    d = tmp_path / "texts"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt2").write_text("one two three")
    (d / "sub" / "b.TXT2").write_text("four five")
    (d / "c.txt2").write_text("BAD file")
    (d / "notes.md").write_text("not collected")
    return d


# ------------------------------------------------------------------------------------------
# The tests
# ------------------------------------------------------------------------------------------


def test_collects_by_the_kinds_suffixes(texts, tmp_path):
    items = collect_files([texts], WordKind)
    assert [(type(i), i.rel.as_posix(), i.key) for i in items] == [
        (TextItem, "a.txt2", "a"), (TextItem, "c.txt2", "c"), (TextItem, "sub/b.TXT2", "sub/b")]
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("not collected")
    with pytest.raises(InvalidRunError, match=r"no texts found .*\(looked for \.txt2, any case\)"):
        collect_files([tmp_path / "empty"], WordKind)


def test_a_run_with_a_failing_item_then_a_resume_that_skips_the_done_ones(texts, tmp_path):
    out = tmp_path / "out"
    heard = Heard()
    Splitter.loads = 0
    summary = run(texts, out, hooks=heard)
    assert (summary.texts, summary.counted, summary.skipped, summary.words) == (3, 2, 0, 5)
    assert [(i.key, why) for i, why in summary.failed] == [("c", "UnreadableText: c.txt2: unreadable")]
    assert heard.events == [
        ("start", ["a", "c", "sub/b"]),
        ("step", "a", "words", 3, 3), ("done", "a"),
        ("failed", "c", "UnreadableText"),
        ("step", "sub/b", "words", 2, 2), ("done", "sub/b"),
    ]
    assert json.loads((out / "counts" / "total.json").read_text()) == {"texts": 2, "words": 5}
    assert json.loads((out / ".lang-sam" / "run.json").read_text()) == {
        "kind": "words", "version": 1, "config": {"lower": False}}
    written = (out / ".lang-sam" / "written").read_text().splitlines()
    assert written == ["counts/a.json", ".lang-sam/texts/a.json", "counts/sub/b.json",
                       ".lang-sam/texts/sub/b.json", "counts/total.json"]
    assert Splitter.loads == 1

    # Without resume the folder is refused; with it, the done texts are skipped and the failed one
    # is tried again.
    with pytest.raises(InvalidRunError, match="resume=True"):
        run(texts, out)
    (texts / "c.txt2").write_text("now it reads")
    again = Heard()
    summary = run(texts, out, hooks=again, resume=True)
    assert (summary.texts, summary.counted, summary.skipped, summary.failed) == (3, 1, 2, [])
    assert again.events == [("start", ["c"]), ("step", "c", "words", 3, 3), ("done", "c")]
    assert json.loads((out / "counts" / "total.json").read_text()) == {"texts": 3, "words": 8}
    # A finished run resumed loads no model.
    Splitter.loads = 0
    summary = run(texts, out, resume=True)
    assert (summary.counted, summary.skipped, Splitter.loads) == (0, 3, 0)


def test_resume_with_other_settings_and_overwrite(texts, tmp_path):
    out = tmp_path / "out"
    run(texts, out)
    with pytest.raises(InvalidRunError, match=r"lower: was False, now True"):
        FolderRun(WordKind(), out, {"lower": True}, WordSummary(output=out, formats=["json"]), resume=True)
    (out / "counts" / "mine.txt").write_text("the user's own file")
    summary = run(texts, out, overwrite=True)
    assert (summary.counted, summary.skipped) == (2, 0)
    assert (out / "counts" / "mine.txt").read_text() == "the user's own file"  # not the run's to delete


def test_a_file_the_run_did_not_write_is_never_written_over(texts, tmp_path):
    out = tmp_path / "out"
    (out / "counts").mkdir(parents=True)
    (out / "counts" / "a.json").write_text("mine")
    with pytest.raises(OutputCollisionError, match="counts/a.json"):
        run(texts, out)
    assert (out / "counts" / "a.json").read_text() == "mine"


@pytest.mark.parametrize("first, error, stops", [
    ("OOM here", MemoryError, True),  # not the item's fault: the run stops, resume finishes it
    ("PATTERN x", BadPattern, False),  # the run's own error: raised as it is
])
def test_errors_that_are_no_items_fault(texts, tmp_path, first, error, stops):
    out = tmp_path / "out"
    (texts / "c.txt2").write_text(first)
    raised = RunStoppedError if stops else error
    with pytest.raises(raised) as caught:
        run(texts, out)
    if stops:
        e = caught.value
        assert (e.image, e.labelled, e.output) == ("c.txt2", 1, str(out))
        assert isinstance(e.__cause__, MemoryError) and "1 text(s) were counted" in str(e)
        assert e.worded({"resume": "--resume"}).endswith("run again with --resume to count the rest.")
    # The texts done before it are on disk and counted in the run-wide file; the lock is free.
    assert json.loads((out / "counts" / "total.json").read_text()) == {"texts": 1, "words": 3}
    (texts / "c.txt2").write_text("fine")
    assert run(texts, out, resume=True).skipped == 1


def test_a_second_run_into_the_same_folder_is_refused(texts, tmp_path):
    out = tmp_path / "out"
    first = open_run(out)
    try:
        with pytest.raises(OutputLockedError):
            run(texts, out)
    finally:
        first.release()
    assert run(texts, out).counted == 2  # free once released


def test_the_kind_is_what_a_ray_driver_sends_and_settles(texts, tmp_path):
    """The Ray shape: the kind object is pickled to a worker, which runs ``work`` and classifies
    its error there (``failure_kind``); the driver settles each outcome, writing on its side."""
    out = tmp_path / "out"
    items = collect_files([texts], WordKind)
    (texts / "c.txt2").write_text("OOM")
    with open_run(out) as driver:
        todo = driver.start(items)
        worker_kind = pickle.loads(pickle.dumps(driver.kind))
        results: dict = {}

        def worker():  # another thread stands in for another process
            for item in todo:
                try:
                    results[item.key] = worker_kind.work(Splitter(), item, None)
                except Exception as exc:
                    kind = worker_kind.failure_kind(exc)
                    results[item.key] = ItemFailure(kind, f"{type(exc).__name__}: {exc}", "Traceback ...")

        t = threading.Thread(target=worker)
        t.start()
        t.join()
        assert isinstance(results["c"], ItemFailure) and results["c"].kind == "stop"
        assert driver.settle(todo[0], results["a"])["words"] == 3
        assert driver.settle(todo[2], results["sub/b"])["words"] == 2
        with pytest.raises(RunStoppedError) as stopped:
            driver.settle(todo[1], results["c"])
        assert stopped.value.cause == "MemoryError: out of memory" and stopped.value.labelled == 2
        failed = ItemFailure("item", "UnreadableText: gone")
        assert driver.settle(todo[1], failed) is None
        driver.close(0.0)
    assert driver.summary.counted == 2 and [why for _, why in driver.summary.failed] == ["UnreadableText: gone"]
    assert json.loads((out / "counts" / "total.json").read_text()) == {"texts": 2, "words": 5}
    with pytest.raises(ValueError, match="'item' or 'stop'"):
        ItemFailure("run", "BadPattern: x")
