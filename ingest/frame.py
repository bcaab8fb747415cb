"""What a LiCSAR frame directory holds right now, and how one interferogram becomes inversion input.

Pure functions over files: :func:`scan_frame` lists the interferograms (reporting badly named or
out-of-order ones), :func:`load_interferogram` reads one pair completely and turns it into
referenced LOS mm with coherence-based weights.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ladsdin.models.cube import MM_PER_RAD

from ladsdin.formats.licsar import FrameGrid, LicsarFileError, ifg_paths, parse_pair, read_cc, read_unw
from ladsdin.ingest.reference import RefWindow, reference

#: coherence is clipped to this range before it becomes a phase variance (1 would be infinite weight)
_COH_CLIP = (0.01, 0.995)


@dataclass(frozen=True)
class IfgEntry:
    """One interferogram directory ``interferograms/D1_D2`` (files may still be missing)."""

    name: str
    d1: dt.date
    d2: dt.date
    unw: Path
    cc: Path

    @property
    def complete(self) -> bool:
        return self.unw.is_file() and self.cc.is_file()

    def signature(self) -> list[int]:
        """Sizes and mtimes (ns) of both files: a changed file is looked at again."""
        out: list[int] = []
        for p in (self.unw, self.cc):
            try:
                st = p.stat()
                out += [st.st_size, st.st_mtime_ns]
            except FileNotFoundError:
                out += [-1, -1]
        return out

    def newest_mtime(self) -> float:
        times = [p.stat().st_mtime for p in (self.unw, self.cc) if p.exists()]
        return max(times) if times else 0.0


def scan_frame(frame_dir: Path) -> tuple[list[IfgEntry], list[LicsarFileError]]:
    """Interferograms of ``frame_dir`` sorted by (secondary, primary), and the badly named ones.

    Raises:
        FileNotFoundError: ``frame_dir/interferograms`` does not exist.
    """
    root = Path(frame_dir) / "interferograms"
    if not root.is_dir():
        raise FileNotFoundError(f"{root} not found: a LiCSAR frame directory holds interferograms/D1_D2/D1_D2.geo.unw.tif")
    entries, problems = [], []
    for d in sorted(root.iterdir()):
        if not d.is_dir() or d.name.startswith("."):
            continue
        try:
            d1, d2 = parse_pair(d.name, path=d)
        except LicsarFileError as exc:
            problems.append(exc)
            continue
        unw, cc = ifg_paths(Path(frame_dir), d.name)
        entries.append(IfgEntry(d.name, d1, d2, unw, cc))
    entries.sort(key=lambda e: (e.d2, e.d1))
    return entries, problems


def coherence_weights(cc: np.ndarray, looks: float) -> np.ndarray:
    """Inverse phase variance in 1/mm^2 from coherence: var = (1 - g^2) / (2 L g^2) rad^2
    (the Cramer-Rao bound for L looks), times MM_PER_RAD^2. NaN coherence gives weight 0."""
    g2 = np.square(np.clip(np.nan_to_num(cc, nan=0.0), *_COH_CLIP), dtype=np.float32)
    w = g2 * np.float32(2.0 * looks / MM_PER_RAD**2) / (np.float32(1.0) - g2)  # 1 / var_mm2, float32 throughout
    w[~np.isfinite(cc)] = 0.0
    return w


def read_pair(entry: IfgEntry, grid: FrameGrid | None, min_coherence: float) -> tuple[np.ndarray, np.ndarray, FrameGrid]:
    """Read both files of ``entry`` completely.

    Returns:
        (n_lat, n_lon) float32 LOS mm (unreferenced; NaN = no data or coherence below
        ``min_coherence``), (n_lat, n_lon) float32 coherence 0..1 (NaN = no data), and the grid.

    Raises:
        LicsarFileError: a missing, truncated, mis-gridded or wrongly typed file.
    """
    mm, g = read_unw(entry.unw, grid)
    cc, _ = read_cc(entry.cc, grid or g)
    low = ~(cc >= min_coherence)  # NaN coherence counts as low
    mm = np.where(low, np.float32(np.nan), mm)
    if np.isnan(mm).all():
        raise LicsarFileError(entry.unw, "bad_values", f"no pixel has coherence >= {min_coherence:g} and a phase value")
    return mm, cc, g


def load_interferogram(entry: IfgEntry, grid: FrameGrid, window: RefWindow, *, min_coherence: float,
                       looks: float) -> tuple[np.ndarray, np.ndarray, RefWindow]:
    """One interferogram as inversion input.

    Returns:
        (P,) float32 LOS mm referenced to ``window`` (``d[d2] - d[d1]``, NaN = unusable),
        (P,) float32 weights in 1/mm^2 (0 where unusable), P = n_lat * n_lon in row-major order,
        and the reference window actually used (grown where ``window`` is decorrelated).

    Raises:
        LicsarFileError: unreadable files, or (reason ``reference``) too few valid reference pixels.
    """
    mm, cc, _ = read_pair(entry, grid, min_coherence)
    try:
        mm, _, used = reference(mm, window)
    except ValueError as exc:
        raise LicsarFileError(entry.unw, "reference", str(exc)) from None
    w = np.where(np.isfinite(mm), coherence_weights(cc, looks), np.float32(0.0))
    return mm.ravel(), w.ravel(), used
