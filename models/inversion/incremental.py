"""The incremental small-baseline inversion: an information filter over the last ``W`` epochs.

Each new epoch publishes exactly (to float precision) what the batch inversion
(:func:`ladsdin.models.inversion.batch.batch_inversion`) of all interferograms available up to that
epoch gives for it, at O(P W^3) per epoch instead of re-solving the whole history. The per-epoch
``closure_flag`` catches unwrapping errors (:mod:`ladsdin.models.inversion.closure`).

Weights are coherence-based and >= 0; 0 means the interferogram is missing at that pixel (a NaN
interferogram is treated as weight 0). If the weights are inverse variances (1/mm^2), ``sigma`` is
the posterior standard deviation in mm.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ladsdin.models.inversion.batch import clean_inputs
from ladsdin.models.inversion.cholesky import cholesky_solve
from ladsdin.models.inversion.closure import CLOSURE_THRESHOLD_MM, repair_links


@dataclass(frozen=True)
class EpochEstimate:
    """What :meth:`IncrementalInversion.add_epoch` publishes for the new epoch.

    Attributes:
        epoch: index of the new epoch (epoch 0 is the reference).
        displacement: (P,) float64 LOS mm, NaN where the data do not tie the epoch to epoch 0.
        n_ifg: (P,) int, valid interferograms (weight > 0) linking this epoch to its predecessors.
        residual_rms: (P,) float64 mm, RMS misfit of those interferograms against the window's
            current estimates (NaN where n_ifg == 0).
        sigma: (P,) float64 mm, posterior std of ``displacement`` when weights are 1/mm^2.
        closure_flag: (P,) bool, the loops through this epoch cannot be closed: after the bad
            interferograms were removed, some triangle still has |closure| > MM_PER_CYCLE / 2, or
            the new interferograms disagree with no majority (their data are then not used).
        removed: (P,) int8, new interferograms removed at the pixel as the pair behind its failing
            loops (:func:`~ladsdin.models.inversion.closure.repair_links`); the estimate is made
            without them. Where the loops cannot be closed (``closure_flag``), every new one
            dropped is counted.
    """

    epoch: int
    displacement: np.ndarray
    n_ifg: np.ndarray
    residual_rms: np.ndarray
    sigma: np.ndarray
    closure_flag: np.ndarray
    removed: np.ndarray | None = None


class IncrementalInversion:
    """Per-pixel information filter over the last ``window`` epochs.

    State (for the W most recent epochs, oldest first; pixel axis last): information matrix
    (W, W, P), information vector (W, P), and a component label (W, P) telling which epochs are
    tied to epoch 0. Older epochs are marginalised (Schur complement), which loses nothing for the
    newest epoch because a new interferogram never reaches further back than ``window`` epochs.
    :meth:`state_arrays` / :meth:`from_state_arrays` checkpoint it exactly.
    """

    #: pixels solved at once: bounds the working set (~30 arrays of this many float64 per thread)
    chunk_pixels = 262_144
    #: threads over pixel chunks (the CPUs this process may use, at most 4)
    threads = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))

    def __init__(self, n_pixels: int, window: int = 4, gap_sigma_mm: float | None = None, repair: bool = True) -> None:
        """Start with epoch 0 (d = 0).

        Args:
            window: max link span ``k - j`` (epochs) accepted.
            gap_sigma_mm: None keeps the batch inversion's answer exactly: a pixel whose new epoch
                has no chain of valid interferograms back to epoch 0 is NaN (after a pixel lost
                coherence for ``window`` epochs in a row, for good). A number bridges such a gap
                with a pseudo-observation "no motion since the pixel's last estimate" of this std
                (mm), so the pixel comes back, tied to its own past (LiCSBAS bridges network gaps
                with a temporal model for the same reason).
            repair: remove, per pixel, a new interferogram whose loops fail (an unwrapping error)
                before the epoch is estimated, instead of only flagging it; False keeps the exact
                batch answer of all the data.
        """
        if n_pixels < 0 or window < 1:
            raise ValueError(f"need n_pixels >= 0 and window >= 1, got {n_pixels}, {window}")
        if gap_sigma_mm is not None and not gap_sigma_mm > 0:
            raise ValueError(f"gap_sigma_mm must be > 0 or None, got {gap_sigma_mm}")
        self.n_pixels, self.window = int(n_pixels), int(window)
        self.gap_sigma_mm = None if gap_sigma_mm is None else float(gap_sigma_mm)
        self.repair = bool(repair)
        self.epoch = 0
        w = self.window
        # slot i holds epoch (epoch - W + 1 + i); epochs <= 0 carry no unknowns (0 is known)
        self._lam = np.zeros((w, w, n_pixels))
        self._eta = np.zeros((w, n_pixels))
        # component ids: 0 = tied to epoch 0; merging keeps the min so the anchor wins
        # (pre-history slots get their own negative epoch index: unique, and never linked)
        self._comp = np.repeat(np.arange(-w + 1, 1, dtype=np.int32)[:, None], n_pixels, axis=1)
        self._est = np.zeros((w, n_pixels), dtype=np.float32)  # published estimate per slot (closures)
        self._last = np.zeros(n_pixels, dtype=np.float32)  # last finite published estimate (gap bridging)
        # interferograms inside the window, LOS mm with NaN = missing (the closures' direct links)
        self._store: dict[tuple[int, int], np.ndarray] = {}

    def _predecessors(self, pairs_to_new: Sequence | np.ndarray, k: int) -> list[int]:
        links = list(pairs_to_new.tolist() if isinstance(pairs_to_new, np.ndarray) else pairs_to_new)
        preds = []
        for p in links:
            t = tuple(int(v) for v in np.atleast_1d(p))
            if len(t) == 2 and t[1] != k:
                raise ValueError(f"pair {t} does not end at the new epoch {k}")
            if len(t) not in (1, 2):
                raise ValueError(f"each link is a predecessor index or (a, {k}), got {t}")
            a = t[0]
            if not 0 <= a < k:
                raise ValueError(f"predecessor {a} must be in [0, {k}) for new epoch {k}")
            if k - a > self.window:
                raise ValueError(f"link ({a}, {k}) spans {k - a} epochs, beyond the window of "
                                 f"{self.window} epochs (IncrementalInversion(window=...))")
            if a in preds:
                raise ValueError(f"two interferograms ({a}, {k}); give each pair once")
            preds.append(a)
        return preds

    def add_epoch(self, pairs_to_new: Sequence | np.ndarray, ifg_mm: np.ndarray,
                  weights: np.ndarray) -> EpochEstimate:
        """Add epoch ``self.epoch + 1`` with its interferograms from predecessors.

        Args:
            pairs_to_new: n_new predecessor epoch indices ``j`` (ints, or ``(j, k)`` tuples);
                none at all is allowed (the epoch is then undetermined: NaN).
            ifg_mm: (n_new, P) float LOS mm, ``d[k] - d[j]``.
            weights: (n_new, P) float >= 0, 0 = missing.

        Returns:
            :class:`EpochEstimate` for the new epoch, equal to the batch inversion of all data so far.
        """
        k = self.epoch + 1
        preds = self._predecessors(pairs_to_new, k)
        shape = (len(preds), self.n_pixels)
        ifg_mm = np.asarray(ifg_mm).reshape(shape) if not preds else np.atleast_2d(np.asarray(ifg_mm))
        weights = np.asarray(weights).reshape(shape) if not preds else np.atleast_2d(np.asarray(weights))
        if ifg_mm.shape != weights.shape:
            raise ValueError(f"ifg_mm {ifg_mm.shape} and weights {weights.shape} must have the same shape")
        if ifg_mm.shape != shape:
            raise ValueError(f"ifg_mm/weights must be (n_new={len(preds)}, P={self.n_pixels}), got {ifg_mm.shape}")
        with np.errstate(invalid="ignore"):
            if np.any(weights < 0):  # checked up front: a failed call must change nothing
                raise ValueError("weights must be >= 0 (0 = missing interferogram)")
        out = {name: np.empty(self.n_pixels, dtype) for name, dtype in
               (("disp", np.float64), ("n_ifg", np.int16), ("rms", np.float64), ("sigma", np.float64), ("flag", bool),
                ("removed", np.int8))}
        used = np.zeros(shape, dtype=bool)  # the new interferograms' pixels that enter the estimate

        def run(sl: slice) -> None:
            ifg, w = clean_inputs(ifg_mm[:, sl], weights[:, sl])
            values = self._add_chunk(k, preds, ifg, w, sl)
            for name, value in zip(("disp", "n_ifg", "rms", "sigma", "flag", "removed"), values):
                out[name][sl] = value
            used[:, sl] = values[-1]

        chunks = [slice(s, min(s + self.chunk_pixels, self.n_pixels)) for s in range(0, self.n_pixels, self.chunk_pixels)]
        if self.threads > 1 and len(chunks) > 1:
            # chunks touch disjoint pixel slices of the state, and numpy releases the GIL in their
            # whole-array operations: threads scale the filter over the cores
            with ThreadPoolExecutor(self.threads) as pool:
                list(pool.map(run, chunks))
        else:
            for sl in chunks:
                run(sl)
        for a, phi, ok in zip(preds, ifg_mm, used):
            # removed pixels are stored as missing: later loops never close on a bad pair
            self._store[(a, k)] = np.where(ok, phi, np.nan).astype(np.float32)
        self._store = {p: v for p, v in self._store.items() if p[0] > k - self.window}
        self.epoch = k
        return EpochEstimate(k, out["disp"], out["n_ifg"], out["rms"], out["sigma"], out["flag"], out["removed"])

    def _add_chunk(self, k: int, preds: list[int], ifg: np.ndarray, w: np.ndarray,
                   sl: slice) -> tuple[np.ndarray, ...]:
        """Update the pixels ``sl``; returns their (disp, n_ifg, rms, sigma, closure flag, removed
        count, (n_new, P) interferogram pixels used)."""
        W = self.window
        P = ifg.shape[1]
        unresolved = np.zeros(P, dtype=bool)
        removed = np.zeros(P, dtype=np.int8)
        if self.repair and len(preds) >= 2:
            # the value each interferogram implies for the new epoch, from its predecessor's estimate
            base = np.stack([np.zeros(P) if a == 0 else self._est[W - k + a, sl].astype(np.float64) for a in preds])
            valid0 = w > 0
            keep, unresolved = repair_links(base + ifg, valid0, self._last[sl].astype(np.float64))
            keep &= ~unresolved[None, :]  # loops that cannot be closed: none of the new data weighs
            removed = (valid0 & ~keep).sum(axis=0).astype(np.int8)
            w = np.where(keep, w, 0.0)
        # extend the window with the new epoch's unknown (slot W)
        lam = np.zeros((W + 1, W + 1, P))
        lam[:W, :W] = self._lam[:, :, sl]
        eta = np.zeros((W + 1, P))
        eta[:W] = self._eta[:, sl]
        comp = np.concatenate([self._comp[:, sl], np.full((1, P), k, dtype=np.int32)])
        slots = np.arange(k - W, k + 1)  # epoch held by each slot
        for a, wi, phi in zip(preds, w, ifg):
            s = W - (k - a)
            lam[W, W] += wi
            eta[W] += wi * phi
            if a > 0:  # epoch 0 is known (0 mm): its link only informs the new epoch
                lam[s, s] += wi
                lam[s, W] -= wi
                lam[W, s] -= wi
                eta[s] -= wi * phi
            v = wi > 0
            ca = comp[s] if a > 0 else np.zeros(P, dtype=comp.dtype)
            ck = comp[W].copy()
            hit = v[None, :] & ((comp == ca[None, :]) | (comp == ck[None, :]))
            comp = np.where(hit, np.minimum(ca, ck)[None, :], comp)
        if self.gap_sigma_mm is not None:
            # a component with data but no tie to epoch 0 is anchored at the pixel's last estimate
            bridge = (comp[W] != 0) & (w > 0).any(axis=0)
            wg = np.where(bridge, 1.0 / self.gap_sigma_mm**2, 0.0)
            lam[W, W] += wg
            eta[W] += wg * self._last[sl]
            comp = np.where(bridge[None, :] & (comp == comp[W][None, :]), 0, comp)
        # solve on a copy where slots not tied to epoch 0 are pinned (they are decoupled anyway)
        free = (comp != 0) | (slots <= 0)[:, None]
        a_mat = np.where(free[:, None, :] | free[None, :, :], 0.0, lam)
        idx = np.arange(W + 1)
        a_mat[idx, idx] += free
        x, var_new = cholesky_solve(a_mat, np.where(free, 0.0, eta))
        x[free & (slots > 0)[:, None]] = np.nan  # undetermined epochs
        tied = ~free[W]
        disp = np.where(tied, x[W], np.nan)
        sigma = np.where(tied, np.sqrt(np.maximum(var_new, 0.0)), np.nan)
        # residuals and closures of the new interferograms
        valid = w > 0
        n_ifg = valid.sum(axis=0)
        x0 = np.where((slots == 0)[:, None], 0.0, x)
        sq = np.zeros(P)
        for a, phi, v in zip(preds, ifg, valid):
            r = phi - (x0[W] - x0[W - (k - a)])
            sq += np.where(v, r * r, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            rms = np.where(n_ifg > 0, np.sqrt(sq / np.maximum(n_ifg, 1)), np.nan)
        flag = self._closure_flag(k, preds, ifg, valid, sl) | unresolved
        # remember, then marginalise the oldest epoch (Schur complement on a scalar)
        l_oo = lam[0, 0]
        scale = np.abs(lam[idx, idx]).max(axis=0)
        # PSD: l_oo == 0 means no coupling; a relative floor stops rounding residue from blowing up
        f = np.where(l_oo > 1e-12 * scale, 1.0 / np.where(l_oo > 0, l_oo, 1.0), 0.0)
        l_ro = lam[1:, 0]
        self._lam[:, :, sl] = lam[1:, 1:] - f * l_ro[:, None, :] * l_ro[None, :, :]
        self._eta[:, sl] = eta[1:] - f * l_ro * eta[0]
        self._comp[:, sl] = comp[1:]
        self._est[:-1, sl] = self._est[1:, sl]
        self._est[-1, sl] = disp
        self._last[sl] = np.where(tied, disp, self._last[sl])
        return disp, n_ifg, rms, sigma, flag, removed, valid

    def _closure_flag(self, k: int, preds: list[int], ifg: np.ndarray, valid: np.ndarray,
                      sl: slice) -> np.ndarray:
        """(P,) bool: |phi(j1,k) - phi(j2,k) - phi(j1,j2)| > half a cycle for some j1 < j2."""
        W = self.window
        P = ifg.shape[1]
        flag = np.zeros(P, dtype=bool)
        for i1, j1 in enumerate(preds):
            for i2, j2 in enumerate(preds):
                if not j1 < j2:
                    continue
                # estimate of d[j2] - d[j1] from what was published (slot of j = W - k + j)
                e1 = np.zeros(P) if j1 == 0 else self._est[W - k + j1, sl]
                hat = self._est[W - k + j2, sl] - e1
                if (j1, j2) in self._store:  # the direct interferogram is better where it exists
                    phi12 = self._store[(j1, j2)][sl]
                    hat = np.where(np.isfinite(phi12), phi12, hat)
                c = ifg[i1] - ifg[i2] - hat
                with np.errstate(invalid="ignore"):
                    flag |= valid[i1] & valid[i2] & (np.abs(c) > CLOSURE_THRESHOLD_MM)
        return flag

    # -- checkpoints ----------------------------------------------------------------------------
    def state_arrays(self) -> tuple[dict[str, object], dict[str, np.ndarray]]:
        """(meta, arrays) that :meth:`from_state_arrays` turns back into this exact filter.

        The information matrix is symmetric, so only its upper triangle is kept:
        arrays ``lam_triu`` (W(W+1)/2, P) float64, ``eta`` (W, P) float64, ``comp`` (W, P) int32,
        ``est`` (W, P) float32, ``last`` (P,) float32 and one ``ifg_<a>_<b>`` (P,) float32 per
        stored interferogram.
        """
        iu = np.triu_indices(self.window)
        arrays = {"lam_triu": np.ascontiguousarray(self._lam[iu]), "eta": self._eta, "comp": self._comp, "est": self._est,
                  "last": self._last}
        arrays.update({f"ifg_{a}_{b}": v for (a, b), v in self._store.items()})
        meta = {"kind": "IncrementalInversion", "epoch": self.epoch, "window": self.window, "n_pixels": self.n_pixels,
                "gap_sigma_mm": self.gap_sigma_mm, "repair": self.repair}
        return meta, arrays

    @classmethod
    def from_state_arrays(cls, meta: dict[str, object], arrays: dict[str, np.ndarray]) -> IncrementalInversion:
        """Rebuild a filter from :meth:`state_arrays` (ValueError when the arrays do not fit)."""
        if meta.get("kind") != "IncrementalInversion":
            raise ValueError(f"not an IncrementalInversion checkpoint: {meta.get('kind')!r}")
        inv = cls(int(meta["n_pixels"]), int(meta["window"]), meta.get("gap_sigma_mm"), bool(meta.get("repair", True)))
        W, P = inv.window, inv.n_pixels
        want = {"lam_triu": (W * (W + 1) // 2, P), "eta": (W, P), "comp": (W, P), "est": (W, P), "last": (P,)}
        for name, shape in want.items():
            if name not in arrays or arrays[name].shape != shape:
                raise ValueError(f"checkpoint array {name}: expected {shape}, got "
                                 f"{None if name not in arrays else arrays[name].shape}")
        iu = np.triu_indices(W)
        inv._lam[iu] = arrays["lam_triu"]
        inv._lam[(iu[1], iu[0])] = arrays["lam_triu"]
        inv._eta[:] = arrays["eta"]
        inv._comp[:] = arrays["comp"]
        inv._est[:] = arrays["est"]
        inv._last[:] = arrays["last"]
        inv.epoch = int(meta["epoch"])
        for name, v in arrays.items():
            if name.startswith("ifg_"):
                _, a, b = name.split("_")
                inv._store[(int(a), int(b))] = np.asarray(v, dtype=np.float32)
        return inv
