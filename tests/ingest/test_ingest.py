"""``ladsdin ingest``: inversion accuracy from files, loop closures, bad files, exactly-once
publication across crashes and restarts, and LiCSBAS / MintPy replay. A real Kafka-protocol broker
(the embedded tansu) carries the events."""
from __future__ import annotations

import collections
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from ladsdin.models.inversion import batch_inversion
from ladsdin.models.simulation import simulate
from ladsdin.cli import main
from ladsdin.stream.embedded import EmbeddedBroker
from ladsdin.ingest.frame import load_interferogram, scan_frame
from ladsdin.ingest.ledger import FrameBusy, Ledger
from ladsdin.ingest.publisher import EventPublisher, published_event_ids
from ladsdin.ingest.reference import parse_ref
from ladsdin.ingest.synthetic import SyntheticFrame
from ladsdin.stream.outbox import make_producer
from ladsdin.formats.licsar import FrameGrid, ifg_paths, write_raster
from ladsdin.stream.settings import Settings
from tests.e2e import read_json
from tests.fixtures.real_layouts import write_licsbas, write_mintpy


@pytest.fixture(scope="module")
def broker():
    with EmbeddedBroker() as b:
        b.create_topics(Settings().topics)
        yield b.bootstrap


@pytest.fixture
def env(broker, tmp_path, monkeypatch):
    monkeypatch.setenv("LADSDIN_KAFKA_BOOTSTRAP", broker)
    monkeypatch.setenv("LADSDIN_DATA_ROOT", str(tmp_path / "data"))
    return tmp_path


def _events(bootstrap: str, frame: str) -> list[dict]:
    return [e for k, e in read_json(bootstrap, Settings().epochs_topic) if k == frame.encode()]


def _maps(events: list[dict], var: str = "displacement") -> dict[str, np.ndarray]:
    out = {}
    for e in events:
        with xr.open_dataset(e["data"]["uri"].removeprefix("file://")) as ds:
            out[e["epoch"]] = ds[var].values
    return out


def _cube(frame: str, n_epochs: int = 16, seed: int = 1, **kw):
    cube, truth = simulate("menyuan", "A", n_lat=36, n_lon=40, n_epochs=n_epochs, seed=seed, **kw)
    cube.attrs["frame"] = frame
    return cube, truth


def _batch(gen: SyntheticFrame, frame_dir: Path, ref: str, dates: list[str], upto: int | None = None) -> np.ndarray:
    """The batch inversion of the network (up to epoch ``upto``) from the same files: (n_epochs, P) mm."""
    entries, _ = scan_frame(frame_dir)
    if upto is not None:
        entries = [e for e in entries if dates.index(str(e.d2)) <= upto]
    window = parse_ref(ref, gen.grid)
    loaded = [load_interferogram(e, gen.grid, window, min_coherence=0.15, looks=20.0) for e in entries]
    pairs = np.array([[dates.index(str(e.d1)), dates.index(str(e.d2))] for e in entries])
    return batch_inversion(pairs, np.array([m for m, _, _ in loaded]), np.array([w for _, w, _ in loaded]), len(dates))


