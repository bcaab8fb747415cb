"""``ladsdin simulate`` on its own argparse parser (the main CLI registers the same add_parser)."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from ladsdin.models.cube import normalize_cube
from ladsdin.cli import simulate as simulate_cmd


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ladsdin")
    simulate_cmd.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_writes_cube_and_truth_and_prints_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sim" / "menyuan_A.nc"
    args = _parser().parse_args([
        "simulate", "--preset", "menyuan", "--track", "D", "--out", str(out), "--size", "48x40",
        "--epochs", "40", "--seed", "4", "--gap-run", "10:5", "--gap-run", "20:2",
    ])
    assert args.func is simulate_cmd.run
    assert simulate_cmd.run(args) == 0
    truth_file = tmp_path / "sim" / "menyuan_A.truth.nc"
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        cube = normalize_cube(ds.load())
    with xr.open_dataset(truth_file, engine="h5netcdf") as tr:
        truth = tr.load()
    assert cube["displacement"].shape[1:] == (48, 40) and cube.attrs["track"] == "D"
    assert truth.attrs["gap_runs"] == "10:5,20:2" and truth.attrs["event_slot"] >= 34
    assert truth["unwrap_error"].dtype == np.int8
    printed = capsys.readouterr().out
    assert cube.attrs["frame"] in printed and truth.attrs["first_post_event"] in printed
    peak = float(np.abs(truth["coseismic"].values).max())
    assert f"{peak:.1f} mm" in printed


def test_zarr_output(tmp_path: Path) -> None:
    out = tmp_path / "null.zarr"
    args = _parser().parse_args(
        ["simulate", "--preset", "null", "--out", str(out), "--size", "32x32", "--epochs", "12"])
    assert simulate_cmd.run(args) == 0
    cube = normalize_cube(xr.open_zarr(out).load())
    assert cube.sizes["time"] >= 2 and (tmp_path / "null.truth.nc").is_file()


def test_bad_values_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["simulate", "--preset", "null", "--out", "x.nc", "--gap-run", "5"])
    args = _parser().parse_args(["simulate", "--preset", "null", "--out", str(tmp_path / "x.nc"),
                                 "--size", "32x32", "--epochs", "20", "--gap-run", "15:10"])
    assert simulate_cmd.run(args) == 2
    assert "gap run" in capsys.readouterr().err


def test_licsar_dir_writes_a_frame_directory_ingest_can_read(tmp_path: Path) -> None:
    from ladsdin.ingest.frame import scan_frame
    from ladsdin.formats.licsar import read_geometry

    args = _parser().parse_args(["simulate", "--preset", "null", "--out", str(tmp_path / "c.nc"), "--size", "20x24",
                                 "--epochs", "6", "--missing-fraction", "0", "--licsar-dir", str(tmp_path / "frames")])
    assert simulate_cmd.run(args) == 0
    with xr.open_dataset(tmp_path / "c.nc", engine="h5netcdf") as ds:
        frame, n = ds.attrs["frame"], ds.sizes["time"]
    entries, problems = scan_frame(tmp_path / "frames" / frame)
    assert not problems and len(entries) == 3 * n - 6  # 1 + 2 + 3 + 3 + ... links
    assert all(e.complete for e in entries)
    assert read_geometry(tmp_path / "frames" / frame, frame).grid.shape == (20, 24)
