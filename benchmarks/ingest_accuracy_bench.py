"""LiCSAR ingest accuracy against a batch inversion of the same interferograms (issue 17, item 4).

Each seed writes a LiCSAR frame directory (``ladsdin.ingest.synthetic``: real names, dtypes and
nodata) that a user would find hard:

- it starts in winter (the simulator's slot 0 is 5 January): in December-February the upper half
  of the frame decorrelates to 35 % of its coherence, and in January-February its upper quarter is
  under snow (no data in any pair touching those epochs);
- a lake (a disc, 6 % of the frame) has no data at all;
- every new epoch links to 1-5 predecessors (drawn with weights 10/25/30/20/15 %), 12-60 days;
- ``--error-share`` of the pairs (default 8 %) carry a +1 cycle (2 pi) unwrapping-error disc of
  radius 3-8 pixels; coherence noise at 20 looks.

``LicsarIngest`` (one-shot, product defaults, automatic reference) publishes every epoch to the
embedded Kafka-wire broker. In the same run, each epoch ``k`` is also solved by the batch
inversion of every interferogram available at ``k`` (all of them, links beyond the stream's window
included), with the closure-failing pairs removed per pixel (``bad_pairs``, the LiCSAR/LiCSBAS
step-12 rule), read from the same files with the reference the ingest chose. Both are compared
with the truth (the cube minus epoch 0) on the pixels both publish; each epoch's error has its
median over those pixels removed, so the reference offset does not count.

Columns: RMS error (median over epochs, on the pixels both publish), coverage (mean share of the
land pixels published), leaked (pixels an injected error touched at its secondary epoch that are
published more than half a cycle wrong), and pixel-epochs off by more than half a cycle for any
reason.

    python benchmarks/ingest_accuracy_bench.py --seeds 0,1,2
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

LINK_WEIGHTS = (0.10, 0.25, 0.30, 0.20, 0.15)  # 1..5 links per new epoch


def hard_frame(seed: int, size: int, n_epochs: int, error_share: float, root: Path, *, inject: bool = True):
    """(cube, SyntheticFrame, frame dir, land mask, {pair: error disc}) of one seed; ``inject=False``
    writes the same frame (the same noise, offsets and coverage) without the error discs."""
    from ladsdin.ingest.synthetic import SyntheticFrame
    from ladsdin.models.simulation import simulate

    cube, truth = simulate("menyuan", "A", n_lat=size, n_lon=size, n_epochs=n_epochs, seed=seed,
                           missing_fraction=0.0, unwrap_fraction=0.0)
    cube.attrs["frame"] = f"128A_05217_13{1400 + seed:04d}"
    rng = np.random.default_rng([17, seed])
    yy, xx = np.mgrid[0:size, 0:size]
    base = np.nan_to_num(cube["coherence"].values, nan=0.0) if "coherence" in cube else np.full((size, size), 0.7)
    lake_r = np.sqrt(0.06 * size * size / np.pi)
    cy, cx = rng.uniform(0.55, 0.8) * size, rng.uniform(0.2, 0.8) * size
    land = (yy - cy) ** 2 + (xx - cx) ** 2 > lake_r**2
    months = [np.datetime64(t, "D").astype(dt.date).month for t in cube["time"].values]
    winter = [m in (12, 1, 2) for m in months]
    snow = [m in (1, 2) for m in months]
    upper, top = yy < size // 2, yy < size // 4

    def coherence(a: int, b: int) -> np.ndarray:
        c = np.where(land, base, 0.0)
        if winter[a] or winter[b]:
            c = np.where(upper, 0.35 * c, c)
        if snow[a] or snow[b]:
            c = np.where(top, 0.0, c)
        return c

    links = [0] + [int(min(k, rng.choice(5, p=LINK_WEIGHTS) + 1)) for k in range(1, n_epochs)]
    all_pairs = [(a, k) for k in range(1, n_epochs) for a in range(k - links[k], k)]
    n_bad = max(1, int(round(error_share * len(all_pairs))))
    errors = {}
    for i in rng.choice(len(all_pairs), n_bad, replace=False):
        r = rng.uniform(3, 8)
        by, bx = rng.uniform(r, size - r, 2)
        errors[all_pairs[int(i)]] = (yy - by) ** 2 + (xx - bx) ** 2 <= r * r
    gen = SyntheticFrame(cube, root / "frames", truth=truth, links=links, looks=20.0,
                         unwrap_errors=errors if inject else {},
                         pair_coherence=coherence, seed=seed + 100)
    return cube, gen, gen.write(), land, errors


def stream_epochs(frame_dir: Path, frame: str, bootstrap: str, root: Path):
    """Run the ingest once; (ledger, published event count per epoch, {epoch: map}, {epoch: sigma})."""
    from kafka import KafkaConsumer
    import xarray as xr

    from ladsdin.ingest.ledger import Ledger
    from ladsdin.ingest.publisher import EventPublisher
    from ladsdin.ingest.scheduler import IngestOptions, LicsarIngest
    from ladsdin.stream.outbox import make_producer
    from ladsdin.stream.settings import Settings

    s = Settings()
    producer = make_producer(bootstrap, s.max_message_bytes)
    try:
        with Ledger(root / "state", frame, frame[3], "licsar") as ledger:
            LicsarIngest(frame_dir, frame, frame[3], IngestOptions.from_settings(s), ledger,
                         EventPublisher(producer, s.epochs_topic, ledger), root / "data").step()
            led = json.loads(json.dumps(ledger.data))
    finally:
        producer.close(30)
    consumer = KafkaConsumer(s.epochs_topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=3000)
    counts: dict[str, int] = {}
    maps, sigma = {}, {}
    for m in consumer:
        if m.key != frame.encode():
            continue
        e = json.loads(m.value)
        counts[e["epoch"]] = counts.get(e["epoch"], 0) + 1
        with xr.open_dataset(e["data"]["uri"].removeprefix("file://")) as ds:
            maps[e["epoch"]] = ds["displacement"].values.astype(np.float64).ravel()
            if "sigma" in ds:
                sigma[e["epoch"]] = ds["sigma"].values.astype(np.float64).ravel()
    consumer.close()
    return led, counts, maps, sigma


def batch_epochs(gen, frame_dir: Path, led: dict) -> dict[str, np.ndarray]:
    """Epoch k from the batch inversion of all pairs up to k, closure-failing pairs removed."""
    from ladsdin.ingest.frame import load_interferogram, scan_frame
    from ladsdin.ingest.reference import RefWindow
    from ladsdin.models.inversion import bad_pairs, batch_inversion

    dates = led["epochs"]
    ref = RefWindow.from_dict(led["reference"])
    entries = [e for e in scan_frame(frame_dir)[0] if e.d1.isoformat() in dates and e.d2.isoformat() in dates]
    loaded = [load_interferogram(e, gen.grid, ref, min_coherence=0.15, looks=20.0) for e in entries]
    pairs = np.array([[dates.index(e.d1.isoformat()), dates.index(e.d2.isoformat())] for e in entries])
    ifg = np.array([m for m, _, _ in loaded], dtype=np.float64)
    w = np.array([w for _, w, _ in loaded], dtype=np.float64)
    out = {}
    for k in range(1, len(dates)):
        sel = pairs[:, 1] <= k
        p, x, wk = pairs[sel], ifg[sel], w[sel].copy()
        valid = (wk > 0) & np.isfinite(x)
        bad, unresolved = bad_pairs(p, x, valid, k + 1)
        wk[bad] = 0.0
        est = batch_inversion(p, x, wk, k + 1)[k]
        est[unresolved[k]] = np.nan
        out[dates[k]] = est
    return out


def score(cube, land, errors, dates, maps, clean_maps, tied=None) -> dict:
    """Errors against the truth, coverage, and what the injected errors did to ``maps``.

    ``clean_maps`` are the same method's maps of the frame without the error discs: a pixel the
    errors touched *leaks* where the two differ by more than half a cycle (the error is neither
    removed nor masked); ``tied`` (epoch -> bool map) restricts the coverage to pixels tied to
    epoch 0 by data (not bridged over a gap).
    """
    from ladsdin.models.inversion import CLOSURE_THRESHOLD_MM

    truth = cube["displacement"].values.reshape(cube.sizes["time"], -1).astype(np.float64)
    t_index = {str(t)[:10]: i for i, t in enumerate(cube["time"].values)}
    land = land.ravel()
    errs = {}
    for d in dates[1:]:
        if d in maps:
            errs[d] = maps[d] - (truth[t_index[d]] - truth[t_index[dates[0]]])
    cover = float(np.mean([np.isfinite(e[land]).mean() for e in errs.values()]))
    tied_cover = cover if tied is None else float(np.mean([(np.isfinite(errs[d]) & tied[d])[land].mean() for d in errs]))
    hit = leaked = 0
    for (a, b), disc in errors.items():
        d = dates[b] if b < len(dates) else None
        if d not in errs or d not in clean_maps:
            continue
        touched = disc.ravel() & land & np.isfinite(clean_maps[d])
        hit += int(touched.sum())
        with np.errstate(invalid="ignore"):
            leaked += int((touched & (np.abs(maps[d] - clean_maps[d]) > CLOSURE_THRESHOLD_MM)).sum())
    return {"errs": errs, "coverage": cover, "tied": tied_cover, "hit": hit, "leaked": leaked}


def rms_common(a: dict, b: dict) -> tuple[float, float]:
    """Median over epochs of each one's RMS error on the pixels both publish, after removing each
    error map's median over those pixels (the reference offset)."""
    ra, rb = [], []
    for d in a:
        if d not in b:
            continue
        both = np.isfinite(a[d]) & np.isfinite(b[d])
        if both.sum() < 10:
            continue
        ea, eb = a[d][both], b[d][both]
        ra.append(float(np.sqrt(np.mean((ea - np.median(ea)) ** 2))))
        rb.append(float(np.sqrt(np.mean((eb - np.median(eb)) ** 2))))
    return statistics.median(ra), statistics.median(rb)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--size", type=int, default=64, help="frame side, pixels")
    ap.add_argument("--epochs", type=int, default=40, help="calendar slots (12 days)")
    ap.add_argument("--error-share", type=float, default=0.08, help="share of pairs with a 2 pi error disc")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    from ladsdin.ingest.scheduler import IngestOptions
    from ladsdin.stream.embedded import EmbeddedBroker
    from ladsdin.stream.settings import Settings

    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ingest-acc-") as tmp, EmbeddedBroker() as broker:
        broker.create_topics(Settings().topics)
        for seed in (int(s) for s in args.seeds.split(",")):
            root = Path(tmp) / f"seed{seed}"
            cube, gen, frame_dir, land, errors = hard_frame(seed, args.size, args.epochs, args.error_share, root)
            _, clean_gen, clean_dir, _, _ = hard_frame(seed, args.size, args.epochs, args.error_share,
                                                       root / "clean", inject=False)
            frame = str(cube.attrs["frame"])
            led, counts, smaps, ssig = stream_epochs(frame_dir, frame, broker.bootstrap, root)
            dates = led["epochs"]
            # the clean twin: its own topic key would collide, so it publishes under another frame id
            clean_frame = frame[:-1] + str((int(frame[-1]) + 5) % 10)
            clean_dir = clean_dir.rename(clean_dir.with_name(clean_frame))
            led_c, _, smaps_c, _ = stream_epochs(clean_dir, clean_frame, broker.bootstrap, root / "clean")
            assert led_c["epochs"] == dates and led_c["reference"] == led["reference"], "the twin differs"
            bmaps, bmaps_c = batch_epochs(gen, frame_dir, led), batch_epochs(clean_gen, clean_dir, led)
            gap = IngestOptions().gap_sigma_mm or np.inf
            tied = {d: np.isfinite(v) & (v < gap) for d, v in ssig.items()}
            s = score(cube, land, errors, dates, smaps, smaps_c, tied)
            b = score(cube, land, errors, dates, bmaps, bmaps_c)
            rs, rb = rms_common(s["errs"], b["errs"])
            once = sorted(counts) == sorted(dates) and set(counts.values()) == {1}
            n_pairs = sum(len(gen.pairs_to(k)) for k in range(1, gen.n_epochs))
            long_links = len([r for r in led["rejected"].values() if r["reason"] == "beyond_window"])
            rows.append(dict(seed=seed, ref=led["reference"]["how"], once=once, rs=rs, rb=rb, cs=s["coverage"],
                             ct=s["tied"], cb=b["coverage"], hs=s["hit"], hb=b["hit"], ls=s["leaked"], lb=b["leaked"],
                             bad=len(errors), pairs=n_pairs, long=long_links))
    print(f"# {platform.node()} {platform.machine()}, {args.size} x {args.size} px, {args.epochs} slots, "
          f"{args.error_share:.0%} of pairs with a 2 pi disc, {time.perf_counter() - t0:.0f} s")
    print("| seed | reference | each epoch once | RMS stream mm | RMS batch mm | ratio | coverage stream (tied) | "
          "coverage batch | error pixels caught, stream | caught, batch | bad pairs / pairs | links beyond the window |")
    print("|" + "---|" * 12)
    for r in rows:
        print(f"| {r['seed']} | {r['ref']} | {'yes' if r['once'] else 'NO'} | {r['rs']:.2f} | {r['rb']:.2f} | "
              f"{r['rs'] / r['rb']:.2f} | {r['cs']:.1%} ({r['ct']:.1%}) | {r['cb']:.1%} | "
              f"{1 - r['ls'] / max(r['hs'], 1):.1%} ({r['ls']} of {r['hs']} leak) | "
              f"{1 - r['lb'] / max(r['hb'], 1):.1%} ({r['lb']} of {r['hb']} leak) | {r['bad']} / {r['pairs']} | {r['long']} |")

if __name__ == "__main__":
    main()
