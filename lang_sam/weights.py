"""Model registry, checkpoint resolution, download and safe loading.

One place maps a model name to its file name, download sources, sha256 and architecture.
One resolution order finds a checkpoint, stopping at the first hit:

1. an explicit path (``ckpt_path=`` / ``gdino_ckpt_path=``);
2. ``$LANG_SAM_WEIGHTS_DIR/<filename>`` (a folder you fill yourself, e.g. on an air-gapped machine);
3. the caches the original ``lang-segment-anything`` used, so existing downloads are reused:
   ``torch.hub.get_dir()/checkpoints/<filename>`` (honours ``TORCH_HOME``; where
   ``torch.hub.load_state_dict_from_url`` put SAM) and the Hugging Face cache (honours ``HF_HOME`` /
   ``HF_HUB_CACHE``; where ``hf_hub_download`` put GroundingDINO);
4. a download, unless offline mode is on (``LANG_SAM_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``). Downloads go
   to ``$LANG_SAM_WEIGHTS_DIR`` if set, else the torch hub checkpoints folder. Each source is tried in
   turn; a file is streamed to ``<filename>.incomplete`` under a file lock (resumed with an HTTP
   ``Range`` request after a cut-off), its sha256 checked where the registry knows it, and only then
   renamed to its final name.

Nothing here touches the network at import time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from lang_sam.errors import (
    CheckpointError,
    ChecksumMismatchError,
    DownloadError,
    UnknownModelError,
    UnsafeCheckpointError,
    WeightsNotFoundError,
)

logger = logging.getLogger(__name__)

__all__ = [
    "SamArch",
    "GDinoArch",
    "ModelSpec",
    "SAM_MODELS",
    "GDINO_MODELS",
    "DEFAULT_SAM",
    "DEFAULT_GDINO",
    "get_spec",
    "register_model",
    "unregister_model",
    "is_offline",
    "weights_dir",
    "download_dir",
    "candidate_paths",
    "resolve_checkpoint",
    "download_file",
    "sha256sum",
    "load_checkpoint",
]

ENV_WEIGHTS_DIR = "LANG_SAM_WEIGHTS_DIR"
ENV_OFFLINE = "LANG_SAM_OFFLINE"
ENV_TRUST = "LANG_SAM_TRUST_CHECKPOINTS"
HF_REPO = "ShilongLiu/GroundingDINO"
_GITHUB_RELEASES = "https://github.com/IDEA-Research/GroundingDINO/releases/download"
_SAM_BASE = "https://dl.fbaipublicfiles.com/segment_anything"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class SamArch:
    """Shape of a SAM network (see ``segment_anything.build_sam``)."""

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256


@dataclass(frozen=True)
class GDinoArch:
    """A GroundingDINO configuration: one of groundingdino's bundled config files, plus overrides.

    ``bert`` overrides keys of the bundled bert-base-uncased config (tiny test models use it).
    """

    config_file: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    bert: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry: where a checkpoint comes from and what network it fits."""

    family: str  # "sam" or "gdino"
    name: str
    filename: str
    arch: SamArch | GDinoArch
    urls: tuple[str, ...] = ()
    sha256: str | None = None
    hf_repo: str | None = None

    def sources(self) -> list[str]:
        """Download URLs in the order they are tried (the Hugging Face hub first, if any)."""
        out = []
        if self.hf_repo:
            endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
            out.append(f"{endpoint}/{self.hf_repo}/resolve/main/{self.filename}")
        out.extend(u for u in self.urls if u not in out)
        return out


_SWINT = "GroundingDINO_SwinT_OGC.py"
_SWINB = "GroundingDINO_SwinB_cfg.py"

_REGISTRY: dict[str, dict[str, ModelSpec]] = {"sam": {}, "gdino": {}}

#: SAM type -> official checkpoint URL (the original's public dict; kept in step with the registry).
SAM_MODELS: dict[str, str] = {}
#: GroundingDINO type -> primary checkpoint URL (Hugging Face hub), likewise.
GDINO_MODELS: dict[str, str] = {}
DEFAULT_SAM = "vit_h"
DEFAULT_GDINO = "swinb"


def _public_dict(family: str) -> dict[str, str]:
    return SAM_MODELS if family == "sam" else GDINO_MODELS


def register_model(spec: ModelSpec, *, overwrite: bool = False) -> ModelSpec:
    """Add a model type to the registry (and to ``SAM_MODELS`` / ``GDINO_MODELS``)."""
    if spec.family not in _REGISTRY:
        raise ValueError(f"family must be 'sam' or 'gdino', got {spec.family!r}")
    table = _REGISTRY[spec.family]
    if spec.name in table and not overwrite:
        raise ValueError(f"{spec.family} model {spec.name!r} is already registered")
    table[spec.name] = spec
    sources = spec.sources()
    _public_dict(spec.family)[spec.name] = sources[0] if sources else ""
    return spec


