"""Weights: the model registry, where checkpoints are found, how they are downloaded and read.

- :mod:`lang_sam.hub.spec`: the :class:`ModelSpec` record (file, sources, sha256) and the
  ``SAM_MODELS`` / ``GDINO_MODELS`` tables (the registry that fills them is
  :mod:`lang_sam.models.registry`);
- :mod:`lang_sam.hub.resolve`: the resolution order (explicit path, ``$LANG_SAM_WEIGHTS_DIR``,
  caches, download);
- :mod:`lang_sam.hub.download`: locked, resumable, verified downloads;
- :mod:`lang_sam.hub.load`: safe ``torch.load``.

Environment settings are read in :mod:`lang_sam.settings`. Nothing here touches the network or
builds a model at import.
"""

from lang_sam.hub.download import copy_atomic, download_file, sha256sum
from lang_sam.hub.load import load_checkpoint
from lang_sam.hub.spec import FAMILIES, GDINO_MODELS, SAM_MODELS, ModelSpec, official_hashes
from lang_sam.hub.resolve import (
    candidate_paths,
    download_dir,
    is_present,
    resolve_checkpoint,
    resolve_checkpoints,
)
from lang_sam.settings import (
    ENV_OFFLINE,
    ENV_TRUST,
    ENV_WEIGHTS_DIR,
    is_offline,
    weights_dir,
)

__all__ = [
    "ModelSpec", "is_present", "FAMILIES", "SAM_MODELS", "GDINO_MODELS", "official_hashes", "is_offline", "weights_dir", "download_dir",
    "candidate_paths", "resolve_checkpoint", "resolve_checkpoints", "download_file", "copy_atomic", "sha256sum",
    "load_checkpoint", "ENV_WEIGHTS_DIR", "ENV_OFFLINE", "ENV_TRUST",
]
