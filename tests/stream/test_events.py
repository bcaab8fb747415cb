"""The epoch event contract: build/parse, data by reference or inline, every DLQ reason, schemas."""
from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from ladsdin.models.alerts import object_feature
from ladsdin.models.labelling import SeismicObject
from ladsdin.stream import contracts, dlq, objects
from ladsdin.stream import events as ev
from ladsdin.stream.contracts import EventError

FRAME = "128A_05172_131313"
EPOCH = "2022-01-12"
MAX = 1 << 20
LAT = 37.9 - 0.001 * np.arange(10)  # north-up: dlat < 0
LON = 101.0 + 0.001 * np.arange(12)


def _map(seed: int = 0) -> np.ndarray:
    d = np.random.default_rng(seed).normal(0.0, 10.0, (LAT.size, LON.size)).astype(np.float32)
    d[1, 2] = np.nan
    return d


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    r = tmp_path / "data"
    r.mkdir()
    return r


@pytest.fixture()
def ref_event(root: Path) -> dict[str, Any]:
    uri, sha = objects.write_epoch_object(root, FRAME, EPOCH, _map(), LAT, LON, "A")
    return ev.build_epoch_event(FRAME, "A", EPOCH, LAT, LON, uri=uri, sha256=sha)


def _reason(excinfo: pytest.ExceptionInfo[EventError]) -> str:
    return excinfo.value.reason


def _roundtrip(event: dict[str, Any]) -> dict[str, Any]:
    return ev.parse_epoch_event(ev.encode_event(event), max_bytes=MAX)


# -- valid events --------------------------------------------------------------------------
def test_schemas_are_valid_draft_2020_12_and_state_units_and_sign() -> None:
    for name in (contracts.EPOCH_SCHEMA, contracts.ALERT_SCHEMA, contracts.SUMMARY_SCHEMA, contracts.DLQ_SCHEMA):
        schema = contracts.load_schema(name)
        Draft202012Validator.check_schema(schema)
        text = json.dumps(schema)
        assert "mm" in text and "positive towards the satellite" in text, name
    props = contracts.load_schema(contracts.EPOCH_SCHEMA)["properties"]
    assert props["units"] == {"const": "mm"} and props["sign"] == {"const": "LOS, positive towards the satellite"}
    reasons = contracts.load_schema(contracts.DLQ_SCHEMA)["properties"]["reason"]["enum"]
    assert tuple(reasons) == contracts.REASONS


def test_reference_event_round_trip(ref_event: dict[str, Any], root: Path) -> None:
    event = _roundtrip(ref_event)
    assert event == ref_event
    assert event["grid"] == {"n_lat": 10, "n_lon": 12, "lat0": 37.9, "lon0": 101.0, "dlat": -0.001, "dlon": 0.001}
    assert event["event_id"] == f"{FRAME}:{EPOCH}:{event['data']['sha256'][:12]}"
    assert event["data"]["format"] == "netcdf" and event["data"]["uri"].startswith("file:///")
    got = objects.load_epoch_data(event, [root], {"n_lat": 10, "n_lon": 12})
    assert got.dtype == np.float32 and got.shape == (10, 12)
    np.testing.assert_array_equal(got, _map())


def test_inline_round_trip_is_bit_exact_including_nan() -> None:
    d = _map()
    d[0, :4] = [np.nan, -0.0, np.float32(1e-45), np.float32(3.4e38)]  # NaN, signed zero, subnormal, near max
    event = _roundtrip(ev.build_epoch_event(FRAME, "A", EPOCH, LAT, LON, inline=d))
    assert event["inline"]["byteorder"] == "little" and event["inline"]["dtype"] == "float32"
    got = objects.load_epoch_data(event, [])
    np.testing.assert_array_equal(got.view(np.uint32), d.view(np.uint32))
    assert event["event_id"].endswith(":" + __import__("hashlib").sha256(d.astype("<f4").tobytes()).hexdigest()[:12])


def test_inline_payload_is_accepted_as_built() -> None:
    d = _map()
    a = ev.build_epoch_event(FRAME, "A", EPOCH, LAT, LON, inline=d, produced_at="2022-01-12T18:00:00Z")
    b = ev.build_epoch_event(FRAME, "A", EPOCH, LAT, LON, inline=ev.inline_payload(d), produced_at="2022-01-12T18:00:00Z")
    assert a == b
    with pytest.raises(ValueError, match=r"shape \(12, 10\)"):
        ev.build_epoch_event(FRAME, "A", EPOCH, LAT, LON, inline=d.T)


