"""A fitted, tiled frame model and its per-tile pixel state survive the codec bit for bit (shared and
per-pixel), and the lean state holds what scoring needs and no more."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ladsdin.models.config import DetectConfig
from ladsdin.models.frame import bootstrap_frame, prepare_frame
from ladsdin.models.scoring import score_in_memory
from ladsdin.models.training import TrainConfig
from ladsdin.models.windows import CubeWindows
from ladsdin.state.codec import StateFormatError, decode_arrays, encode_arrays, read_header
from ladsdin.state.frame_model import (check_state_fits, decode_model, decode_state, decode_state_manifest, encode_model,
                                       encode_state, encode_state_manifest)

from tests.models.synthetic import small_cube

CPU = torch.device("cpu")
N_TRAIN = 40


@pytest.fixture(scope="module", params=["shared", "per-pixel"])
def fitted(request):
    cube = small_cube(n_t=50, ny=12, nx=10, noise=4.0, step_at=46, step_mm=60.0, seed=7)
    d = cube["displacement"].values
    d[:, 0, 0] = d[:, 1, 5] = np.nan  # a few unmodelled pixels, so the tiles' indices are not ranges
    d[np.arange(50) % 3 != 0, 4, 4] = np.nan  # observed in a third of the epochs: not modelled either
    cfg = DetectConfig(nm=5.0, seismic_area_km2=0.04, connectivity=8, common_mode="plane", tile=5, train_fraction=0.8,
                       train=TrainConfig(kind=request.param, max_passes=3))
    prep = prepare_frame(cube["time"].values, cube["lat"].values, cube["lon"].values, cfg)
    windows, tiling = CubeWindows(cube, prep), prep.tiling(cfg)
    states = [None] * tiling.n_tiles
    torch.manual_seed(0)
    model = bootstrap_frame(lambda i: prep.tile_training(windows.training(*tiling.window(i)), None, tiling, i, cfg), tiling,
                            prep.lat, prep.lon, prep.train_calendar, 0.01, cfg, CPU, states.__setitem__)
    model.forecaster.calendar = prep.calendar
    return cube, model, states


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-identical values, NaN where NaN."""
    if not (a.dtype == b.dtype and a.shape == b.shape and a.device == b.device):
        return False
    if a.is_floating_point():
        return torch.equal(a.isnan(), b.isnan()) and torch.equal(torch.nan_to_num(a, nan=0.0), torch.nan_to_num(b, nan=0.0))
    return torch.equal(a, b)


def _same_state(a, b) -> bool:
    return a.slot == b.slot and all(_same_tensor(getattr(a, n), getattr(b, n)) for n in ("h", "c", "since_obs", "offset", "last_step", "post", "after_mm", "after_rep"))


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


def test_the_fixture_is_tiled_with_unmodelled_pixels(fitted):
    _, model, _ = fitted
    want = 6 if model.forecaster.net.kind == "shared" else 1  # a per-pixel model is one tile
    assert model.tiling.n_tiles == want and len(model.tiles) == want
    assert model.n_pixels == 12 * 10 - 3 and model.params.common_mode == "plane"


