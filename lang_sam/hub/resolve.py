"""Finding a checkpoint: one fixed resolution order, stopping at the first hit.

1. an explicit path (``ckpt_path=`` / ``gdino_ckpt_path=``; a folder holding the canonical name works);
2. ``$LANG_SAM_WEIGHTS_DIR/<filename>`` (a folder you fill yourself, e.g. on an air-gapped machine);
3. the caches the original ``lang-segment-anything`` used, so existing downloads are reused:
   ``torch.hub.get_dir()/checkpoints/<filename>`` (honours ``TORCH_HOME``; where
   ``torch.hub.load_state_dict_from_url`` put SAM) and the Hugging Face cache (honours ``HF_HOME`` /
   ``HF_HUB_CACHE``; where ``hf_hub_download`` put GroundingDINO);
4. a download (:func:`lang_sam.hub.download.download_file`), unless offline mode is on
   (``LANG_SAM_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``). Downloads go to ``$LANG_SAM_WEIGHTS_DIR`` if
   set, else the torch hub checkpoints folder.

A model that needs several files (``LangSAM``: GroundingDINO and SAM) resolves them with
:func:`resolve_checkpoints`, which tries every one before failing and then raises one
:class:`~lang_sam.errors.MissingWeightsError` listing every missing file and the ways to provide it.

Nothing here touches the network at import time.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Iterable

from lang_sam.errors import (
    AccessDeniedError,
    DownloadError,
    GatedModelError,
    MissingTokenError,
    MissingWeight,
    MissingWeightsError,
    WeightsNotFoundError,
)
from lang_sam.hub.download import download_file
from lang_sam.hub.spec import FAMILIES, ModelSpec
from lang_sam.settings import (
    ENV_OFFLINE,
    ENV_WEIGHTS_DIR,
    hf_cache_dir,
    hf_endpoint,
    hf_token,
    is_offline,
    torch_hub_checkpoints,
    weights_dir,
)

logger = logging.getLogger(__name__)

__all__ = ["download_dir", "candidate_paths", "is_present", "resolve_checkpoint", "resolve_checkpoints"]


def download_dir() -> Path:
    """Where downloads are written: ``$LANG_SAM_WEIGHTS_DIR`` or the torch hub checkpoints folder."""
    return weights_dir() or torch_hub_checkpoints()


def _hf_cached(repo: str, filename: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface-hub is a dependency
        return None
    try:
        found = try_to_load_from_cache(repo_id=repo, filename=filename, cache_dir=hf_cache_dir())
    except Exception as exc:  # a malformed cache must not stop a local load, nor pass unseen
        logger.warning("cannot read the Hugging Face cache at %s for %s/%s (%s: %s); the file is looked "
                       "for elsewhere (downloaded again only where downloads are allowed)",
                       hf_cache_dir(), repo, filename, type(exc).__name__, exc)
        return None
    return Path(found) if isinstance(found, str) else None


def is_present(spec: ModelSpec, path: Path) -> bool:
    """True if ``path`` holds ``spec``'s checkpoint: the file, or for a folder model
    (``spec.files``) a folder holding every one of its files."""
    if spec.files:
        return path.is_dir() and all((path / f).is_file() for f in spec.files)
    return path.is_file()


def _hf_cached_folder(spec: ModelSpec) -> Path | None:
    """The Hugging Face cache snapshot holding every file of a folder model, if any."""
    if spec.hf_repo is None:
        return None
    found = [p for p in (_hf_cached(spec.hf_repo, f) for f in spec.files) if p is not None]
    if len(found) == len(spec.files) and len({p.parent for p in found}) == 1:
        return found[0].parent
    return None


def candidate_paths(spec: ModelSpec) -> list[Path]:
    """Every place, in resolution order, where an existing copy of ``spec`` is looked for (a
    folder for a folder model, ``spec.files``)."""
    out = []
    wd = weights_dir()
    if wd is not None:
        out.append(wd / spec.filename)
    out.append(torch_hub_checkpoints() / spec.filename)
    if spec.hf_repo and spec.files:
        hf = _hf_cached_folder(spec)
        if hf is not None:
            out.append(hf)
    elif spec.hf_repo:
        hf = _hf_cached(spec.hf_repo, spec.filename)
        if hf is not None:
            out.append(hf)
    return out


def resolve_checkpoint(
    spec: ModelSpec,
    path: str | os.PathLike | None = None,
    *,
    progress: bool = True,
    download_to: str | os.PathLike | None = None,
    token: str | None = None,
) -> Path:
    """Find (or fetch) the checkpoint for ``spec`` following the module's resolution order.

    ``download_to`` names a folder looked in first and downloaded into, instead of
    :func:`download_dir` (``lang-sam download --to``). A folder model (``spec.files``, e.g. SAM 3)
    resolves to its folder; ``path`` may then also be a hub repository id (``"facebook/sam3"``),
    fetched unless on disk. ``token`` (default: :func:`lang_sam.settings.hf_token`) is sent to the
    hub for a gated repository.

    Raises:
        WeightsNotFoundError: an explicit ``path`` does not exist, or the file is nowhere on disk
            and offline mode is on or no source is registered.
        DownloadError: every source failed.
        MissingTokenError: a gated repository refused a download without a token.
        GatedModelError: the token's account has no access to the gated repository.
        ChecksumMismatchError: a downloaded file's sha256 is not ``spec.sha256``.
        InvalidModelSourceError: the user's ``SAM_MODELS`` / ``GDINO_MODELS`` value is not a URL.
    """
    if spec.files:
        return _resolve_folder(spec, path, progress=progress, download_to=download_to, token=token)
    if path is not None:
        p = Path(path).expanduser()
        if p.is_dir():
            p = p / spec.filename
        if not p.is_file():
            err = WeightsNotFoundError(
                f"checkpoint file not found: {str(p)!r} (expected the {spec.family} "
                f"{spec.name!r} checkpoint, canonically named {spec.filename!r})"
            )
            err.reason = f"no file at {str(p)!r}, the path given"
            raise err
        return p
    target = Path(download_to).expanduser() if download_to is not None else download_dir()
    looked = candidate_paths(spec)
    if download_to is not None:
        looked.insert(0, target / spec.filename)
    for p in looked:
        if p.is_file():
            logger.debug("%s %s resolved to %s", spec.family, spec.name, p)
            return p
    where = ", ".join(str(p.parent) for p in looked)
    if is_offline():
        err = WeightsNotFoundError(
            f"{spec.filename} ({spec.family} {spec.name!r}) is not on disk and offline mode is on "
            f"({ENV_OFFLINE} / HF_HUB_OFFLINE). Looked in: {where}. Copy the file into "
            f"${ENV_WEIGHTS_DIR} or {torch_hub_checkpoints()}, or pass its path explicitly."
        )
        err.reason = "not on disk; offline mode is on, so it was not downloaded"
        raise err
    sources = spec.sources()
    if not sources:
        err = WeightsNotFoundError(
            f"{spec.filename} ({spec.family} {spec.name!r}) is not on disk (looked in: {where}) and "
            "the registry names no source to download it from; pass its path explicitly."
        )
        err.reason = "not on disk, and the registry names no source to download it from"
        raise err
    return download_file(sources, target / spec.filename, sha256=spec.sha256, progress=progress)


_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _resolve_folder(spec: ModelSpec, path, *, progress: bool, download_to, token: str | None) -> Path:
    """:func:`resolve_checkpoint` for a folder model: a local folder, else a hub repository's
    files fetched one by one (each written to a temporary name and renamed), into
    ``<download dir>/<spec.filename>``."""
    repo = spec.hf_repo
    if path is not None:
        p = Path(path).expanduser()
        if p.exists() or not (isinstance(path, str) and _REPO_ID.match(path)):
            if is_present(spec, p):
                return p
            missing = [f for f in spec.files if not (p / f).is_file()]
            err = WeightsNotFoundError(
                f"{str(p)!r} is not a {spec.family} {spec.name!r} folder: expected a folder in the "
                f"Hugging Face hub layout holding {', '.join(spec.files)}; missing: {', '.join(missing)}"
            )
            err.reason = f"no complete folder at {str(p)!r}, the path given (missing {', '.join(missing)})"
            raise err
        repo = path  # a hub repository id
    target = Path(download_to).expanduser() if download_to is not None else download_dir()
    folder = target / (spec.filename if repo is None or repo == spec.hf_repo else repo.replace("/", "--"))
    looked = [folder] + (candidate_paths(spec) if repo == spec.hf_repo else [])
    for p in dict.fromkeys(looked):
        if is_present(spec, p):
            logger.debug("%s %s resolved to %s", spec.family, spec.name, p)
            return p
    where = ", ".join(str(p) for p in dict.fromkeys(looked))
    if is_offline():
        err = WeightsNotFoundError(
            f"the {spec.name} folder ({', '.join(spec.files)}) is not on disk and offline mode is on "
            f"({ENV_OFFLINE} / HF_HUB_OFFLINE). Looked in: {where}. Put the folder at "
            f"${ENV_WEIGHTS_DIR}/{spec.filename}, or pass its path explicitly."
        )
        err.reason = "not on disk; offline mode is on, so it was not downloaded"
        raise err
    bases = spec.sources() if repo == spec.hf_repo else [f"{hf_endpoint()}/{repo}"]
    if not bases:
        err = WeightsNotFoundError(f"the {spec.name} folder is not on disk (looked in: {where}) and the "
                                   "registry names no hub repository; pass its path explicitly.")
        err.reason = "not on disk, and the registry names no source to download it from"
        raise err
    token = token if token is not None else hf_token()
    for name in spec.files:
        if (folder / name).is_file():
            continue
        try:
            download_file([f"{b}/resolve/main/{name}" for b in bases], folder / name, progress=progress,
                          token=token)
        except AccessDeniedError as exc:
            raise _gated(spec, repo or spec.name, exc, token) from exc
    return folder


def _gated(spec: ModelSpec, repo: str, exc: AccessDeniedError, token: str | None) -> GatedModelError:
    """The error for a hub refusal (HTTP 401/403) of ``repo``'s files."""
    page = f"https://huggingface.co/{repo}"
    licence = f" ({spec.licence})" if spec.licence else ""
    if not token:
        return MissingTokenError(
            f"{repo} is gated on the Hugging Face hub{licence} and no access token was given (HTTP "
            f"{exc.status} for {exc.url}): request access at {page}, then create a token at "
            "https://huggingface.co/settings/tokens and set HF_TOKEN=... (or lang-sam download "
            f"--sam-type {spec.name} --token ..., or huggingface-cli login); or copy a local {repo} "
            f"folder to ${ENV_WEIGHTS_DIR}/{spec.filename}",
            repo=repo, access_url=page, url=exc.url, status=exc.status)
    return GatedModelError(
        f"gated: request access at {page} (the hub refused the token given, HTTP {exc.status} for "
        f"{exc.url}: its account has not been granted access to {repo}{licence}, or the token is "
        "invalid)", repo=repo, access_url=page, url=exc.url, status=exc.status)


