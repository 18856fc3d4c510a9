"""The exactness claim of issue 27, one helper for every engine's row: a backend (OpenVINO at
float32) agrees with PyTorch on the same inputs when boxes are within 0.5 px, scores within 1e-3 and
masks agree on at least 99.9 % of pixels. tests/test_openvino.py holds the table and SAM v1's row;
each engine's OpenVINO tests add their row with :func:`assert_backends_agree`.
"""

from __future__ import annotations

import torch

#: The issue's tolerances.
BOX_PX = 0.5
SCORE_ATOL = 1e-3
MASK_AGREEMENT = 0.999


def mask_agreement(reference: torch.Tensor, candidate: torch.Tensor) -> float:
    """The fraction of mask pixels (any shape, bool) on which two mask stacks agree; 1.0 if empty."""
    assert reference.shape == candidate.shape, f"mask shapes differ: {reference.shape} vs {candidate.shape}"
    return 1.0 if reference.numel() == 0 else float((reference == candidate).float().mean())


def assert_backends_agree(*, masks=None, boxes=None, scores=None) -> dict[str, float]:
    """Each of ``masks`` / ``boxes`` / ``scores`` a ``(reference, candidate)`` pair (PyTorch first):
    masks bool of one shape, boxes ``(N, 4)`` pixels, scores ``(N, ...)``. Returns the measured
    figures (``mask_agreement``, ``box_px``, ``score_diff``) for the test to print."""
    out: dict[str, float] = {}
    if masks is not None:
        out["mask_agreement"] = mask_agreement(*masks)
        assert out["mask_agreement"] >= MASK_AGREEMENT, out
    for name, pair, tol in (("box_px", boxes, BOX_PX), ("score_diff", scores, SCORE_ATOL)):
        if pair is not None:
            ref, cand = (torch.as_tensor(t, dtype=torch.float32) for t in pair)
            assert ref.shape == cand.shape, f"{name}: shapes differ: {ref.shape} vs {cand.shape}"
            out[name] = float((ref - cand).abs().max()) if ref.numel() else 0.0
            assert out[name] <= tol, out
    return out


def toy_part():
    """A small convolutional part, its cache key and an input: for the cache's tests (converts in
    well under a second)."""
    from lang_sam.models.openvino import PartKey

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1)).eval()
    x = torch.randn(1, 3, 16, 16)
    return PartKey("toy", "0" * 64, "body", ((1, 3, 16, 16),)), module, x