def test_noise_free_interferograms_invert_back_to_the_cube(env, broker):
    cube, truth = _cube("128A_05217_131301")
    gen = SyntheticFrame(cube, env / "frames", truth=truth, looks=None, seed=2)
    frame_dir = gen.write()
    ref = cube.attrs["ref_window"]
    assert main(["ingest", "licsar", str(frame_dir), "--ref", ref]) == 0
    events = _events(broker, cube.attrs["frame"])
    maps, sigma = _maps(events), _maps(events[1:], "sigma")
    dates = [str(t)[:10] for t in cube.time.values]
    assert sorted(maps) == dates
    err = np.array([maps[d] - cube.displacement.values[i] for i, d in enumerate(dates)]).reshape(len(dates), -1)
    # every pixel the network determines (the batch inversion's finite ones) comes back exactly
    determined = np.isfinite(_batch(gen, frame_dir, ref, dates))
    determined[0] = np.isfinite(err[0])  # epoch 0 is 0 by definition; it is published where epoch 1 has data
    assert determined.mean() > 0.6 and np.isfinite(err[determined]).all()
    assert float(np.sqrt(np.mean(err[determined] ** 2))) < 1.0
    # the rest lost coherence for more than the window (snow): bridged, and their sigma says so
    bridged = np.isfinite(err) & ~determined
    assert bridged.any()
    sig = np.array([np.zeros(err.shape[1])] + [sigma[d].ravel() for d in dates[1:]])
    assert (sig[bridged] >= 20.0).all() and (sig[determined & (np.arange(len(dates)) > 0)[:, None]] < 20.0).all()
    assert main(["ingest", "licsar", str(frame_dir), "--ref", ref]) == 0  # nothing new
    assert len(_events(broker, cube.attrs["frame"])) == cube.sizes["time"]


def test_noisy_inversion_matches_batch_and_its_propagated_noise(env, broker, monkeypatch):
    # the exact batch answer of all the data: the closure repair (which drops the odd noisy vote
    # at a low-coherence pixel) is off here, and tested below
    monkeypatch.setenv("LADSDIN_INGEST_REPAIR_CLOSURE", "false")
    cube, truth = _cube("128A_05217_131302", n_epochs=20, seed=3)
    gen = SyntheticFrame(cube, env / "frames", truth=truth, looks=20.0, seed=4)
    frame_dir = gen.write()
    ref = cube.attrs["ref_window"]
    assert main(["ingest", "licsar", str(frame_dir), "--ref", ref, "--gap-sigma-mm", "off"]) == 0
    events = _events(broker, cube.attrs["frame"])
    maps, sigma = _maps(events), _maps(events[1:], "sigma")
    dates = [str(t)[:10] for t in cube.time.values]
    inc = np.array([maps[d].ravel() for d in dates])
    # epoch k is published once, from the interferograms available then: it equals the batch
    # inversion of the network up to k (a later batch of the whole network smooths it with data
    # that did not exist yet)
    for k in range(1, len(dates), 4):
        batch_k = _batch(gen, frame_dir, ref, dates, upto=k)[k]
        both = np.isfinite(batch_k) & np.isfinite(inc[k])
        # the same pixels, but those a loop closure flagged (masked: NaN in the published map)
        assert both.sum() > 300 and not (np.isfinite(inc[k]) & ~np.isfinite(batch_k)).any()
        assert np.abs(inc[k][both] - batch_k[both]).max() < 0.5  # float32 maps: ~1e-4 mm in practice
    # errors against the truth are as large as the propagated noise says (z-scores of unit RMS)
    truth_maps = cube.displacement.values.reshape(len(dates), -1)
    z = np.concatenate([((inc[k] - truth_maps[k]) / sigma[d].ravel()) for k, d in enumerate(dates) if k > 0])
    z = z[np.isfinite(z)]
    assert 0.7 < float(np.sqrt(np.mean(z**2))) < 1.4
    q = events[-1]["quality"]
    assert q["n_interferograms_max"] == 3 and q["reference"] == ref and q["sigma_mm_median"] > 0


