"""Downloading a checkpoint: to ``<file>.incomplete`` under ``<file>.lock``, resumed after a cut-off,
verified (sha256 where known), then renamed (the huggingface_hub way). Nothing here runs at import.

The lock file exists only while a download holds it: it is deleted on release, whether the download
succeeded or failed (see :func:`_file_lock`), so no ``.lock`` is left beside the checkpoints.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from lang_sam.errors import AccessDeniedError, ChecksumMismatchError, DownloadError, WeightsNotFoundError
from lang_sam.settings import ENV_WEIGHTS_DIR, hf_endpoint, is_offline

logger = logging.getLogger(__name__)

__all__ = ["download_file", "sha256sum", "copy_atomic"]

_CHUNK = 1 << 20


def sha256sum(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def _file_lock(path: Path):
    """Hold an exclusive inter-process lock named by ``path``; delete ``path`` on release.

    POSIX: ``flock`` on ``path``, which is unlinked while still locked on release. A waiter that
    then gets the lock on the unlinked file sees that ``path`` no longer names the file it locked
    and starts again on the current one, so two processes never both hold it. A process killed
    while holding it leaves a file that holds no lock (``flock`` dies with the process); the next
    download takes it and removes it. Elsewhere, :class:`filelock.FileLock` (it removes its file on
    release on Windows).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        from filelock import FileLock

        with FileLock(str(path)):
            yield
        return
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = os.fstat(fd)
            try:
                now = os.stat(path)
            except FileNotFoundError:
                now = None
        except BaseException:
            os.close(fd)
            raise
        if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            break
        os.close(fd)  # the previous holder removed this file: lock the current one
    try:
        yield
    finally:
        try:
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)


def _fetch(url: str, tmp: Path, *, progress: bool, timeout: float, token: str | None = None) -> None:
    """Stream ``url`` into ``tmp``, resuming from its current size when the server allows it.
    ``token`` goes in an ``Authorization: Bearer`` header to ``url``'s host only (never to the
    host a redirect leads to, e.g. the hub's file CDN)."""
    from tqdm.auto import tqdm

    have = tmp.stat().st_size if tmp.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "lang-sam"})
    if token:
        req.add_unredirected_header("Authorization", f"Bearer {token}")
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the partial file is already complete
            return
        raise
    with resp:
        if have and resp.status != 206:
            have = 0  # server ignored the range: start again
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        mode = "ab" if have else "wb"
        with open(tmp, mode) as f, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
            desc=tmp.name.removesuffix(".incomplete"), disable=not progress, leave=False,
        ) as bar:
            got = 0
            while True:
                chunk = resp.read(_CHUNK)
                if not chunk:
                    break
                f.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
        if length is not None and got != int(length):
            raise urllib.error.ContentTooShortError(
                f"connection closed after {got} of {length} bytes", None  # type: ignore[arg-type]
            )  # (typeshed wants the partial content; there is none to give)


def _fetch_with_retries(
    url: str, tmp: Path, failures: list[str], *, progress: bool, retries: int, timeout: float,
    token: str | None = None, denied: list[tuple[str, int]] | None = None,
) -> bool:
    """Fetch ``url`` into ``tmp``, resuming after cut-offs; record each failure (and each HTTP
    401/403 in ``denied``). True on success."""
    for attempt in range(1, retries + 1):
        try:
            _fetch(url, tmp, progress=progress, timeout=timeout, token=token)
            return True
        except urllib.error.HTTPError as exc:  # the server answered: retrying will not help
            failures.append(f"{url}: HTTP {exc.code} {exc.reason}")
            if exc.code in (401, 403) and denied is not None:
                denied.append((url, exc.code))
            tmp.unlink(missing_ok=True)
            return False
        except (urllib.error.URLError, OSError) as exc:
            failures.append(f"{url} (try {attempt}/{retries}): {exc}")
            logger.warning("download of %s interrupted (%s); retrying", url, exc)
            time.sleep(min(0.5 * attempt, 2.0))
    return False


