"""The batch small-baseline inversion: every epoch of a whole network at once (the reference answer).

Per pixel it minimises ``sum_i w_i (d[b_i] - d[a_i] - phi_i)^2`` with ``d[0] = 0`` (the reference
epoch); ``phi`` are unwrapped interferograms in LOS mm (positive towards the satellite) and ``w``
coherence-based weights (0 = missing).
"""
from __future__ import annotations

import numpy as np

# Pixels solved per chunk in the batch inversion: bounds the (chunk, n, n) normal matrices.
_CHUNK_ELEMENTS = 20_000_000


def clean_inputs(ifg_mm: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 copies where a NaN interferogram or weight becomes weight 0 and value 0."""
    ifg = np.asarray(ifg_mm, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if ifg.shape != w.shape:
        raise ValueError(f"ifg_mm {ifg.shape} and weights {w.shape} must have the same shape")
    if np.any(w < 0):
        raise ValueError("weights must be >= 0 (0 = missing interferogram)")
    bad = ~np.isfinite(ifg) | ~np.isfinite(w)
    # zero both so that 0 * NaN never leaks into the normal equations
    return np.where(bad, 0.0, ifg), np.where(bad, 0.0, w)


def batch_inversion(pairs: np.ndarray, ifg_mm: np.ndarray, weights: np.ndarray,
                    n_epochs: int) -> np.ndarray:
    """Coherence-weighted least-squares displacement of every epoch, with ``d[0] = 0``.

    Args:
        pairs: (n_ifg, 2) int, epoch indices ``[a, b]`` with ``0 <= a < b < n_epochs``.
        ifg_mm: (n_ifg, P) float, unwrapped interferograms in LOS mm (``d[b] - d[a]``).
        weights: (n_ifg, P) float >= 0; 0 (or NaN ifg) = missing at that pixel.
        n_epochs: number of epochs.

    Returns:
        (n_epochs, P) float64 LOS mm; NaN where a pixel's valid interferograms do not connect the
        epoch to epoch 0 (its displacement is then not determined by the data).
    """
    pairs = np.asarray(pairs)
    ifg, w = clean_inputs(ifg_mm, weights)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or not np.issubdtype(pairs.dtype, np.integer):
        raise ValueError(f"pairs must be an (n_ifg, 2) int array, got {pairs.shape} {pairs.dtype}")
    if ifg.ndim != 2 or ifg.shape[0] != pairs.shape[0]:
        raise ValueError(f"ifg_mm must be (n_ifg={pairs.shape[0]}, P), got {ifg.shape}")
    if pairs.size and (np.any(pairs[:, 0] >= pairs[:, 1]) or pairs.min() < 0
                       or pairs.max() >= n_epochs):
        raise ValueError(f"pairs must satisfy 0 <= a < b < n_epochs={n_epochs}")
    n_pix = ifg.shape[1]
    out = np.full((n_epochs, n_pix), np.nan)
    out[0] = 0.0
    m = n_epochs - 1  # unknowns d[1..n-1]
    if m == 0 or n_pix == 0:
        return out
    # connectivity to epoch 0 per pixel: flood fill over the valid links (at most m sweeps)
    reach = np.zeros((n_epochs, n_pix), dtype=bool)
    reach[0] = True
    valid = w > 0
    for _ in range(m):
        before = reach.copy()
        for (a, b), v in zip(pairs, valid):
            both = v & (reach[a] | reach[b])
            reach[a] |= both
            reach[b] |= both
        if np.array_equal(before, reach):
            break
    chunk = max(1, _CHUNK_ELEMENTS // (m * m))
    for s in range(0, n_pix, chunk):
        sl = slice(s, min(s + chunk, n_pix))
        n = sl.stop - sl.start
        lam = np.zeros((n, m, m))
        eta = np.zeros((n, m))
        for (a, b), wi, phi in zip(pairs, w[:, sl], ifg[:, sl]):
            # the d[0] = 0 column is dropped: a link to epoch 0 only informs d[b]
            lam[:, b - 1, b - 1] += wi
            eta[:, b - 1] += wi * phi
            if a > 0:
                lam[:, a - 1, a - 1] += wi
                lam[:, a - 1, b - 1] -= wi
                lam[:, b - 1, a - 1] -= wi
                eta[:, a - 1] -= wi * phi
        # unconnected epochs are decoupled from the anchored ones; pin them to make the solve regular
        free = ~reach[1:, sl].T  # (n, m)
        lam[free[:, :, None] | free[:, None, :]] = 0.0
        lam[:, np.arange(m), np.arange(m)] += free
        eta[free] = 0.0
        x = np.linalg.solve(lam, eta[..., None])[..., 0]
        out[1:, sl] = np.where(free, np.nan, x).T
    return out
