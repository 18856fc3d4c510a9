"""Weights: the model registry, where checkpoints are found, how they are downloaded and read.

- :mod:`lang_sam.hub.registry`: model names -> file, sources, sha256, architecture;
- :mod:`lang_sam.hub.resolve`: the resolution order (explicit path, ``$LANG_SAM_WEIGHTS_DIR``,
  caches, download);
- :mod:`lang_sam.hub.download`: locked, resumable, verified downloads;
- :mod:`lang_sam.hub.load`: safe ``torch.load``.

Environment settings are read in :mod:`lang_sam.settings`. Nothing here touches the network or
builds a model at import.
"""

from lang_sam.hub.download import copy_atomic, download_file, sha256sum
from lang_sam.hub.load import load_checkpoint
from lang_sam.hub.registry import (
    DEFAULT_GDINO,
    DEFAULT_SAM,
    DEFAULT_TRACK_SAM,
    FAMILIES,
    GDINO_MODELS,
    SAM3_FILES,
    SAM_MODELS,
    GDinoArch,
    Sam2Arch,
    HubArch,
    ModelSpec,
    SamArch,
    get_spec,
    model_names,
    official_hashes,
    register_model,
    registered_specs,
    unregister_model,
)
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
    "SamArch", "Sam2Arch", "GDinoArch", "HubArch", "SAM3_FILES", "ModelSpec", "is_present", "FAMILIES", "SAM_MODELS", "GDINO_MODELS", "DEFAULT_SAM",
    "DEFAULT_GDINO", "DEFAULT_TRACK_SAM", "get_spec", "model_names", "register_model", "unregister_model",
    "registered_specs", "official_hashes", "is_offline", "weights_dir", "download_dir",
    "candidate_paths", "resolve_checkpoint", "resolve_checkpoints", "download_file", "copy_atomic", "sha256sum",
    "load_checkpoint", "ENV_WEIGHTS_DIR", "ENV_OFFLINE", "ENV_TRUST",
]
