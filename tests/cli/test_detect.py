"""``ladsdin detect``: outputs on a small cube, and one clear error line for each kind of bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from ladsdin.cli import main
from tests.models.synthetic import small_cube


def _write(ds: xr.Dataset, path: Path) -> Path:
    ds.to_netcdf(path, engine="h5netcdf")
    return path


def test_detect_writes_the_contract_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cube = small_cube(n_t=70, step_at=66, step_mm=90.0, seed=7)
    path = _write(cube, tmp_path / "c.nc")
    rc = main(["detect", str(path), "--out", str(tmp_path / "o"), "--seismic-area-km2", "2", "--max-passes", "4", "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "ALERT 128A_05210_131313:" in out and "LOS (+towards satellite)" in out
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["alert_epochs"] == [str(cube.time.values[66])[:10]]
    assert summary["n_a"] >= 1 and 0 < summary["training"]["r2"] <= 1
    assert {"c_k", "largest_object_px", "epoch"} <= set(summary["epochs"][0])
    gj = json.loads((tmp_path / "o" / "alerts.geojson").read_text())
    assert gj["features"][0]["properties"]["epoch"] == summary["alert_epochs"][0]


def _bad(tmp_path: Path, ds: xr.Dataset, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    path = _write(ds, tmp_path / "bad.nc")
    rc = main(["detect", str(path), "--out", str(tmp_path / "o"), "--quiet", *extra])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback" not in err
    return err


def test_wrong_dims(tmp_path, capsys):
    ds = small_cube(n_t=30).rename({"lat": "row"}).rename_vars({"row": "rowc"})
    assert "expected (time, lat, lon)" in _bad(tmp_path, ds, capsys)


def test_missing_variable(tmp_path, capsys):
    ds = small_cube(n_t=30).rename_vars({"displacement": "velocity"})
    assert "no 'displacement' variable" in _bad(tmp_path, ds, capsys)


def test_no_time_coordinate(tmp_path, capsys):
    ds = small_cube(n_t=30).drop_vars("time")
    err = _bad(tmp_path, ds, capsys)
    assert "time" in err and "coordinate" in err


def test_too_few_epochs_for_training(tmp_path, capsys):
    err = _bad(tmp_path, small_cube(n_t=15), capsys)
    assert "need >= 20 training" in err


def test_all_nan(tmp_path, capsys):
    ds = small_cube(n_t=30)
    ds["displacement"][:] = np.nan
    assert "all NaN" in _bad(tmp_path, ds, capsys)


def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the error path cannot be exercised")
    assert "--device cpu or auto" in _bad(tmp_path, small_cube(n_t=30), capsys, "--device", "cuda")


def test_help_is_instant_and_lists_the_contract_flags():
    out = subprocess.run([sys.executable, "-m", "ladsdin.cli", "detect", "--help"], capture_output=True, text=True, check=True).stdout
    for flag in ("--nm", "--seismic-area-km2", "--downsample", "--train-fraction", "--gap-fill", "--device", "--plots"):
        assert flag in out
    probe = "import sys, ladsdin.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "False"
