"""Persistence of per-pixel state and models (``ladsdin.state``).

Not built yet: the state-store interface with its Redis and in-memory implementations arrives
with the streaming detector (issue 3). The batch detector (``ladsdin detect``) keeps its state
in memory, in :class:`ladsdin.models.forecaster.PixelState`.
"""
from __future__ import annotations
