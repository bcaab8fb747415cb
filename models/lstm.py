"""Recurrent forecasters of a pixel's normalised series (paper step 2).

Both networks map the input at slot t, ``[x_t * o_t, o_t]`` (the normalised observation and its
observed flag; a gap enters as ``[0, 0]``), to a forecast of x_{t+1}. A missing slot therefore
advances the state without inventing an observation, and running k missing steps gives a
k-step forecast across a gap.

- :class:`SharedLSTM`: one set of weights for a whole frame, per-pixel recurrent state. Scales
  to millions of pixels: one step over 1M pixels is a single batched LSTM call.
- :class:`PerPixelLSTM`: one LSTM per pixel, as in the paper, trained jointly but
  independently (each pixel's loss only reaches its own weights). For small areas.

Shapes: T slots, B pixels in the batch, F = 2 input features, K layers, S hidden units.
"""
from __future__ import annotations

import math

import torch
from torch import nn

N_FEATURES = 2
MAX_LAYERS = 5
MAX_HIDDEN = 30

State = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (K, B, S)


def check_size(layers: int, hidden: int) -> None:
    """The paper's grid bounds: K <= 5 layers, S <= 30 hidden units."""
    if not (1 <= layers <= MAX_LAYERS and 1 <= hidden <= MAX_HIDDEN):
        raise ValueError(f"LSTM size K={layers}, S={hidden} is outside the grid K in 1..{MAX_LAYERS}, S in 1..{MAX_HIDDEN}")


class SharedLSTM(nn.Module):
    """One LSTM(F -> S, K layers) + linear head shared by every pixel of a frame."""

    kind = "shared"

    def __init__(self, layers: int = 1, hidden: int = 16, n_pixels: int | None = None) -> None:
        super().__init__()
        check_size(layers, hidden)
        self.layers, self.hidden = layers, hidden
        self.lstm = nn.LSTM(N_FEATURES, hidden, num_layers=layers)
        self.head = nn.Linear(hidden, 1)

    def init_state(self, n: int, device: torch.device | str = "cpu") -> State:
        z = torch.zeros(self.layers, n, self.hidden, device=device)
        return z, z.clone()

    def forward(self, x: torch.Tensor, state: State | None = None, pixels: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """Run a sequence.

        Args:
            x: (T, B, F) inputs.
            state: (h, c) each (K, B, S), zeros if None.
            pixels: ignored (shared weights); kept for the common interface.

        Returns:
            (forecasts (T, B) of the next slot, final state).
        """
        out, (h, c) = self.lstm(x, state)
        return self.apply_head(out), (h, c)

    def apply_head(self, out: torch.Tensor) -> torch.Tensor:
        """The linear head on (..., S) hidden states -> (...) forecasts, written out elementwise:
        a pixel's forecast then depends on its own state only, never on how many pixels share the
        call (a batched matrix product may sum in another order for another batch size)."""
        return (out * self.head.weight[0]).sum(-1) + self.head.bias[0]


class PerPixelLSTM(nn.Module):
    """Independent LSTM(F -> S, K layers) + head for each of ``n_pixels`` pixels."""

    kind = "per-pixel"

    def __init__(self, layers: int = 1, hidden: int = 16, n_pixels: int | None = None) -> None:
        super().__init__()
        check_size(layers, hidden)
        if not n_pixels:
            raise ValueError("a per-pixel LSTM needs n_pixels")
        self.layers, self.hidden, self.n_pixels = layers, hidden, n_pixels
        bound = 1.0 / math.sqrt(hidden)

        def uniform(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))

        self.w_ih = nn.ParameterList([uniform(n_pixels, 4 * hidden, N_FEATURES if k == 0 else hidden) for k in range(layers)])
        self.w_hh = nn.ParameterList([uniform(n_pixels, 4 * hidden, hidden) for _ in range(layers)])
        self.bias = nn.ParameterList([uniform(n_pixels, 4 * hidden) for _ in range(layers)])
        self.head_w = uniform(n_pixels, hidden)
        self.head_b = uniform(n_pixels)

    def init_state(self, n: int, device: torch.device | str = "cpu") -> State:
        z = torch.zeros(self.layers, n, self.hidden, device=device)
        return z, z.clone()

    def forward(self, x: torch.Tensor, state: State | None = None, pixels: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """Run a sequence; ``pixels`` (B,) selects which pixels' weights (all if None)."""
        t_len, b, _ = x.shape
        sel = (lambda p: p) if pixels is None else (lambda p: p[pixels])
        w_ih = [sel(w) for w in self.w_ih]
        w_hh = [sel(w) for w in self.w_hh]
        bias = [sel(w) for w in self.bias]
        hw, hb = sel(self.head_w), sel(self.head_b)
        if state is None:
            state = self.init_state(b, x.device)
        h = list(state[0].unbind(0))
        c = list(state[1].unbind(0))
        outs = []
        for t in range(t_len):
            inp = x[t]
            for k in range(self.layers):
                gates = torch.bmm(w_ih[k], inp.unsqueeze(-1)).squeeze(-1) + torch.bmm(w_hh[k], h[k].unsqueeze(-1)).squeeze(-1) + bias[k]
                i, f, g, o = gates.chunk(4, dim=-1)
                c[k] = torch.sigmoid(f) * c[k] + torch.sigmoid(i) * torch.tanh(g)
                h[k] = torch.sigmoid(o) * torch.tanh(c[k])
                inp = h[k]
            outs.append((inp * hw).sum(-1) + hb)
        return torch.stack(outs), (torch.stack(h), torch.stack(c))


def build_network(kind: str, layers: int, hidden: int, n_pixels: int | None = None) -> nn.Module:
    """Factory: ``kind`` is 'shared' or 'per-pixel'."""
    if kind == "shared":
        return SharedLSTM(layers, hidden)
    if kind == "per-pixel":
        return PerPixelLSTM(layers, hidden, n_pixels)
    raise ValueError(f"unknown model kind '{kind}'; use 'shared' or 'per-pixel'")


def make_inputs(xn: torch.Tensor) -> torch.Tensor:
    """(T, B) normalised series with NaN gaps -> (T, B, 2) inputs [x * o, o]."""
    obs = torch.isfinite(xn)
    return torch.stack([torch.where(obs, xn, torch.zeros_like(xn)), obs.to(xn.dtype)], dim=-1)