def unregister_model(family: str, name: str) -> None:
    """Remove a model type added with :func:`register_model`."""
    _REGISTRY[family].pop(name, None)
    _public_dict(family).pop(name, None)


def get_spec(family: str, name: str | None) -> ModelSpec:
    """Return the registry entry for ``name`` (``None`` means the family's default)."""
    if family not in _REGISTRY:
        raise ValueError(f"family must be 'sam' or 'gdino', got {family!r}")
    if name is None:
        name = DEFAULT_SAM if family == "sam" else DEFAULT_GDINO
    table = _REGISTRY[family]
    if not isinstance(name, str) or name not in table:
        label = "sam_type" if family == "sam" else "gdino_type"
        raise UnknownModelError(
            f"unknown {label} {name!r}: expected one of {sorted(table)}"
        )
    return table[name]


for _name, _arch, _file, _sha in (
    ("vit_h", SamArch(1280, 32, 16, (7, 15, 23, 31)), "sam_vit_h_4b8939.pth",
     "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
    ("vit_l", SamArch(1024, 24, 16, (5, 11, 17, 23)), "sam_vit_l_0b3195.pth",
     "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
    ("vit_b", SamArch(768, 12, 12, (2, 5, 8, 11)), "sam_vit_b_01ec64.pth",
     "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"),
):
    register_model(ModelSpec("sam", _name, _file, _arch, urls=(f"{_SAM_BASE}/{_file}",), sha256=_sha))

register_model(ModelSpec(
    "gdino", "swinb", "groundingdino_swinb_cogcoor.pth", GDinoArch(_SWINB),
    urls=(f"{_GITHUB_RELEASES}/v0.1.0-alpha2/groundingdino_swinb_cogcoor.pth",),
    sha256=None,  # not published alongside the release; the file is still size-checked by HTTP
    hf_repo=HF_REPO,
))
register_model(ModelSpec(
    "gdino", "swint", "groundingdino_swint_ogc.pth", GDinoArch(_SWINT),
    urls=(f"{_GITHUB_RELEASES}/v0.1.0-alpha/groundingdino_swint_ogc.pth",),
    sha256="3b3ca2563c77c69f651d7bd133e97139c186df06231157a64c507099c52bc799",
    hf_repo=HF_REPO,
))


# --------------------------------------------------------------------------------------------
# Where files live
# --------------------------------------------------------------------------------------------

def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def is_offline() -> bool:
    """True when ``LANG_SAM_OFFLINE`` or ``HF_HUB_OFFLINE`` is set to 1/true/yes/on."""
    return _truthy(os.environ.get(ENV_OFFLINE)) or _truthy(os.environ.get("HF_HUB_OFFLINE"))


def weights_dir() -> Path | None:
    """The folder named by ``LANG_SAM_WEIGHTS_DIR``, or None."""
    value = os.environ.get(ENV_WEIGHTS_DIR)
    return Path(value).expanduser() if value else None


def _torch_hub_checkpoints() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def download_dir() -> Path:
    """Where downloads are written: ``$LANG_SAM_WEIGHTS_DIR`` or the torch hub checkpoints folder."""
    return weights_dir() or _torch_hub_checkpoints()


def _hf_cached(repo: str, filename: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface-hub is a dependency
        return None
    # Read the cache location now, not at huggingface_hub's import (older releases freeze it then).
    cache_dir = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if not cache_dir and os.environ.get("HF_HOME"):
        cache_dir = os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    try:
        found = try_to_load_from_cache(repo_id=repo, filename=filename, cache_dir=cache_dir or None)
    except Exception as exc:  # a malformed cache must not stop a local load
        logger.debug("Hugging Face cache lookup failed: %s", exc)
        return None
    return Path(found) if isinstance(found, str) else None


def candidate_paths(spec: ModelSpec) -> list[Path]:
    """Every place, in resolution order, where an existing copy of ``spec`` is looked for."""
    out = []
    wd = weights_dir()
    if wd is not None:
        out.append(wd / spec.filename)
    out.append(_torch_hub_checkpoints() / spec.filename)
    if spec.hf_repo:
        hf = _hf_cached(spec.hf_repo, spec.filename)
        if hf is not None:
            out.append(hf)
    return out


def resolve_checkpoint(
    spec: ModelSpec, path: str | os.PathLike | None = None, *, progress: bool = True
) -> Path:
    """Find (or fetch) the checkpoint for ``spec`` following the module's resolution order."""
    if path is not None:
        p = Path(path).expanduser()
        if p.is_dir():
            p = p / spec.filename
        if not p.is_file():
            raise WeightsNotFoundError(
                f"checkpoint file not found: {str(p)!r} (expected the {spec.family} "
                f"{spec.name!r} checkpoint, canonically named {spec.filename!r})"
            )
        return p
    looked = candidate_paths(spec)
    for p in looked:
        if p.is_file():
            logger.debug("%s %s resolved to %s", spec.family, spec.name, p)
            return p
    where = ", ".join(str(p.parent) for p in looked)
    if is_offline():
        raise WeightsNotFoundError(
            f"{spec.filename} ({spec.family} {spec.name!r}) is not on disk and offline mode is on "
            f"({ENV_OFFLINE} / HF_HUB_OFFLINE). Looked in: {where}. Copy the file into "
            f"${ENV_WEIGHTS_DIR} or {_torch_hub_checkpoints()}, or pass its path explicitly."
        )
    sources = spec.sources()
    if not sources:
        raise WeightsNotFoundError(
            f"{spec.filename} ({spec.family} {spec.name!r}) is not on disk (looked in: {where}) and "
            "the registry names no source to download it from; pass its path explicitly."
        )
    return download_file(sources, download_dir() / spec.filename, sha256=spec.sha256, progress=progress)


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------

def sha256sum(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch(url: str, tmp: Path, *, progress: bool, timeout: float) -> None:
    """Stream ``url`` into ``tmp``, resuming from its current size when the server allows it."""
    from tqdm.auto import tqdm

    have = tmp.stat().st_size if tmp.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "lang-sam"})
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
                f"connection closed after {got} of {length} bytes", None
            )


def _fetch_with_retries(
    url: str, tmp: Path, failures: list[str], *, progress: bool, retries: int, timeout: float
) -> bool:
    """Fetch ``url`` into ``tmp``, resuming after cut-offs; record each failure. True on success."""
    for attempt in range(1, retries + 1):
        try:
            _fetch(url, tmp, progress=progress, timeout=timeout)
            return True
        except urllib.error.HTTPError as exc:  # the server answered: retrying will not help
            failures.append(f"{url}: HTTP {exc.code} {exc.reason}")
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
) -> Path:
    """Download the first source that delivers a good file to ``dest``; return ``dest``.

    The bytes go to ``dest.incomplete`` under ``dest.lock``; a cut-off connection is retried
    ``retries`` times per source, resuming where it stopped. A file whose sha256 differs from
    ``sha256`` is deleted and the next source tried. Raises :class:`ChecksumMismatchError` if a
    source delivered a wrong file and none a right one, else :class:`DownloadError`.
    """
    from filelock import FileLock

    if is_offline():
        raise WeightsNotFoundError(f"offline mode is on: not downloading {Path(dest).name}")
    urls = [urls] if isinstance(urls, str) else list(urls)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".incomplete")
    failures: list[str] = []
    mismatch: str | None = None
    with FileLock(str(dest.with_name(dest.name + ".lock"))):
        if dest.is_file():  # another process finished it while we waited
            return dest
        for i, url in enumerate(urls):
            if i > 0:
                tmp.unlink(missing_ok=True)  # never splice bytes from two sources
            logger.info("downloading %s -> %s", url, dest)
            if not _fetch_with_retries(url, tmp, failures, progress=progress, retries=retries,
                                       timeout=timeout):
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
    raise DownloadError(
        f"could not download {dest.name}: {detail}. Check the network or proxy, set HF_ENDPOINT to a "
        f"mirror, or download it by hand into {dest.parent} (or ${ENV_WEIGHTS_DIR})."
    )


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

