"""A spatio-temporal denoiser front end on residual maps, after Rouet-Leduc et al. (2021): a trial.

Rouet-Leduc et al. (2021, Nat. Commun. 12, 6480) train a deep convolutional auto-encoder on
synthetic InSAR time series to return the ground deformation hidden in a window of noisy
acquisitions: the atmosphere changes from one acquisition to the next while its spatial
patterns (turbulence scale, the shape of the relief's stratified delay) repeat, so a network
that sees several epochs at once can separate a new coherent signal from them.

Here the same idea is a front end to the detector's screens, trained on each frame's own noise:

- **Input:** the last ``window`` calendar slots of a detector's residual z maps
  (``(D - P - common mode) / (sigma g(m))``, the score's own z), with a validity mask per slot,
  so missing acquisitions are inputs rather than inventions.
- **Output:** the new deformation in the last slot, in the same sigma units.
- **Training (self-supervised by injection):** windows of the frame's training z maps, which are
  its atmosphere, gaps and unwrapping errors, with random Okada sources (Mw ~5-6 sizes, random
  mechanism, depth and LOS) added to the last slot at 1.5-8 sigma: the network learns to return
  the injected signal and nothing of the noise. Some windows carry the source in an earlier
  slot instead, with a zero target, so that an event already scored does not echo in the
  windows after it.
- **Screens on the output:** the output is thresholded where the held-out training windows
  (never trained on) exceed it on a given share of pixels (:func:`calibrate_screen`); one-sign
  connected objects need more than max(N_a, the null floor), the floor calibrated on every
  object of those held-out windows (:func:`ladsdin.models.null_floor.exceedance_floor`).

``benchmarks/denoise_bench.py`` measures whether this lowers the detection floor against the
same detectors without it (docs/BENCHMARKS.md). It is not wired into ``detect`` or the stream.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from ladsdin.models.labelling import label_objects, object_sizes
from ladsdin.models.null_floor import NullObjects, exceedance_floor
from ladsdin.models.simulation.okada import Fault, fault_displacement

#: z beyond this is clipped at the input (unwrapping errors and steps saturate, they do not dominate)
Z_CLIP = 8.0
#: one-sided LOS unit vectors (E, N, U) of Sentinel-1 ascending and descending tracks
LOS_VECTORS = ((-0.62, -0.13, 0.77), (0.62, -0.13, 0.77))


@dataclass(frozen=True)
class DenoiserConfig:
    """The trial's settings."""

    window: int = 6  # calendar slots the network sees, the last one being denoised
    patch: int = 64  # training crop, pixels (a multiple of 4)
    width: int = 16  # channels of the first level
    steps: int = 600
    batch: int = 16
    lr: float = 2e-3
    signal_share: float = 0.5  # share of training windows with a source injected in the last slot
    earlier_share: float = 0.2  # share with one in an earlier slot, which the output must ignore
    amp_range: tuple[float, float] = (1.5, 8.0)  # injected peak, sigma units
    held_out: float = 0.4  # share of the training slots (the last ones) kept for calibration
    bank: int = 256  # injected source shapes drawn per frame
    seed: int = 0


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.ReLU(inplace=True))


class Denoiser(nn.Module):
    """A two-level convolutional encoder-decoder (U-Net skips): (B, 2W, H, W) -> (B, 1, H, W).

    H and W must be multiples of 4 (:func:`denoise_maps` pads). The receptive field is ~40
    pixels, 10 km at 250 m: the scale of a Mw 5.5-6 source and of the turbulence around it.
    """

    def __init__(self, window: int, width: int = 32) -> None:
        super().__init__()
        self.enc1 = _block(2 * window, width)
        self.enc2 = _block(width, 2 * width)
        self.mid = _block(2 * width, 2 * width)
        self.dec2 = _block(4 * width, 2 * width)
        self.dec1 = _block(3 * width, width)
        self.out = nn.Conv2d(width, 1, 1)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        m = self.mid(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up(m), e2], 1))
        d1 = self.dec1(torch.cat([self.up(d2), e1], 1))
        return self.out(d1)


