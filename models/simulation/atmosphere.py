"""Random fields for the simulator: fractal DEM, tropospheric delay, orbital ramps, unwrapping errors.

All fields are synthesised spectrally (inverse FFT of filtered complex white noise), which is
the usual way to draw stationary Gaussian fields with a power-law spectrum; see Hanssen (2001),
"Radar Interferometry", Kluwer, §4.7 (tropospheric power spectrum, slope -8/3 at scales below a
few km) and Lohman & Simons (2005, G-cubed 6, Q01007) for the covariance of InSAR noise.
The turbulence uses a von Kármán spectrum P(k) ∝ (k² + k0²)^(-4/3), i.e. a Matérn covariance
with ν = 1/3 whose correlation falls to 1/e at r = 0.697/k0; k0 is set from ``correlation_km``.
Grid axes are (lat, lon) = (rows, columns); spacings are in km.
"""
from __future__ import annotations

import numpy as np

#: x at which the Matérn(ν = 1/3) correlation x^ν K_ν(x) / lim equals 1/e (solved numerically).
_MATERN13_E_FOLD = 0.6967
#: Kolmogorov 2-D spectral slope of a thin turbulent layer (Hanssen 2001, §4.7).
KOLMOGOROV_BETA = 8.0 / 3.0


def spectral_filter(shape: tuple[int, int], dy_km: float, dx_km: float, beta: float,
                    k0: float) -> np.ndarray:
    """Amplitude filter sqrt(P(k)) with P(k) ∝ (k² + k0²)^(-beta/2), zero at k = 0.

    Args:
        shape: (n_lat, n_lon) of the field.
        dy_km, dx_km: row and column spacing, km.
        beta: spectral slope; k0: roll-off angular wavenumber, rad/km.

    Returns:
        (n_lat, n_lon // 2 + 1) float32, for :func:`numpy.fft.irfft2`.
    """
    ky = 2.0 * np.pi * np.fft.fftfreq(shape[0], d=dy_km)
    kx = 2.0 * np.pi * np.fft.rfftfreq(shape[1], d=dx_km)
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    amp = (k2 + k0 * k0) ** (-beta / 4.0)
    amp[0, 0] = 0.0  # the mean is set by the caller, not drawn
    return amp.astype(np.float32)