def test_unwrapping_error_is_removed_at_its_pixels_and_never_published(env, broker, monkeypatch):
    """Epoch 7's three interferograms vote; the one with +1 cycle on a blob is removed there, so
    epoch 7 is right at the blob (corrected, not masked), the stored pair is kept out of epoch 8's
    loop, and no pixel is flagged. With the repair off the blob is flagged and masked instead."""
    cube, truth = _cube("128A_05217_131303", n_epochs=12, seed=5, missing_fraction=0.0)
    blob = np.zeros(cube.displacement.shape[1:], bool)
    blob[20:26, 4:12] = True  # away from the reference window and the decorrelated near field
    bad = (5, 7)  # one of epoch 7's three interferograms carries +1 cycle there
    gen = SyntheticFrame(cube, env / "frames", truth=truth, looks=None, seed=6, unwrap_errors={bad: blob})
    frame_dir = gen.write()
    ref = cube.attrs["ref_window"]
    dates = [str(t)[:10] for t in cube.time.values]
    valid = np.isfinite(cube.displacement.values[5]) & np.isfinite(cube.displacement.values[7])
    assert (blob & valid).sum() > 20
    assert main(["ingest", "licsar", str(frame_dir), "--ref", ref]) == 0
    events = {e["epoch"]: e for e in _events(broker, cube.attrs["frame"])}
    assert not any(events[d]["quality"]["closure_flagged_pixels"] for d in dates[1:])
    q = events[dates[7]]["quality"]
    assert q["closure_repaired_pixels"] == int((blob & valid).sum()) and "removed_ifg" in q["layers"]
    removed = _maps([events[dates[7]]], "removed_ifg")[dates[7]]
    np.testing.assert_array_equal(removed == 1, blob & valid)
    maps = _maps([events[d] for d in dates])
    # noise-free: every epoch equals the truth (referenced like the stream) at the blob
    truth_maps = cube.displacement.values
    win = parse_ref(ref, gen.grid)
    for k in (7, 8, 9):
        tk = truth_maps[k] - truth_maps[0]
        tk = tk - np.nanmean(tk[win.y1:win.y2, win.x1:win.x2])
        m = maps[dates[k]]
        ok = blob & valid & np.isfinite(m)
        assert ok.sum() == (blob & valid).sum(), k
        assert np.abs(m[ok] - tk[ok]).max() < 0.5, k

    # the repair off: the blob is flagged at epochs 7 and 8 (triangle (5,7,8)) and masked
    monkeypatch.setenv("LADSDIN_INGEST_REPAIR_CLOSURE", "false")
    monkeypatch.setenv("LADSDIN_DATA_ROOT", str(env / "data-flag-only"))
    assert main(["ingest", "licsar", str(frame_dir), "--ref", ref]) == 0
    events = {e["epoch"]: e for e in _events(broker, cube.attrs["frame"])[len(dates):]}
    flagged = [d for d in dates[1:] if events[d]["quality"]["closure_flagged_pixels"]]
    assert flagged == [dates[7], dates[8]]
    for epoch in flagged:
        flag = _maps([events[epoch]], "closure_flag")[epoch].astype(bool)
        assert np.array_equal(flag & valid, blob & valid), epoch  # exactly the blob's pixels
        assert np.isnan(_maps([events[epoch]])[epoch][blob]).all()  # masked, never published as motion