def download_file(
    urls: list[str] | tuple[str, ...] | str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    progress: bool = True,
    retries: int = 3,
    timeout: float = 30.0,
    token: str | None = None,
) -> Path:
    """Download the first source that delivers a good file to ``dest``; return ``dest``.

    The bytes go to ``dest.incomplete`` under ``dest.lock``; a cut-off connection is retried
    ``retries`` times per source, resuming where it stopped. A file whose sha256 differs from
    ``sha256`` is deleted and the next source tried. Raises :class:`ChecksumMismatchError` if a
    source delivered a wrong file and none a right one, :class:`AccessDeniedError` (a
    ``DownloadError`` and ``PermissionError``) if every source answered HTTP 401/403, else
    :class:`DownloadError`. ``token`` is sent to each source as ``Authorization: Bearer``.
    """
    if is_offline():
        offline = WeightsNotFoundError(f"offline mode is on: not downloading {Path(dest).name}")
        offline.reason = "offline mode is on: not downloaded"
        raise offline
    urls = [urls] if isinstance(urls, str) else list(urls)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".incomplete")
    failures: list[str] = []
    denied: list[tuple[str, int]] = []
    mismatch: str | None = None
    with _file_lock(dest.with_name(dest.name + ".lock")):
        if dest.is_file():  # another process finished it while we waited
            return dest
        for i, url in enumerate(urls):
            if i > 0:
                tmp.unlink(missing_ok=True)  # never splice bytes from two sources
            logger.info("downloading %s -> %s", url, dest)
            if not _fetch_with_retries(url, tmp, failures, progress=progress, retries=retries,
                                       timeout=timeout, token=token, denied=denied):
                continue
            if sha256 is not None:
                actual = sha256sum(tmp)
                if actual != sha256:
                    tmp.unlink(missing_ok=True)
                    mismatch = (
                        f"sha256 mismatch for {dest.name} from {url}: expected {sha256}, got "
                        f"{actual}; the file was removed"
                    )
                    failures.append(mismatch)
                    logger.warning(mismatch)
                    continue
            os.replace(tmp, dest)
            return dest
    detail = "; ".join(failures)
    if mismatch is not None:
        raise ChecksumMismatchError(f"{mismatch}. All sources: {detail}")
    if denied and len(denied) == len(urls):
        url, status = denied[0]
        raise AccessDeniedError(f"could not download {dest.name}: access denied ({detail})",
                                url=url, status=status)
    hub = [u for u in urls if _on_hugging_face(u)]
    mirror = (
        f" Hugging Face downloads can go through a mirror: set HF_ENDPOINT (now {hf_endpoint()})."
        if hub else ""
    )
    err = DownloadError(
        f"could not download {dest.name}: {detail}. Check the network or proxy, or download it by "
        f"hand from {' or '.join(urls)} into {dest.parent} (or ${ENV_WEIGHTS_DIR}).{mirror}"
    )
    err.reason = f"could not download it: {_summary(failures)}.{mirror}"
    raise err


def _summary(failures: list[str]) -> str:
    """``failures`` with the retries of one source folded: ``url: error (3 tries)``."""
    folded: dict[str, int] = {}
    for text in failures:
        key = re.sub(r" \(try \d+/\d+\)", "", text)
        folded[key] = folded.get(key, 0) + 1
    return "; ".join(k + (f" ({n} tries)" if n > 1 else "") for k, n in folded.items())


def _on_hugging_face(url: str) -> bool:
    """True for a URL on the Hugging Face hub or the mirror ``HF_ENDPOINT`` names."""
    host = urllib.parse.urlsplit(url).hostname or ""
    return url.startswith(hf_endpoint() + "/") or host == "huggingface.co" or host.endswith(".huggingface.co")


def copy_atomic(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy ``src`` to a temporary name beside ``dest``, then rename it to ``dest``."""
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest
