"""The LiCSAR ingest against a batch inversion of the same interferograms (issue 17's acceptance,
one seed; ``benchmarks/ingest_accuracy_bench.py`` runs three): a frame that starts in winter, with
a lake, snow, 1-5 links per epoch and 2 pi errors in 8 % of the pairs, ingested through the real
Kafka-protocol broker (the embedded tansu)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from ladsdin.ingest.scheduler import IngestOptions
from ladsdin.stream.embedded import EmbeddedBroker
from ladsdin.stream.settings import Settings

_BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "ingest_accuracy_bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("ingest_accuracy_bench", _BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_streamed_epochs_match_the_batch_with_bad_pairs_removed(bench, tmp_path, monkeypatch):
    monkeypatch.setenv("LADSDIN_INGEST_WINDOW", "4")  # the product default, whatever the caller's env says
    with EmbeddedBroker() as broker:
        broker.create_topics(Settings().topics)
        cube, gen, frame_dir, land, errors = bench.hard_frame(0, 64, 40, 0.08, tmp_path / "bad")
        _, clean_gen, clean_dir, _, _ = bench.hard_frame(0, 64, 40, 0.08, tmp_path / "clean", inject=False)
        frame = str(cube.attrs["frame"])
        twin = frame[:-1] + str((int(frame[-1]) + 5) % 10)
        clean_dir = clean_dir.rename(clean_dir.with_name(twin))
        led, counts, smaps, ssig = bench.stream_epochs(frame_dir, frame, broker.bootstrap, tmp_path / "bad")
        led_c, _, smaps_c, _ = bench.stream_epochs(clean_dir, twin, broker.bootstrap, tmp_path / "clean")
    dates = led["epochs"]
    assert len(errors) >= 0.05 * sum(len(gen.pairs_to(k)) for k in range(1, gen.n_epochs))
    # the automatic reference succeeded, and every epoch was published exactly once
    assert led["reference"]["how"] in ("auto", "frame-median") and led_c["reference"] == led["reference"]
    assert sorted(counts) == sorted(dates) and set(counts.values()) == {1} and len(dates) == cube.sizes["time"]
    bmaps, bmaps_c = bench.batch_epochs(gen, frame_dir, led), bench.batch_epochs(clean_gen, clean_dir, led)
    tied = {d: np.isfinite(v) & (v < IngestOptions().gap_sigma_mm) for d, v in ssig.items()}
    s = bench.score(cube, land, errors, dates, smaps, smaps_c, tied)
    b = bench.score(cube, land, errors, dates, bmaps, bmaps_c)
    rs, rb = bench.rms_common(s["errs"], b["errs"])
    assert 1.0 < rb < 6.0 and rs <= 1.2 * rb, (rs, rb)
    assert s["hit"] > 200 and s["leaked"] <= 0.01 * s["hit"], (s["leaked"], s["hit"])
    assert abs(s["tied"] - b["coverage"]) <= 0.02, (s["tied"], b["coverage"])