_LABELS = {"sam": "SAM", "gdino": "GroundingDINO"}


def resolve_checkpoints(
    wanted: Iterable[tuple[ModelSpec, str | os.PathLike | None]], *, progress: bool = True
) -> list[Path]:
    """:func:`resolve_checkpoint` for each ``(spec, path)``, in order; the paths, in that order.

    Every file is tried (found, or downloaded) before anything fails, so that one
    :class:`~lang_sam.errors.MissingWeightsError` lists *every* file still missing (not only the
    first), why, and the ways to provide them.

    Raises:
        MissingWeightsError: one or more files are missing (not found, offline, or their download
            failed); it lists each.
        AccessDeniedError: a gated repository refused access (as :func:`resolve_checkpoint`).
        ChecksumMismatchError: a downloaded file's sha256 is wrong (raised at once, as it is).
    """
    wanted = list(wanted)
    paths: list[Path] = []
    missing: list[tuple[ModelSpec, MissingWeight]] = []
    for spec, path in wanted:
        try:
            paths.append(resolve_checkpoint(spec, path, progress=progress))
        except AccessDeniedError:
            raise  # says what to do (request access, pass a token) better than a list would
        except (WeightsNotFoundError, DownloadError) as exc:
            reason = getattr(exc, "reason", None) or str(exc)
            missing.append((spec, MissingWeight(spec.family, spec.name, spec.filename, reason)))
    if missing:
        raise MissingWeightsError(_missing_message([s for s, _ in missing], [m for _, m in missing]),
                                  [m for _, m in missing])
    return paths