def source_bank(rng: np.random.Generator, n: int, patch: int, dy_km: float, dx_km: float) -> np.ndarray:
    """(n, patch, patch) float32 LOS patterns of random rectangular sources, peak |value| 1.

    Strike and rake uniform, dip 30-90°, length 3-15 km, top 0.5-4 km, down-dip extent 2-8 km,
    centred within 3 km of the patch centre, seen from an ascending or a descending track.
    """
    north = (np.arange(patch) - patch / 2.0)[:, None] * dy_km
    east = (np.arange(patch) - patch / 2.0)[None, :] * dx_km
    out = np.zeros((n, patch, patch), np.float32)
    for i in range(n):
        top = rng.uniform(0.5, 4.0)
        f = Fault(east_km=rng.uniform(-3, 3), north_km=rng.uniform(-3, 3), strike_deg=rng.uniform(0, 360),
                  dip_deg=rng.uniform(30, 90), length_km=rng.uniform(3, 15), top_km=top, bottom_km=top + rng.uniform(2, 8),
                  rake_deg=rng.uniform(-180, 180), slip_m=1.0)
        ue, un, uz = fault_displacement(east, north, f)
        e = LOS_VECTORS[int(rng.integers(2))]
        los = e[0] * ue + e[1] * un + e[2] * uz
        peak = float(np.abs(los).max())
        out[i] = (los / peak if peak > 0 else los).astype(np.float32)
    return out


def _inputs(z: np.ndarray) -> np.ndarray:
    """(W, h, w) z with NaN -> (2W, h, w) float32: clipped z (0 where missing), then masks."""
    ok = np.isfinite(z)
    return np.concatenate([np.where(ok, np.clip(z, -Z_CLIP, Z_CLIP), 0.0), ok], 0).astype(np.float32)


