"""The event fuzz of issue 11 (used by ``test_fuzz.py`` and ``benchmarks/fuzz_bench.py``; not a test module).

A hypothesis strategy draws one hostile message: a mutation of a valid ``licsar.epochs.v1``
event (JSON structure, types, numbers, dates, grids, raw bytes), or a valid event for the next
epoch whose data object is broken (NetCDF, Zarr and HDF5 contents). :class:`FuzzTarget` sends
it through the real :class:`~ladsdin.stream.processor.EpochProcessor` on a real Valkey and checks
the oracle: the event is rejected with a DLQ record that validates, or it is an exact no-op;
nothing raises; no key of any frame changes.

Every drawn message is invalid or a replay by construction, so any other outcome is a finding:
a mutation may only change what makes an event bad (a changed epoch is outside the Sentinel-1
era or not after the frame's cursor, a changed frame is outside ``LADSDIN_FRAMES``), and a data
object is broken in a way no reader may accept.
"""
from __future__ import annotations

import collections
import copy
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

from ladsdin.stream import objects
from ladsdin.stream.contracts import DLQ_SCHEMA, validate
from ladsdin.stream.events import encode_event

KEYS = ("schema", "event_id", "frame", "track", "epoch", "units", "sign", "produced_at", "grid", "data", "inline", "quality")
GRID = ("n_lat", "n_lon", "lat0", "lon0", "dlat", "dlon")

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False, allow_infinity=False),
                      st.text(max_size=40))
json_value = st.recursive(json_leaf, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                          max_leaves=12)
numbers = st.one_of(st.integers(-2**63, 2**63), st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([0, -1, 1e308, -1e-308, 2**31]))
bad_dates = st.one_of(
    st.dates(max_value=__import__("datetime").date(2014, 4, 2)).map(lambda d: f"{d.year:04d}-{d.month:02d}-{d.day:02d}"),
    st.dates(min_value=__import__("datetime").date(2040, 1, 1)).map(lambda d: f"{d.year:04d}-{d.month:02d}-{d.day:02d}"),
    st.text(max_size=12),
    st.sampled_from(["2021-02-30", "2021-13-01", "20210101", "2021-1-1", "9999-12-31", "0001-01-01"]),
)
BROKEN_OBJECTS = ("garbage", "truncated", "wrong_shape", "transposed", "two_times", "no_variable", "units_m", "all_nan", "has_inf",
                  "huge_declared", "string_values", "complex_values", "zarr_bad_meta", "zarr_no_chunks", "zarr_link_out", "zarr_as_netcdf",
                  "netcdf_as_zarr", "hdf5_compound")


@st.composite
def hostile_messages(draw: Any) -> tuple[str, Any]:
    """("json", mutator) | ("bytes", mutator) | ("object", kind and parameters)."""
    kind = draw(st.sampled_from(["drop", "add", "retype", "grid", "date", "frame", "nested", "bytes", "object", "object"]))
    if kind == "drop":
        return kind, draw(st.sampled_from(KEYS))
    if kind == "add":
        return kind, (draw(st.text(min_size=1, max_size=10)), draw(json_value))
    if kind == "retype":
        return kind, (draw(st.sampled_from(KEYS)), draw(json_value))
    if kind == "grid":
        return kind, (draw(st.sampled_from(GRID)), draw(numbers | json_value))
    if kind == "date":
        return kind, (draw(bad_dates), draw(st.booleans()))
    if kind == "frame":
        return kind, (draw(st.text(max_size=70) | st.sampled_from(["_x", "../x", "a{b}", "a:b", "128A_05172_131313", "x" * 65])),
                      draw(st.booleans()))
    if kind == "nested":
        return kind, (draw(st.sampled_from(["data", "inline", "quality", "grid"])), draw(st.text(max_size=8)), draw(json_value))
    if kind == "bytes":
        return kind, (draw(st.sampled_from(["truncate", "flip", "prefix", "non_utf8"])), draw(st.integers(0, 10**6)), draw(st.binary(max_size=8)))
    return kind, (draw(st.sampled_from(BROKEN_OBJECTS)), draw(st.integers(1, 10**6)))


