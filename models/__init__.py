"""The LADSDIn method (``ladsdin.models``): pure array code, usable from a notebook.

Uses only numpy, torch, xarray and scikit-image; imports no other ``ladsdin`` package.

- ``names``: the frame-name rule every layer shares; ``cube``: the cube contract and its checks
- ``cleaning``: calendar regularisation, gaps, masking, downsampling, KNN fill (step 1)
- ``config``: the parameters of a run; ``frame``: preparing a frame (calendar, downsampling,
  training split, modelled pixels) for ``detect``, the stream's bootstrap and the plots
- ``baseline``: offset + velocity + annual model (normaliser and classical baseline)
- ``lstm``, ``training``, ``forecaster``: the per-pixel forecaster (steps 2-3)
- ``thresholds``: eqs. 3-5; ``labelling``: spatial screen and eq. 6; ``alerts``: GeoJSON
- ``detector``: scoring one epoch; ``batch``: the offline workflow on a whole cube
- ``inversion``: the small-baseline network inversion (batch, incremental, loop closures)
- ``simulation``: a LiCSAR-like simulator with Okada (1985) sources
"""
from __future__ import annotations
