"""Matching a loaded state dict to a network: one check shared by the detector and the segmenter."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

from lang_sam.errors import CheckpointError, CheckpointMismatchError
from lang_sam.hub.spec import FAMILIES, ModelSpec
from lang_sam.models.registry import model_names, registered_specs

__all__ = [
    "state_dict_from", "strip_prefix", "count_blocks", "looks_like", "check_architecture", "load_into",
    "perturb", "save_atomic",
]

logger = logging.getLogger(__name__)


def state_dict_from(
    checkpoint: Mapping[str, Any], path: str, *, wrapper_key: str | None = None
) -> dict[str, torch.Tensor]:
    """The state dict in a loaded checkpoint (the dict itself, or ``checkpoint[wrapper_key]`` when
    the file wraps it, as GroundingDINO's ``{"model": ..., "args": ...}`` does), with a
    DataParallel ``module.`` prefix dropped.

    Raises :class:`CheckpointError` naming ``path`` and what was found when it is not a non-empty
    dict of string keys to tensors.
    """
    state, where = checkpoint, ""
    if wrapper_key is not None and isinstance(checkpoint, Mapping) and wrapper_key in checkpoint:
        state, where = checkpoint[wrapper_key], f"[{wrapper_key!r}]"
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"{path}{where} holds a {type(state).__name__}, expected a state dict (names -> tensors)"
        )
    if not state:
        raise CheckpointError(f"{path}{where} holds an empty dict, expected a state dict (names -> tensors)")
    bad = [(k, v) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        shown = "; ".join(f"{k!r}: {type(v).__name__}" for k, v in bad[:3])
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        raise CheckpointError(
            f"{path}{where} is not a state dict: {len(bad)} of its {len(state)} entries are not "
            f"named tensors ({shown}{more})"
        )
    return strip_prefix(state)


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict:
    """Drop a DataParallel ``module.`` prefix from every key that has it."""
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state_dict.items()}


def count_blocks(state_dict: Mapping[str, torch.Tensor], prefix: str) -> int:
    """How many ``{prefix}{i}.`` indices the state dict holds (e.g. transformer layers)."""
    found = set()
    for k in state_dict:
        if k.startswith(prefix):
            head = k[len(prefix):].split(".", 1)[0]
            if head.isdigit():
                found.add(int(head))
    return len(found)


def looks_like(family: str, state_dict: Mapping[str, torch.Tensor],
               fingerprint: Callable[[Any], tuple | None]) -> list[str]:
    """Registered types of ``family`` whose fingerprint matches the state dict's.

    ``fingerprint`` maps either a state dict or a registry architecture to a tuple of the numbers
    that tell the types apart (widths, depths, window sizes); ``None`` if it cannot tell.
    """
    mine = fingerprint(state_dict)
    if mine is None:
        return []
    return [s.name for s in registered_specs(family) if fingerprint(s.arch) == mine]


def _hint(spec: ModelSpec, state_dict, fingerprint) -> str:
    label = FAMILIES[spec.family]
    matches = [m for m in looks_like(spec.family, state_dict, fingerprint) if m != spec.name]
    if matches:
        return f" It looks like a {matches[0]!r} checkpoint: pass {label}={matches[0]!r}."
    return (
        f" It matches none of the registered types ({model_names(spec.family)}); is it a "
        f"{spec.family} checkpoint at all?"
    )


def check_architecture(
    spec: ModelSpec, state_dict: Mapping[str, torch.Tensor], path: str,
    fingerprint: Callable[[Any], tuple | None],
) -> None:
    """Fail fast, before any network is built, when the checkpoint is of another architecture."""
    mine, want = fingerprint(state_dict), fingerprint(spec.arch)
    if mine is not None and want is not None and mine != want:
        label = FAMILIES[spec.family]
        raise CheckpointMismatchError(
            f"{path} does not fit {label}={spec.name!r}: its architecture {mine} differs from the "
            f"expected {want}.{_hint(spec, state_dict, fingerprint)}"
        )


def load_into(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    spec: ModelSpec,
    path: str,
    fingerprint: Callable[[Any], tuple | None],
    *,
    allowed_unexpected: Iterable[str] = (),
    optional: Iterable[str] = (),
) -> None:
    """Load ``state_dict`` into ``model`` after checking that it fits, key for key and shape for shape.

    Missing keys (other than ``optional``) and unexpected keys (other than ``allowed_unexpected``)
    are errors; a checkpoint that fits another registered type says which.
    """
    label = FAMILIES[spec.family]
    allowed_unexpected, optional = set(allowed_unexpected), set(optional)
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict and k not in optional]
    unexpected = [k for k in state_dict if k not in own and k not in allowed_unexpected]
    wrong = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        hint = _hint(spec, state_dict, fingerprint)
        detail = []
        for name, items in (("missing keys", missing), ("unexpected keys", unexpected),
                            ("shape mismatches", wrong)):
            if items:
                more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
                detail.append(f"{len(items)} {name}: {'; '.join(items[:3])}{more}")
        raise CheckpointMismatchError(
            f"{path} does not fit {label}={spec.name!r}: {', '.join(detail)}.{hint}"
        )
    # Keep the network's dtypes (a half-precision file must not make a half-precision network).
    state = {k: v if v.dtype == own[k].dtype else v.to(own[k].dtype)
             for k, v in state_dict.items() if k in own}
    empty = any(p.device.type == "meta" for p in model.parameters())
    result = model.load_state_dict(state, strict=False, assign=empty)
    leftover = [k for k in result.missing_keys if k not in optional]
    left_meta = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    if leftover or left_meta:  # pragma: no cover - guarded by the check above
        raise CheckpointError(f"{path}: parameters left unloaded: {(leftover + left_meta)[:5]}")


def load_network(
    spec: ModelSpec,
    ckpt_path: str | os.PathLike | None,
    build: Callable[[ModelSpec], nn.Module],
    fingerprint: Callable[[Any], tuple | None],
    *,
    progress: bool = True,
    **load_kwargs: Any,
) -> tuple[nn.Module, Any]:
    """Every engine's loading, in one place: resolve ``spec``'s checkpoint (explicit path, caches,
    download: :func:`lang_sam.hub.resolve_checkpoint`), read it safely, check it fits ``spec.arch``
    (:func:`check_architecture`), build the network with ``build(spec)`` (on the meta device, no
    init) and :func:`load_into` it (``load_kwargs``: ``allowed_unexpected``, ``optional``).
    Returns ``(network, path)``.

    Raises:
        WeightsNotFoundError: offline, or no source, and the file is nowhere on disk.
        DownloadError: every source failed (:class:`~lang_sam.errors.GatedModelError` for a gated
            repository without access).
        ChecksumMismatchError: a downloaded file's sha256 is not the registered one.
        CheckpointError: the file is not a readable checkpoint
            (:class:`~lang_sam.errors.UnsafeCheckpointError`: it holds Python objects and is not
            trusted; :class:`~lang_sam.errors.CheckpointMismatchError`: another architecture's).
    """
    from lang_sam.hub import load_checkpoint, resolve_checkpoint

    path = resolve_checkpoint(spec, ckpt_path, progress=progress)
    state = state_dict_from(load_checkpoint(path), str(path), wrapper_key="model")
    check_architecture(spec, state, str(path), fingerprint)
    model = build(spec)
    load_into(model, state, spec, str(path), fingerprint, **load_kwargs)
    return model, path


def perturb(module: nn.Module, generator: torch.Generator) -> None:
    """Give a random network's norms and biases random values too (``N(0, 0.02)`` added in place),
    so that no parameter of a random-weight checkpoint is trivially 0 or 1."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1 and ("norm" in name.lower() or name.endswith("bias")):
                p.add_(torch.randn(p.shape, generator=generator) * 0.02)


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to a temporary name beside ``path`` and rename it (parents created).

    Raises:
        OSError: the folder cannot be written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".incomplete")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path