def _missing_message(specs: list[ModelSpec], missing: list[MissingWeight]) -> str:
    """The whole story of missing checkpoints: which, why, where looked, and every way out."""
    n = len(missing)
    them = "them" if n > 1 else "it"
    lines = [f"{n} checkpoint file{'s are' if n > 1 else ' is'} missing "
             f"({', '.join(m.filename for m in missing)}):"]
    for spec, m in zip(specs, missing):
        lines.append(f"  - {m.filename} ({_LABELS.get(m.family, m.family)} {m.name!r}): {m.reason}")
        if spec.sources() and not all(url in m.reason for url in spec.sources()):
            lines.append(f"      sources: {' or '.join(spec.sources())}")
    looked = list(dict.fromkeys(str(p.parent) for spec in specs for p in candidate_paths(spec)))
    lines.append(f"Looked in: {', '.join(looked)}.")
    types = " ".join(f"--{FAMILIES[s.family].replace('_', '-')} {s.name}" for s in specs
                     if s.family in FAMILIES)
    lines += [
        f"To provide {them}, any one of:",
        f"  - download and verify {them} (here, or on a machine with internet access, then copy the "
        f"folder over): lang-sam download {types} --to DIR",
        f"  - put the files in a folder and set {ENV_WEIGHTS_DIR}=DIR (add {ENV_OFFLINE}=1 to never "
        "touch the network);",
        "  - pass each file's path: LangSAM(ckpt_path=..., gdino_ckpt_path=...) "
        "(examples/segment.py: --sam-ckpt, --gdino-ckpt).",
    ]
    if is_offline():
        lines.append(f"Offline mode is on ({ENV_OFFLINE} / HF_HUB_OFFLINE): nothing was downloaded; "
                     f"unset it to let lang-sam download {them} into {download_dir()}.")
    return "\n".join(lines)