class FuzzTarget:
    """One processor on a real Valkey serving ``frames`` (each already bootstrapped or buffering)."""

    def __init__(self, processor: Any, redis_client: Any, applied: dict[str, Any], nxt: dict[str, Any], cube: Any, work: Path) -> None:
        self.proc, self.r, self.applied, self.next, self.cube, self.work = processor, redis_client, applied, nxt, cube, work
        self.reasons: collections.Counter[str] = collections.Counter()
        self.statuses: collections.Counter[str] = collections.Counter()

    def snapshot(self) -> dict[bytes, bytes]:
        return {k: self.r.dump(k) for k in sorted(self.r.scan_iter(count=1000))}

    # -- building the message ------------------------------------------------------------------
    def message(self, kind: str, arg: Any) -> bytes:
        ev = copy.deepcopy(self.applied)
        if kind == "drop":
            ev.pop(arg, None)
        elif kind == "add":
            ev[arg[0] if arg[0] not in KEYS else arg[0] + "_x"] = arg[1]
        elif kind == "retype":
            ev[arg[0]] = arg[1]
        elif kind == "grid":
            ev["grid"][arg[0]] = arg[1]
        elif kind == "date":  # an epoch outside the era or malformed; with a consistent event_id or not
            ev["epoch"] = arg[0]
            if arg[1]:
                ev["event_id"] = f"{ev['frame']}:{arg[0]}:{ev['event_id'].rsplit(':', 1)[-1]}"
        elif kind == "frame":  # a frame this deployment does not serve, or no frame name at all
            name = arg[0] if arg[0] not in self.proc.settings.frames else arg[0] + "_z"
            ev["frame"] = name
            if arg[1]:
                ev["event_id"] = f"{name}:{ev['epoch']}:{ev['event_id'].rsplit(':', 1)[-1]}"
        elif kind == "nested":
            target = ev.get(arg[0])
            if isinstance(target, dict):
                target[arg[1] or "k"] = arg[2]
            else:
                ev[arg[0]] = {arg[1] or "k": arg[2]}
        elif kind == "bytes":
            raw = encode_event(ev)
            how, at, junk = arg
            at %= len(raw)
            if how == "truncate":
                return raw[:at]
            if how == "flip":
                b = bytearray(raw)
                b[at] ^= 0xFF
                return bytes(b)
            if how == "prefix":
                return junk + raw
            return raw[:at] + b"\xff\xfe" + raw[at:]
        elif kind == "object":
            ev = self.broken_object(*arg)
        try:
            return encode_event(ev)
        except (TypeError, ValueError):  # an unserialisable mutation: send its repr as bytes
            return repr(ev).encode()

    def broken_object(self, how: str, seed: int) -> dict[str, Any]:
        """The next epoch's (valid) event, its data object replaced by a broken one."""
        import h5netcdf
        import h5py
        import xarray as xr

        ev = copy.deepcopy(self.next)
        rng = np.random.default_rng(seed)
        d = self.cube["displacement"][-1].drop_vars("time", errors="ignore")
        lat, lon = self.cube["lat"].values, self.cube["lon"].values
        good = Path(ev["data"]["uri"].removeprefix("file://"))
        out = good.parent / f"fuzz-{uuid.uuid4().hex}{'.zarr' if how.startswith('zarr') or how == 'netcdf_as_zarr' else '.nc'}"
        fmt = "netcdf"

        def nc(ds: xr.Dataset) -> None:
            ds.to_netcdf(out, engine="h5netcdf")

        if how == "garbage":
            out.write_bytes(rng.bytes(int(rng.integers(1, 4096))))
        elif how == "truncated":
            blob = good.read_bytes()
            out.write_bytes(blob[: int(rng.integers(1, len(blob) - 1))])
        elif how == "wrong_shape":
            nc(xr.Dataset({"displacement": (("lat", "lon"), np.zeros((lat.size + 1, lon.size), np.float32), {"units": "mm"})}))
        elif how == "transposed":
            nc(xr.Dataset({"displacement": (("lon", "lat"), d.values.T.copy(), {"units": "mm"})}))
        elif how == "two_times":
            nc(xr.Dataset({"displacement": (("time", "lat", "lon"), np.stack([d.values, d.values]), {"units": "mm"})},
                          coords={"lat": lat, "lon": lon}))
        elif how == "no_variable":
            nc(xr.Dataset({"cum": d}))
        elif how == "units_m":
            nc(xr.Dataset({"displacement": d.assign_attrs(units="m")}))
        elif how == "all_nan":
            nc(xr.Dataset({"displacement": d.copy(data=np.full(d.shape, np.nan, np.float32)).assign_attrs(units="mm")}))
        elif how == "has_inf":
            v = d.values.copy()
            v.flat[int(rng.integers(0, v.size))] = np.inf
            nc(xr.Dataset({"displacement": d.copy(data=v).assign_attrs(units="mm")}))
        elif how == "huge_declared":
            with h5netcdf.File(out, "w") as f:
                f.dimensions = {"lat": 30_000, "lon": 30_000}
                f.create_variable("displacement", ("lat", "lon"), "f4", chunks=(1000, 1000)).attrs["units"] = "mm"
        elif how == "string_values":
            nc(xr.Dataset({"displacement": (("lat", "lon"), np.full(d.shape, "x", dtype=object), {"units": "mm"})}))
        elif how == "complex_values":
            with h5py.File(out, "w") as f:
                f.create_dataset("displacement", data=d.values.astype(np.complex64)).attrs["units"] = "mm"
        elif how == "hdf5_compound":
            with h5py.File(out, "w") as f:
                f.create_dataset("displacement", data=np.zeros(d.shape, dtype=[("a", "f4"), ("b", "i2")])).attrs["units"] = "mm"
        elif how.startswith("zarr") or how == "netcdf_as_zarr":
            fmt = "zarr"
            xr.Dataset({"displacement": d.assign_attrs(units="mm")}).to_zarr(out, consolidated=False, zarr_format=2)
            if how == "zarr_bad_meta":
                (out / "displacement" / ".zarray").write_text(json.dumps({"shape": [int(rng.integers(1, 10**9))], "junk": True}))
            elif how == "zarr_no_chunks":
                for chunk in (out / "displacement").iterdir():
                    if not chunk.name.startswith("."):
                        chunk.unlink()
            elif how == "zarr_link_out":
                (out / "displacement" / "0.0").unlink()
                (out / "displacement" / "0.0").symlink_to(self.work / "outside-chunk")
            elif how == "zarr_as_netcdf":
                fmt = "netcdf"
            elif how == "netcdf_as_zarr":
                shutil.rmtree(out)
                out = out.with_suffix(".nc")
                out.write_bytes(good.read_bytes())
        ev["data"].update(uri=out.as_uri(), sha256=objects.object_sha256(out), format=fmt)
        return ev

    # -- the oracle ----------------------------------------------------------------------------
    def check(self, kind: str, arg: Any, before: dict[bytes, bytes]) -> None:
        raw = self.message(kind, arg)
        out = self.proc.process(raw, topic="licsar.epochs.v1", partition=0, offset=7)  # must not raise
        self.statuses[out.status] += 1
        assert out.status in ("rejected", "duplicate"), f"{kind} {arg!r}: a hostile message was {out.status}"
        if out.status == "rejected":
            self.reasons[out.reason] += 1
            assert len(out.messages) == 1
            validate(DLQ_SCHEMA, json.loads(out.messages[0].value))
        after = self.snapshot()
        changed = sorted(k.decode() for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        assert not changed, f"{kind} {arg!r}: keys changed: {changed[:5]}"
