"""A LiCSAR/LiCSBAS-like simulator of LOS displacement cubes with known truth.

``simulate(preset, track, ...)`` returns ``(cube, truth)``: a cube that passes
:func:`ladsdin.models.cube.normalize_cube` (``displacement`` (time, lat, lon) float32, LOS mm,
positive towards the satellite) and a truth dataset (coseismic step, decorrelated near field,
unwrapping errors, noise figures). Presets: ``menyuan``, ``delingha``, ``null``.

Layers: :mod:`.okada` (the elastic source), :mod:`.atmosphere` (random fields),
:mod:`.scene` (static maps), :mod:`.acquisitions` (the calendar), :mod:`.scenarios` (presets),
:mod:`.simulate` (the epoch loop).
"""
from __future__ import annotations

from ladsdin.models.simulation.okada import Fault, fault_displacement, faults_displacement, okada85
from ladsdin.models.simulation.scenarios import DELINGHA, MENYUAN, NULL, PRESETS, Scenario, get_scenario
from ladsdin.models.simulation.simulate import simulate

__all__ = [
    "DELINGHA", "MENYUAN", "NULL", "PRESETS", "Fault", "Scenario", "fault_displacement",
    "faults_displacement", "get_scenario", "okada85", "simulate",
]
