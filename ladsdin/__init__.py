"""LADSDIn-stream: streaming detection of seismic deformation in LiCSAR InSAR time series.

The code lives in role-named packages, one per top-level folder, mapped under this namespace by
pyproject.toml (imports only go down this list; ``tests/test_layering.py`` enforces it):

- ``ladsdin.models`` (``models/``): the method, pure array code
- ``ladsdin.state`` (``state/``): persistence of models and per-pixel state
- ``ladsdin.formats`` (``formats/``): file readers and writers
- ``ladsdin.plots`` (``plots/``): figures
- ``ladsdin.stream`` (``stream/``): the streaming service
- ``ladsdin.ingest`` (``ingest/``): LiCSAR ingestion and replays
- ``ladsdin.cli`` (``cli/``): the ``ladsdin`` command
"""
from __future__ import annotations

__version__ = "0.1.0"