def test_model_round_trip_restores_every_part(fitted):
    _, model, _ = fitted
    manifest, tiles = encode_model(model, info={"frame": "128A_05210_131313", "train_epochs": N_TRAIN})
    assert len(tiles) == model.tiling.n_tiles
    model2, meta = decode_model(manifest, tiles, CPU)
    fc, fc2 = model.forecaster, model2.forecaster
    assert type(fc2.net) is type(fc.net) and fc2.net.kind == fc.net.kind
    sd, sd2 = fc.net.state_dict(), fc2.net.state_dict()
    assert list(sd) == list(sd2) and all(_same_tensor(sd[k], sd2[k]) for k in sd)
    assert _same_array(fc.gap_factor, fc2.gap_factor)
    for t, t2 in zip(model.tiles, model2.tiles):
        for name in ("index", "coef", "scale", "sigma"):
            assert _same_array(getattr(t, name), getattr(t2, name)), name
            assert getattr(t2, name).flags.writeable  # owned copies, not views into the blob
    assert fc2.calendar == fc.calendar and fc2.device == CPU
    assert fc2.report == fc.report and fc2.report["kind"] == fc.net.kind
    assert all(_same_array(getattr(model.grid, n), getattr(model2.grid, n)) for n in ("lat", "lon", "index"))
    assert model2.params == model.params and model2.tiling == model.tiling
    assert meta["frame"] == "128A_05210_131313" and meta["train_epochs"] == N_TRAIN
    assert len(meta["content_hash"]) == 16 and len(meta["config_hash"]) == 16
    # the version names the trainer and the weights: the stored model's, not just its recipe
    assert meta["model_version"] == f"{model.model_version}/w{meta['content_hash']}" == model2.model_version
    assert read_header(encode_model(model2)[0])[0]["model_version"] == model2.model_version  # re-encoding keeps it
    header = read_header(manifest)[0]
    assert header["network"] == {"kind": fc.net.kind, "layers": fc.net.layers, "hidden": fc.net.hidden, "n_pixels": model.n_pixels}
    assert header["tile_pixels"] == [t.n_pixels for t in model.tiles]
    named = decode_model(encode_model(model, info={"model_version": "ladsdin-1/shared"})[0], tiles, CPU)[1]
    assert named["model_version"] == "ladsdin-1/shared" and named["content_hash"] == meta["content_hash"]


def test_decoded_model_and_state_score_bit_identically(fitted):
    cube, model, states = fitted
    model2, _ = decode_model(*encode_model(model), CPU)
    states, states2 = list(states), [decode_state(encode_state(s), CPU) for s in states]
    assert all(_same_state(a, b) for a, b in zip(states, states2))
    d = cube["displacement"].values
    n_alerts = 0
    # the first scored slots come after a gap (a gap forecast), then the step at 46; the states go
    # through the codec after every epoch, as the stream does between events
    for slot in range(int(states[0].slot) + 2, 50):
        date = str(model.forecaster.calendar.date(slot))
        s1 = score_in_memory(model, states, d[slot], slot, date)
        s2 = score_in_memory(model2, states2, d[slot], slot, date)
        for f in dataclasses.fields(s1):
            if f.name not in ("seconds", "stage_seconds"):  # wall times
                assert _same_value(getattr(s1, f.name), getattr(s2, f.name)), (slot, f.name)
        assert all(_same_state(a, b) for a, b in zip(states, states2))
        states2 = [decode_state(encode_state(s), CPU) for s in states2]
        n_alerts += bool(s1.objects)
    assert n_alerts >= 1  # the step was scored, so the comparison covered re-anchoring too


def test_model_version_identifies_the_fitted_model(fitted):
    _, model, _ = fitted
    m1 = decode_model(*encode_model(model), CPU)[1]
    m2 = decode_model(*encode_model(model), CPU)[1]
    assert m1["content_hash"] == m2["content_hash"] and m1["config_hash"] == m2["config_hash"]
    tiles = [dataclasses.replace(t, sigma=t.sigma * 1.01) for t in model.tiles]
    m3 = decode_model(*encode_model(dataclasses.replace(model, tiles=tiles)), CPU)[1]
    assert m3["content_hash"] != m1["content_hash"] and m3["config_hash"] == m1["config_hash"]
    assert m3["model_version"] != m1["model_version"]  # same recipe, other weights: another version
    m4 = decode_model(*encode_model(dataclasses.replace(model, params=dataclasses.replace(model.params, nm=6.0))), CPU)[1]
    assert m4["config_hash"] != m1["config_hash"]


