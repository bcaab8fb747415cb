"""Writers of the ``detect`` outputs (DESIGN.md §3): alerts.geojson, anomalies.nc, summary.json."""
from __future__ import annotations

import json
from pathlib import Path

from ladsdin.models.alerts import feature_collection
from ladsdin.models.batch import DetectionResult


def write_outputs(result: DetectionResult, out: Path) -> list[Path]:
    """Write the three contract files into ``out`` (created); return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    geojson = out / "alerts.geojson"
    geojson.write_text(json.dumps(feature_collection(result.features()), indent=1) + "\n")
    nc = out / "anomalies.nc"
    ds = result.dataset()
    enc = {v: {"zlib": True, "complevel": 4} for v in ds.data_vars if ds[v].ndim == 3}
    ds.to_netcdf(nc, engine="h5netcdf", encoding=enc)
    summary = out / "summary.json"
    summary.write_text(json.dumps(result.summary(), indent=1) + "\n")
    return [geojson, nc, summary]
