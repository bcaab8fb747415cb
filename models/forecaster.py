"""The per-pixel forecaster P_k: trend normalisation + LSTM + calibrated sigma + gap factors.

For pixel p at slot k the forecast (LOS mm, +towards satellite) is

    P_k = trend_p(k) + offset_p + scale_p * f(x_{<k})

where ``trend`` is the pixel's offset + velocity + annual fit on its training epochs, ``scale``
the std of the departures from it, ``f`` the LSTM's forecast of the normalised departure from
the pixel's own observed history, and ``offset`` the level shift learned from confirmed steps
(re-anchoring; DESIGN.md §1). sigma (eq. 3) is the std of *one-step-ahead* residuals, the same
kind of residual that scoring uses, calibrated on held-out training epochs
(:mod:`ladsdin.models.bootstrap` fits all of it).

The recurrent state is kept lean, the same in memory and in storage: h and c in float16 (the
network computes in float32 and rounds its new state), no stored forecast (``f`` is the head of
the last layer's h, recomputed when needed), and only modelled pixels. A stored and a reloaded
state therefore forecast exactly what an unstored one does.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ladsdin.models.baseline import evaluate_trend
from ladsdin.models.cleaning import Calendar
from ladsdin.models.lstm import make_inputs

log = logging.getLogger(__name__)

#: Slots at the start of the record whose forecasts are ignored while the state spins up.
BURN_IN = 6
#: Longest gap (slots) whose forecast error is measured; longer gaps reuse the last factor.
MAX_GAP = 8
#: Pixels per chunk when the network runs over whole sequences: bounds the (T, chunk, S) activations.
CHUNK = 16_384
#: Storage (and in-memory) dtype of the recurrent state h and c.
STATE_DTYPE = torch.float16
#: Dtype of a pending step (mm): 0.25 mm resolution at 500 mm, far below any threshold.
STEP_DTYPE = torch.float16
#: The post-event regime's sigma factor of a model that did not measure its own (white residuals).
TRACK_FACTOR_DEFAULT = float(np.sqrt(2.0))


@dataclass
class PixelState:
    """Recurrent state of p modelled pixels after slot ``slot`` (tensors on the model device).

    h, c: (K, p, S) float16; since_obs: (p,) int32 slots since the pixel's last observation
    (0 = observed at ``slot``); offset: (p,) float32 mm, the re-anchoring level shift;
    last_step: (p,) float16 mm, the corrected residual of the pixel's last observation when it
    was anomalous and not re-anchored (a step awaiting confirmation), NaN otherwise.

    The post-event regime (DESIGN.md §1; :mod:`ladsdin.models.scoring`): ``post`` (p,) uint8
    slots left in it (0 = normal), ``after_mm`` (p,) float16 the motion tracked since the pixel
    entered it (afterslip, mm; 0 outside it) and ``after_rep`` (p,) float16 the part of it already
    reported in an afterslip alert.
    """

    h: torch.Tensor
    c: torch.Tensor
    since_obs: torch.Tensor
    offset: torch.Tensor
    slot: int
    last_step: torch.Tensor | None = None
    post: torch.Tensor | None = None
    after_mm: torch.Tensor | None = None
    after_rep: torch.Tensor | None = None

    def __post_init__(self) -> None:
        dev, shape = self.offset.device, self.offset.shape
        if self.last_step is None:
            self.last_step = torch.full(shape, float("nan"), dtype=STEP_DTYPE, device=dev)
        if self.post is None:
            self.post = torch.zeros(shape, dtype=torch.uint8, device=dev)
        if self.after_mm is None:
            self.after_mm = torch.zeros(shape, dtype=STEP_DTYPE, device=dev)
        if self.after_rep is None:
            self.after_rep = torch.zeros(shape, dtype=STEP_DTYPE, device=dev)

    @property
    def n_pixels(self) -> int:
        return int(self.offset.shape[0])


@dataclass
class Forecaster:
    """A fitted forecaster for P pixels of one frame (or of one tile). Arrays are (P,) unless noted."""

    net: nn.Module
    calendar: Calendar
    coef: np.ndarray  # (P, 4) float32 trend coefficients, mm and mm/yr
    scale: np.ndarray  # (P,) float32 mm
    sigma: np.ndarray  # (P,) float32 mm, NaN = not scored
    gap_factor: np.ndarray  # (MAX_GAP,) float32, g(m) for an m-step forecast, g(1) = 1
    device: torch.device
    report: dict[str, Any] = field(default_factory=dict)
    #: sigma of the post-event regime's forecast ("last value + the model's increment") over
    #: sigma (eq. 3), from the training residuals (sqrt 2 for white residuals)
    track_factor: float = TRACK_FACTOR_DEFAULT
    #: the largest plausible common mode of an epoch, mm (``thresholds.common_mode_bound`` of the
    #: training epochs'; inf = unbounded, as models stored before it)
    cm_bound_mm: float = float("inf")

    @property
    def n_pixels(self) -> int:
        return int(self.scale.size)

    def with_pixels(self, coef: np.ndarray, scale: np.ndarray, sigma: np.ndarray) -> Forecaster:
        """The same network, calendar and gap factors over other pixels (one tile's)."""
        return dataclasses.replace(self, coef=coef, scale=scale, sigma=sigma)

    def trend(self, slot: int) -> torch.Tensor:
        """Trend of every pixel at ``slot``, (P,) float32 mm on the model device."""
        return torch.from_numpy(evaluate_trend(self.coef, self.calendar.years(np.array([slot])))[0]).to(self.device)

    def widen(self, horizon: torch.Tensor) -> torch.Tensor:
        """g(m) per pixel for forecast horizons m >= 1, (P,) float32."""
        g = torch.from_numpy(self.gap_factor).to(self.device)
        return g[(horizon.clamp(min=1, max=len(self.gap_factor)) - 1).long()]

    def init_state(self) -> PixelState:
        h, c = self.net.init_state(self.n_pixels, self.device)
        return PixelState(h.to(STATE_DTYPE), c.to(STATE_DTYPE), torch.zeros(self.n_pixels, dtype=torch.int32, device=self.device),
                          torch.zeros(self.n_pixels, device=self.device), -1)

    @torch.no_grad()
    def head(self, h: torch.Tensor) -> torch.Tensor:
        """The network's normalised forecast of the next slot from a state's h, (P,) float32."""
        last = h[-1].float()
        if self.net.kind == "shared":
            return self.net.apply_head(last)
        return (last * self.net.head_w).sum(-1) + self.net.head_b

    @torch.no_grad()
    def predict(self, state: PixelState) -> tuple[torch.Tensor, torch.Tensor]:
        """Forecast slot ``state.slot + 1``: (P_k (P,) mm, horizon m (P,) int32 = slots since last obs + 1)."""
        k = state.slot + 1
        p = self.trend(k) + state.offset + torch.from_numpy(self.scale).to(self.device) * self.head(state.h)
        return p, state.since_obs + 1

    @torch.no_grad()
    def advance(self, state: PixelState, obs: torch.Tensor | None) -> PixelState:
        """Feed slot ``state.slot + 1``: ``obs`` (P,) mm with NaN = not observed, or None for a
        missing acquisition. Observations always advance the state, anomalous or not."""
        k = state.slot + 1
        scale = torch.from_numpy(self.scale).to(self.device)
        if obs is None:
            xn = torch.full((self.n_pixels,), float("nan"), device=self.device)
        else:
            xn = (obs - self.trend(k) - state.offset) / scale
        hc = (state.h.float(), state.c.float())
        if self.net.kind == "shared":  # the recurrence only: the forecast is the head of h, taken when needed
            _, (h, c) = self.net.lstm(make_inputs(xn[None]), hc)
        else:
            _, (h, c) = self.net(make_inputs(xn[None]), hc)
        seen = torch.isfinite(xn)
        since = torch.where(seen, torch.zeros_like(state.since_obs), state.since_obs + 1)
        post = (state.post.to(torch.int16) - 1).clamp(min=0).to(torch.uint8)  # one slot of the regime spent
        return PixelState(h.to(STATE_DTYPE), c.to(STATE_DTYPE), since, state.offset, k, state.last_step,
                          post, state.after_mm, state.after_rep)

    @torch.no_grad()
    def run_sequence(self, xn: np.ndarray, pixels: np.ndarray | None = None, chunk: int = CHUNK) -> tuple[np.ndarray, tuple[torch.Tensor, torch.Tensor]]:
        """Run the network over normalised series (T, B) from a zero state.

        Args:
            xn: (T, B) float32 normalised departures, NaN = gap.
            pixels: (B,) indices of these columns among the model's pixels (per-pixel models
                only; default all pixels in order).

        Returns:
            (forecasts (T, B) float32 where row t is the forecast *of* slot t made after slot
            t-1 (row 0, with no history, is 0: the trend itself), final (h, c) each (K, B, S)
            float32). Each column is computed independently of the others (and of ``chunk``).
        """
        n_t, n_p = xn.shape
        out = np.zeros((n_t, n_p), dtype=np.float32)
        per_pixel = self.net.kind == "per-pixel"
        if per_pixel and pixels is None:
            pixels = np.arange(n_p)
        hs, cs = [], []
        for s in range(0, n_p, chunk):
            x = torch.from_numpy(np.ascontiguousarray(xn[:, s : s + chunk])).to(self.device)
            sel = torch.from_numpy(pixels[s : s + chunk]).to(self.device) if per_pixel else None
            pred, (h, c) = self.net(make_inputs(x), pixels=sel)
            out[1:, s : s + chunk] = pred[:-1].cpu().numpy()
            hs.append(h)
            cs.append(c)
        if not hs:
            z = self.net.init_state(0, self.device)
            return out, z
        return out, (torch.cat(hs, 1), torch.cat(cs, 1))
