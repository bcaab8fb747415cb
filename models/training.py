"""Training of the recurrent forecasters: Adam, MSE, early stopping, bounded grid search.

The loss is the one-step forecast error of normalised displacement. Inputs are randomly hidden
during training (targets stay), so the network also learns the multi-step forecasts it must make
across gaps. One frame's pixels share only ~100 atmosphere draws, so validation loss (the last
slots of the training period, forecast one step ahead from observed history) bottoms out after a
handful of passes: training stops when it has not improved for ``patience`` passes.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ladsdin.models.lstm import build_network, make_inputs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (defaults tuned on simulated LiCSAR frames)."""

    kind: str = "shared"
    grid: tuple[tuple[int, int], ...] = ((1, 16),)  # (K layers, S hidden) candidates
    max_passes: int = 40
    patience: int = 4
    batch_pixels: int = 256
    lr: float = 5e-3
    input_dropout: float = 0.15
    val_fraction: float = 0.2
    train_pixels: int = 20_000  # shared model: the seeded sample of pixels the network is fitted on
    # A pass (the unit of early stopping) draws at least this many pixel series, cycling the
    # training pixels: 0 = each once. A frame larger than train_pixels trains on its sample with
    # sample_pass_pixels, so the sample gets as many gradient steps per pass as a large frame's
    # every pixel would (without it, a 20,000-pixel sample stops after a few hundred steps).
    pass_pixels: int = 0
    sample_pass_pixels: int = 262_144
    calibration_pixels: int = 100_000  # seeded sample behind the common mode, sigma calibration and g(m) while fitting
    seed: int = 0


@dataclass
class TrainReport:
    layers: int
    hidden: int
    passes: int
    best_pass: int
    train_loss: float
    val_loss: float
    seconds: float
    history: list[tuple[float, float]] = field(default_factory=list)


def _masked_mse(pred: torch.Tensor, target: torch.Tensor, reduce_pixels: bool = True) -> torch.Tensor:
    """Mean squared error over finite targets; (T, B) -> scalar, or (B,) if not reduce_pixels."""
    ok = torch.isfinite(target)
    err = torch.where(ok, pred - torch.nan_to_num(target), torch.zeros_like(pred)) ** 2
    if reduce_pixels:
        return err.sum() / ok.sum().clamp(min=1)
    return err.sum(0) / ok.sum(0).clamp(min=1)


def _losses(net: nn.Module, xn: torch.Tensor, n_fit: int, pixels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel (fit, val) one-step MSE of a full pass without dropout; (B,) each."""
    pred, _ = net(make_inputs(xn[:-1]), pixels=pixels)
    target = xn[1:]
    return _masked_mse(pred[: n_fit - 1], target[: n_fit - 1], False), _masked_mse(pred[n_fit - 1 :], target[n_fit - 1 :], False)


def train_one(
    xn: np.ndarray, layers: int, hidden: int, cfg: TrainConfig, device: torch.device, progress: bool = False
) -> tuple[nn.Module, TrainReport]:
    """Fit one network to normalised training series.

    Args:
        xn: (T, B) float32 normalised displacement over the training slots, NaN = gap. The first
            ``(1 - val_fraction)`` of slots are fitted; the rest only validate.
        layers, hidden: K and S.

    Returns:
        (the network at its best validation pass, in eval mode; the report).
    """
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    n_slots, n_pix = xn.shape
    n_fit = int(round(n_slots * (1.0 - cfg.val_fraction)))
    if n_fit < 8 or n_slots - n_fit < 2:
        raise ValueError(f"{n_slots} training slots are too few to fit and validate a forecaster (need >= 10)")
    per_pixel = cfg.kind == "per-pixel"
    net = build_network(cfg.kind, layers, hidden, n_pix if per_pixel else None).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    x_all = torch.from_numpy(np.ascontiguousarray(xn, dtype=np.float32)).to(device)
    fit_target = x_all[1:n_fit]
    batch = n_pix if per_pixel else min(cfg.batch_pixels, n_pix)

    best_val = torch.full((n_pix,) if per_pixel else (1,), float("inf"), device=device)
    best_state = copy.deepcopy(net.state_dict())
    report = TrainReport(layers, hidden, 0, 0, float("nan"), float("nan"), 0.0)
    stale = 0
    bar = tqdm(range(cfg.max_passes), desc=f"train {cfg.kind} K={layers} S={hidden}", disable=not progress, leave=False)
    for p in bar:
        net.train()
        reps = max(1, -(-cfg.pass_pixels // n_pix))
        order = torch.cat([torch.randperm(n_pix, generator=gen) for _ in range(reps)]).to(device) if not per_pixel else None
        for start in range(0, n_pix * (1 if per_pixel else reps), batch):
            idx = order[start : start + batch] if order is not None else None
            xb = x_all[:n_fit, idx] if idx is not None else x_all[:n_fit]
            hide = torch.rand(xb.shape, generator=gen).to(device) < cfg.input_dropout
            inp = make_inputs(torch.where(hide, torch.full_like(xb, float("nan")), xb)[:-1])
            pred, _ = net(inp, pixels=None)
            tgt = fit_target[:, idx] if idx is not None else fit_target
            loss = _masked_mse(pred, tgt, reduce_pixels=not per_pixel)
            opt.zero_grad(set_to_none=True)
            (loss.sum() if per_pixel else loss).backward()
            nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
        net.eval()
        with torch.no_grad():
            fit_l, val_l = _losses(net, x_all, n_fit, None)
        val_now = val_l if per_pixel else val_l.mean().reshape(1)
        improved = val_now < best_val - 1e-5
        if per_pixel:
            # Per-pixel early stopping: each pixel keeps the weights of its own best pass.
            if improved.any():
                sd = net.state_dict()
                for k, v in sd.items():
                    best_state[k][improved] = v[improved].detach().clone()
                best_val = torch.where(improved, val_now, best_val)
        elif bool(improved):
            best_val = val_now
            best_state = copy.deepcopy(net.state_dict())
        report.history.append((float(fit_l.mean()), float(val_l.mean())))
        report.passes = p + 1
        if bool(improved.any()):
            report.best_pass, stale = p + 1, 0
        else:
            stale += 1
        bar.set_postfix(fit=f"{report.history[-1][0]:.3f}", val=f"{report.history[-1][1]:.3f}")
        if stale >= cfg.patience:
            break
    net.load_state_dict(best_state)
    net.eval()
    with torch.no_grad():
        fit_l, val_l = _losses(net, x_all, n_fit, None)
    report.train_loss, report.val_loss = float(fit_l.mean()), float(val_l.mean())
    report.seconds = time.perf_counter() - t0
    log.info("trained %s K=%d S=%d: %d passes (best %d), fit %.4f val %.4f, %.1fs", cfg.kind, layers, hidden, report.passes, report.best_pass, report.train_loss, report.val_loss, report.seconds)
    return net, report


def grid_search(xn: np.ndarray, cfg: TrainConfig, device: torch.device, progress: bool = False) -> tuple[nn.Module, TrainReport, list[TrainReport]]:
    """Train every (K, S) in ``cfg.grid`` and keep the lowest validation loss (paper: K <= 5, S <= 30).

    Returns:
        (best network, its report, reports of all candidates).
    """
    if not cfg.grid:
        raise ValueError("the grid of (layers, hidden) candidates is empty")
    results: list[tuple[nn.Module, TrainReport]] = [train_one(xn, k, s, cfg, device, progress) for k, s in cfg.grid]
    best = min(results, key=lambda r: r[1].val_loss)
    return best[0], best[1], [r for _, r in results]
