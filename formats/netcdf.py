"""Read and write cube files (CF-NetCDF or Zarr), the native form of the cube contract (DESIGN.md §3).

A cube file holds ``displacement`` (time, lat, lon) in LOS mm, positive towards the satellite,
optional ``coherence``, and attributes ``frame``/``track``. lat may run either way; dims may
be called y/x (normalize_cube renames them). The NetCDF files that LiCSBAS_out2nc.py writes
(``cum``/``coh`` variables, distributed by the COMET LiCS portal) are read as well.
"""
from __future__ import annotations

import inspect
import logging
import os
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr

from ladsdin.models.cube import CubeError

from ladsdin.formats.licsbas import dates_from_yyyymmdd

logger = logging.getLogger(__name__)

#: Variable names written by other tools, mapped to the contract's names.
_VAR_ALIASES = {"displacement": ("cum",), "coherence": ("coh", "coh_avg")}
#: Zarr metadata files: v3 groups have zarr.json, v2 groups .zgroup (and .zmetadata if consolidated).
_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zmetadata", ".zarray")


def is_zarr(path: Path) -> bool:
    """True for a Zarr store on disk: a ``*.zarr`` directory, any directory with Zarr metadata,
    or a zipped store ``*.zarr.zip``."""
    if path.is_dir():
        return path.suffix == ".zarr" or any((path / m).exists() for m in _ZARR_MARKERS)
    return path.name.endswith(".zarr.zip")


def _engines_for(hdf5: bool) -> list[str]:
    installed = set(xr.backends.list_engines())
    # h5netcdf reads NetCDF4 (= HDF5) with the HDF5 library we already need for cum.h5; NetCDF3
    # classic ("CDF\x01"/"CDF\x02") needs scipy or the netCDF4 C library.
    order = ["h5netcdf", "netcdf4"] if hdf5 else ["netcdf4", "scipy"]
    return [e for e in order if e in installed]


def _load_netcdf(path: Path, hdf5: bool, lazy: bool = False) -> xr.Dataset:
    engines = _engines_for(hdf5)
    if not engines:
        need = "h5netcdf" if hdf5 else "scipy or netCDF4"
        raise CubeError(f"{path}: no xarray engine can read this file; pip install {need}")
    errors = []
    for engine in engines:
        try:
            if lazy:  # the file stays open; variables are read window by window when indexed
                return xr.open_dataset(path, engine=engine, cache=False)
            with xr.open_dataset(path, engine=engine) as ds:
                return ds.load()
        except (OSError, ValueError, TypeError) as exc:  # the engine's own "cannot read" signals
            errors.append(f"{engine}: {exc}")
    raise CubeError(f"{path}: cannot read it as NetCDF ({'; '.join(errors)})")


def _load_zarr(path: Path, lazy: bool = False) -> xr.Dataset:
    store: Any = os.fspath(path)
    if path.is_file():  # *.zarr.zip
        import zarr

        store = zarr.storage.ZipStore(store, mode="r")
    try:
        # chunks=None keeps numpy-backed lazy arrays (no dask)
        if lazy and isinstance(store, str):
            return xr.open_dataset(store, engine="zarr", chunks=None, cache=False)
        with xr.open_dataset(store, engine="zarr", chunks=None) as ds:
            return ds.load()
    except (OSError, ValueError, KeyError) as exc:
        raise CubeError(f"{path}: cannot read it as a Zarr store ({exc})") from exc
    finally:
        if not isinstance(store, str):
            store.close()


def _apply_aliases(ds: xr.Dataset) -> xr.Dataset:
    renames: dict[str, str] = {}
    for want, aliases in _VAR_ALIASES.items():
        if want in ds.data_vars:
            continue
        for alias in aliases:
            if alias in ds.data_vars:
                renames[alias] = want
                break
    return ds.rename(renames) if renames else ds


def _decode_yyyymmdd_time(ds: xr.Dataset, source: str) -> xr.Dataset:
    """Integer time coordinates that are plainly YYYYMMDD (LiCSBAS imdates written as-is) become
    dates; any other undecoded time is left for normalize_cube to reject with its fix."""
    for name in ("time", "date", "dates", "epoch", "t"):
        if name in ds.coords and np.issubdtype(ds[name].dtype, np.integer):
            values = ds[name].values
            if values.size and np.all((values >= 19000101) & (values <= 21001231)):
                return ds.assign_coords({name: dates_from_yyyymmdd(values, source=f"{source}:{name}")})
    return ds


