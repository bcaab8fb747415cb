"""LADSDIn-stream: streaming detection of seismic deformation in LiCSAR InSAR time series.

The code lives in three role-named packages, mapped under this namespace by pyproject.toml:
``ladsdin.models`` (the method, ``models/``), ``ladsdin.state`` (persistence, ``state/``) and
``ladsdin.stream`` (the edges: CLI, readers, outputs; ``stream/``).
"""
from __future__ import annotations

__version__ = "0.1.0"
