"""Surface displacement of a finite rectangular dislocation in an elastic half-space.

Implements the closed-form surface solution of Okada (1985), "Surface deformation due to shear
and tensile faults in a half-space", Bull. Seismol. Soc. Am. 75(4), 1135-1154: eqs. (25)-(30)
with Chinnery's notation (eq. 24). The singular cases follow the prescriptions of Okada (1992,
BSSA 82(2), 1018-1040, section "singular points"): ``atan(xi*eta/(q*R)) = 0`` when q = 0, and
when R + eta = 0 (or R + xi = 0) the terms with 1/(R + eta) vanish and ln(R + eta) becomes
-ln(R - eta).

Two levels:

- :func:`okada85` works in Okada's own frame (x along strike, y horizontal and to the left of
  strike, z up; the fault dips towards -y, its lower edge runs from (0, 0, -d) to (L, 0, -d)).
- :func:`fault_displacement` places a :class:`Fault` in map coordinates (east/north km) and
  returns east/north/up displacement in metres, the same unit as the slip.

Lengths may be in any unit as long as they share it; displacement has the unit of the slip.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_TWO_PI = 2.0 * np.pi
# cos(dip) below this is treated as a vertical fault: Okada's general I1..I5 divide by cos(dip)
_COS_VERTICAL = 1e-9


def _corner(xi: np.ndarray, eta: np.ndarray, q: np.ndarray, sd: float, cd: float,
            alpha: float, u1: float, u2: float, u3: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """f(xi, eta) of Okada (1985) eqs. (25)-(27) for one corner, float64 arrays of one shape."""
    xi2q2 = xi * xi + q * q
    r = np.sqrt(xi2q2 + eta * eta)
    x_ = np.sqrt(xi2q2)
    yt = eta * cd + q * sd  # y-tilde, eq. (30)
    dt = eta * sd - q * cd  # d-tilde, eq. (30)

    # R + eta written without cancellation where eta < 0: (R + eta) = (xi^2 + q^2) / (R - eta)
    with np.errstate(divide="ignore", invalid="ignore"):
        r_eta = np.where(eta >= 0.0, r + eta, xi2q2 / (r - eta))
        r_xi = np.where(xi >= 0.0, r + xi, (eta * eta + q * q) / (r - xi))
        sing_eta = r_eta <= 0.0  # Okada (1992): R + eta = 0 happens only for xi = q = 0, eta < 0
        sing_xi = r_xi <= 0.0
        ln_r_eta = np.where(sing_eta, -np.log(np.where(sing_eta, r - eta, 1.0)), np.log(np.where(sing_eta, 1.0, r_eta)))
        inv_r_reta = np.where(sing_eta, 0.0, 1.0 / (r * r_eta))
        inv_reta = np.where(sing_eta, 0.0, 1.0 / r_eta)
        inv_r_rxi = np.where(sing_xi, 0.0, 1.0 / (r * r_xi))
        # q = 0: the atan term is discontinuous across the fault plane; Okada (1992) takes 0
        theta = np.where(q == 0.0, 0.0, np.arctan(xi * eta / np.where(q == 0.0, 1.0, q * r)))
        r_dt = r + dt
        if abs(cd) > _COS_VERTICAL:  # eq. (28)
            den = xi * (r + x_) * cd
            i5 = np.where(xi == 0.0, 0.0, alpha * 2.0 / cd * np.arctan(
                (eta * (x_ + q * cd) + x_ * (r + x_) * sd) / np.where(xi == 0.0, 1.0, den)))
            i4 = alpha / cd * (np.log(r_dt) - sd * ln_r_eta)
            i3 = alpha * (yt / (cd * r_dt) - ln_r_eta) + sd / cd * i4
            i1 = alpha * (-xi / (cd * r_dt)) - sd / cd * i5
        else:  # eq. (29), cos(dip) = 0
            r_dt2 = r_dt * r_dt
            i1 = -alpha / 2.0 * xi * q / r_dt2
            i3 = alpha / 2.0 * (eta / r_dt + yt * q / r_dt2 - ln_r_eta)
            i4 = -alpha * q / r_dt
            i5 = -alpha * xi * sd / r_dt
        i2 = alpha * (-ln_r_eta) - i3
        q_over_r = q / r

    ux = np.zeros_like(r)
    uy = np.zeros_like(r)
    uz = np.zeros_like(r)
    if u1:  # strike-slip, eq. (25)
        c = -u1 / _TWO_PI
        ux += c * (xi * q * inv_r_reta + theta + i1 * sd)
        uy += c * (yt * q * inv_r_reta + q * cd * inv_reta + i2 * sd)
        uz += c * (dt * q * inv_r_reta + q * sd * inv_reta + i4 * sd)
    if u2:  # dip-slip, eq. (26)
        c = -u2 / _TWO_PI
        ux += c * (q_over_r - i3 * sd * cd)
        uy += c * (yt * q * inv_r_rxi + cd * theta - i1 * sd * cd)
        uz += c * (dt * q * inv_r_rxi + sd * theta - i5 * sd * cd)
    if u3:  # tensile, eq. (27)
        c = u3 / _TWO_PI
        xqr = xi * q * inv_r_reta
        ux += c * (q * q * inv_r_reta - i3 * sd * sd)
        uy += c * (-dt * q * inv_r_rxi - sd * (xqr - theta) - i1 * sd * sd)
        uz += c * (yt * q * inv_r_rxi + cd * (xqr - theta) - i5 * sd * sd)
    return ux, uy, uz


def okada85(x: np.ndarray, y: np.ndarray, depth: float, dip_deg: float, length: float,
            width: float, u1: float = 0.0, u2: float = 0.0, u3: float = 0.0,
            nu: float = 0.25) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Surface displacement in Okada's (1985) fault frame.

    Args:
        x, y: observation points, any broadcastable shapes, same length unit as the fault.
            x is along strike, y horizontal 90° counter-clockwise from x; the lower fault edge
            runs from (0, 0, -depth) to (length, 0, -depth) and the fault rises towards +y.
        depth: depth of the LOWER edge (Okada's d), > 0.
        dip_deg: dip in degrees, 0 < dip <= 90.
        length, width: fault length along strike and width along dip, > 0.
        u1, u2, u3: strike-slip (+ = left-lateral), dip-slip (+ = reverse/thrust), tensile
            (+ = opening) components of the dislocation, any unit.
        nu: Poisson's ratio; mu/(lambda + mu) = 1 - 2 nu (nu = 0.25 is lambda = mu).

    Returns:
        (ux, uy, uz): float64 arrays of the broadcast shape, same unit as u1..u3, z up.
    """
    if not 0.0 < dip_deg <= 90.0:
        raise ValueError(f"dip {dip_deg}° is outside (0, 90]; give the dip angle of the plane, and "
                         "flip the strike by 180° for a fault dipping the other way")
    if length <= 0 or width <= 0:
        raise ValueError(f"fault length {length} and width {width} must both be > 0")
    if depth - width * np.sin(np.radians(dip_deg)) < -1e-9 * width:
        raise ValueError(f"the fault top is above ground (lower-edge depth {depth}, width {width}, "
                         f"dip {dip_deg}°); increase the depth or reduce the width")
    alpha = 1.0 - 2.0 * nu  # mu / (lambda + mu)
    dip = np.radians(dip_deg)
    sd = float(np.sin(dip))
    cd = 0.0 if abs(dip_deg - 90.0) < 1e-12 else float(np.cos(dip))
    x, y = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    x = x.copy()
    p = y * cd + depth * sd  # eq. (30)
    q = y * sd - depth * cd
    # A point exactly on a corner of a surface-breaking fault (R = 0) is a true singularity (the
    # edge-dislocation log term); move it a hair along strike so the grid stays finite.
    top_depth = depth - width * sd
    if abs(top_depth) <= 1e-12 * width:
        for xc in (0.0, length):
            at_corner = (np.abs(x - xc) <= 1e-12 * length) & (np.abs(q) <= 1e-12 * width) \
                & (np.abs(p - width) <= 1e-12 * width)
            x[at_corner] += 1e-6 * length * (1.0 if xc == 0.0 else -1.0)
    ux = np.zeros(x.shape)
    uy = np.zeros(x.shape)
    uz = np.zeros(x.shape)
    # Chinnery's notation, eq. (24): f(x, p) - f(x, p - W) - f(x - L, p) + f(x - L, p - W)
    for xi, eta, sign in ((x, p, 1.0), (x, p - width, -1.0), (x - length, p, -1.0), (x - length, p - width, 1.0)):
        cx, cy, cz = _corner(xi, eta, q, sd, cd, alpha, u1, u2, u3)
        ux += sign * cx
        uy += sign * cy
        uz += sign * cz
    return ux, uy, uz


