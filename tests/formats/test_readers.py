"""Readers: every accepted input becomes the cube contract (DESIGN.md §3)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ladsdin.models.cube import SIGN, CubeError
from ladsdin.formats import CubeFileNotFoundError, open_cube, write_cube
from tests.fixtures.real_layouts import IMDATES, write_licsbas, write_mintpy

FRAME = "128A_05172_131313"


def _cube(lat_ascending: bool = False, n: int = 5, ny: int = 6, nx: int = 7, **attrs: object) -> xr.Dataset:
    rng = np.random.default_rng(7)
    lat = 38.0 + 0.001 * np.arange(ny)
    lat = lat if lat_ascending else lat[::-1]
    d = rng.normal(0, 10, (n, ny, nx)).astype(np.float32)
    d[:, 0, 0] = np.nan
    return xr.Dataset(
        {"displacement": (("time", "lat", "lon"), d, {"units": "mm"})},
        coords={
            "time": np.datetime64("2021-01-05", "ns") + np.arange(n) * np.timedelta64(12, "D"),
            "lat": lat,
            "lon": 101.0 + 0.001 * np.arange(nx),
        },
        attrs=attrs,
    )


# --- LiCSBAS ---------------------------------------------------------------------------------


def test_licsbas_cum_round_trips_values_dates_grid_and_identity(tmp_path: Path) -> None:
    truth = write_licsbas(tmp_path / FRAME / "TS_GEOCml1" / "cum.h5")
    cube = open_cube(truth.path)

    assert cube["displacement"].dtype == np.float32
    np.testing.assert_array_equal(cube["displacement"].values, truth.displacement_mm)  # NaN == NaN
    np.testing.assert_array_equal(cube["time"].values, truth.dates)
    np.testing.assert_allclose(cube["lat"].values, truth.lat, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cube["lon"].values, truth.lon, rtol=0, atol=1e-12)
    # corner_lat is the first pixel's centre and post_lat < 0: row 0 is the northern edge.
    assert cube["lat"].values[0] == pytest.approx(38.2005, abs=1e-12)
    assert np.all(np.diff(cube["lat"].values) < 0)
    # Already LOS mm, +towards satellite: no scaling, no flip; cum[0] = 0 stays 0.
    assert np.nanmax(np.abs(cube["displacement"].values[0])) == 0.0
    np.testing.assert_array_equal(cube["coherence"].values, truth.coherence)
    assert (cube.attrs["frame"], cube.attrs["track"]) == (FRAME, "A")
    assert cube.attrs["units"] == "mm" and cube.attrs["sign"] == SIGN
    assert cube.attrs["licsbas_refarea"] == "3:4/1:2"  # bytes in the file, str here
    assert cube.attrs["licsbas_ref_lon"] == pytest.approx(truth.extra["ref_lon"])
    assert cube.attrs["licsbas_ref_lat"] == pytest.approx(truth.extra["ref_lat"])
    assert cube.attrs["licsbas_vel_median_mm_yr"] == pytest.approx(truth.extra["vel_median"], rel=1e-6)
    assert cube.attrs["licsbas_filtered"] == 0


def test_licsbas_cum_filt_mask_sets_masked_pixels_to_nan(tmp_path: Path) -> None:
    truth = write_licsbas(tmp_path / FRAME / "cum_filt.h5", filtered=True)
    with h5py.File(truth.path, "r") as f:
        assert np.isfinite(f["cum"][:, 4, 1]).all()  # LiCSBAS keeps the values; the mask hides them
    cube = open_cube(truth.path)
    assert np.isnan(cube["displacement"].values[:, 4, 1]).all()
    np.testing.assert_array_equal(cube["displacement"].values, truth.displacement_mm)
    assert cube.attrs["licsbas_filtered"] == 1


def test_licsbas_in_radar_coordinates_is_refused(tmp_path: Path) -> None:
    truth = write_licsbas(tmp_path / FRAME / "cum.h5", geocoded=False)
    with pytest.raises(CubeError, match="radar coordinates"):
        open_cube(truth.path)


def test_licsbas_without_frame_in_path_needs_track(tmp_path: Path) -> None:
    truth = write_licsbas(tmp_path / "TS_GEOCml1" / "cum.h5")
    with pytest.raises(CubeError, match="--track") as err:
        open_cube(truth.path)
    assert "128A_05172_131313" in str(err.value)  # tells the user what a frame ID looks like
    cube = open_cube(truth.path, track="descending", frame="menyuan")
    assert (cube.attrs["frame"], cube.attrs["track"]) == ("menyuan", "D")


def test_bad_track_argument_is_named(tmp_path: Path) -> None:
    truth = write_licsbas(tmp_path / "cum.h5")
    with pytest.raises(CubeError, match="'X'.*not 'A' or 'D'"):
        open_cube(truth.path, track="X")


# --- MintPy ----------------------------------------------------------------------------------


def test_mintpy_metres_become_mm_with_centre_of_pixel_grid(tmp_path: Path) -> None:
    truth = write_mintpy(tmp_path / "mintpy" / "geo" / "geo_timeseries_ERA5_demErr.h5")
    cube = open_cube(truth.path)

    np.testing.assert_array_equal(cube["displacement"].values, truth.displacement_mm)
    with h5py.File(truth.path, "r") as f:
        metres = f["timeseries"][()]
        assert f["date"].dtype == np.dtype("S8")
    # Same sign as MintPy (+towards satellite), unit m -> mm.
    finite = np.isfinite(metres)
    np.testing.assert_allclose(cube["displacement"].values[finite], metres[finite] * 1000.0, rtol=1e-6)
    assert np.isnan(cube["displacement"].values[:, -1, 0]).all()
    np.testing.assert_array_equal(cube["time"].values, truth.dates)
    # X/Y_FIRST is the upper-left corner of the first pixel: centres are half a step inside.
    np.testing.assert_allclose(cube["lat"].values, truth.lat, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cube["lon"].values, truth.lon, rtol=0, atol=1e-12)
    assert cube["lat"].values[0] == pytest.approx(38.2005, abs=1e-9)
    assert np.all(np.diff(cube["lat"].values) < 0)
    assert cube.attrs["track"] == "D"  # from ORBIT_DIRECTION
    assert cube.attrs["frame"] == "geo_timeseries_ERA5_demErr"
    assert (cube.attrs["mintpy_ref_y"], cube.attrs["mintpy_ref_x"]) == (2.0, 3.0)
    assert "coherence" not in cube


def test_mintpy_frame_and_track_from_path(tmp_path: Path) -> None:
    truth = write_mintpy(tmp_path / "014D_05188_131313" / "timeseries.h5", orbit_direction=None)
    cube = open_cube(truth.path)
    assert (cube.attrs["frame"], cube.attrs["track"]) == ("014D_05188_131313", "D")


def test_mintpy_in_radar_coordinates_says_geocode(tmp_path: Path) -> None:
    truth = write_mintpy(tmp_path / FRAME / "timeseries.h5", geocoded=False)
    with pytest.raises(CubeError, match="geocode first with MintPy geocode.py"):
        open_cube(truth.path)


# --- NetCDF / Zarr ---------------------------------------------------------------------------


def test_netcdf_with_ascending_lat_keeps_orientation_and_values(tmp_path: Path) -> None:
    ds = _cube(lat_ascending=True, frame=FRAME)
    path = tmp_path / "cube.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    cube = open_cube(path)
    assert np.all(np.diff(cube["lat"].values) > 0)
    np.testing.assert_array_equal(cube["displacement"].values, ds["displacement"].values)
    assert (cube.attrs["frame"], cube.attrs["track"]) == (FRAME, "A")


def test_netcdf3_classic_and_y_x_dims_load(tmp_path: Path) -> None:
    ds = _cube(track="D").rename({"lat": "y", "lon": "x"})
    path = tmp_path / "classic.nc"
    ds.to_netcdf(path, engine="scipy")  # NetCDF3: not HDF5, read through the fallback engine
    cube = open_cube(path)
    assert cube["displacement"].dims == ("time", "lat", "lon")
    np.testing.assert_array_equal(cube["displacement"].values, ds["displacement"].values)


def test_zarr_store_loads(tmp_path: Path) -> None:
    ds = _cube(track="A", frame="sim")
    path = tmp_path / "cube.zarr"
    ds.to_zarr(path, mode="w", zarr_format=2)
    cube = open_cube(path)
    np.testing.assert_array_equal(cube["displacement"].values, ds["displacement"].values)
    np.testing.assert_array_equal(cube["time"].values, ds["time"].values)
    assert isinstance(cube["displacement"].data, np.ndarray)  # loaded, not lazy


def test_licsbas_out2nc_netcdf_with_cum_and_int_dates(tmp_path: Path) -> None:
    ds = _cube().rename({"displacement": "cum"})
    ds = ds.assign_coords(time=np.array(IMDATES, dtype=np.int32))
    path = tmp_path / FRAME / "output.nc"
    path.parent.mkdir()
    ds.to_netcdf(path, engine="h5netcdf")
    cube = open_cube(path)
    assert str(cube["time"].values[0])[:10] == "2021-01-05"
    np.testing.assert_array_equal(cube["displacement"].values, ds["cum"].values)


def test_write_cube_netcdf_is_compressed_and_reopens(tmp_path: Path) -> None:
    path = write_cube(_cube(track="A", frame=FRAME), tmp_path / "out" / "cube.nc")
    with h5py.File(path, "r") as f:
        assert f["displacement"].compression == "gzip"
    assert open_cube(path).attrs["frame"] == FRAME


# --- errors ----------------------------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "cum.h5"
    with pytest.raises(CubeFileNotFoundError, match="nowhere") as err:
        open_cube(missing)
    assert isinstance(err.value, CubeError) and isinstance(err.value, FileNotFoundError)


def test_missing_variable(tmp_path: Path) -> None:
    path = tmp_path / "c.nc"
    _cube(track="A").rename({"displacement": "los"}).to_netcdf(path, engine="h5netcdf")
    with pytest.raises(CubeError, match="no 'displacement' variable"):
        open_cube(path)


def test_wrong_dims(tmp_path: Path) -> None:
    path = tmp_path / "c.nc"
    _cube(track="A").rename({"lat": "row", "lon": "col"}).to_netcdf(path, engine="h5netcdf")
    with pytest.raises(CubeError, match=r"expected \(time, lat, lon\)"):
        open_cube(path)


def test_no_time_coordinate(tmp_path: Path) -> None:
    path = tmp_path / "c.nc"
    _cube(track="A").drop_vars("time").to_netcdf(path, engine="h5netcdf")
    with pytest.raises(CubeError, match="no 'time' coordinate"):
        open_cube(path)


def test_all_nan(tmp_path: Path) -> None:
    ds = _cube(track="A")
    ds["displacement"][:] = np.nan
    path = tmp_path / "c.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    with pytest.raises(CubeError, match="no finite value"):
        open_cube(path)


def test_opposite_sign_is_refused(tmp_path: Path) -> None:
    ds = _cube(track="A", sign="LOS, positive away from the satellite")
    path = tmp_path / "c.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    with pytest.raises(CubeError, match="Multiply displacement by -1"):
        open_cube(path)


def test_unrecognised_file_and_plain_directory(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a cube")
    with pytest.raises(CubeError, match="not a NetCDF, Zarr or HDF5"):
        open_cube(text)
    write_licsbas(tmp_path / "TS" / "cum.h5")
    with pytest.raises(CubeError, match="pass that file"):
        open_cube(tmp_path / "TS")


# --- property: write_cube / open_cube is lossless -------------------------------------------


@st.composite
def _cubes(draw: st.DrawFn) -> xr.Dataset:
    n = draw(st.integers(2, 5))
    ny = draw(st.integers(1, 4))
    nx = draw(st.integers(1, 4))
    values = draw(
        hnp.arrays(
            np.float32,
            (n, ny, nx),
            elements=st.one_of(
                st.floats(width=32, allow_nan=False, allow_infinity=False),
                st.just(np.float32(np.nan)),
            ),
        )
    )
    values.flat[draw(st.integers(0, values.size - 1))] = np.float32(1.5)  # at least one finite
    ds = _cube(n=n, ny=ny, nx=nx, track=draw(st.sampled_from(["A", "D"])), frame=FRAME)
    ds["displacement"].values[...] = values
    return ds


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ds=_cubes(), suffix=st.sampled_from([".nc", ".zarr"]))
def test_write_open_round_trip_is_bit_exact(ds: xr.Dataset, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        back = open_cube(write_cube(ds, Path(tmp) / f"cube{suffix}"))
    src = ds["displacement"].values
    got = back["displacement"].values
    assert got.dtype == np.float32
    nan = np.isnan(src)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got[~nan].view(np.uint32), src[~nan].view(np.uint32))  # -0.0 too
    np.testing.assert_array_equal(back["time"].values, ds["time"].values)
    np.testing.assert_array_equal(back["lat"].values, ds["lat"].values)
    assert back.attrs["track"] == ds.attrs["track"]
