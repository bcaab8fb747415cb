"""Loop closures: the triangles of a small-baseline network and their phase misclosure.

An unwrapping error adds a whole 2 pi cycle (:data:`MM_PER_CYCLE` mm) to one interferogram;
noise is a few mm. A triangle whose closure exceeds half a cycle holds an unwrapping error.
"""
from __future__ import annotations

import numpy as np

from ladsdin.models.cube import MM_PER_CYCLE

#: |closure| above half a cycle can only come from an unwrapping error (noise is a few mm).
CLOSURE_THRESHOLD_MM = MM_PER_CYCLE / 2.0


def triangles(pairs: np.ndarray) -> list[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    """Every triangle ``a < b < c`` of the network: its epochs and its rows ``(ab, bc, ac)`` in ``pairs``."""
    index = {(int(a), int(b)): i for i, (a, b) in enumerate(np.asarray(pairs))}
    out = []
    for (a, c), i_ac in sorted(index.items()):
        for b in range(a + 1, c):
            if (a, b) in index and (b, c) in index:
                out.append(((a, b, c), (index[(a, b)], index[(b, c)], i_ac)))
    return out


def loop_closures(pairs: np.ndarray, ifg_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closure ``phi(a,b) + phi(b,c) - phi(a,c)`` of every triangle in the network.

    Args:
        pairs: (n_ifg, 2) int epoch indices ``[a, b]``, ``a < b``.
        ifg_mm: (n_ifg, P) float LOS mm.

    Returns:
        triplets: (n, 3) int epoch indices ``[a, b, c]``, ``a < b < c``.
        closure: (n, P) float64 mm; ~0 for consistent data, about +-MM_PER_CYCLE where one of the
        three interferograms has an unwrapping error (flag with ``abs(closure) > CLOSURE_THRESHOLD_MM``).
    """
    pairs = np.asarray(pairs)
    ifg = np.asarray(ifg_mm, dtype=np.float64)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or ifg.ndim != 2 or ifg.shape[0] != pairs.shape[0]:
        raise ValueError(f"pairs (n_ifg, 2) and ifg_mm (n_ifg, P) mismatch: {pairs.shape} {ifg.shape}")
    tri = triangles(pairs)
    trip, rows = [t for t, _ in tri], [r for _, r in tri]
    if not trip:
        return np.zeros((0, 3), dtype=np.int64), np.zeros((0, ifg.shape[1]))
    r = np.asarray(rows)
    return np.asarray(trip, dtype=np.int64), ifg[r[:, 0]] + ifg[r[:, 1]] - ifg[r[:, 2]]


def repair_links(implied_mm: np.ndarray, valid: np.ndarray, prediction_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which of a new epoch's interferograms to keep, per pixel, when their loops disagree.

    Every interferogram ``(j, k)`` to the new epoch ``k`` implies a value for it:
    ``x_j = d[j] + phi(j, k)``. Their differences are the closures of the triangles ``(j1, j2, k)``
    (with the estimates for the third side), so the interferogram behind failing triangles is the
    one whose implied value sits a cycle away from the others (the LiCSBAS step-12 logic, per
    pixel: the pair common to the failing loops).

    - Three or more votes: keep those within half a cycle of their median.
    - Two votes that disagree: the pixel's last estimate (``prediction_mm``) breaks the tie, so the
      vote that sits a cycle from both it and the other is removed.
    - One vote (or none) cannot be checked and is kept.

    Args:
        implied_mm: (n, P) float ``d[j] + phi(j, k)`` per new interferogram; NaN where ``d[j]``
            is not determined (such a vote is kept but not counted).
        valid: (n, P) bool, the interferogram has data at the pixel.
        prediction_mm: (P,) float, the pixel's last estimate (NaN = none).

    Returns:
        keep: (n, P) bool, valid and not removed.
        unresolved: (P,) bool, the votes that are kept still disagree by more than half a cycle
            (or all were removed): the loops at this pixel cannot be closed.
    """
    x = np.where(valid & np.isfinite(implied_mm), implied_mm, np.nan)
    votes = np.isfinite(x).sum(axis=0)
    # two votes: the median of the two and the prediction (a NaN prediction leaves their mean)
    center = np.where(votes == 2, _median0(np.vstack([x, prediction_mm[None, :]])), _median0(x))
    with np.errstate(invalid="ignore"):
        keep = valid & ~(np.abs(x - center) > CLOSURE_THRESHOLD_MM)
        kept = np.isfinite(x) & keep
        lo = np.where(kept, x, np.inf).min(axis=0)
        hi = np.where(kept, x, -np.inf).max(axis=0)
        # every vote removed, or the kept ones still a cycle apart
        unresolved = (votes >= 2) & (~kept.any(axis=0) | (hi - lo > CLOSURE_THRESHOLD_MM))
    return keep, unresolved


def _median0(a: np.ndarray) -> np.ndarray:
    """Median over axis 0 of the finite values (NaN where none): a sort, fast for a few rows."""
    s = np.sort(a, axis=0)  # NaN sorts last
    n = np.isfinite(a).sum(axis=0)
    lo = np.take_along_axis(s, np.maximum(n - 1, 0)[None, :] // 2, axis=0)[0]
    hi = np.take_along_axis(s, (n // 2)[None, :].clip(max=a.shape[0] - 1), axis=0)[0]
    return np.where(n > 0, 0.5 * (lo + hi), np.nan)


def bad_pairs(pairs: np.ndarray, ifg_mm: np.ndarray, valid: np.ndarray,
              n_epochs: int) -> tuple[np.ndarray, np.ndarray]:
    """The batch rule (LiCSBAS step 12, per pixel): which interferograms to remove before inverting.

    Every triangle whose three interferograms are valid at a pixel votes: a closure above half a
    cycle counts as a failure for its three pairs, a smaller one as a pass. A pair is removed at a
    pixel where it fails more loops than it passes. A failing loop none of whose pairs is removed
    cannot be closed: its three epochs are unresolved at that pixel.

    Args:
        pairs: (n_ifg, 2) int ``[a, b]``; ifg_mm: (n_ifg, P) float mm; valid: (n_ifg, P) bool.
        n_epochs: number of epochs.

    Returns:
        bad: (n_ifg, P) bool; unresolved: (n_epochs, P) bool.
    """
    pairs = np.asarray(pairs)
    ifg = np.asarray(ifg_mm, dtype=np.float64)
    fails = np.zeros(ifg.shape, dtype=np.int32)
    passes = np.zeros(ifg.shape, dtype=np.int32)
    loops = []
    for epochs, rows in triangles(pairs):
        v = valid[rows[0]] & valid[rows[1]] & valid[rows[2]]
        with np.errstate(invalid="ignore"):
            f = v & (np.abs(ifg[rows[0]] + ifg[rows[1]] - ifg[rows[2]]) > CLOSURE_THRESHOLD_MM)
        for r in rows:
            fails[r] += f
            passes[r] += v & ~f
        loops.append((epochs, rows, f))
    bad = (fails > 0) & (fails > passes)
    unresolved = np.zeros((n_epochs, ifg.shape[1]), dtype=bool)
    for epochs, rows, f in loops:
        left = f & ~(bad[rows[0]] | bad[rows[1]] | bad[rows[2]])
        for e in epochs:
            unresolved[e] |= left
    return bad, unresolved
