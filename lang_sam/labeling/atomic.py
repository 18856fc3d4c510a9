"""Atomic file writes: every file goes to ``.<name>.<pid>.tmp`` in its folder and is renamed
(``os.replace``), so an interrupted run never leaves a half-written file under the final name."""

from __future__ import annotations

import io
import json
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

import numpy as np

from lang_sam.errors import InvalidArgumentError

__all__ = [
    "TMP_SUFFIX", "atomic_open", "atomic_path", "atomic_write_bytes", "atomic_write_text", "write_json", "write_png",
    "sweep_temp_files", "temp_file_of",
]

#: Temporary files are named ``.<final name>.<pid>.tmp`` in the final file's folder.
TMP_SUFFIX = ".tmp"
_TMP_RE = re.compile(r"^\.(.+)\.\d+\.tmp$")


@contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through, for content written piece by piece: it is
    ``.<name>.<pid>.tmp`` next to ``path`` and is renamed to ``path`` when the block ends.

    On any exception (``KeyboardInterrupt`` included) the temporary file is removed and the
    exception re-raised; ``path`` is either its old content or the new one, never a mix.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """:func:`atomic_open` for a writer that opens the file itself (GDAL): the temporary path to
    write, renamed to ``path`` when the block ends, removed (with any ``-journal`` / ``-wal`` file
    beside it) on an exception."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        for leftover in (tmp, tmp.with_name(tmp.name + "-journal"), tmp.with_name(tmp.name + "-wal")):
            leftover.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``.<name>.<pid>.tmp`` next to ``path``, then rename it to ``path``
    (see :func:`atomic_open`)."""
    path = Path(path)
    with atomic_open(path) as f:
        f.write(data)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = None) -> Path:
    """Write ``obj`` as JSON, atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def write_png(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write an ``HxW`` (grey) or ``HxWx3`` (RGB) uint8 array as a PNG, atomically."""
    from PIL import Image

    arr = np.ascontiguousarray(array)
    if arr.dtype != np.uint8:
        raise InvalidArgumentError(f"PNG pixels must be uint8, got dtype {arr.dtype}")
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise InvalidArgumentError(f"PNG array must be HxW or HxWx3, got shape {arr.shape}")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())


def temp_file_of(path: str) -> str | None:
    """The final path (``a/b.png``) whose temporary file ``path`` is (``a/.b.png.123.tmp``), or
    None when ``path`` is not named like one."""
    folder, _, name = path.rpartition("/")
    m = _TMP_RE.match(name)
    if m is None:
        return None
    return f"{folder}/{m.group(1)}" if folder else m.group(1)


def sweep_temp_files(paths: Iterable[str | os.PathLike]) -> int:
    """Remove the temporary files a killed writer left for ``paths`` (``.<name>.<pid>.tmp`` beside
    each final path) and nothing else; return how many. Files of other names are never touched,
    whatever they look like."""
    by_folder: dict[Path, set[str]] = {}
    for p in paths:
        p = Path(p)
        by_folder.setdefault(p.parent, set()).add(p.name)
    n = 0
    for folder, names in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            m = _TMP_RE.match(entry.name)
            if m and m.group(1) in names and entry.is_file(follow_symlinks=False):
                Path(entry.path).unlink(missing_ok=True)
                n += 1
    return n