def test_event_id_is_deterministic_for_the_same_data(root: Path) -> None:
    a = objects.write_epoch_object(root, FRAME, EPOCH, _map(), LAT, LON, "A")
    b = objects.write_epoch_object(root, FRAME, EPOCH, _map(), LAT, LON, "A")
    c = objects.write_epoch_object(root, FRAME, EPOCH, _map(seed=1), LAT, LON, "A")
    assert a == b and a[1] != c[1]


def test_free_frame_names_are_accepted_but_unsafe_ones_are_not() -> None:
    ok = _roundtrip(ev.build_epoch_event("menyuan-sim.v2_A", "A", EPOCH, LAT, LON, inline=_map()))
    assert ok["frame"] == "menyuan-sim.v2_A"
    for bad in ("../etc", ".hidden", "a/b", "x" * 65, "ladsdin:{x}"):
        with pytest.raises(EventError) as ei:
            ev.build_epoch_event(bad, "A", EPOCH, LAT, LON, inline=_map())
        assert _reason(ei) == "schema_violation" and repr(bad) in str(ei.value)


def test_write_is_atomic(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri, sha = objects.write_epoch_object(root, FRAME, EPOCH, _map(), LAT, LON, "A")
    final = root / FRAME / f"{EPOCH}.nc"
    before = final.read_bytes()
    import xarray as xr

    def half_write(self: xr.Dataset, path: Path, **kw: Any) -> None:
        Path(path).write_bytes(b"\x89HDF partial")
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", half_write)
    with pytest.raises(OSError, match="disk full"):
        objects.write_epoch_object(root, FRAME, EPOCH, _map(seed=2), LAT, LON, "A")
    assert final.read_bytes() == before  # the old object is untouched
    assert sorted(p.name for p in (root / FRAME).iterdir()) == [f"{EPOCH}.nc"]  # no temp file left
    with pytest.raises(OSError):
        objects.write_epoch_object(root, FRAME, "2022-01-24", _map(), LAT, LON, "A")
    assert not (root / FRAME / "2022-01-24.nc").exists()


# -- parse: oversize, invalid_json, schema_violation ----------------------------------------
def test_oversize_event(ref_event: dict[str, Any]) -> None:
    raw = ev.encode_event(ref_event)
    with pytest.raises(EventError) as ei:
        ev.parse_epoch_event(raw, max_bytes=len(raw) - 1)
    assert _reason(ei) == "oversize" and "LADSDIN_MAX_MESSAGE_BYTES" in str(ei.value)
    assert ev.parse_epoch_event(raw, max_bytes=len(raw))["frame"] == FRAME


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe{}", b'{"grid": NaN}', b""])
def test_invalid_json(raw: bytes) -> None:
    with pytest.raises(EventError) as ei:
        ev.parse_epoch_event(raw, max_bytes=MAX)
    assert _reason(ei) == "invalid_json"


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda e: e.pop("epoch"), "$"),
        (lambda e: e["grid"].update(n_lat=0), "$.grid.n_lat"),
        (lambda e: e["grid"].update(dlat=0), "$.grid.dlat"),
        (lambda e: e.update(units="m"), "$.units"),
        (lambda e: e.update(sign="LOS, positive away from the satellite"), "$.sign"),
        (lambda e: e["data"].update(sha256="abc"), "$.data.sha256"),
        (lambda e: e["data"].update(format="geotiff"), "$.data.format"),
        (lambda e: e.update(track="X"), "$.track"),
        (lambda e: e.update(epoch="12/01/2022"), "$.epoch"),
        (lambda e: e.update(produced_at="yesterday"), "$.produced_at"),
        (lambda e: e.update(inline={"dtype": "float32", "encoding": "base64", "byteorder": "little", "values": ""}), "$"),
        (lambda e: e.pop("data"), "$"),
        (lambda e: e.update(extra=1), "$"),
    ],
)
def test_schema_violation_names_the_path(ref_event: dict[str, Any], mutate: Any, path: str) -> None:
    mutate(ref_event)
    with pytest.raises(EventError) as ei:
        _roundtrip(ref_event)
    assert _reason(ei) == "schema_violation"
    assert f"at {path}:" in str(ei.value)


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda e: e.update(epoch="2022-02-30"), "real date"),
        (lambda e: e.update(track="D"), "track A by its ID"),
        (lambda e: e.update(event_id="128A_05172_131313:2021-01-01:0123456789ab"), "must start with"),
    ],
)
def test_semantic_violations(ref_event: dict[str, Any], mutate: Any, needle: str) -> None:
    mutate(ref_event)
    with pytest.raises(EventError) as ei:
        _roundtrip(ref_event)
    assert _reason(ei) == "schema_violation" and needle in str(ei.value)