def _official_hashes() -> set[str]:
    return {s.sha256 for t in _REGISTRY.values() for s in t.values() if s.sha256}


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint on the CPU with ``weights_only=True``.

    A file that needs arbitrary unpickling is refused with :class:`UnsafeCheckpointError`, unless
    its sha256 is one of the registry's official ones or ``LANG_SAM_TRUST_CHECKPOINTS=1`` is set.
    """
    import torch

    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=_is_zip(path))
    except pickle.UnpicklingError as exc:
        if _truthy(os.environ.get(ENV_TRUST)) or sha256sum(path) in _official_hashes():
            logger.info("%s needs full unpickling; trusted (official hash or %s)", path, ENV_TRUST)
            obj = torch.load(path, map_location="cpu", weights_only=False)
        else:
            raise UnsafeCheckpointError(
                f"{path} cannot be loaded with torch.load(weights_only=True): it holds arbitrary "
                f"Python objects, which can run code when unpickled, and its sha256 is not an "
                f"official one. If you trust the file, set {ENV_TRUST}=1. ({exc})"
            ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot read checkpoint {path}: {exc}. The file may be truncated or not a PyTorch "
            "checkpoint; delete it and download it again."
        ) from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, expected a dict state dict")
    return obj


def _is_zip(path: Path) -> bool:
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False
