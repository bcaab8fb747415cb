"""Figures of a detection run (``ladsdin detect --plots``), after the paper's Figs. 4 and 6-9.

``write_plots`` turns a :class:`DetectionResult` and the cube it came from into PNGs:

- ``anomaly_maps.png``: the anomaly mask (eq. 4) and seismic objects per scored epoch;
- ``anomaly_counts.png``: C_k per scored epoch against N_a (eq. 5);
- ``largest_object.png``: the largest connected object per epoch, pixels and km², against N_a;
- ``deformation_<YYYY-MM-DD>.png``: D_s (eq. 6) of every alert epoch with its outlines;
- ``pixel_series.png``: observed, forecast and threshold band of one pixel.

Displacement is LOS mm, positive towards the satellite, and every axis showing it says so.
Matplotlib is imported inside ``write_plots`` so that importing this module (and ``--help``)
stays cheap; :mod:`ladsdin.plots.canvas` holds the figure plumbing.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ladsdin.plots.canvas import MASK_COLOURS, PlotContext, date_axis, geo_axes, new_figure, save_figure

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ladsdin.models.batch import DetectionResult
    from ladsdin.models.detector import EpochScore

log = logging.getLogger(__name__)

#: Most panels in ``anomaly_maps.png``; beyond that the panels become unreadable.
MAX_MAP_PANELS = 24


def write_plots(result: DetectionResult, cube: xr.Dataset, out_dir: Path, maps_file: Path | None = None) -> list[Path]:
    """Write the detection figures into ``out_dir`` (created) and return their paths.

    Args:
        result: the output of ``models.batch.detect_cube`` on ``cube``.
        cube: the normalised cube the result came from; ``displacement`` (time, lat, lon)
            float32, LOS mm, +towards satellite, at native resolution (the result's grid is
            every ``result.config.downsample``-th row and column of it).
        out_dir: output directory.
        maps_file: the run's ``anomalies.nc``, read for the maps the result did not keep
            (``detect_cube(keep_maps=False)``, full-size frames).

    Returns:
        Paths of the PNGs written, in the order listed in the module docstring.
    """
    import matplotlib

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    if not result.scores:
        log.warning("frame %s: no scored epochs, no figures written", result.frame)
        return paths
    ctx = PlotContext(result, cube, maps_file)
    # Many small panels: the default 10 pt crowds them. A context, not rcParams, so a caller's
    # notebook keeps its own style.
    with matplotlib.rc_context({"font.size": 8}):
        paths.append(save_figure(_anomaly_maps(ctx), out_dir / "anomaly_maps.png"))
        paths.append(save_figure(_anomaly_counts(ctx), out_dir / "anomaly_counts.png"))
        paths.append(save_figure(_largest_object(ctx), out_dir / "largest_object.png"))
        for k, s in enumerate(result.scores):
            if s.objects:
                paths.append(save_figure(_deformation_map(ctx, k), out_dir / f"deformation_{s.date}.png"))
        paths.append(save_figure(_pixel_series(ctx), out_dir / "pixel_series.png"))
    log.info("frame %s: wrote %d figures to %s", result.frame, len(paths), out_dir)
    return paths


def _title(r: DetectionResult) -> str:
    return f"frame {r.frame} ({r.track or '?'}), N_m = {r.config.nm:g}, N_a = {r.n_a} px"


def _latlon(lat: float, lon: float, decimals: int) -> str:
    return f"{abs(lat):.{decimals}f}°{'N' if lat >= 0 else 'S'} {abs(lon):.{decimals}f}°{'E' if lon >= 0 else 'W'}"


def _gap_note(s: EpochScore) -> str:
    notes = []
    if s.horizon_max > 1:
        notes.append(f"gap {s.horizon_max - 1}×12 d")
    if s.filled:
        notes.append("KNN-filled")
    return f" [{', '.join(notes)}]" if notes else ""


def _select_epochs(scores: list[EpochScore], cap: int = MAX_MAP_PANELS) -> list[int]:
    """Indices of the epochs to map, in date order: all if they fit, else alerts then highest C_k."""
    if len(scores) <= cap:
        return list(range(len(scores)))
    rank = sorted(range(len(scores)), key=lambda k: (not scores[k].objects, not scores[k].examined, -scores[k].n_anomalous, k))
    return sorted(rank[:cap])


def _anomaly_maps(ctx: PlotContext) -> Figure:
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    r = ctx.r
    chosen = _select_epochs(r.scores)
    n = len(chosen)
    ncols = min(n, 6)
    nrows = -(-n // ncols)
    ny, nx = r.grid.shape
    panel_h = float(np.clip(2.3 * ctx.aspect * ny / max(nx, 1), 1.2, 3.5))
    fig = new_figure(2.3 * ncols + 0.4, panel_h * nrows + 0.9)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    cmap = ListedColormap(MASK_COLOURS)
    norm = BoundaryNorm(np.arange(-0.5, 4.5), cmap.N)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for j, (ax, k) in enumerate(zip(axes.flat, chosen)):
        s = ctx.score(k)
        obs = ctx.observed(s)
        # A modelled pixel with no observation this epoch was not tested: show it as no data.
        tested = ctx.modelled if obs is None else ctx.modelled & np.isfinite(obs)
        cat = tested.astype(np.int8) + s.anomaly.astype(np.int8) + s.seismic.astype(np.int8)
        ctx.imshow(ax, cat, cmap=cmap, norm=norm)
        note = _gap_note(s) if s.n_valid else " [no data]"
        ax.set_title(f"{s.date}  C_k = {s.n_anomalous}{note}", fontsize=7, color="#d62728" if s.objects else "black")
        geo_axes(ax, ctx.decimals, left=j % ncols == 0, bottom=j // ncols == nrows - 1 or j + ncols >= n)
    shown = f"{n} of {len(r.scores)} scored epochs (alerts and highest C_k first)" if n < len(r.scores) else f"all {n} scored epochs"
    fig.suptitle(f"Anomaly maps, |D_k - P_k| > N_m σ (eq. 4): {shown}\n{_title(r)}")
    handles = [Patch(facecolor=c, edgecolor="0.5", label=lab) for c, lab in zip(MASK_COLOURS, ("not modelled / no data", "normal", "anomalous", "seismic object (> N_a px)"))]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, frameon=False)
    return fig


def _mark_alerts(ax: Axes, ctx: PlotContext, values: np.ndarray) -> None:
    alert = np.array([bool(s.objects) for s in ctx.r.scores])
    if alert.any():
        ax.plot(ctx.dates[alert], values[alert], "v", color="#d62728", ms=7, ls="none", label="alert epoch (seismic object)")
    gap = np.array([s.horizon_max > 1 or s.filled for s in ctx.r.scores])
    if gap.any():
        ax.plot(ctx.dates[gap], np.zeros(gap.sum()), "^", color="#1f77b4", ms=6, ls="none", clip_on=False, label="after a gap / KNN-filled")
    empty = np.array([s.n_valid == 0 for s in ctx.r.scores])
    if empty.any():
        ax.plot(ctx.dates[empty], np.zeros(empty.sum()), "x", color="k", ms=6, ls="none", clip_on=False, label="no valid pixel (not tested)")


def _count_scale(ax: Axes, values: np.ndarray, n_a: int) -> float | None:
    """Set the y scale of a pixel-count axis; return the symlog linear threshold, None if linear."""
    # A frame-wide storm can flag 100x N_a pixels; a linear axis would then flatten N_a to zero.
    top = max(float(values.max()), 1.0)
    if top > 20 * max(n_a, 1):
        linthresh = max(1.0, n_a / 10)
        ax.set_yscale("symlog", linthresh=linthresh)
        ax.set_ylim(0, top * 2)
        return linthresh
    ax.set_ylim(0, top * 1.15)  # headroom so the N_a line and alert markers stay visible
    return None


def _anomaly_counts(ctx: PlotContext) -> Figure:
    r = ctx.r
    c = np.array([s.n_anomalous for s in r.scores], float)
    colours = ["#d62728" if s.objects else "#ff7f0e" if s.examined else "0.55" for s in r.scores]
    fig = new_figure(10, 3.4)
    ax = fig.add_subplot()
    ax.bar(ctx.dates, c, width=0.8 * r.config.step_days, color=colours)
    ax.axhline(r.n_a, color="k", ls="--", lw=1, label=f"N_a = {r.n_a} px (eq. 5, A_s = {r.config.seismic_area_km2:g} km²)")
    _mark_alerts(ax, ctx, c)
    _count_scale(ax, np.append(c, r.n_a), r.n_a)
    ax.set_ylabel("C_k, anomalous pixels")
    date_axis(ax)
    ax.set_title(f"Anomalous-pixel count per scored epoch (grey < N_a, orange examined, red alert)\n{_title(r)}")
    fig.legend(loc="outside right upper", fontsize=7)
    return fig


def _largest_object(ctx: PlotContext) -> Figure:
    r = ctx.r
    px = np.array([s.largest_object for s in r.scores], float)
    fig = new_figure(10, 3.4)
    ax = fig.add_subplot()
    ax.plot(ctx.dates, px, "o-", color="0.3", ms=3, lw=1, label="largest connected anomaly object")
    ax.axhline(r.n_a, color="k", ls="--", lw=1, label=f"N_a = {r.n_a} px = {r.n_a * ctx.px_km2:.3g} km²")
    _mark_alerts(ax, ctx, px)
    linthresh = _count_scale(ax, np.append(px, r.n_a), r.n_a)
    ax.set_ylabel("largest object, pixels")
    a = ctx.px_km2
    # A twin axis with the same (scaled) limits rather than secondary_yaxis, which ignores symlog.
    km2 = ax.twinx()
    if linthresh is not None:
        km2.set_yscale("symlog", linthresh=linthresh * a)
    lo, hi = ax.get_ylim()
    km2.set_ylim(lo * a, hi * a)
    km2.set_ylabel(f"km² (pixel = {a:.3g} km²)")
    date_axis(ax)
    ax.set_title(f"Largest connected anomaly object per scored epoch ({r.config.connectivity}-connectivity)\n{_title(r)}")
    fig.legend(loc="outside right upper", fontsize=7)
    return fig


def _outline(ax: Axes, features: list[dict[str, Any]]) -> None:
    """Draw the published GeoJSON polygons (lon, lat), so the figure shows what alerts.geojson says."""
    for f in features:
        for ring in f["geometry"]["coordinates"]:
            xy = np.asarray(ring, float)
            ax.plot(xy[:, 0], xy[:, 1], color="k", lw=1.0)


def _deformation_map(ctx: PlotContext, k: int) -> Figure:
    r = ctx.r
    s = ctx.score(k)
    feats = [f for f in ctx.features if f["properties"]["epoch"] == s.date]
    ds = s.deformation
    finite = np.abs(ds[np.isfinite(ds)])
    lim = float(np.percentile(finite, 99)) if finite.size and finite.max() > 0 else 1.0
    obs = ctx.observed(s)
    # Left: the whole residual for context (is the object isolated, or the tip of a storm?).
    resid = obs - s.predicted if obs is not None else None
    ncols = 2 if resid is not None else 1
    ny, nx = r.grid.shape
    h = float(np.clip(4.0 * ctx.aspect * ny / max(nx, 1), 2.5, 6.0))
    fig = new_figure(max(4.0 * ncols + 1.0, 7.5), h + 1.0)  # wide enough for the suptitle
    axes = fig.subplots(1, ncols, squeeze=False, sharex=True, sharey=True)[0]
    kw = {"cmap": "RdBu_r", "vmin": -lim, "vmax": lim}
    panels = ([(resid, "D_k - P_k, all modelled pixels")] if resid is not None else []) + [(ds, "D_s inside seismic objects (eq. 6)")]
    im = None
    for j, (ax, (a, name)) in enumerate(zip(axes, panels)):
        ctx.imshow(ax, ctx.modelled.astype(float), cmap="Greys", vmin=0, vmax=4)  # footprint in light grey
        im = ctx.imshow(ax, a, **kw)
        _outline(ax, feats)
        ax.set_title(name)
        geo_axes(ax, ctx.decimals, left=j == 0)
    cb = fig.colorbar(im, ax=list(axes), shrink=0.9, extend="both")
    cb.set_label("D_s = D_k - P_k, LOS mm (+ towards satellite)")
    lines = [
        f"#{f['properties']['id'].rsplit(':', 1)[-1]}: {f['properties']['n_pixels']} px, {f['properties']['area_km2']:.1f} km², "
        f"D_s {f['properties']['los_min_mm']:.0f}..{f['properties']['los_max_mm']:.0f} mm at "
        f"{_latlon(f['properties']['centroid_lat'], f['properties']['centroid_lon'], 3)}"
        for f in feats[:4]
    ]
    if len(feats) > 4:
        lines.append(f"... and {len(feats) - 4} more objects")
    fig.suptitle(f"Seismic deformation {s.date}{_gap_note(s)}, {_title(r)}\n" + "\n".join(lines), fontsize=8)
    return fig


def _series_pixel(ctx: PlotContext) -> tuple[int, int, str]:
    """(row, col) on the result grid of the pixel to plot, and why it was chosen."""
    r = ctx.r
    any_alert = any(s.objects for s in r.scores)
    how = "largest |D_s|" if any_alert else "no alert: largest |D_k - P_k - common mode|"
    best, where = -np.inf, None
    for k in range(len(r.scores)):  # a running maximum: a stack of full-resolution maps may not fit in memory
        s = ctx.score(k)
        if any_alert:
            m = np.abs(s.deformation)
        else:
            obs = ctx.observed(s)
            # The residual the threshold saw: common mode removed (eq. 4 as the detector applies it).
            m = np.abs(obs - s.predicted - s.common_mode_mm) if obs is not None else np.full(r.grid.shape, np.nan)
        if np.isfinite(m).any() and np.nanmax(m) > best:
            best, where = float(np.nanmax(m)), np.unravel_index(int(np.nanargmax(m)), m.shape)
    if where is None:
        where, how = np.unravel_index(int(r.grid.index[0]), r.grid.shape), "first modelled pixel (no finite residual)"
    return int(where[0]), int(where[1]), how


def _pixel_series(ctx: PlotContext) -> Figure:
    r = ctx.r
    row, col, how = _series_pixel(ctx)
    series = np.asarray(ctx.cube["displacement"][:, row * ctx.t, col * ctx.t].values, float)
    # Forecasts sit at their acquisition's own date, so dots and forecasts line up when the
    # acquisition is a day or two off the 12-day calendar.
    when = np.array([ctx.times[ctx.slot_index[s.slot]] if s.slot in ctx.slot_index else np.datetime64(s.date, "D") for s in r.scores])
    pred = ctx.pixel("predicted", row, col).astype(float)
    thr = ctx.pixel("threshold", row, col).astype(float)
    cm = np.array([s.common_mode_mm for s in r.scores], float)
    flag = ctx.pixel("anomaly", row, col).astype(bool)
    seis = ctx.pixel("seismic", row, col).astype(bool)
    obs_at = np.array([series[ctx.slot_index[s.slot]] if s.slot in ctx.slot_index and not s.filled else np.nan for s in r.scores])

    fig = new_figure(10, 3.8)
    ax = fig.add_subplot()
    ax.plot(ctx.times, series, ".", color="k", ms=4, label="observed D")
    # The detector thresholds D - P after removing the epoch's frame-wide common mode, so the
    # band it actually applied is centred on P + common mode.
    ax.fill_between(when, pred + cm - thr, pred + cm + thr, color="#1f77b4", alpha=0.2, step="mid", label="P_k + common mode ± N_m σ g(m) (eq. 4)")
    ax.plot(when, pred + cm, "-", color="#1f77b4", lw=1.2, marker="o", ms=3, label="forecast P_k + frame common mode")
    if np.nanmax(np.abs(cm)) > 0.5:
        ax.plot(when, pred, "--", color="#1f77b4", lw=0.8, alpha=0.7, label="forecast P_k (no common mode)")
    if flag.any():
        ax.plot(when[flag], obs_at[flag], "o", mfc="none", mec="#ff7f0e", ms=9, mew=1.5, label="anomalous (eq. 4)")
    if seis.any():
        ax.plot(when[seis], obs_at[seis], "o", mfc="none", mec="#d62728", ms=13, mew=1.5, label="in a seismic object")
    ax.axvline(np.datetime64(r.train_end, "D"), color="0.4", ls=":", lw=1.2, label=f"end of training ({r.train_end})")
    for j, m in enumerate(r.missing_dates):
        ax.axvline(np.datetime64(m, "D"), color="0.8", lw=0.6, zorder=0, label="missing acquisition" if j == 0 else None)
    ax.set_ylabel("LOS displacement, mm (+ towards satellite)")
    date_axis(ax)
    where = _latlon(float(r.grid.lat[row]), float(r.grid.lon[col]), 4)
    ax.set_title(f"Pixel (row {row}, col {col}) at {where}, {how}\n{_title(r)}")
    # Outside the axes: inside, it would hide the very epochs the figure is about.
    fig.legend(loc="outside right upper", fontsize=7)
    return fig