@dataclass(frozen=True)
class Fault:
    """A rectangular fault in map coordinates (Aki & Richards conventions).

    Attributes:
        east_km, north_km: map position of the midpoint of the fault's TOP edge, projected
            vertically to the surface, km from the map origin.
        strike_deg: clockwise from north; the fault dips to the right of the strike direction.
        dip_deg: 0 < dip <= 90.
        length_km: along strike.
        top_km, bottom_km: depths of the top and bottom edges, km, 0 <= top < bottom.
        rake_deg: slip direction of the hanging wall, counter-clockwise from strike in the fault
            plane: 0 = left-lateral, 180 = right-lateral, 90 = reverse, -90 = normal.
        slip_m: slip magnitude, m.
        opening_m: tensile opening, m.
    """

    east_km: float
    north_km: float
    strike_deg: float
    dip_deg: float
    length_km: float
    top_km: float
    bottom_km: float
    rake_deg: float
    slip_m: float
    opening_m: float = 0.0

    @property
    def width_km(self) -> float:
        """Down-dip width, km."""
        return (self.bottom_km - self.top_km) / np.sin(np.radians(self.dip_deg))

    def trace_km(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """(east, north) km of the two ends of the top edge's surface projection."""
        s = np.radians(self.strike_deg)
        half = 0.5 * self.length_km
        de, dn = half * np.sin(s), half * np.cos(s)
        return (self.east_km - de, self.north_km - dn), (self.east_km + de, self.north_km + dn)


def fault_displacement(east_km: np.ndarray, north_km: np.ndarray, fault: Fault,
                       nu: float = 0.25) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """East, north and up surface displacement of one rectangular fault.

    Args:
        east_km, north_km: observation points, km, broadcastable (e.g. (1, n_lon) and (n_lat, 1)).
        fault: the source, placed on the same map origin.
        nu: Poisson's ratio.

    Returns:
        (ue, un, uz): float64 arrays of the broadcast shape, metres (the unit of the slip).
    """
    if not 0.0 <= fault.top_km < fault.bottom_km:
        raise ValueError(f"fault depths top={fault.top_km} km, bottom={fault.bottom_km} km: need "
                         "0 <= top < bottom")
    s = np.radians(fault.strike_deg)
    sx = np.array([np.sin(s), np.cos(s)])  # strike unit vector (east, north)
    sy = np.array([-np.cos(s), np.sin(s)])  # Okada +y: 90° counter-clockwise from strike
    dip = np.radians(fault.dip_deg)
    width = fault.width_km
    cd = 0.0 if abs(fault.dip_deg - 90.0) < 1e-12 else np.cos(dip)
    # Okada's origin is the start of the lower edge: half a length back along strike, and
    # W cos(dip) towards -y (down-dip) from the top-edge trace
    oe = fault.east_km - 0.5 * fault.length_km * sx[0] - width * cd * sy[0]
    on = fault.north_km - 0.5 * fault.length_km * sx[1] - width * cd * sy[1]
    de = np.asarray(east_km, dtype=np.float64) - oe
    dn = np.asarray(north_km, dtype=np.float64) - on
    x = de * sx[0] + dn * sx[1]
    y = de * sy[0] + dn * sy[1]
    rake = np.radians(fault.rake_deg)
    ux, uy, uz = okada85(x, y, fault.bottom_km, fault.dip_deg, fault.length_km, width,
                         u1=fault.slip_m * np.cos(rake), u2=fault.slip_m * np.sin(rake),
                         u3=fault.opening_m, nu=nu)
    ue = ux * sx[0] + uy * sy[0]
    un = ux * sx[1] + uy * sy[1]
    return ue, un, uz


def faults_displacement(east_km: np.ndarray, north_km: np.ndarray, faults: tuple[Fault, ...] | list[Fault],
                        nu: float = 0.25) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum of :func:`fault_displacement` over several patches (linear elasticity superposes).

    Returns:
        (ue, un, uz): float64, metres, broadcast shape of east_km and north_km.
    """
    shape = np.broadcast_shapes(np.shape(east_km), np.shape(north_km))
    ue, un, uz = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    for f in faults:
        if f.slip_m == 0.0 and f.opening_m == 0.0:
            continue
        e, n, z = fault_displacement(east_km, north_km, f, nu=nu)
        ue += e
        un += n
        uz += z
    return ue, un, uz
