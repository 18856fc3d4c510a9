"""Reading a checkpoint file safely: ``torch.load(weights_only=True)``, memory-mapped where the
format allows; full unpickling only for official files or when the user says they trust it."""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

from lang_sam.errors import CheckpointError, UnsafeCheckpointError
from lang_sam.hub.download import sha256sum
from lang_sam.hub.registry import official_hashes
from lang_sam.settings import ENV_TRUST, trust_checkpoints

logger = logging.getLogger(__name__)

__all__ = ["load_checkpoint"]


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
        if trust_checkpoints() or sha256sum(path) in official_hashes():
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
