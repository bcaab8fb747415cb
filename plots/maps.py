"""The alert map of ``ladsdin demo``: the last epoch's displacement with the alert outlines.

Displacement is LOS mm, positive towards the satellite. Built with the object API (``Figure`` on
an Agg canvas): no global backend switch, nothing to close.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


def alerts_map(cube: Any, alerts: list[dict[str, Any]], path: Path) -> Path:
    """The last epoch's displacement with the alert outlines (lon/lat, north up)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    d = cube["displacement"][-1].values
    lat, lon = cube["lat"].values, cube["lon"].values
    lim = float(np.nanpercentile(np.abs(d), 99)) or 1.0
    im = ax.imshow(d, extent=(lon.min(), lon.max(), lat.min(), lat.max()), origin="upper" if lat[0] > lat[-1] else "lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
    for f in alerts:
        ring = np.array(f["geometry"]["coordinates"][0])
        ax.plot(ring[:, 0], ring[:, 1], "k-", lw=1)
    ax.set_xlabel("longitude, °E")
    ax.set_ylabel("latitude, °N")
    ax.set_title(f"{cube.attrs['frame']}: last epoch and {len(alerts)} alert outline(s)")
    fig.colorbar(im, ax=ax, label="LOS displacement, mm (+ towards satellite)")
    fig.savefig(path, dpi=110)
    return path