def train_denoiser(z: np.ndarray, fit_slots: np.ndarray, dy_km: float, dx_km: float, cfg: DenoiserConfig = DenoiserConfig(),
                   progress: Callable[[int, float], None] | None = None) -> Denoiser:
    """Train on windows ending at ``fit_slots`` of the frame's z stack ``z`` (T, H, W) (NaN = no data).

    Returns:
        The trained network (eval mode, CPU).
    """
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    bank = source_bank(rng, cfg.bank, cfg.patch, dy_km, dx_km)
    w, p = cfg.window, cfg.patch
    _, n_lat, n_lon = z.shape
    if n_lat < p or n_lon < p:
        raise ValueError(f"frame {n_lat}x{n_lon} is smaller than the {p}-pixel training patch")
    ends = np.asarray([t for t in fit_slots if t >= w - 1 and np.isfinite(z[t]).mean() > 0.3])
    if ends.size == 0:
        raise ValueError("no training window with a mostly observed last slot")
    net = Denoiser(w, cfg.width)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    net.train()
    for step in range(cfg.steps):
        xs, ys, ms = [], [], []
        for _ in range(cfg.batch):
            t = int(ends[rng.integers(ends.size)])
            r0, c0 = int(rng.integers(n_lat - p + 1)), int(rng.integers(n_lon - p + 1))
            win = z[t - w + 1:t + 1, r0:r0 + p, c0:c0 + p].copy()
            k = int(rng.integers(4))
            win = np.rot90(win, k, axes=(1, 2))
            if rng.random() < 0.5:
                win = win[:, :, ::-1]
            sig = np.zeros((p, p), np.float32)
            u = rng.random()
            if u < cfg.signal_share + cfg.earlier_share:
                src = bank[rng.integers(bank.shape[0])] * np.float32(rng.uniform(*cfg.amp_range) * rng.choice((-1.0, 1.0)))
                win = win.copy()
                if u < cfg.signal_share:  # a new step in the last slot: the target
                    win[-1] = win[-1] + src
                    sig = src
                else:  # a step in an earlier slot (already reported, re-anchored after): not a target
                    win[int(rng.integers(w - 1))] += src
            ok = np.isfinite(win[-1])
            xs.append(_inputs(win))
            ys.append(np.where(ok, sig, 0.0))
            ms.append(ok)
        x = torch.from_numpy(np.stack(xs))
        y = torch.from_numpy(np.stack(ys)[:, None].astype(np.float32))
        m = torch.from_numpy(np.stack(ms)[:, None].astype(np.float32))
        loss = (((net(x) - y) ** 2) * m).sum() / m.sum().clamp(min=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if progress is not None and (step % 100 == 0 or step == cfg.steps - 1):
            progress(step, float(loss.detach()))
    return net.eval()


@torch.no_grad()
def denoise_maps(net: Denoiser, z: np.ndarray, ends: np.ndarray, window: int) -> np.ndarray:
    """(len(ends), H, W) float32: the network's output for the windows ending at ``ends``; NaN
    where the last slot has no data (and for windows that start before slot 0)."""
    _, n_lat, n_lon = z.shape
    ph, pw = (-n_lat) % 4, (-n_lon) % 4
    out = np.full((len(ends), n_lat, n_lon), np.nan, np.float32)
    for i, t in enumerate(ends):
        t = int(t)
        if t < window - 1:
            continue
        x = np.pad(_inputs(z[t - window + 1:t + 1]), ((0, 0), (0, ph), (0, pw)))
        y = net(torch.from_numpy(x)[None])[0, 0, :n_lat, :n_lon].numpy()
        out[i] = np.where(np.isfinite(z[t]), y, np.nan)
    return out


@dataclass
class DenoisedScreen:
    """The screens on the denoiser's output, calibrated on held-out training windows."""

    scale: float  # the output's threshold over N_m, sigma units (:func:`calibrate_screen`)
    nm: float
    min_object: int  # objects need more pixels than this: max(N_a, floor)
    floor_info: dict
    connectivity: int = 4

    def _labels(self, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One-sign objects of one output map (H, W) above the threshold: (labels, sizes)."""
        zd = d / self.scale
        with np.errstate(invalid="ignore"):
            hit = np.isfinite(zd) & (np.abs(zd) > self.nm)
        labels, n = label_objects(hit, zd > 0, self.connectivity)
        return labels, object_sizes(labels, n)

    def sizes(self, d: np.ndarray) -> np.ndarray:
        """Pixel counts of every object of one output map, whatever the floor."""
        return self._labels(d)[1]

    def objects(self, d: np.ndarray) -> list[np.ndarray]:
        """The seismic objects of one output map (H, W): a list of bool masks."""
        labels, sizes = self._labels(d)
        return [labels == (j + 1) for j in np.flatnonzero(sizes > self.min_object)]


#: per-pixel rate at which the held-out null exceeds the output's threshold (the trial's operating point)
P_PIXEL = 1e-3


def calibrate_screen(held_out: np.ndarray, nm: float, n_a: int, rate: float, step_days: int, connectivity: int = 4,
                     p_pixel: float = P_PIXEL) -> DenoisedScreen:
    """The output's threshold and object floor on ``held_out`` (S, H, W) outputs of null windows.

    The output is far from Gaussian (near 0 on most pixels, smooth, heavy-tailed where the
    atmosphere resembles a source), so its threshold is a quantile: the |output| that the
    held-out null exceeds on a share ``p_pixel`` of its pixels (``scale`` = threshold / N_m).
    At the Gaussian rate of N_m (2 Phi(-4) = 6e-5) the smooth output leaves only a handful of
    null objects per frame, too few to fit a floor, hence the default 1e-3. The floor is then
    :func:`ladsdin.models.null_floor.exceedance_floor` over every held-out object.
    """
    v = np.abs(held_out[np.isfinite(held_out)])
    tau = float(np.quantile(v, 1.0 - p_pixel)) if v.size else nm
    scale = max(tau / nm, 1e-3)
    shape = held_out.shape[1:]
    null = NullObjects(shape, held_out.shape[0], nm, connectivity, True)
    null.add(np.arange(shape[0] * shape[1]), (held_out / scale).reshape(held_out.shape[0], -1))
    floor, info = exceedance_floor(*null.sizes(), rate, step_days)
    return DenoisedScreen(scale, nm, max(n_a, floor), {**info, "threshold_sigma": round(tau, 4), "p_pixel": p_pixel},
                          connectivity)
