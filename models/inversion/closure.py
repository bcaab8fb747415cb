"""Loop closures: the triangles of a small-baseline network and their phase misclosure.

An unwrapping error adds a whole 2 pi cycle (:data:`MM_PER_CYCLE` mm) to one interferogram;
noise is a few mm. A triangle whose closure exceeds half a cycle holds an unwrapping error.
"""
from __future__ import annotations

import numpy as np

from ladsdin.models.cube import MM_PER_CYCLE

#: |closure| above half a cycle can only come from an unwrapping error (noise is a few mm).
CLOSURE_THRESHOLD_MM = MM_PER_CYCLE / 2.0


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
    index = {(int(a), int(b)): i for i, (a, b) in enumerate(pairs)}
    trip, rows = [], []
    for (a, c), i_ac in sorted(index.items()):
        for b in range(a + 1, c):
            if (a, b) in index and (b, c) in index:
                trip.append((a, b, c))
                rows.append((index[(a, b)], index[(b, c)], i_ac))
    if not trip:
        return np.zeros((0, 3), dtype=np.int64), np.zeros((0, ifg.shape[1]))
    r = np.asarray(rows)
    return np.asarray(trip, dtype=np.int64), ifg[r[:, 0]] + ifg[r[:, 1]] - ifg[r[:, 2]]
