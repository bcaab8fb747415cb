"""``ladsdin simulate``: write a simulated LiCSAR-like cube and its truth sidecar.

The cube goes to ``--out`` (NetCDF4 through h5netcdf, or Zarr when the path ends ``.zarr``) and
the truth to ``<stem>.truth.nc`` beside it. Heavy imports live inside :func:`run` so that
``ladsdin --help`` stays instant.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

PRESET_NAMES = ("menyuan", "delingha", "null")


def _size(text: str) -> tuple[int, int]:
    try:
        n_lat, n_lon = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size {text!r}: expected ROWSxCOLS (lat x lon), e.g. 240x240") from None
    if n_lat < 16 or n_lon < 16:
        raise argparse.ArgumentTypeError(f"--size {text!r}: use at least 16x16 pixels")
    return n_lat, n_lon


def _gap_run(text: str) -> tuple[int, int]:
    try:
        slot, length = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--gap-run {text!r}: expected SLOT:LEN, e.g. 60:5") from None
    return slot, length


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the ``simulate`` sub-command on the main CLI's sub-parsers."""
    p = subparsers.add_parser(
        "simulate",
        help="write a simulated LiCSAR-like displacement cube and its truth",
        description=(
            "Simulate a LiCSBAS-like LOS displacement cube (mm, positive towards the satellite) "
            "with atmosphere, seasonal motion, missing epochs, unwrapping errors and an Okada "
            "coseismic step, plus a truth sidecar <stem>.truth.nc."
        ),
    )
    p.add_argument("--preset", required=True, choices=PRESET_NAMES, help="scenario")
    p.add_argument("--track", default="A", choices=("A", "D"), help="ascending or descending (default A)")
    p.add_argument("--out", required=True, type=Path, help="cube path: .nc (NetCDF4) or .zarr")
    p.add_argument("--size", type=_size, default=(240, 240), metavar="ROWSxCOLS",
                   help="grid size, lat x lon pixels (default 240x240)")
    p.add_argument("--spacing-deg", type=float, default=0.002, help="pixel spacing, degrees (default 0.002)")
    p.add_argument("--epochs", type=int, default=150, help="calendar slots of 12 days (default 150)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--start", default="2019-01-05", help="date of the first slot (default 2019-01-05)")
    p.add_argument("--missing-fraction", type=float, default=0.08,
                   help="probability of a single missed pass per slot (default 0.08)")
    p.add_argument("--gap-run", type=_gap_run, action="append", default=[], metavar="SLOT:LEN",
                   help="LEN consecutive missed passes from calendar slot SLOT (repeatable)")
    p.add_argument("--unwrap-fraction", type=float, default=0.03,
                   help="fraction of epochs with unwrapping-error blobs (default 0.03)")
    p.add_argument("--event-slot", type=int, default=None,
                   help="calendar slot of the first post-event epoch (default: ~90%% of the slots)")
    p.add_argument("--licsar-dir", type=Path, default=None, metavar="DIR",
                   help="also write DIR/<frame>/ as a LiCSAR frame directory (interferograms/D1_D2/*.geo.{unw,cc}.tif "
                   "to each epoch's 3 predecessors, with decorrelation noise, and metadata/) for `ladsdin ingest licsar`")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.set_defaults(func=run)


def truth_path(out: Path) -> Path:
    """``<stem>.truth.nc`` next to the cube: ``a/cube.nc`` -> ``a/cube.truth.nc``."""
    return out.with_name(out.stem + ".truth.nc") if out.suffix else out.with_name(out.name + ".truth.nc")


def run(args: argparse.Namespace) -> int:
    """Simulate, write the cube and the truth, print a summary. Returns the exit status."""
    import inspect

    import numpy as np

    from ladsdin.models.simulation import simulate

    n_lat, n_lon = args.size
    try:
        cube, truth = simulate(
            args.preset, track=args.track, n_lat=n_lat, n_lon=n_lon, spacing_deg=args.spacing_deg,
            n_epochs=args.epochs, seed=args.seed, start=args.start,
            missing_fraction=args.missing_fraction, gap_runs=list(args.gap_run),
            unwrap_fraction=args.unwrap_fraction, event_index=args.event_slot, progress=args.progress,
        )
    except ValueError as exc:
        print(f"ladsdin simulate: error: {exc}", file=sys.stderr)
        return 2
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".zarr":
        # Zarr format 2 with consolidated metadata reads everywhere; format 3 consolidated
        # metadata is not in the spec yet and warns (same choice as ladsdin.formats)
        kwargs = {"zarr_format": 2} if "zarr_format" in inspect.signature(cube.to_zarr).parameters else {}
        cube.to_zarr(out, mode="w", **kwargs)
    else:
        cube.to_netcdf(out, engine="h5netcdf")
    tpath = truth_path(out)
    truth.to_netcdf(tpath, engine="h5netcdf", encoding={"unwrap_error": {"zlib": True, "complevel": 4}})

    missing = [d for d in truth.attrs["missing_dates"].split(",") if d]
    peak = float(np.nanmax(np.abs(truth["coseismic"].values)))
    listed = ", ".join(missing[:6]) + (", ..." if len(missing) > 6 else "")
    first_post = truth.attrs["first_post_event"]
    times = cube["time"].values
    print(f"frame      {cube.attrs['frame']} ({args.preset}, track {cube.attrs['track']})")
    print(f"grid       {n_lat} x {n_lon} at {args.spacing_deg}° ; epochs {cube.sizes['time']} of "
          f"{truth.attrs['n_slots']} slots, {str(times[0])[:10]} .. {str(times[-1])[:10]}")
    print(f"missing    {len(missing)} epochs" + (f" ({listed})" if missing else ""))
    print(f"event      {truth.attrs['event_time'] or 'none'}"
          + (f", first post-event epoch {first_post}" if first_post else ""))
    print(f"peak |LOS| {peak:.1f} mm (coseismic, positive towards the satellite)")
    print(f"wrote      {out} and {tpath}")
    if args.licsar_dir is not None:
        from ladsdin.ingest.synthetic import SyntheticFrame

        frame_dir = SyntheticFrame(cube, args.licsar_dir, truth=truth, seed=args.seed).write()
        n_ifg = sum(1 for _ in (frame_dir / "interferograms").iterdir())
        print(f"wrote      {frame_dir} ({n_ifg} interferograms, synthetic: not real LiCSAR data)")
    return 0
