"""``ladsdin detect CUBE --out DIR``: the paper's offline workflow on one cube (DESIGN.md §3)."""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)


def _grid(text: str) -> tuple[tuple[int, int], ...]:
    try:
        pairs = tuple(tuple(int(v) for v in item.lower().split("x")) for item in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--grid '{text}' must look like '1x16,2x16' (layers x hidden)") from None
    if not pairs or any(len(p) != 2 for p in pairs):
        raise argparse.ArgumentTypeError(f"--grid '{text}' must look like '1x16,2x16' (layers x hidden)")
    return pairs  # type: ignore[return-value]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        help="detect anomalous and seismic deformation in a displacement cube (offline, the paper's workflow)",
        description="Train the per-pixel forecaster on the first --train-fraction of epochs, score every later "
        "epoch with |D - P| > N_m sigma, and write alerts.geojson, anomalies.nc and summary.json to --out. "
        "Displacement is LOS mm, positive towards the satellite.",
    )
    p.add_argument("cube", help="cube file: NetCDF/Zarr (DESIGN.md §3), LiCSBAS cum.h5 or MintPy timeseries.h5")
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--nm", type=float, default=6.0, help="N_m, threshold in residual sigmas (paper: 6 for Mw 6.7, 3 for Mw 5.6)")
    p.add_argument("--seismic-area-km2", type=float, default=600.0, help="A_s, expected seismic area in km² (eq. 5)")
    p.add_argument("--downsample", type=int, default=1, help="t, keep every t-th row and column (paper: 30)")
    p.add_argument("--train-fraction", type=float, default=0.85, help="fraction of epochs used for training")
    p.add_argument("--gap-fill", choices=("native", "knn"), default="native", help="native: multi-step forecast across gaps with a widened threshold; knn: the paper's KNN filling")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="torch device (env LADSDIN_DEVICE, default auto)")
    p.add_argument("--model", choices=("shared", "per-pixel"), default="shared", help="one LSTM per frame (scalable) or one per pixel (the paper; small areas)")
    p.add_argument("--grid", type=_grid, default=((1, 16),), help="(layers x hidden) candidates for the grid search, K <= 5, S <= 30, e.g. 1x16,2x16,1x30")
    p.add_argument("--max-passes", type=int, default=None, help="training passes at most (early stopping ends sooner)")
    p.add_argument("--common-mode", choices=("none", "median", "plane"), default="median", help="per-epoch frame-wide offset removed before thresholding")
    p.add_argument("--connectivity", type=int, choices=(4, 8), default=4, help="4: edges touch (paper); 8: corners too")
    p.add_argument("--min-coherence", type=float, default=0.25, help="pixels with lower average coherence are not modelled")
    p.add_argument("--no-reanchor", action="store_true", help="do not reset a pixel's level after a confirmed step")
    p.add_argument("--post-event-days", type=float, default=365.0, help="days a pixel of a seismic object (or a confirmed step) stays in the post-event regime: its level follows each observation, afterslip is tracked, not alerted (0 = off)")
    p.add_argument("--false-alerts-per-year", type=float, default=0.1, help="tolerated null alerts per frame-year: seismic objects must also be larger than the size the training epochs' residuals reach at this rate (the null floor; 0 = N_a alone)")
    p.add_argument("--no-sign-split", action="store_true", help="let one object hold anomalies of both signs (the paper's labelling)")
    p.add_argument("--seed", type=int, default=0, help="random seed of training")
    p.add_argument("--tile", type=int, default=512, help="tile edge in pixels: the frame is fitted and scored tile by tile in bounded memory (results do not depend on it)")
    p.add_argument("--train-pixels", type=int, default=20_000, help="the seeded sample of pixels the shared network is trained on")
    p.add_argument("--frame", default=None, help="frame ID when the file carries none")
    p.add_argument("--track", choices=("A", "D"), default=None, help="track when the file and frame ID carry none")
    p.add_argument("--plots", action="store_true", help="also write PNG figures (paper Figs. 4, 6-9) to DIR/plots")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from ladsdin.models.batch import DetectConfig, detect_cube
    from ladsdin.models.devices import configure_threads, resolve_device
    from ladsdin.models.training import TrainConfig
    from ladsdin.formats.outputs import AnomalyWriter, write_outputs
    from ladsdin.formats import open_cube

    settings = args.settings
    device = resolve_device(args.device or settings.device)
    threads = configure_threads(settings.threads)
    progress = settings.progress and not args.quiet and sys.stderr.isatty()
    t0 = time.perf_counter()
    # lazily: a full-size frame's cube is read window by window, never whole
    cube = open_cube(args.cube, frame=args.frame, track=args.track, lazy=True)
    train_kw = {"kind": args.model, "grid": args.grid, "seed": args.seed, "train_pixels": args.train_pixels}
    if args.max_passes:
        train_kw["max_passes"] = args.max_passes
    if args.model == "per-pixel":
        train_kw.update(max_passes=args.max_passes or 150, patience=10, lr=1e-2)
    cfg = DetectConfig(
        nm=args.nm,
        seismic_area_km2=args.seismic_area_km2,
        downsample=args.downsample,
        train_fraction=args.train_fraction,
        gap_fill=args.gap_fill,
        connectivity=args.connectivity,
        common_mode=args.common_mode,
        reanchor=not args.no_reanchor,
        post_event_days=args.post_event_days,
        false_alerts_per_year=args.false_alerts_per_year,
        sign_split=not args.no_sign_split,
        min_coherence=args.min_coherence,
        tile=args.tile,
        train=TrainConfig(**train_kw),
    )
    log.info("detect %s: %s, %d epochs, grid %dx%d, device %s, %d threads", args.cube, cube.attrs.get("frame"), cube.sizes["time"], cube.sizes["lat"], cube.sizes["lon"], device, threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    step = int(cfg.downsample)
    # anomalies.nc is written while scoring, one epoch at a time: the maps are never all in memory
    with AnomalyWriter(out / "anomalies.nc", cube["lat"].values[::step], cube["lon"].values[::step]) as writer:
        result = detect_cube(cube, cfg, device, progress=progress, on_score=writer.append, keep_maps=False)
        writer.finish(result)
    paths = write_outputs(result, out, anomalies_written=True)
    if args.plots:
        from ladsdin.plots.detection import write_plots

        paths += write_plots(result, cube, out / "plots", maps_file=out / "anomalies.nc")
    rep = result.forecaster.report
    print(f"frame {result.frame} ({result.track}), {result.model.n_pixels} pixels modelled in {result.model.tiling.n_tiles} tile(s), "
          f"N_a = {result.n_a}, N_m = {cfg.nm}")
    print(f"training R² mean {rep['r2_mean']:.3f}; one-step RMS on held-out epochs {rep['val_rms_lstm_mm']:.2f} mm (classical baseline {rep['val_rms_baseline_mm']:.2f} mm)")
    alerts = result.features()
    if alerts:
        for f in alerts:
            p = f["properties"]
            print(f"ALERT {p['id']}: {p['n_pixels']} px, {p['area_km2']:.1f} km², D_s {p['los_min_mm']:.0f}..{p['los_max_mm']:.0f} mm LOS (+towards satellite) at {p['centroid_lat']:.3f}N {p['centroid_lon']:.3f}E")
    else:
        print("no seismic deformation detected")
    print(f"wrote {', '.join(str(p) for p in paths)} in {time.perf_counter() - t0:.1f} s")
    return 0
