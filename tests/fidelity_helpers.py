"""The tolerances of equality claims that span kernel paths (issue 25 item 6).

Two computations that run different kernels (another implementation, another batch size or chunking,
another CPU's SIMD width or thread count) agree to float32 rounding, not bit for bit: BLAS picks its
kernel by shape and CPU, and a kernel may add in another order. A mask is a logit compared with a
threshold, so a pixel whose logit lies within that rounding of the threshold may flip. These checks
say so: masks equal except pixels whose *reference* logit lies within ``eps`` of the threshold (a
pixel can flip only if the two logits differ by at least its distance to the threshold), numbers
within a stated ``atol``.

Two paths that run the same kernels on the same shapes (the same call twice, the original's own
batches) stay ``torch.equal``: that is a claim about our code, true on every CPU.

Each test states its tolerance with the largest difference measured on a 2-core Intel Xeon under
its own AVX-512 kernels, and under ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
MKL_ENABLE_INSTRUCTIONS=AVX2`` (what an AVX2-only AMD EPYC runs), with 1 and 2 threads. CI runs these
modules a second time under the AVX2 kernels and one thread (``.ci/run`` step 7).
"""

from __future__ import annotations

import numpy as np
import torch

#: The tiny SAM's (``lang_sam.testing.TINY_SAM``, logits up to about 0.2) logits and scores decoded in
#: another batch size than the original's (chunks of 16 boxes against 51-60 at once in test_fidelity,
#: 3 boxes against 1 in test_prompts): at most 1.6e-7 apart low-resolution, 1.2e-7 at full size and
#: 6e-8 for scores (test_fidelity's chunks: bit-equal but under MKL's AVX2 kernels). A mask pixel may
#: flip only where the original's logit lies within that of the threshold 0.
SAM_LOGIT_ATOL = 1e-6
SAM_SCORE_ATOL = 1e-6


def _tensor(x) -> torch.Tensor:
    return x.detach().cpu() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))


def assert_masks_match(masks, ref_logits, *, eps: float, threshold: float = 0.0, what: str = "masks") -> None:
    """``masks`` (bool) equal ``ref_logits > threshold`` except pixels whose reference logit lies
    within ``eps`` of ``threshold``; the comparison must be meaningful (neither all-empty nor all-full)."""
    masks, ref_logits = _tensor(masks), _tensor(ref_logits).float()
    assert masks.dtype == torch.bool, f"{what}: expected bool masks, got {masks.dtype}"
    assert masks.shape == ref_logits.shape, f"{what}: shapes {tuple(masks.shape)} vs {tuple(ref_logits.shape)}"
    ref = ref_logits > threshold
    assert 0 < int(ref.sum()) < ref.numel(), f"{what}: all-empty or all-full reference masks compare nothing"
    differ = masks != ref
    margin = (ref_logits - threshold).abs()
    far = differ & (margin > eps)
    assert not far.any(), (
        f"{what}: {int(differ.sum())} pixels differ, {int(far.sum())} of them with a reference logit "
        f"more than {eps:g} from the threshold {threshold:g} (up to {margin[far].max().item():.3g})")


def assert_within(ours, ref, *, atol: float, what: str = "values") -> None:
    """``ours`` and ``ref`` of the same shape differ by at most ``atol`` anywhere."""
    ours, ref = _tensor(ours).double(), _tensor(ref).double()
    assert ours.shape == ref.shape, f"{what}: shapes {tuple(ours.shape)} vs {tuple(ref.shape)}"
    diff = (ours - ref).abs().max().item() if ours.numel() else 0.0
    assert diff <= atol, f"{what}: differ by up to {diff:.3g}, more than {atol:g}"


def sam_mask_logits(model, image, boxes: torch.Tensor) -> torch.Tensor:
    """The full-size mask logits ``(N, H, W)`` behind :meth:`LangSAM.predict`'s masks for ``boxes``
    on ``image`` (segment-anything's SAM): the same computation, chunks included, keeping the logits
    (its masks are these logits > 0)."""
    model.predict_sam(image, boxes[:1])  # selects the image's encoding in the segmenter's predictor
    seg = model.segmenter
    p = seg.predictor
    out = seg.predict(boxes=boxes, return_low_res=True)
    with torch.no_grad():
        return p.model.postprocess_masks(out.low_res_logits, p.input_size, p.original_size)[:, 0]
