"""Spatial screen (connected components of the anomaly mask) and seismic deformation (eq. 6)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.measure import label

#: skimage connectivity: 1 = edges touch (4-connectivity, the default), 2 = corners too (8).
CONNECTIVITY = {4: 1, 8: 2}


@dataclass(frozen=True)
class SeismicObject:
    """One connected anomaly object with more than N_a pixels.

    ``label`` is the raster-order label of the object in its epoch (1-based, deterministic), and
    ``index`` its rank among the epoch's seismic objects (0-based, raster order of first pixel).
    With one-sign labelling (:func:`label_signed`) the positive objects come first, each sign
    in raster order.
    """

    index: int
    label: int
    n_pixels: int
    rows: np.ndarray  # (n,) int, pixel rows
    cols: np.ndarray  # (n,) int, pixel columns
    los_min_mm: float  # range of D_s inside the object, LOS mm, +towards satellite
    los_max_mm: float


def label_anomalies(anomaly: np.ndarray, connectivity: int = 4) -> tuple[np.ndarray, int]:
    """Label connected components of a 2-D anomaly mask.

    Args:
        anomaly: (n_lat, n_lon) bool.
        connectivity: 4 (edges touch, the paper's choice) or 8 (corners touch too).

    Returns:
        (labels (n_lat, n_lon) int32 with 0 = background, number of objects). Labels follow
        raster order of each object's first pixel, so they are deterministic.
    """
    if connectivity not in CONNECTIVITY:
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    if anomaly.ndim != 2:
        raise ValueError(f"the anomaly mask must be 2-D (lat, lon), got shape {anomaly.shape}")
    labels, n = label(anomaly, connectivity=CONNECTIVITY[connectivity], background=0, return_num=True)
    return labels.astype(np.int32, copy=False), int(n)


def label_signed(anomaly: np.ndarray, positive: np.ndarray, connectivity: int = 4) -> tuple[np.ndarray, int]:
    """Label the positive and the negative anomalies of a mask apart: an object then holds one
    sign only (a deformation lobe, not the noise of the other sign that touches it).

    Args:
        anomaly: (n_lat, n_lon) bool.
        positive: (n_lat, n_lon) bool, the anomalies' sign (ignored off the mask).

    Returns:
        (labels, n) as :func:`label_anomalies`: the positive objects first (raster order), then
        the negative ones.
    """
    pos, n_pos = label_anomalies(anomaly & positive, connectivity)
    neg, n_neg = label_anomalies(anomaly & ~positive, connectivity)
    return np.where(neg > 0, neg + n_pos, pos).astype(np.int32, copy=False), n_pos + n_neg


def label_objects(anomaly: np.ndarray, positive: np.ndarray | None = None, connectivity: int = 4) -> tuple[np.ndarray, int]:
    """:func:`label_signed` when the anomalies' sign ``positive`` is given (one-sign objects),
    :func:`label_anomalies` otherwise."""
    if positive is None:
        return label_anomalies(anomaly, connectivity)
    return label_signed(anomaly, positive, connectivity)


def object_sizes(labels: np.ndarray, n: int) -> np.ndarray:
    """Pixel count of each label 1..n as an (n,) int64 array."""
    return np.bincount(labels.ravel(), minlength=n + 1)[1:]


def seismic_objects(
    anomaly: np.ndarray, residual: np.ndarray, n_a: int, connectivity: int = 4, positive: np.ndarray | None = None
) -> tuple[list[SeismicObject], np.ndarray, int]:
    """Find the seismic objects of one epoch and their deformation D_s (eq. 6).

    Args:
        anomaly: (n_lat, n_lon) bool anomaly mask (eq. 4).
        residual: (n_lat, n_lon) D_k - P_k, LOS mm, +towards satellite, *not* corrected for the
            epoch's common mode: a large earthquake moves the frame median too.
        n_a: N_a from eq. 5; every object with more than N_a pixels is seismic.
        positive: the anomalies' sign; given, objects hold one sign only (:func:`label_signed`).

    Returns:
        (objects, deformation (n_lat, n_lon) float32 with D_s inside objects and NaN outside,
        size of the largest connected object in pixels, seismic or not).
    """
    labels, n = label_objects(anomaly, positive, connectivity)
    deformation = np.full(anomaly.shape, np.nan, dtype=np.float32)
    if n == 0:
        return [], deformation, 0
    sizes = object_sizes(labels, n)
    keep = np.flatnonzero(sizes > n_a) + 1  # spatial screen: more than N_a pixels
    objects: list[SeismicObject] = []
    for index, lab in enumerate(keep):
        rows, cols = np.nonzero(labels == lab)
        ds = residual[rows, cols]  # eq. 6: D_s = D_k - P_k inside the object
        deformation[rows, cols] = ds
        objects.append(
            SeismicObject(
                index=index,
                label=int(lab),
                n_pixels=int(rows.size),
                rows=rows,
                cols=cols,
                los_min_mm=float(np.nanmin(ds)),
                los_max_mm=float(np.nanmax(ds)),
            )
        )
    return objects, deformation, int(sizes.max())