def test_non_object_json_is_a_schema_violation() -> None:
    with pytest.raises(EventError) as ei:
        ev.parse_epoch_event(b"[1, 2]", max_bytes=MAX)
    assert _reason(ei) == "schema_violation"


# -- URIs ----------------------------------------------------------------------------------
def test_resolve_uri_accepts_files_inside_a_root(ref_event: dict[str, Any], root: Path) -> None:
    real = objects.resolve_uri(ref_event["data"]["uri"], [root])
    assert real == (root / FRAME / f"{EPOCH}.nc").resolve()
    assert objects.resolve_uri(f"file://localhost{real}", [root]) == real


def test_resolve_uri_rejects_escapes(root: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.nc"
    secret.write_bytes(b"x")
    (root / "link.nc").symlink_to(secret)
    (root / "dirlink").symlink_to(tmp_path)
    cases = {
        f"file://{root}/../secret.nc": "'..'",
        f"file://{root}/%2E%2E/secret.nc": "'..'",
        f"file://{root}/link.nc": "outside the allowed roots",
        f"file://{root}/dirlink/secret.nc": "outside the allowed roots",
        f"file://{secret}": "outside the allowed roots",
        f"file://{root}": "outside the allowed roots",  # the root itself is not an object
        f"file://otherhost{root}/x.nc": "host 'otherhost'",
        f"http://example.org{root}/x.nc": "only file://",
        f"s3://bucket/{FRAME}/{EPOCH}.nc": "not supported yet",
        f"{root}/x.nc": "only file://",
        f"file://{root}/x.nc?v=1": "no query",
    }
    for uri, needle in cases.items():
        with pytest.raises(EventError) as ei:
            objects.resolve_uri(uri, [root])
        assert _reason(ei) == "uri_disallowed", uri
        assert needle in str(ei.value), (uri, str(ei.value))
    with pytest.raises(EventError) as ei:
        objects.resolve_uri(f"file://{secret}", [])
    assert _reason(ei) == "uri_disallowed"


def test_uri_missing(root: Path) -> None:
    with pytest.raises(EventError) as ei:
        objects.resolve_uri(f"file://{root}/{FRAME}/2030-01-01.nc", [root])
    assert _reason(ei) == "uri_missing"
    # missing outside the roots stays 'disallowed': existence is not revealed
    with pytest.raises(EventError) as ei:
        objects.resolve_uri("file:///nonexistent/x.nc", [root])
    assert _reason(ei) == "uri_disallowed"


# -- data: sha256_mismatch, unreadable_data, grid_mismatch, all_nan, oversize -----------------
def test_sha256_mismatch(ref_event: dict[str, Any], root: Path) -> None:
    objects.write_epoch_object(root, FRAME, EPOCH, _map(seed=3), LAT, LON, "A")  # replaced after the event
    with pytest.raises(EventError) as ei:
        objects.load_epoch_data(ref_event, [root])
    assert _reason(ei) == "sha256_mismatch"


def _event_for_file(path: Path, lat: np.ndarray = LAT, lon: np.ndarray = LON) -> dict[str, Any]:
    return ev.build_epoch_event(FRAME, "A", EPOCH, lat, lon, uri=path.resolve().as_uri(),
                                sha256=objects.object_sha256(path))


def test_unreadable_data(root: Path) -> None:
    junk = root / "junk.nc"
    junk.write_bytes(b"this is not NetCDF")
    import xarray as xr

    other = root / "other.nc"
    xr.Dataset({"cum": (("lat", "lon"), _map())}, coords={"lat": LAT, "lon": LON}).to_netcdf(other, engine="h5netcdf")
    metres = root / "metres.nc"
    xr.Dataset({"displacement": (("lat", "lon"), _map(), {"units": "m"})},
               coords={"lat": LAT, "lon": LON}).to_netcdf(metres, engine="h5netcdf")
    for path, needle in ((junk, "cannot read as netcdf"), (other, "no 'displacement'"), (metres, "'m'")):
        with pytest.raises(EventError) as ei:
            objects.load_epoch_data(_event_for_file(path), [root])
        assert _reason(ei) == "unreadable_data" and needle in str(ei.value)
    inline = ev.build_epoch_event(FRAME, "A", EPOCH, LAT, LON, inline=_map())
    inline["inline"]["values"] = "AAAA=AAA"
    with pytest.raises(EventError) as ei:
        objects.load_epoch_data(inline, [])
    assert _reason(ei) == "unreadable_data"
    inf = _map()
    inf[0, 0] = np.inf
    with pytest.raises(EventError) as ei:
        objects.load_epoch_data(ev.build_epoch_event(FRAME, "A", EPOCH, LAT, LON, inline=inf), [])
    assert _reason(ei) == "unreadable_data" and "inf" in str(ei.value)


def test_grid_mismatch(ref_event: dict[str, Any], root: Path) -> None:
    for expected in ({"n_lat": 11}, {"n_lon": 12, "n_lat": 9}, {"lat0": 38.5}, {"dlon": 0.002}):
        with pytest.raises(EventError) as ei:
            objects.load_epoch_data(ref_event, [root], expected)
        assert _reason(ei) == "grid_mismatch", expected
    assert objects.load_epoch_data(ref_event, [root], dict(ref_event["grid"])).shape == (10, 12)
    # the file holds 10x12 but the event announces 10x13
    path = root / FRAME / f"{EPOCH}.nc"
    wide = _event_for_file(path, LAT, 101.0 + 0.001 * np.arange(13))
    with pytest.raises(EventError) as ei:
        objects.load_epoch_data(wide, [root])
    assert _reason(ei) == "grid_mismatch" and "(10, 12)" in str(ei.value)
    # same shape, another place on Earth
    shifted = _event_for_file(path, LAT + 1.0, LON)
    with pytest.raises(EventError) as ei:
        objects.load_epoch_data(shifted, [root])
    assert _reason(ei) == "grid_mismatch" and "lat0" in str(ei.value)
    # inline values that do not fill the grid
    inline = ev.build_epoch_event(FRAME, "A", EPOCH, LAT, LON, inline=_map())
    inline["inline"]["values"] = base64.b64encode(np.zeros(7, "<f4").tobytes()).decode()
    with pytest.raises(EventError) as ei:
        objects.load_epoch_data(inline, [])
    assert _reason(ei) == "grid_mismatch"


def test_all_nan(root: Path) -> None:
    empty = np.full((LAT.size, LON.size), np.nan, np.float32)
    with pytest.raises(EventError) as ei:
        objects.load_epoch_data(ev.build_epoch_event(FRAME, "A", EPOCH, LAT, LON, inline=empty), [])
    assert _reason(ei) == "all_nan"
    uri, sha = objects.write_epoch_object(root, FRAME, EPOCH, empty, LAT, LON, "A")
    with pytest.raises(EventError) as ei:
        objects.load_epoch_data(ev.build_epoch_event(FRAME, "A", EPOCH, LAT, LON, uri=uri, sha256=sha), [root])
    assert _reason(ei) == "all_nan"


def test_oversize_object(root: Path) -> None:
    big = root / "big.nc"
    with open(big, "wb") as f:
        f.truncate(5 * 1024 * 1024)  # far more than a 10x12 map can need
    with pytest.raises(EventError) as ei:
        objects.load_epoch_data(_event_for_file(big), [root])
    assert _reason(ei) == "oversize"


@pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")  # the test's writer, zarr v3
def test_zarr_object(root: Path) -> None:
    import xarray as xr

    store = root / "e.zarr"
    xr.Dataset({"displacement": (("lat", "lon"), _map(), {"units": "mm"})},
               coords={"lat": LAT, "lon": LON}).to_zarr(store)
    event = _roundtrip(_event_for_file(store))
    assert event["data"]["format"] == "zarr"
    np.testing.assert_array_equal(objects.load_epoch_data(event, [root]), _map())
    next(p for p in store.rglob("*") if p.is_file() and p.stat().st_size > 0).write_bytes(b"tampered")
    with pytest.raises(EventError) as ei:
        objects.load_epoch_data(event, [root])
    assert _reason(ei) == "sha256_mismatch"


# -- DLQ, alerts and summaries against their schemas ------------------------------------------
def test_dlq_records_validate_for_every_reason() -> None:
    for i, reason in enumerate(contracts.REASONS):
        rec = dlq.dlq_record(b'{"frame": "f1", "epoch": "2022-01-12"}', reason, "detail", "licsar.epochs.v1", 0, i,
                            key=b"f1")
        contracts.validate(contracts.DLQ_SCHEMA, rec)
        assert rec["reason"] == reason and rec["source"]["offset"] == i
        assert (rec["frame"], rec["epoch"], rec["key"], rec["payload_base64"]) == ("f1", "2022-01-12", "f1", False)
    with pytest.raises(ValueError, match="not one of"):
        dlq.dlq_record(b"{}", "bad_reason", "", "t", 0, 0)
    with pytest.raises(ValueError, match="not one of"):
        EventError("bad_reason", "x")


def test_dlq_keeps_binary_payload_as_base64_and_truncates_on_request() -> None:
    raw = b"\x00\xff\xfe binary"
    rec = dlq.dlq_record(raw, "invalid_json", "not UTF-8", "licsar.epochs.v1", 3, 42)
    contracts.validate(contracts.DLQ_SCHEMA, rec)
    assert rec["payload_base64"] and base64.b64decode(rec["payload"]) == raw and rec["frame"] is None
    text = ("é" * 100).encode()  # 2 bytes per character: a cut at 51 splits one
    rec = dlq.dlq_record(text, "oversize", "big", "licsar.epochs.v1", 0, 1, max_payload_bytes=51)
    contracts.validate(contracts.DLQ_SCHEMA, rec)
    assert rec["payload"] == "é" * 25 and not rec["payload_base64"]
    assert rec["payload_truncated"] and rec["payload_bytes"] == 200


def test_alert_features_from_the_method_validate() -> None:
    obj = SeismicObject(index=0, label=1, n_pixels=6, rows=np.array([2, 2, 3, 3, 4, 4]),
                        cols=np.array([5, 6, 5, 6, 5, 6]), los_min_mm=-120.5, los_max_mm=35.25)
    feat = object_feature(obj, lat=LAT, lon=LON, frame=FRAME, track="A", epoch=EPOCH, nm=6.0, n_a=5,
                          model_version="m1", extra={"gap_steps": 0, "event_id": f"{FRAME}:{EPOCH}:0123456789ab"})
    contracts.validate(contracts.ALERT_SCHEMA, json.loads(json.dumps(feat)))
    feat["properties"]["units"] = "m"
    with pytest.raises(EventError, match=r"\$\.properties\.units"):
        contracts.validate(contracts.ALERT_SCHEMA, feat)


def test_summary_record_validates() -> None:
    summary = {"schema": contracts.SUMMARY_SCHEMA, "frame": FRAME, "epoch": EPOCH, "event_id": "x", "c_k": 120, "n_a": 67,
               "n_valid": 5000, "largest_object_px": 90, "n_seismic_objects": 1, "examined": True, "gap_steps": 0,
               "common_mode_mm": -3.2, "latency_s": 1.5, "produced_at": "2022-01-12T18:00:00Z", "model_version": "m1",
               "units": "mm", "sign": "LOS, positive towards the satellite"}
    contracts.validate(contracts.SUMMARY_SCHEMA, summary)
    summary.pop("c_k")
    with pytest.raises(EventError, match="c_k"):
        contracts.validate(contracts.SUMMARY_SCHEMA, summary)


def test_no_stray_files_outside_the_frame_directory(root: Path) -> None:
    objects.write_epoch_object(root, "free_name", EPOCH, _map(), LAT, LON, "D")
    assert [p.relative_to(root).as_posix() for p in sorted(root.rglob("*"))] == ["free_name", f"free_name/{EPOCH}.nc"]
    assert os.access(root / "free_name" / f"{EPOCH}.nc", os.R_OK)
