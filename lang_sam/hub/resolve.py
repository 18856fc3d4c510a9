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
from pathlib import Path
from typing import Iterable

from lang_sam.errors import DownloadError, MissingWeight, MissingWeightsError, WeightsNotFoundError
from lang_sam.hub.download import download_file
from lang_sam.hub.registry import FAMILIES, ModelSpec
from lang_sam.settings import (
    ENV_OFFLINE,
    ENV_WEIGHTS_DIR,
    hf_cache_dir,
    is_offline,
    torch_hub_checkpoints,
    weights_dir,
)

logger = logging.getLogger(__name__)

__all__ = ["download_dir", "candidate_paths", "resolve_checkpoint", "resolve_checkpoints"]


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


def candidate_paths(spec: ModelSpec) -> list[Path]:
    """Every place, in resolution order, where an existing copy of ``spec`` is looked for."""
    out = []
    wd = weights_dir()
    if wd is not None:
        out.append(wd / spec.filename)
    out.append(torch_hub_checkpoints() / spec.filename)
    if spec.hf_repo:
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
) -> Path:
    """Find (or fetch) the checkpoint for ``spec`` following the module's resolution order.

    ``download_to`` names a folder looked in first and downloaded into, instead of
    :func:`download_dir` (``lang-sam download --to``).
    """
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


_LABELS = {"sam": "SAM", "gdino": "GroundingDINO"}


def resolve_checkpoints(
    wanted: Iterable[tuple[ModelSpec, str | os.PathLike | None]], *, progress: bool = True
) -> list[Path]:
    """:func:`resolve_checkpoint` for each ``(spec, path)``, in order; the paths, in that order.

    Every file is tried (found, or downloaded) before anything fails, so that one
    :class:`~lang_sam.errors.MissingWeightsError` lists *every* file still missing (not only the
    first), why, and the ways to provide them. A downloaded file with a wrong sha256
    (:class:`~lang_sam.errors.ChecksumMismatchError`) is raised at once, as it is.
    """
    wanted = list(wanted)
    paths: list[Path] = []
    missing: list[tuple[ModelSpec, MissingWeight]] = []
    for spec, path in wanted:
        try:
            paths.append(resolve_checkpoint(spec, path, progress=progress))
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
