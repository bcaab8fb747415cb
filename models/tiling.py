"""Tiles of a frame: how a frame's per-pixel model and state are cut so that memory and every stored
value stay bounded, whatever the frame's size.

A :class:`Tiling` cuts the (n_lat, n_lon) grid into blocks of ``rows x cols`` pixels (the last row
and column of tiles may be smaller), numbered in raster order. Each tile holds the modelled pixels
that fall in it, in the grid's row-major order, so a tile's pixels are an increasing run of global
flat indices and the union of all tiles, taken tile by tile, is every modelled pixel once.

Everything per pixel is computed independently of which tile a pixel is in (a test checks that
a tiled and an untiled run give identical masks), and everything frame-wide (the common mode,
N_a, connected components) is computed on full-frame maps assembled from the tiles, so results do
not depend on the tiling. A tiling at least as large as the grid is the untiled case: one tile.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Default tile edge (pixels): a 512 x 512 tile of state is ~18 MB, of model ~6 MB.
DEFAULT_TILE = 512


@dataclass(frozen=True)
class Tiling:
    """Raster-order tiles of ``rows x cols`` pixels over an ``n_lat x n_lon`` grid."""

    n_lat: int
    n_lon: int
    rows: int
    cols: int

    def __post_init__(self) -> None:
        if min(self.n_lat, self.n_lon) < 1 or min(self.rows, self.cols) < 1:
            raise ValueError(f"a tiling needs a non-empty grid and tiles, got grid {self.n_lat}x{self.n_lon}, tile {self.rows}x{self.cols}")

    @classmethod
    def of(cls, shape: tuple[int, int], tile: int | tuple[int, int] = DEFAULT_TILE) -> Tiling:
        """Tiles of ``tile`` pixels (an edge, or (rows, cols)) over a grid of ``shape``; a tile larger
        than the grid is clipped to it (one tile)."""
        r, c = (tile, tile) if isinstance(tile, (int, np.integer)) else tile
        if int(r) < 1 or int(c) < 1:
            raise ValueError(f"the tile size must be >= 1 pixel, got {tile}")
        return cls(int(shape[0]), int(shape[1]), min(int(r), int(shape[0])), min(int(c), int(shape[1])))

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_lat, self.n_lon)

    @property
    def grid(self) -> tuple[int, int]:
        """Tiles along lat and along lon."""
        return (-(-self.n_lat // self.rows), -(-self.n_lon // self.cols))

    @property
    def n_tiles(self) -> int:
        g = self.grid
        return g[0] * g[1]

    def bounds(self, i: int) -> tuple[int, int, int, int]:
        """(r0, r1, c0, c1): tile ``i`` covers rows r0:r1 and columns c0:c1 of the grid."""
        if not 0 <= i < self.n_tiles:
            raise IndexError(f"tile {i} is not in 0..{self.n_tiles - 1}")
        tr, tc = divmod(i, self.grid[1])
        r0, c0 = tr * self.rows, tc * self.cols
        return r0, min(r0 + self.rows, self.n_lat), c0, min(c0 + self.cols, self.n_lon)

    def window(self, i: int) -> tuple[slice, slice]:
        r0, r1, c0, c1 = self.bounds(i)
        return slice(r0, r1), slice(c0, c1)

    def global_index(self, i: int, local_mask: np.ndarray) -> np.ndarray:
        """(p,) int64 global flat indices of the True pixels of a tile's (h, w) mask, increasing."""
        r0, r1, c0, c1 = self.bounds(i)
        if local_mask.shape != (r1 - r0, c1 - c0):
            raise ValueError(f"tile {i} is {r1 - r0}x{c1 - c0}, the mask is {local_mask.shape}")
        rows, cols = np.nonzero(local_mask)
        return ((rows + r0).astype(np.int64) * self.n_lon + (cols + c0)).astype(np.int64)

    def tile_of(self, flat_index: np.ndarray) -> np.ndarray:
        """Tile number of each global flat index."""
        rows, cols = np.divmod(np.asarray(flat_index, np.int64), self.n_lon)
        return (rows // self.rows) * self.grid[1] + cols // self.cols

    def to_dict(self) -> dict[str, int]:
        return {"n_lat": self.n_lat, "n_lon": self.n_lon, "rows": self.rows, "cols": self.cols}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tiling:
        return cls(int(d["n_lat"]), int(d["n_lon"]), int(d["rows"]), int(d["cols"]))


@dataclass
class TileModel:
    """The fitted per-pixel part of a frame's model for one tile; arrays are (p,) unless noted.

    ``index`` are the global flat indices of the tile's modelled pixels (increasing); ``coef``
    (p, 4) float32 the offset + velocity + annual trend (mm, mm/yr); ``scale`` the std of the
    departures from it (mm); ``sigma`` the one-step residual scale of eq. 3 (mm, NaN = not scored).
    """

    index: np.ndarray
    coef: np.ndarray
    scale: np.ndarray
    sigma: np.ndarray

    @property
    def n_pixels(self) -> int:
        return int(self.index.size)


def scatter_tiles(shape: tuple[int, int], parts: list[tuple[np.ndarray, np.ndarray]], fill: float = np.nan,
                  dtype: Any = np.float32) -> np.ndarray:
    """A (n_lat, n_lon) map from per-tile (global index, values) pairs; ``fill`` elsewhere."""
    out = np.full(shape[0] * shape[1], fill, dtype=dtype)
    for index, values in parts:
        out[index] = values
    return out.reshape(shape)


def pixel_keys(index: np.ndarray, seed: int) -> np.ndarray:
    """A seeded pseudo-random uint64 key per global flat index (splitmix64).

    Samples "the n pixels with the smallest keys" are the same whatever the tiling and whatever
    order the tiles are visited in, which keeps bounded-memory estimates independent of tiling.
    """
    with np.errstate(over="ignore"):
        z = np.asarray(index, np.uint64) + np.uint64(0x9E3779B97F4A7C15) * np.uint64(seed + 1)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))
