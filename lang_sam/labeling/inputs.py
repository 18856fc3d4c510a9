"""The inputs of a folder run (:mod:`lang_sam.labeling.folder_run`): files, folders and ``.txt``
lists in, the items of one input kind out (:func:`collect_files`); and the small helpers every run
shares (local paths, JSON records, format names)."""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

from lang_sam.errors import InvalidRunError

logger = logging.getLogger(__name__)

__all__ = ["STATE_DIR", "local_path", "read_json", "read_list", "is_run_folder", "parse_names",
           "FileItem", "collect_files"]

#: The folder of a run's own files in its output folder (settings, records, lock, written list).
STATE_DIR = ".lang-sam"

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
def local_path(value: str | os.PathLike, what: str) -> Path:
    """``value`` as a local :class:`~pathlib.Path` (``~`` expanded).

    Raises:
        InvalidRunError: ``value`` is a URL (object storage such as ``s3://`` or ``gs://``, or
            another scheme): it says so, instead of it being taken for a local folder named ``s3:``.
    """
    if _URL.match(os.fspath(value)):
        raise InvalidRunError(
            f"{what} {os.fspath(value)!r} is a URL; object storage (s3://, gs://) is not supported "
            "yet: mount the bucket as a filesystem (s3fs, gcsfuse) or copy the files to a local or "
            "shared folder, and give that path"
        )
    return Path(value).expanduser()


def read_json(path: Path) -> Any | None:
    """The JSON value of ``path``, or None when it is missing, unreadable or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_list(list_file: Path, noun: str = "image") -> list[Path]:
    """The paths a ``.txt`` list names (one a line, relative to the list's folder; blank lines and
    ``#`` comments skipped).

    Raises:
        InvalidRunError: the list cannot be read, or names a URL.
    """
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRunError(f"cannot read {noun} list {str(list_file)!r}: {exc}") from exc
    out = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = local_path(line, f"{noun} listed in {str(list_file)!r}:")
        out.append(p if p.is_absolute() else list_file.parent / p)
    return out


def is_run_folder(folder: Path) -> bool:
    """True if ``folder`` holds a lang-sam run's outputs (its run record)."""
    return (folder / STATE_DIR / "run.json").is_file()


def parse_names(values: Sequence[str] | str | None, known: Sequence[str], default: Sequence[str]) -> list[str]:
    """Output format names from ``values`` (repeated or comma-separated, any case; ``None`` or
    empty: ``default``), each once, in the order given.

    Raises:
        InvalidRunError: a name not in ``known``, or none named.
    """
    if not values:
        return list(default)
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for v in values:
        for f in v.split(","):
            f = f.strip().lower()
            if not f:
                continue
            if f not in known:
                raise InvalidRunError(f"unknown format {f!r}: expected some of {', '.join(known)}")
            if f not in out:
                out.append(f)
    if not out:
        raise InvalidRunError(f"no format named: expected some of {', '.join(known)}")
    return out


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FileItem:
    """One input file: its path, and its path relative to the folder it was given in."""

    path: Path
    rel: PurePosixPath

    @property
    def key(self) -> str:
        """``rel`` without its suffix: the stem of every output of this item."""
        return self.rel.with_suffix("").as_posix()


def _files_in(root: Path, suffixes: frozenset[str]) -> tuple[list[Path], list[Path]]:
    """The files under ``root`` with one of ``suffixes`` (sorted by relative path), and the folders
    below ``root`` not searched because they hold a lang-sam run's outputs."""
    found: list[Path] = []
    runs: list[Path] = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        keep = []
        for d in sorted(dirs):
            if d == STATE_DIR:
                continue
            if is_run_folder(here / d):
                runs.append(here / d)
            else:
                keep.append(d)
        dirs[:] = keep
        found.extend(here / f for f in files if (here / f).suffix.lower() in suffixes and (here / f).is_file())
    found.sort(key=lambda f: f.relative_to(root).as_posix())
    return found, runs


def collect_files(
    inputs: Sequence[str | os.PathLike], kind: Any,
    exclude: str | os.PathLike | None = None,
) -> list:
    """The items of ``kind`` (an :class:`~lang_sam.labeling.folder_run.ItemKind` or its class:
    its ``item_type``, ``suffixes``, ``noun``, ``source_noun``, ``input_hint``, ``verb``) named by
    ``inputs``: files (any suffix), folders (searched recursively for ``kind.suffixes``, any case)
    and ``.txt`` files listing paths (one per line, relative to the list's folder; ``#`` starts a
    comment).

    Each item's ``rel`` is its path relative to the folder given (a file given alone: its name;
    a list: the listed files' common folder). Files under ``exclude`` (the output folder) are
    skipped, and so are the folders met while searching a folder that hold a lang-sam run's
    outputs (a ``.lang-sam/run.json``; a warning names them). A file met twice is kept once.

    Raises:
        InvalidRunError: an input is missing, no file was found, or two files would write the same
            outputs (same ``rel`` without suffix, any case).
    """
    excl = Path(exclude).resolve() if exclude is not None else None
    items: list = []
    skipped_runs: list[Path] = []
    seen: set[Path] = set()
    noun = kind.noun

    def add(path: Path, rel: PurePosixPath) -> None:
        real = path.resolve()
        if real in seen or (excl is not None and (real == excl or excl in real.parents)):
            return
        seen.add(real)
        items.append(kind.item_type(path, rel))

    for raw in inputs:
        p = local_path(raw, "input")
        if p.is_dir():
            found, runs = _files_in(p, kind.suffixes)
            skipped_runs.extend(runs)
            for f in found:
                add(f, PurePosixPath(f.relative_to(p).as_posix()))
        elif p.is_file() and p.suffix.lower() == ".txt":
            listed = read_list(p, noun)
            if listed:
                base = Path(os.path.commonpath([str(q.resolve().parent) for q in listed]))
                for q in listed:
                    add(q, PurePosixPath(q.resolve().relative_to(base).as_posix()))
        elif p.is_file():
            add(p, PurePosixPath(p.name))
        else:
            raise InvalidRunError(
                f"input not found: {str(raw)!r} (expected {kind.input_hint} or a .txt list)")
    if skipped_runs:
        shown = ", ".join(str(r) for r in skipped_runs[:5])
        more = f" (+{len(skipped_runs) - 5} more)" if len(skipped_runs) > 5 else ""
        logger.warning(
            "skipped %d folder(s) holding a lang-sam run's outputs (overlays and masks are not "
            "%ss): %s%s. Give such a folder as an input of its own to %s its files.",
            len(skipped_runs), kind.source_noun, shown, more, kind.verb)
    if not items:
        raise InvalidRunError(
            f"no {noun}s found in {', '.join(map(str, inputs))} "
            f"(looked for {', '.join(sorted(kind.suffixes))}, any case)")
    by_key: dict[str, Any] = {}
    for item in items:
        other = by_key.setdefault(item.key.casefold(), item)
        if other is not item:
            raise InvalidRunError(
                f"{str(other.path)!r} and {str(item.path)!r} would write the same outputs "
                f"({item.key!r}); give their common parent folder instead, or rename one")
    return items