def _break(kind: str, gen: SyntheticFrame, a: int, b: int) -> None:
    unw, cc = ifg_paths(gen.dir, gen.name(a, b))
    if kind == "truncated":
        raw = unw.read_bytes()
        unw.write_bytes(raw[: len(raw) // 2])
    elif kind == "wrong_grid":
        g = gen.grid
        shifted = FrameGrid(g.n_lat, g.n_lon, g.lat0 + 0.05, g.lon0, g.dlat, g.dlon)
        rad, _ = gen.interferogram(a, b)
        write_raster(unw, rad, shifted)
    elif kind == "pair_order":
        d1, d2 = gen.name(a, b).split("_")
        new = gen.dir / "interferograms" / f"{d2}_{d1}"
        shutil.move(str(unw.parent), new)
        for p in new.iterdir():
            p.rename(new / p.name.replace(f"{d1}_{d2}", f"{d2}_{d1}"))


@pytest.mark.parametrize("kind,reason", [("truncated", "truncated"), ("wrong_grid", "grid_mismatch"), ("pair_order", "pair_order")])
def test_bad_file_gives_a_clear_error_and_publishes_nothing(env, broker, capsys, kind, reason):
    frame = f"128A_05217_13131{'twp'.index(kind[0])}"
    cube, truth = simulate("null", "A", n_lat=36, n_lon=40, n_epochs=7, seed=7, missing_fraction=0.0)
    cube.attrs["frame"] = frame
    gen = SyntheticFrame(cube, env / "frames", truth=truth, links=1, looks=None, seed=8)
    frame_dir = gen.write()
    last = cube.sizes["time"] - 1
    _break(kind, gen, last - 1, last)  # the last epoch's only interferogram
    assert main(["ingest", "licsar", str(frame_dir)]) == 2
    err = capsys.readouterr().err
    assert f"[{reason}]" in err and "skipped" in err, err
    published = sorted(e["epoch"] for e in _events(broker, frame))
    assert published == [str(t)[:10] for t in cube.time.values[:last]]  # nothing of the bad epoch
    assert not (Path(env / "data" / frame) / f"{str(cube.time.values[last])[:10]}.nc").exists()
    if kind == "truncated":  # the copy completes later: the changed file is read again, and used once
        gen.write_pair(last - 1, last)
        assert main(["ingest", "licsar", str(frame_dir)]) == 0
        published = [e["epoch"] for e in _events(broker, frame)]
        assert published == [str(t)[:10] for t in cube.time.values]


def test_a_crash_after_send_is_not_republished(env, broker):
    frame = "128A_05217_131320"
    producer = make_producer(broker, 1 << 20)
    cube, _ = _cube(frame, n_epochs=4, seed=9)
    from ladsdin.ingest.cube import epoch_events

    events = [e for _, _, e in epoch_events(cube, env / "data")]
    reader = lambda f: published_event_ids(broker, Settings().epochs_topic, f, idle_ms=1500)  # noqa: E731
    with Ledger(env / "state", frame, "A", "licsbas") as ledger:
        pub = EventPublisher(producer, Settings().epochs_topic, ledger, id_reader=reader)
        pub.publish(events[:1])
        # crash 1: events[1] was sent and acknowledged, but the process died before "done"
        ledger.data["pending"] = [events[1]]
        ledger.save()
        pub._send([events[1]])
        # crash 2 on another run: events[2] recorded as pending, never sent
    with Ledger(env / "state", frame, "A", "licsbas") as ledger:
        assert EventPublisher(producer, Settings().epochs_topic, ledger, id_reader=reader).recover() == 0
        assert sorted(ledger.data["published"]) == [events[0]["epoch"], events[1]["epoch"]]
        ledger.data["pending"] = [events[2]]
        ledger.save()
    with Ledger(env / "state", frame, "A", "licsbas") as ledger:
        with pytest.raises(FrameBusy, match="another `ladsdin ingest`"):
            Ledger(env / "state", frame, "A", "licsbas")
        assert EventPublisher(producer, Settings().epochs_topic, ledger, id_reader=reader).recover() == 1
        assert not ledger.data["pending"]
    producer.close()
    counts = collections.Counter(e["event_id"] for e in _events(broker, frame))
    assert sorted(counts) == sorted(e["event_id"] for e in events[:3]) and set(counts.values()) == {1}


def test_restart_from_a_checkpoint_continues_exactly(env, broker, monkeypatch):
    cube, truth = _cube("128A_05217_131321", n_epochs=14, seed=10)
    straight = SyntheticFrame(cube, env / "a", truth=truth, looks=20.0, seed=11).write()
    cube.attrs["frame"] = "128A_05217_131322"
    gen = SyntheticFrame(cube, env / "b", truth=truth, looks=20.0, seed=11)
    split = gen.write(upto=7)
    assert main(["ingest", "licsar", str(straight)]) == 0
    assert main(["ingest", "licsar", str(split), "--checkpoint-every", "3"]) == 0  # epochs 1..7: checkpoint at 6
    for k in range(8, cube.sizes["time"]):
        gen.write_epoch(k)
    assert main(["ingest", "licsar", str(split), "--checkpoint-every", "3"]) == 0  # replays epoch 7, goes on
    a = _maps(_events(broker, "128A_05217_131321"))
    b = _maps(_events(broker, "128A_05217_131322"))
    assert sorted(a) == sorted(b) == [str(t)[:10] for t in cube.time.values]
    for d in a:
        np.testing.assert_array_equal(a[d], b[d], err_msg=d)


@pytest.mark.parametrize("kind", ["licsbas", "mintpy"])
def test_time_series_replay_publishes_each_epoch_once(env, broker, kind):
    frame = "128A_05217_131331" if kind == "licsbas" else "128D_05217_131332"  # the MintPy file is descending
    truth = (write_licsbas if kind == "licsbas" else write_mintpy)(env / f"{kind}.h5")
    argv = ["ingest", kind, str(truth.path), "--frame", frame]
    assert main(argv) == 0
    assert main(argv) == 0  # a rerun finds nothing new
    events = _events(broker, frame)
    assert [e["epoch"] for e in events] == [str(t)[:10] for t in truth.dates]
    assert {e["quality"]["source"] for e in events} == {kind}
    maps = _maps(events)
    for i, t in enumerate(truth.dates):
        np.testing.assert_allclose(maps[str(t)[:10]], truth.displacement_mm[i], atol=1e-4, equal_nan=True)


def test_long_baseline_pairs_are_left_out_without_an_error(env, broker):
    """LiCSAR adds ~1-year pairs to its network; they span more epochs than the filter's window."""
    frame = "128A_05217_131340"
    cube, truth = simulate("null", "A", n_lat=24, n_lon=30, n_epochs=8, seed=12, missing_fraction=0.0)
    cube.attrs["frame"] = frame
    gen = SyntheticFrame(cube, env / "frames", truth=truth, links=2, looks=None, seed=13)
    frame_dir = gen.write()
    gen.write_pair(0, 6)
    assert main(["ingest", "licsar", str(frame_dir)]) == 0
    assert [e["epoch"] for e in _events(broker, frame)] == [str(t)[:10] for t in cube.time.values]
    led = json.loads((env / "data" / frame / ".ingest" / "licsar" / "ledger.json").read_text())
    assert led["rejected"][gen.name(0, 6)]["reason"] == "beyond_window"
    assert gen.name(0, 6) not in {n for names in led["consumed"].values() for n in names}


def test_the_automatic_reference_never_fails_on_a_winter_start(env, broker, caplog):
    """The first interferograms of a frame that starts in winter: snow leaves 60 % of the pixels
    of epoch 2 without data, so no 10 x 10 window is valid in all the pairs read to choose the
    reference. The window usable in the most of them is taken, with a warning, and every epoch
    is published once."""
    frame = "128A_05217_131341"
    cube, truth = simulate("null", "A", n_lat=36, n_lon=40, n_epochs=10, seed=14, missing_fraction=0.0)
    cube.attrs["frame"] = frame
    snow = np.random.default_rng(5).uniform(size=cube["displacement"].shape[1:]) < 0.6
    cube["displacement"][2] = cube["displacement"][2].where(~snow)
    frame_dir = SyntheticFrame(cube, env / "frames", truth=truth, links=3, looks=None, seed=15).write()
    with caplog.at_level("WARNING", logger="ladsdin.ingest.reference"):
        assert main(["ingest", "licsar", str(frame_dir)]) == 0
    assert "window is usable in all" in caplog.text
    events = _events(broker, frame)
    assert [e["epoch"] for e in events] == [str(t)[:10] for t in cube.time.values]
    assert {e["quality"]["reference_how"] for e in events} <= {"auto", "frame-median"}
    led = json.loads((env / "data" / frame / ".ingest" / "licsar" / "ledger.json").read_text())
    assert led["reference"]["how"] == "auto"
