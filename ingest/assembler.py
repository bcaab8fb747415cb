"""The epoch assembler of the LiCSAR ingest: one epoch's interferograms in, its event out.

It reads an epoch's interferograms side by side (GDAL decodes with the GIL released), adds them
to the incremental inversion (:class:`~ladsdin.models.inversion.IncrementalInversion`), masks the
closure-flagged pixels, writes the displacement map with its quality layers as the epoch's object
and builds its ``licsar.epochs.v1`` event. *When* an epoch is assembled is the scheduler's
business (:mod:`ladsdin.ingest.scheduler`).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ladsdin.formats.licsar import FrameGrid, LicsarFileError
from ladsdin.ingest.frame import IfgEntry, load_interferogram
from ladsdin.ingest.reference import RefWindow
from ladsdin.models.inversion import EpochEstimate, IncrementalInversion
from ladsdin.stream.events import build_epoch_event
from ladsdin.stream.objects import write_epoch_object

SOURCE = "licsar-interferograms"


@dataclass
class LoadedEpoch:
    """One epoch's usable interferograms, in link order, as :meth:`~ladsdin.ingest.scheduler.LicsarIngest.load` read them.

    ifgs/weights: (P,) float32 LOS mm and 1/mm^2 each; reference: the widest reference window
    any of them needed (the configured one unless a coseismic pair decorrelated it).
    """

    reference: RefWindow
    preds: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    ifgs: list[np.ndarray] = field(default_factory=list)
    weights: list[np.ndarray] = field(default_factory=list)


def read_interferograms(entries: list[IfgEntry], grid: FrameGrid, ref: RefWindow, *, min_coherence: float,
                        looks: float) -> list[tuple[np.ndarray, np.ndarray, RefWindow] | LicsarFileError]:
    """Each entry's (LOS mm, weights, reference window used), or the error that rejected it."""
    def read(e: IfgEntry) -> Any:
        try:
            return load_interferogram(e, grid, ref, min_coherence=min_coherence, looks=looks)
        except LicsarFileError as exc:
            return exc

    # GDAL decodes with the GIL released: the 1-4 pairs of an epoch are read side by side
    with ThreadPoolExecutor(max(1, min(4, len(entries)))) as pool:
        return list(pool.map(read, entries))


class EpochAssembler:
    """Turns loaded epochs into inversion estimates and events for one frame.

    ``filter`` is the frame's incremental inversion; the scheduler creates or restores it.
    """

    def __init__(self, frame: str, track: str, data_root: Path, *, mask_closure: bool) -> None:
        self.frame, self.track, self.data_root = frame, track, Path(data_root)
        self.mask_closure = mask_closure
        self.filter: IncrementalInversion | None = None

    def add(self, loaded: LoadedEpoch) -> EpochEstimate:
        """Add the loaded interferograms to the filter as its next epoch."""
        if self.filter is None:
            raise RuntimeError("the inversion is not started: the scheduler fixes the grid and epoch 0 first")
        shape = (len(loaded.preds), self.filter.n_pixels)
        return self.filter.add_epoch(loaded.preds, np.array(loaded.ifgs).reshape(shape), np.array(loaded.weights).reshape(shape))

    def events(self, epoch: str, est: EpochEstimate, loaded: LoadedEpoch, grid: FrameGrid, ref: RefWindow, *,
               epoch0: str | None) -> tuple[list[dict[str, Any]], int]:
        """The events of a new epoch (preceded by epoch 0's all-zero map when ``epoch0`` is given)
        and its count of closure-flagged pixels. No event for a map without data."""
        disp = est.displacement.astype(np.float32).reshape(grid.shape)
        flagged = est.closure_flag.reshape(grid.shape)
        if self.mask_closure:
            disp[flagged] = np.nan
        events = []
        if epoch0 is not None and np.isfinite(disp).any():
            zero = np.where(np.isfinite(disp), np.float32(0), np.float32(np.nan))
            events.append(self._event(grid, epoch0, zero, None, [], ref))
        if np.isfinite(disp).any():
            events.append(self._event(grid, epoch, disp, est, loaded.names, loaded.reference))
        return events, int(flagged.sum())

    def _event(self, grid: FrameGrid, epoch: str, disp: np.ndarray, est: Any, names: list[str], reference: RefWindow) -> dict[str, Any]:
        """Write the epoch's object (with the quality layers when ``est`` is given) and build its event."""
        quality: dict[str, Any] = {"source": SOURCE, "reference": reference.as_licsbas(), "reference_how": reference.how,
                                   "interferograms": names,
                                   "closure_masked": self.mask_closure}
        layers = None
        if est is not None:
            ok = np.isfinite(disp).ravel()
            n_ifg = est.n_ifg
            quality.update(
                n_interferograms_max=int(n_ifg.max(initial=0)),
                n_interferograms_median=float(np.median(n_ifg[ok])) if ok.any() else 0.0,
                residual_rms_mm_median=_median(est.residual_rms[ok]),
                sigma_mm_median=_median(est.sigma[ok]),
                closure_flagged_pixels=int(est.closure_flag.sum()),
                closure_repaired_pixels=int(np.count_nonzero(est.removed)) if est.removed is not None else 0,
                layers=["n_ifg", "residual_rms", "sigma", "closure_flag", "removed_ifg"],
            )
            shape = grid.shape
            layers = {
                "n_ifg": (n_ifg.reshape(shape).astype(np.int8), {"units": "1", "long_name": "interferograms used"}),
                "residual_rms": (est.residual_rms.reshape(shape).astype(np.float32),
                                 {"units": "mm", "long_name": "RMS misfit of the interferograms used"}),
                "sigma": (est.sigma.reshape(shape).astype(np.float32),
                          {"units": "mm", "long_name": "propagated standard deviation of displacement"}),
                "closure_flag": (est.closure_flag.reshape(shape).astype(np.int8),
                                 {"units": "1", "long_name": "loops through the epoch cannot be closed (unwrapping error); "
                                  "the displacement is NaN there when closure masking is on"}),
                "removed_ifg": ((est.removed if est.removed is not None else np.zeros(n_ifg.shape, np.int8))
                                .reshape(shape).astype(np.int8),
                                {"units": "1", "long_name": "interferograms removed as the pair behind failing loops "
                                 "(not used in the estimate)"}),
            }
        uri, sha = write_epoch_object(self.data_root, self.frame, epoch, disp, grid.lat, grid.lon, self.track, layers=layers)
        return build_epoch_event(self.frame, self.track, epoch, grid.lat, grid.lon, uri=uri, sha256=sha, quality=quality)


def _median(a: np.ndarray) -> float | None:
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else None
