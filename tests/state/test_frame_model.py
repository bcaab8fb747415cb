"""A fitted frame model and its pixel state survive the codec bit for bit (shared and per-pixel)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ladsdin.models.cleaning import Calendar
from ladsdin.models.detector import PixelGrid, ScoreParams, score_epoch
from ladsdin.models.forecaster import fit_forecaster
from ladsdin.models.training import TrainConfig
from ladsdin.state.codec import StateFormatError, decode_arrays, encode_arrays, read_header
from ladsdin.state.frame_model import check_state_fits, decode_model, decode_state, encode_model, encode_state

from ..models.synthetic import small_cube

CPU = torch.device("cpu")
N_TRAIN = 40


@pytest.fixture(scope="module", params=["shared", "per-pixel"])
def fitted(request):
    cube = small_cube(n_t=50, ny=10, nx=9, noise=4.0, step_at=46, step_mm=60.0, seed=7)
    d = cube["displacement"].values.reshape(50, -1)
    keep = np.ones(d.shape[1], bool)
    keep[[0, 5, 17]] = False  # a few unmodelled pixels, so grid.index is not just arange
    index = np.flatnonzero(keep)
    cal = Calendar(np.datetime64("2019-01-05"), 12, N_TRAIN)
    torch.manual_seed(0)
    fc, state = fit_forecaster(d[:N_TRAIN, index], cal, TrainConfig(kind=request.param, max_passes=3), CPU, nm=5.0)
    grid = PixelGrid(cube["lat"].values, cube["lon"].values, index)
    params = ScoreParams(nm=5.0, n_a=4, connectivity=8, common_mode="plane", reanchor=True)
    return cube, fc, state, grid, params


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.device == b.device and torch.equal(a, b)


def _same_state(a, b) -> bool:
    return a.slot == b.slot and all(_same_tensor(getattr(a, n), getattr(b, n)) for n in ("h", "c", "pred", "since_obs", "offset"))


def _same_array(a, b) -> bool:
    return (a is None and b is None) or (a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes())


def _same_value(a, b) -> bool:
    """Bit-identical arrays, field by field for dataclasses (seismic objects), == otherwise."""
    if isinstance(a, np.ndarray):
        return _same_array(a, b)
    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and all(_same_value(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    return a == b


def test_model_round_trip_restores_every_part(fitted):
    _, fc, _, grid, params = fitted
    blob = encode_model(fc, grid, params, info={"frame": "128A_05210_131313", "train_epochs": N_TRAIN})
    fc2, grid2, params2, meta = decode_model(blob, CPU)
    assert type(fc2.net) is type(fc.net) and fc2.net.kind == fc.net.kind
    sd, sd2 = fc.net.state_dict(), fc2.net.state_dict()
    assert list(sd) == list(sd2) and all(_same_tensor(sd[k], sd2[k]) for k in sd)
    for name in ("coef", "scale", "sigma", "gap_factor"):
        assert _same_array(getattr(fc, name), getattr(fc2, name)), name
        assert getattr(fc2, name).flags.writeable  # owned copies, not views into the blob
    assert fc2.calendar == fc.calendar and fc2.device == CPU
    assert fc2.report == fc.report and fc2.report["kind"] == fc.net.kind
    assert all(_same_array(getattr(grid, n), getattr(grid2, n)) for n in ("lat", "lon", "index"))
    assert params2 == params
    assert meta["frame"] == "128A_05210_131313" and meta["train_epochs"] == N_TRAIN
    assert meta["model_version"] == meta["content_hash"] and len(meta["model_version"]) == 16 and len(meta["config_hash"]) == 16
    header = read_header(blob)[0]
    assert header["network"] == {"kind": fc.net.kind, "layers": fc.net.layers, "hidden": fc.net.hidden, "n_pixels": fc.n_pixels}
    assert header["calendar"] == {"start": "2019-01-05", "step_days": 12, "n_slots": N_TRAIN}
    named = decode_model(encode_model(fc, grid, params, info={"model_version": "ladsdin-1/shared"}), CPU)[3]
    assert named["model_version"] == "ladsdin-1/shared" and named["content_hash"] == meta["content_hash"]


def test_decoded_model_and_state_score_bit_identically(fitted):
    cube, fc, state, grid, params = fitted
    fc2, grid2, params2, _ = decode_model(encode_model(fc, grid, params), CPU)
    state2 = decode_state(encode_state(state), CPU)
    assert _same_state(state, state2)
    p, m = fc.predict(state)
    p2, m2 = fc2.predict(state2)
    assert _same_tensor(p, p2) and _same_tensor(m, m2)
    d = cube["displacement"].values
    n_alerts = 0
    # slots 40, 41 missing (a gap forecast), then 42..49 with a step at 46; the state goes
    # through the codec after every epoch, as the stream does between events
    for slot in range(42, 50):
        date = str(fc.calendar.date(slot))
        s1, state = score_epoch(fc, state, d[slot], slot, date, grid, params)
        s2, state2 = score_epoch(fc2, state2, d[slot], slot, date, grid2, params2)
        for f in dataclasses.fields(s1):
            if f.name not in ("seconds", "stage_seconds"):  # wall times
                assert _same_value(getattr(s1, f.name), getattr(s2, f.name)), (slot, f.name)
        assert _same_state(state, state2)
        state2 = decode_state(encode_state(state2), CPU)
        n_alerts += bool(s1.objects)
    assert n_alerts >= 1  # the step was scored, so the comparison covered re-anchoring too


def test_model_version_identifies_the_fitted_model(fitted):
    _, fc, _, grid, params = fitted
    _, _, _, m1 = decode_model(encode_model(fc, grid, params), CPU)
    _, _, _, m2 = decode_model(encode_model(fc, grid, params), CPU)
    assert m1["model_version"] == m2["model_version"] and m1["config_hash"] == m2["config_hash"]
    other = dataclasses.replace(fc, sigma=fc.sigma * 1.01)
    _, _, _, m3 = decode_model(encode_model(other, grid, params), CPU)
    assert m3["model_version"] != m1["model_version"] and m3["config_hash"] == m1["config_hash"]
    _, _, _, m4 = decode_model(encode_model(fc, grid, dataclasses.replace(params, nm=6.0)), CPU)
    assert m4["config_hash"] != m1["config_hash"]


def test_state_round_trip_keeps_dtypes_and_slot(fitted):
    _, fc, state, _, _ = fitted
    s2 = decode_state(encode_state(state), CPU)
    assert s2.slot == N_TRAIN - 1 and s2.since_obs.dtype == torch.int32 and s2.h.dtype == torch.float32
    s2.offset += 1.0  # decoded tensors own writable memory
    assert not torch.equal(s2.offset, state.offset)
    check_state_fits(fc, s2)
    small = dataclasses.replace(state, h=state.h[:, :5], c=state.c[:, :5])
    with pytest.raises(ValueError, match="another model"):
        check_state_fits(fc, small)


def test_swapped_or_corrupt_blobs_are_refused(fitted):
    _, fc, state, grid, params = fitted
    model, st = encode_model(fc, grid, params), encode_state(state)
    with pytest.raises(StateFormatError, match="swapped"):
        decode_model(st, CPU)
    with pytest.raises(StateFormatError, match="swapped"):
        decode_state(model, CPU)
    arrays, meta = decode_arrays(model)
    no_sigma = encode_arrays({k: v for k, v in arrays.items() if k != "sigma"}, meta)
    with pytest.raises(StateFormatError, match=r"lacks arrays \['sigma'\]"):
        decode_model(no_sigma, CPU)
    wrong_net = encode_arrays(arrays, {**meta, "network": {**meta["network"], "hidden": meta["network"]["hidden"] + 1}})
    with pytest.raises(StateFormatError, match="valid network"):
        decode_model(wrong_net, CPU)
    arrays_s, meta_s = decode_arrays(st)
    short = encode_arrays({**arrays_s, "pred": arrays_s["pred"][:-1]}, meta_s)
    with pytest.raises(StateFormatError, match="inconsistent shapes"):
        decode_state(short, CPU)
    with pytest.raises(ValueError, match="grid has"):
        encode_model(fc, PixelGrid(grid.lat, grid.lon, grid.index[:-1]), params)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_decode_onto_cuda_matches_cpu(fitted):
    _, fc, state, grid, params = fitted
    cuda = torch.device("cuda")
    fc2, _, _, _ = decode_model(encode_model(fc, grid, params), cuda)
    state2 = decode_state(encode_state(state), cuda)
    assert state2.h.device.type == "cuda" and next(fc2.net.parameters()).device.type == "cuda"
    assert _same_state(state, decode_state(encode_state(state2), CPU))
    p, _ = fc.predict(state)
    p2, _ = fc2.predict(state2)
    torch.testing.assert_close(p2.cpu(), p, rtol=1e-5, atol=1e-4)  # different kernels: close, not identical
