"""Seismic objects as GeoJSON Features (RFC 7946: lon/lat, exterior ring counter-clockwise)."""
from __future__ import annotations

from typing import Any

import numpy as np
from skimage.measure import approximate_polygon, find_contours

from ladsdin.models.cube import SIGN, UNITS
from ladsdin.models.labelling import SeismicObject
from ladsdin.models.thresholds import pixel_area_km2


def alert_id(frame: str, epoch: str, index: int) -> str:
    """Deterministic alert id from (frame, epoch YYYY-MM-DD, object rank), so consumers can de-duplicate."""
    return f"{frame}:{epoch}:{index:03d}"


def _ring_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))


def object_polygon(obj: SeismicObject, lat: np.ndarray, lon: np.ndarray, tolerance_px: float = 0.25) -> list[list[list[float]]]:
    """Outline of one object as GeoJSON Polygon coordinates [[[lon, lat], ...]].

    The outline follows the outer edges of the object's pixels (pixel centres +- half a posting),
    simplified to ``tolerance_px``. Holes (e.g. the decorrelated near field) are not cut out.

    Args:
        lat: (n_lat,) pixel-centre latitudes, ascending or descending, degrees.
        lon: (n_lon,) pixel-centre longitudes, degrees.
    """
    r0, c0 = int(obj.rows.min()), int(obj.cols.min())
    h, w = int(obj.rows.max()) - r0 + 1, int(obj.cols.max()) - c0 + 1
    # Upsample 2x so the 0.5 iso-line runs along pixel edges rather than through pixel centres.
    mask = np.zeros((2 * h + 2, 2 * w + 2), dtype=np.float32)
    rr = 2 * (obj.rows - r0) + 1
    cc = 2 * (obj.cols - c0) + 1
    for dr in (0, 1):
        for dc in (0, 1):
            mask[rr + dr, cc + dc] = 1.0
    contours = find_contours(mask, 0.5)
    ring_px = max(contours, key=len)
    ring_px = approximate_polygon(ring_px, tolerance=2 * tolerance_px)
    # Back to fractional pixel indices of the original grid (edges at -0.5 / +0.5).
    rows = (ring_px[:, 0] - 1) / 2.0 - 0.25 + r0
    cols = (ring_px[:, 1] - 1) / 2.0 - 0.25 + c0
    dlat = (lat[-1] - lat[0]) / (lat.size - 1) if lat.size > 1 else 0.0
    dlon = (lon[-1] - lon[0]) / (lon.size - 1) if lon.size > 1 else 0.0
    ring = np.column_stack([lon[0] + cols * dlon, lat[0] + rows * dlat])
    if not np.array_equal(ring[0], ring[-1]):
        ring = np.vstack([ring, ring[:1]])
    if _ring_area(ring) < 0:  # RFC 7946 §3.1.6: exterior rings are counter-clockwise
        ring = ring[::-1]
    return [np.round(ring, 6).tolist()]


def object_feature(
    obj: SeismicObject,
    *,
    lat: np.ndarray,
    lon: np.ndarray,
    frame: str,
    track: str,
    epoch: str,
    nm: float,
    n_a: int,
    model_version: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A GeoJSON Feature for one seismic object (the ``ladsdin.alerts.v1`` value and one
    ``alerts.geojson`` entry).

    Args:
        lat, lon: (n_lat,), (n_lon,) pixel-centre coordinates of the (downsampled) grid.
        epoch: YYYY-MM-DD of the scored acquisition.
    """
    dlat = abs(float(np.median(np.diff(lat)))) if lat.size > 1 else 0.0
    dlon = abs(float(np.median(np.diff(lon)))) if lon.size > 1 else 0.0
    counts = np.bincount(obj.rows)
    rows_present = np.flatnonzero(counts)
    area = sum(counts[r] * pixel_area_km2(float(lat[r]), dlat, dlon) for r in rows_present)
    props: dict[str, Any] = {
        "id": alert_id(frame, epoch, obj.index),
        "epoch": epoch,
        "frame": frame,
        "track": track,
        "n_pixels": obj.n_pixels,
        "area_km2": round(float(area), 4),
        "los_min_mm": round(obj.los_min_mm, 2),
        "los_max_mm": round(obj.los_max_mm, 2),
        "centroid_lon": round(float(lon[obj.cols].mean()), 6),
        "centroid_lat": round(float(lat[obj.rows].mean()), 6),
        "nm": nm,
        "n_a": n_a,
        "model_version": model_version,
        "units": UNITS,
        "sign": SIGN,
    }
    if extra:
        props.update(extra)
    return {
        "type": "Feature",
        "id": props["id"],
        "geometry": {"type": "Polygon", "coordinates": object_polygon(obj, lat, lon)},
        "properties": props,
    }


def feature_collection(features: list[dict[str, Any]]) -> dict[str, Any]:
    """Wrap features in a GeoJSON FeatureCollection."""
    return {"type": "FeatureCollection", "features": features}