_OPPOSITE_SIGN = re.compile(r"positive[^,;.]*\b(away|range increase|subsidence|downward)")


def _check_sign(ds: xr.Dataset, source: str) -> None:
    """Refuse a file that says it uses the opposite sign rather than silently flipping on free text."""
    declared = [("file", ds.attrs.get("sign"))]
    if "displacement" in ds:
        declared.append(("displacement variable", ds["displacement"].attrs.get("sign")))
    for where, sign in declared:
        if sign is not None and _OPPOSITE_SIGN.search(str(sign).lower()):
            raise CubeError(
                f"{source}: the {where} declares sign {sign!r}; the cube contract is LOS positive "
                "towards the satellite. Multiply displacement by -1 and update the 'sign' attribute"
            )


def read_cube_file(path: str | os.PathLike[str], *, hdf5: bool | None = None, lazy: bool = False) -> xr.Dataset:
    """Read a NetCDF or Zarr cube file, whole into memory or lazily.

    Args:
        path: a NetCDF file (NetCDF4/HDF5 or NetCDF3 classic) or a Zarr store.
        hdf5: whether the file is HDF5 (sniffed by the caller); None lets this function sniff.
        lazy: keep the file open and read only what is indexed (full-size frames).

    Returns:
        The dataset as stored, with tool-specific names (``cum``, ``coh``) mapped to the contract
        and YYYYMMDD integer times decoded; normalize_cube checks the rest.

    Raises:
        CubeError: unreadable file, or a declared sign opposite to the contract.
    """
    p = Path(path)
    zarr_store = is_zarr(p)
    if zarr_store:
        ds = _load_zarr(p, lazy)
    else:
        if hdf5 is None:
            hdf5 = bool(h5py.is_hdf5(p))
        ds = _load_netcdf(p, hdf5, lazy)
    ds = _decode_yyyymmdd_time(_apply_aliases(ds), os.fspath(p))
    _check_sign(ds, os.fspath(p))
    ds.attrs.setdefault("source_format", "zarr" if zarr_store else "netcdf")
    ds.attrs.setdefault("source_file", os.fspath(p))
    logger.info("read cube %s: variables %s, dims %s", p, sorted(map(str, ds.data_vars)), dict(ds.sizes))
    return ds


def _serialisable_attrs(attrs: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if value is None:
            continue  # NetCDF has no null attribute
        if isinstance(value, (bool, np.bool_)):
            value = int(value)
        out[str(key)] = value
    return out


def write_cube_file(ds: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Write a canonical cube (already normalized) as Zarr (``*.zarr``) or NetCDF4 (otherwise).

    Args:
        ds: a dataset that passed normalize_cube: ``displacement`` (time, lat, lon) float32 mm.
        path: destination; an existing file or store is replaced.

    Returns:
        The path written.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    ds = ds.copy()
    ds.attrs = _serialisable_attrs(ds.attrs)
    for name in ds.variables:
        ds[name].attrs = _serialisable_attrs(ds[name].attrs)
        ds[name].encoding = {}  # drop the source file's chunking/compression and stale paths
    if p.suffix == ".zarr":
        kwargs: dict[str, Any] = {"mode": "w"}
        # Zarr format 2 with consolidated metadata reads everywhere (zarr-python 2 and 3, other
        # languages); format 3 consolidated metadata is not yet in the spec and warns.
        if "zarr_format" in inspect.signature(xr.Dataset.to_zarr).parameters:
            kwargs["zarr_format"] = 2
        ds.to_zarr(p, **kwargs)
    else:
        compressed = {"zlib": True, "complevel": 4, "shuffle": True}
        encoding = {name: dict(compressed) for name in ("displacement", "coherence") if name in ds}
        # chunks of a few epochs by 256 x 256 pixels: a tile's series and an epoch's map both read
        # a small fraction of the file (detect reads full-size frames window by window)
        n_t, n_lat, n_lon = (ds.sizes[d] for d in ("time", "lat", "lon"))
        encoding["displacement"]["chunksizes"] = (min(n_t, 8), min(n_lat, 256), min(n_lon, 256))
        ds.to_netcdf(p, engine="h5netcdf", encoding=encoding)
    logger.info("wrote cube %s (%s)", p, dict(ds.sizes))
    return p
