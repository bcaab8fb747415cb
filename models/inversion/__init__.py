"""Small-baseline network inversion of LiCSAR interferograms, in batch and online.

LiCSAR publishes unwrapped interferograms between acquisition epochs ``a < b``; converted to LOS
mm (``MM_PER_RAD``, positive towards the satellite) each one observes ``d[b] - d[a]``. Per pixel we
minimise ``sum_i w_i (d[b_i] - d[a_i] - phi_i)^2`` with ``d[0] = 0`` (the reference epoch).

- :mod:`.batch`: :func:`batch_inversion` solves the whole network at once (the reference answer).
- :mod:`.incremental`: :class:`IncrementalInversion`, an information filter over the last ``W``
  epochs that publishes each new epoch exactly as the batch inversion of the data available then.
- :mod:`.closure`: :func:`loop_closures`, the half-cycle threshold that flags unwrapping errors, and
  :func:`repair_links`, which removes the interferogram behind a pixel's failing loops.
- :mod:`.cholesky`: the batched small SPD solver both inversions use.
"""
from __future__ import annotations

from ladsdin.models.inversion.batch import batch_inversion
from ladsdin.models.inversion.closure import CLOSURE_THRESHOLD_MM, bad_pairs, loop_closures, repair_links
from ladsdin.models.inversion.incremental import EpochEstimate, IncrementalInversion

__all__ = ["CLOSURE_THRESHOLD_MM", "EpochEstimate", "IncrementalInversion", "bad_pairs", "batch_inversion", "loop_closures", "repair_links"]
