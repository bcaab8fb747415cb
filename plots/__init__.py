"""Figures (``ladsdin.plots``): the paper's detection figures and the demo's alert map.

- :mod:`.detection`: ``ladsdin detect --plots`` (paper Figs. 4, 6-9)
- :mod:`.canvas`: the grid geometry and Agg figure plumbing they share
- :mod:`.maps`: the last epoch with the alert outlines (``ladsdin demo``)

Matplotlib is imported inside the functions that draw, so importing this package is cheap.
"""
from __future__ import annotations