def test_the_state_is_lean_and_round_trips(fitted):
    _, model, states = fitted
    blob = encode_state(states[0])
    s2 = decode_state(blob, CPU)
    assert s2.slot == states[0].slot and s2.since_obs.dtype == torch.int32 and s2.h.dtype == torch.float16
    net = model.forecaster.net
    p = model.tiles[0].n_pixels
    # h and c in float16, since_obs uint8, offset float32, last_step float16, and the post-event
    # regime: post uint8, after_mm and after_rep float16
    lean = 4 * net.layers * net.hidden + 1 + 4 + 2 + 1 + 2 + 2
    assert len(blob) <= p * lean + 1024  # plus the codec header
    s2.offset += 1.0  # decoded tensors own writable memory
    assert not torch.equal(s2.offset, states[0].offset)
    check_state_fits(model, 0, s2)
    with pytest.raises(ValueError, match="another model"):
        check_state_fits(model, 0, dataclasses.replace(s2, h=s2.h[:, :1], c=s2.c[:, :1]))
    regime = dataclasses.replace(s2, post=torch.full_like(s2.post, 30), after_mm=torch.full_like(s2.after_mm, 12.5))
    back = decode_state(encode_state(regime), CPU)
    assert int(back.post.max()) == 30 and float(back.after_mm.max()) == 12.5 and _same_state(back, regime)
    far = dataclasses.replace(s2, since_obs=torch.full_like(s2.since_obs, 1000))
    assert int(decode_state(encode_state(far), CPU).since_obs.max()) == 255  # saturates: beyond MAX_GAP all alike
    m = decode_state_manifest(encode_state_manifest("0123456789abcdef.9", 9, 41, "ladsdin-1/lstm/w0a1b"))
    assert m == {"version": "0123456789abcdef.9", "tiles": 9, "slot": 41, "model": "ladsdin-1/lstm/w0a1b"}


def test_swapped_or_corrupt_blobs_are_refused(fitted):
    _, model, states = fitted
    manifest, tiles = encode_model(model)
    st = encode_state(states[0])
    with pytest.raises(StateFormatError, match="swapped"):
        decode_model(st, tiles, CPU)
    with pytest.raises(StateFormatError, match="swapped"):
        decode_state(manifest, CPU)
    with pytest.raises(StateFormatError, match="swapped"):
        decode_state_manifest(st)
    with pytest.raises(StateFormatError, match="tiles"):
        decode_model(manifest, tiles[:-1], CPU)
    arrays, meta = decode_arrays(tiles[-1])
    no_sigma = encode_arrays({k: v for k, v in arrays.items() if k != "sigma"}, meta)
    with pytest.raises(StateFormatError, match=r"lacks arrays \['sigma'\]"):
        decode_model(manifest, [*tiles[:-1], no_sigma], CPU)
    if len(tiles) > 1:
        with pytest.raises(StateFormatError, match="mixed up"):
            decode_model(manifest, [tiles[1], tiles[0], *tiles[2:]], CPU)
    arrays_m, meta_m = decode_arrays(manifest)
    wrong_net = encode_arrays(arrays_m, {**meta_m, "network": {**meta_m["network"], "hidden": meta_m["network"]["hidden"] + 1}})
    with pytest.raises(StateFormatError, match="valid network"):
        decode_model(wrong_net, tiles, CPU)
    arrays_s, meta_s = decode_arrays(st)
    short = encode_arrays({**arrays_s, "offset": arrays_s["offset"][:-1]}, meta_s)
    with pytest.raises(StateFormatError, match="inconsistent shapes"):
        decode_state(short, CPU)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_decode_onto_cuda_matches_cpu(fitted):
    _, model, states = fitted
    cuda = torch.device("cuda")
    model2, _ = decode_model(*encode_model(model), cuda)
    state2 = decode_state(encode_state(states[0]), cuda)
    assert state2.h.device.type == "cuda" and next(model2.forecaster.net.parameters()).device.type == "cuda"
    assert _same_state(states[0], decode_state(encode_state(state2), CPU))
    p, _ = model.tile_forecaster(0).predict(states[0])
    p2, _ = model2.tile_forecaster(0).predict(state2)
    torch.testing.assert_close(p2.cpu(), p, rtol=1e-5, atol=1e-4)  # different kernels: close, not identical


def test_a_state_written_before_the_post_event_regime_decodes_with_it_off(fitted):
    _, _, states = fitted
    arrays, meta = decode_arrays(encode_state(states[0]))
    old = {k: v for k, v in arrays.items() if k not in ("post", "after_mm", "after_rep")}
    s = decode_state(encode_arrays(old, meta), CPU)
    assert int(s.post.max()) == 0 and float(s.after_mm.abs().max()) == 0.0
    with pytest.raises(StateFormatError, match="post-event"):
        decode_state(encode_arrays({**old, "post": arrays["post"]}, meta), CPU)