def unit_field(rng: np.random.Generator, filt: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """One Gaussian random field with the spectrum of ``filt``, normalised to zero mean and unit
    spatial standard deviation over the grid.

    Returns:
        (n_lat, n_lon) float32, dimensionless.
    """
    spec = np.empty(filt.shape, dtype=np.complex64)
    spec.real = rng.standard_normal(filt.shape, dtype=np.float32)
    spec.imag = rng.standard_normal(filt.shape, dtype=np.float32)
    spec *= filt
    field = np.fft.irfft2(spec, s=shape).astype(np.float32, copy=False)
    field -= field.mean(dtype=np.float64)
    std = float(field.std(dtype=np.float64))
    if std > 0:
        field *= np.float32(1.0 / std)
    return field


class Turbulence:
    """Draws turbulent tropospheric delay maps (von Kármán / Kolmogorov spectrum).

    Args:
        shape: (n_lat, n_lon).
        dy_km, dx_km: pixel spacing, km.
        correlation_km: distance at which the correlation falls to 1/e (DESIGN.md §2: ~4 km).
    """

    def __init__(self, shape: tuple[int, int], dy_km: float, dx_km: float,
                 correlation_km: float = 4.0) -> None:
        if correlation_km <= 0:
            raise ValueError(f"correlation_km={correlation_km} must be > 0")
        self.shape = shape
        self.correlation_km = correlation_km
        # the infinite-domain Matérn value; on a finite frame each normalised draw decorrelates a
        # little sooner (measured 1/e at ~3 km on a 50 km frame, ~4 km on a 200 km frame)
        self.k0 = _MATERN13_E_FOLD / correlation_km
        self._filt = spectral_filter(shape, dy_km, dx_km, KOLMOGOROV_BETA, self.k0)

    def unit(self, rng: np.random.Generator) -> np.ndarray:
        """(n_lat, n_lon) float32, zero mean, unit spatial std; multiply by the std in mm."""
        return unit_field(rng, self._filt, self.shape)


def synthetic_dem(rng: np.random.Generator, shape: tuple[int, int], dy_km: float, dx_km: float,
                  mean_m: float, std_m: float, beta: float = 3.6, outer_km: float = 60.0) -> np.ndarray:
    """A fractal (fractional-Brownian) DEM: P(k) ∝ k^-beta, beta = 2 + 2H with H ≈ 0.8, as
    measured for mountain topography (e.g. Turcotte 1997, "Fractals and Chaos in Geology").

    The heights are skewed so that basins are flat and ridges sharp, as on the Tibetan plateau.

    Returns:
        (n_lat, n_lon) float32, metres above sea level, spatial mean ``mean_m``, std ``std_m``.
    """
    z = unit_field(rng, spectral_filter(shape, dy_km, dx_km, beta, 2.0 * np.pi / outer_km), shape)
    z = z + np.float32(0.25) * z * z
    z -= z.mean(dtype=np.float64)
    z *= np.float32(std_m / max(float(z.std(dtype=np.float64)), 1e-6))
    return (z + np.float32(mean_m)).astype(np.float32)


def stratified_coefficient(day_of_year: np.ndarray, amplitude_mm_per_km: float, peak_doy: float,
                           jitter: np.ndarray) -> np.ndarray:
    """Height-delay coefficient per epoch, LOS mm per km of height above the frame mean.

    A seasonal cycle (wettest, largest delay gradient near ``peak_doy``) plus per-epoch jitter;
    multiply by (h - mean h) in km to get LOS mm (more delay over low ground reads as motion
    away from the satellite there). DESIGN.md §2: ±10–15 mm over 1 km of relief, seasonal.

    Args:
        day_of_year: (n_time,) float, day of year of each acquisition.
        amplitude_mm_per_km: seasonal amplitude, mm/km.
        peak_doy: day of year of the largest coefficient.
        jitter: (n_time,) float, per-epoch deviation, mm/km.

    Returns:
        (n_time,) float64, mm per km.
    """
    phase = 2.0 * np.pi * (np.asarray(day_of_year, dtype=np.float64) - peak_doy) / 365.25
    return amplitude_mm_per_km * np.cos(phase) + np.asarray(jitter, dtype=np.float64)


def orbital_ramp(rng: np.random.Generator, gradient_mm_per_km: float = 0.1) -> tuple[float, float, float]:
    """One epoch's orbital ramp: (east gradient, north gradient) in mm/km and a quadratic
    east-west term (mm/km², a tenth of the linear one per 10 km), with a Rayleigh-distributed
    gradient magnitude whose mean is ``gradient_mm_per_km`` (DESIGN.md §2: ~0.1 mm/km)."""
    sigma = gradient_mm_per_km / np.sqrt(np.pi / 2.0)
    ge, gn = rng.normal(0.0, sigma, size=2)
    quad = rng.normal(0.0, gradient_mm_per_km / 100.0)
    return float(ge), float(gn), float(quad)


def paint_unwrap_blobs(rng: np.random.Generator, out: np.ndarray, dy_km: float, dx_km: float,
                       weights: np.ndarray, roughness: np.ndarray, n_blobs: int,
                       forbid: np.ndarray | None = None) -> list[tuple[int, int, float, int]]:
    """Paint ``n_blobs`` unwrapping errors (whole 2π cycles) into ``out`` in place.

    Each blob is an ellipse 1–4 km wide (DESIGN.md §2) with a ragged edge (``roughness``, a unit
    random field), holding +1 or -1 cycle (±27.73 mm, ``cube.MM_PER_CYCLE``). Unwrapping fails where
    coherence is low, so centres are drawn with probability proportional to ``weights``.

    Args:
        out: (n_lat, n_lon) int8, cycles, modified in place.
        dy_km, dx_km: pixel spacing, km.
        weights: (n_lat, n_lon) float, >= 0, centre sampling weights.
        roughness: (n_lat, n_lon) float32 unit random field.
        n_blobs: how many blobs.
        forbid: optional (n_lat, n_lon) bool where no error may fall (the reference window).

    Returns:
        [(row, col, width_km, cycles)] of the painted blobs.
    """
    ny, nx = out.shape
    w = weights.ravel().astype(np.float64)
    w /= w.sum()
    blobs: list[tuple[int, int, float, int]] = []
    for _ in range(n_blobs):
        idx = int(rng.choice(w.size, p=w))
        r0, c0 = divmod(idx, nx)
        width = float(rng.uniform(1.0, 4.0))
        a = 0.5 * width
        b = a * float(rng.uniform(0.5, 1.0))
        ang = float(rng.uniform(0.0, np.pi))
        cycles = int(rng.choice((-1, 1)))
        hr, hc = int(np.ceil(1.6 * a / dy_km)) + 1, int(np.ceil(1.6 * a / dx_km)) + 1
        rs, re = max(0, r0 - hr), min(ny, r0 + hr + 1)
        cs, ce = max(0, c0 - hc), min(nx, c0 + hc + 1)
        yy = (np.arange(rs, re) - r0)[:, None] * (-dy_km)  # rows run north to south
        xx = (np.arange(cs, ce) - c0)[None, :] * dx_km
        u = xx * np.cos(ang) + yy * np.sin(ang)
        v = -xx * np.sin(ang) + yy * np.cos(ang)
        rho2 = (u / a) ** 2 + (v / b) ** 2 + 0.3 * roughness[rs:re, cs:ce]
        inside = rho2 < 1.0
        if forbid is not None:
            inside &= ~forbid[rs:re, cs:ce]
        out[rs:re, cs:ce][inside] = np.int8(cycles)
        blobs.append((r0, c0, width, cycles))
    return blobs


__all__ = [
    "KOLMOGOROV_BETA", "Turbulence", "orbital_ramp", "paint_unwrap_blobs",
    "spectral_filter", "stratified_coefficient", "synthetic_dem", "unit_field",
]
