"""The scheduler of ``ladsdin ingest licsar FRAME_DIR``: which epoch to invert when, bookkeeping
and restarts. Each epoch is assembled by :class:`~ladsdin.ingest.assembler.EpochAssembler`.

Each pass over the frame directory:

1. lists the interferograms; badly named or out-of-order pairs are reported and skipped;
2. takes the earliest epoch not yet inverted once it is *ready* (see :meth:`LicsarIngest.ready`);
3. reads its interferograms to the epochs before it completely (a truncated, corrupt or
   mis-gridded file is reported and skipped, never used), references them to the fixed reference
   area, weights them by coherence and adds them to the incremental inversion
   (:class:`~ladsdin.models.inversion.IncrementalInversion`);
4. writes the displacement map with its quality layers and publishes its event through the
   write-ahead :class:`~ladsdin.ingest.publisher.EventPublisher`, committing the ledger (and every
   ``checkpoint_every`` epochs the filter) in the same step.

A restart restores the filter from the last checkpoint and replays the interferograms the ledger
lists since then, so it continues exactly where it stopped, and never publishes an epoch twice.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ladsdin.formats.licsar import FrameGrid, LicsarFileError, read_geometry
from ladsdin.ingest.assembler import EpochAssembler, LoadedEpoch, read_interferograms
from ladsdin.ingest.frame import IfgEntry, read_pair, scan_frame
from ladsdin.ingest.ledger import Ledger
from ladsdin.ingest.publisher import EventPublisher
from ladsdin.ingest.reference import RefWindow, auto_reference, parse_ref
from ladsdin.models.inversion import EpochEstimate, IncrementalInversion

log = logging.getLogger(__name__)
#: interferograms read to choose an automatic reference area
_AUTO_REF_IFGS = 8


@dataclass(frozen=True)
class IngestOptions:
    """How interferograms become epochs (defaults: ``Settings.ingest_*``)."""

    links: int = 3
    settle_s: float = 3600.0
    window: int = 4
    min_coherence: float = 0.15
    looks: float = 20.0
    ref: str | None = None
    mask_closure: bool = True
    repair_closure: bool = True
    gap_sigma_mm: float | None = 20.0
    checkpoint_every: int = 5
    since: dt.date | None = None
    watch: bool = False

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> IngestOptions:
        base = cls(links=settings.ingest_links, settle_s=settings.ingest_settle_s, window=settings.ingest_window,
                   min_coherence=settings.ingest_min_coherence, looks=settings.ingest_looks, ref=settings.ingest_ref,
                   mask_closure=settings.ingest_mask_closure, repair_closure=settings.ingest_repair_closure,
                   gap_sigma_mm=settings.ingest_gap_sigma_mm,
                   checkpoint_every=settings.ingest_checkpoint_every)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class EpochReport:
    """What one inverted epoch produced (for logs, the CLI summary and the benchmark)."""

    epoch: str
    interferograms: list[str]
    published: bool
    seconds: dict[str, float] = field(default_factory=dict)


def _iso(d: dt.date) -> str:
    return d.isoformat()


class LicsarIngest:
    """The ingest of one LiCSAR frame directory (construct, then :meth:`step` or :meth:`run`)."""

    def __init__(self, frame_dir: Path, frame: str, track: str, options: IngestOptions, ledger: Ledger,
                 publisher: EventPublisher, data_root: Path, clock: Callable[[], float] = time.time) -> None:
        self.frame_dir, self.frame, self.track = Path(frame_dir), frame, track
        self.opt, self.ledger, self.publisher, self.data_root = options, ledger, publisher, Path(data_root)
        self.clock = clock
        self.errors: list[LicsarFileError] = []  # every file rejected by this process, for the CLI
        self._reported: set[tuple[str, str]] = set()
        geometry = read_geometry(self.frame_dir, frame)
        if geometry is not None and geometry.track not in (None, track):
            raise ValueError(f"{self.frame_dir}/metadata/metadata.txt heading says track {geometry.track}, "
                             f"frame {frame} says {track}; is this the right frame directory?")
        self._geometry_grid = geometry.grid if geometry is not None else None
        self.assembler = EpochAssembler(frame, track, self.data_root, mask_closure=options.mask_closure)
        self.ledger.data.setdefault("track", track)
        self.publisher.recover()
        self._restore()

    # -- state ---------------------------------------------------------------------------------
    @property
    def filter(self) -> IncrementalInversion | None:
        """The frame's incremental inversion (None before the first epoch)."""
        return self.assembler.filter

    @filter.setter
    def filter(self, value: IncrementalInversion | None) -> None:
        self.assembler.filter = value

    @property
    def epochs(self) -> list[str]:
        return self.ledger.data["epochs"]

    @property
    def grid(self) -> FrameGrid:
        return FrameGrid.from_dict(self.ledger.data["grid"])

    @property
    def ref(self) -> RefWindow:
        return RefWindow.from_dict(self.ledger.data["reference"])

    def _restore(self) -> None:
        """Rebuild the filter: the last checkpoint, then the epochs inverted since (no publishing)."""
        if not self.epochs:
            return
        ck = self.ledger.data.get("checkpoint")
        n_pix = self.grid.n_lat * self.grid.n_lon
        if ck:
            meta, arrays = self.ledger.read_checkpoint(ck["file"])
            self.filter = IncrementalInversion.from_state_arrays(meta, arrays)
            self.filter.repair = self.opt.repair_closure  # it shapes the epochs to come only: the setting wins
        else:
            self.filter = IncrementalInversion(n_pix, self.opt.window, self.opt.gap_sigma_mm, self.opt.repair_closure)
        if self.filter.window != self.opt.window:
            raise ValueError(f"this frame was ingested with window {self.filter.window}; "
                             f"set LADSDIN_INGEST_WINDOW={self.filter.window} or re-ingest from scratch")
        todo = self.epochs[self.filter.epoch + 1:]
        if todo:
            log.info("frame %s: replaying %d epoch(s) since the checkpoint", self.frame, len(todo))
        entries = {e.name: e for e in scan_frame(self.frame_dir)[0]}
        for epoch in todo:
            names = self.ledger.data["consumed"].get(epoch, [])
            missing = [n for n in names if n not in entries]
            if missing:
                raise RuntimeError(f"interferograms {missing} of epoch {epoch} are gone from {self.frame_dir}; "
                                   "restore them, or remove the ingest state directory to start over")
            self._invert([entries[n] for n in names], strict=True)

    # -- the loop ------------------------------------------------------------------------------
    def run(self, poll_s: float, stop: Callable[[], bool] = lambda: False) -> None:
        """``--watch``: step, sleep ``poll_s``, until ``stop()``."""
        while not stop():
            self.step()
            deadline = time.monotonic() + poll_s
            while not stop() and time.monotonic() < deadline:
                time.sleep(min(0.2, poll_s))

    def step(self) -> list[EpochReport]:
        """One pass: invert and publish every epoch that is ready, in date order."""
        entries, problems = scan_frame(self.frame_dir)
        for exc in problems:
            self._reject_once(exc, Path(exc.path).name, signature=None)
        entries = [e for e in entries if self.opt.since is None or e.d1 >= self.opt.since]
        if not self.opt.watch:  # a one-shot run takes the directory as final: a lone file is an error
            for e in entries:
                if not e.complete:
                    gone = e.unw if not e.unw.is_file() else e.cc
                    self._reject_once(LicsarFileError(gone, "missing", "file not found; the pair needs both "
                                      ".geo.unw.tif and .geo.cc.tif"), e.name, e.signature())
        entries = [e for e in entries if e.complete]
        if not self.epochs and not self._start(entries):
            return []
        self._note_late(entries)
        reports = []
        while True:
            date = self._next_date(entries)
            if date is None:
                break
            links = self._usable_links(date, entries)
            if not self.ready(date, links, entries):
                break
            report = self._process(date, links)
            if report is None:  # a young unreadable file: wait for the next pass
                break
            reports.append(report)
        return reports

    def _start(self, entries: list[IfgEntry]) -> bool:
        """Fix the grid, the reference area and epoch 0 from the interferograms present."""
        complete = [e for e in entries if not self._rejected(e)]
        if not complete:
            return False
        grid = self._geometry_grid
        sample: list[tuple[np.ndarray, np.ndarray]] = []
        for e in complete:
            if len(sample) >= (_AUTO_REF_IFGS if self.opt.ref is None else 1) and grid is not None:
                break
            try:
                mm, cc, g = read_pair(e, grid, self.opt.min_coherence)
            except LicsarFileError as exc:
                self._reject_once(exc, e.name, e.signature())
                continue
            grid = grid or g
            sample.append((mm, cc))
        if grid is None or not sample:
            return False
        ref = parse_ref(self.opt.ref, grid) if self.opt.ref else auto_reference([m for m, _ in sample], [c for _, c in sample])
        epoch0 = min(min(e.d1 for e in complete), min(e.d2 for e in complete))
        self.ledger.data.update(grid=grid.to_dict(), reference=ref.to_dict(), epochs=[_iso(epoch0)])
        self.ledger.save()
        self.filter = IncrementalInversion(grid.n_lat * grid.n_lon, self.opt.window, self.opt.gap_sigma_mm,
                                           self.opt.repair_closure)
        log.info("frame %s: grid %d x %d from %s, reference area %s (%s), epoch 0 = %s", self.frame, grid.n_lat,
                 grid.n_lon, "metadata/" if self._geometry_grid else "the interferograms", ref.as_licsbas(), ref.how, epoch0)
        return True

    def _next_date(self, entries: list[IfgEntry]) -> dt.date | None:
        last = dt.date.fromisoformat(self.epochs[-1])
        dates = {d for e in entries if not self._rejected(e) for d in (e.d1, e.d2) if d > last}
        return min(dates) if dates else None

    def _rejected(self, e: IfgEntry) -> bool:
        r = self.ledger.data["rejected"].get(e.name)
        return r is not None and (r["signature"] is None or r["signature"] == e.signature())

    def _usable_links(self, date: dt.date, entries: list[IfgEntry]) -> list[tuple[int, IfgEntry]]:
        """(predecessor index, entry) of the interferograms ending at ``date`` the inversion can take."""
        index = {d: i for i, d in enumerate(self.epochs)}
        k = len(self.epochs)
        out = []
        for e in entries:
            if e.d2 != date or self._rejected(e):
                continue
            j = index.get(_iso(e.d1))
            if j is None:
                log.debug("frame %s: %s starts before epoch 0 or at an epoch never inverted; not used", self.frame, e.name)
            elif k - j > self.opt.window:
                self._reject_once(LicsarFileError(e.unw, "beyond_window", f"spans {k - j} epochs, more than the "
                                  f"inversion window of {self.opt.window} (LADSDIN_INGEST_WINDOW)"), e.name, e.signature(),
                                  error=False)
            else:
                out.append((j, e))
        return out

    def ready(self, date: dt.date, links: list[tuple[int, IfgEntry]], entries: list[IfgEntry]) -> bool:
        """Is epoch ``date`` complete enough to invert now?

        Without ``--watch`` everything present is final. With it, an epoch waits until it has
        ``links`` interferograms (fewer near the start), or a later epoch's interferograms
        appear (LiCSAR has moved on), or its newest file is ``settle_s`` old.
        """
        if not self.opt.watch:
            return True
        k = len(self.epochs)
        if len(links) >= min(self.opt.links, k, self.opt.window):
            return True
        later = any(e.d2 > date for e in entries)
        mine = [e for e in entries if date in (e.d1, e.d2)]
        newest = max((e.newest_mtime() for e in mine), default=0.0)
        return (later and bool(links)) or self.clock() - newest >= self.opt.settle_s

    def _note_late(self, entries: list[IfgEntry]) -> None:
        consumed = {n for names in self.ledger.data["consumed"].values() for n in names}
        first, last = self.epochs[0], self.epochs[-1]
        late = set(self.ledger.data["late"])
        new = [e.name for e in entries if first < _iso(e.d2) <= last and e.name not in consumed
               and e.name not in late and not self._rejected(e)]
        for name in new:
            log.warning("frame %s: interferogram %s arrived after its epoch was published; not used "
                        "(the incremental inversion does not revise published epochs)", self.frame, name)
        if new:
            self.ledger.data["late"] = sorted(late | set(new))
            self.ledger.save()

    def _reject_once(self, exc: LicsarFileError, name: str, signature: list[int] | None, *, error: bool = True) -> None:
        """Report a file once per process and remember it (with its signature) in the ledger.

        ``error=False`` is for files that are fine but not for us (LiCSAR's long-baseline pairs):
        logged, remembered, not counted as errors."""
        key = (exc.path, exc.reason)
        if key not in self._reported:
            self._reported.add(key)
            if error:
                self.errors.append(exc)
                log.error("frame %s: skipped %s (%s)", self.frame, exc, exc.reason)
            else:
                log.info("frame %s: not used: %s", self.frame, exc)
        old = self.ledger.data["rejected"].get(name)
        if old is None or old.get("signature") != signature:
            self.ledger.data["rejected"][name] = {"reason": exc.reason, "detail": exc.detail, "signature": signature}
            self.ledger.save()

    # -- one epoch -----------------------------------------------------------------------------
    def _load(self, links: list[tuple[int, IfgEntry]], strict: bool) -> LoadedEpoch | None:
        """Read and reference the interferograms of ``links``; None = wait (a young unreadable file)."""
        results = read_interferograms([e for _, e in links], self.grid, self.ref, min_coherence=self.opt.min_coherence,
                                      looks=self.opt.looks)
        out = LoadedEpoch(reference=self.ref)
        for (j, e), result in zip(links, results):
            if isinstance(result, LicsarFileError):
                if strict:
                    raise RuntimeError(f"replaying the ledger: {result}; the file changed after it was used. "
                                       "Restore it, or remove the ingest state directory to start over")
                if self.opt.watch and self.clock() - e.newest_mtime() < self.opt.settle_s:
                    log.info("frame %s: %s is not readable yet (%s); waiting", self.frame, e.name, result.detail)
                    return None
                self._reject_once(result, e.name, e.signature())
                continue
            mm, w, used = result
            if used != self.ref:
                log.warning("frame %s: %s: the reference area %s is decorrelated; referenced to %s (%s) instead",
                            self.frame, e.name, self.ref.as_licsbas(), used.as_licsbas(), used.how)
                if used.area > out.reference.area:
                    out.reference = used
            out.preds.append(j)
            out.names.append(e.name)
            out.ifgs.append(mm)
            out.weights.append(w)
        return out

    def _invert(self, entries: list[IfgEntry], strict: bool = False) -> EpochEstimate:
        """Replay path: add the epoch after the filter's current one from ``entries``."""
        index = {d: i for i, d in enumerate(self.epochs)}
        loaded = self._load([(index[_iso(e.d1)], e) for e in entries], strict)
        if loaded is None:  # pragma: no cover - strict never waits
            raise RuntimeError("replaying the ledger waited for a file; strict replays never wait")
        return self.assembler.add(loaded)

    def _process(self, date: dt.date, links: list[tuple[int, IfgEntry]]) -> EpochReport | None:
        t = {"start": time.perf_counter()}
        loaded = self._load(links, strict=False)
        if loaded is None:
            return None
        names = loaded.names
        t["read"] = time.perf_counter()
        est = self.assembler.add(loaded)
        t["invert"] = time.perf_counter()
        k, epoch = est.epoch, _iso(date)
        epoch0 = self.epochs[0] if k == 1 and not self.publisher.is_published(self.epochs[0]) else None
        events, n_flagged = self.assembler.events(epoch, est, loaded, self.grid, self.ref, epoch0=epoch0)
        if not events:
            log.warning("frame %s epoch %s: no usable interferogram ties it to the earlier epochs; not published",
                        self.frame, epoch)
        t["write"] = time.perf_counter()

        def commit(data: dict[str, Any]) -> None:
            data["epochs"].append(epoch)
            data["consumed"][epoch] = names
            if k % self.opt.checkpoint_every == 0:
                meta, arrays = self.filter.state_arrays()
                data["checkpoint"] = {"epoch_index": k, "file": self.ledger.write_checkpoint(k, meta, arrays)}

        self.publisher.publish(events, commit)
        self.ledger.prune_checkpoints((self.ledger.data.get("checkpoint") or {}).get("file"))
        t["publish"] = time.perf_counter()
        secs = {s: t[s] - t[p] for p, s in zip(("start", "read", "invert", "write"), ("read", "invert", "write", "publish"))}
        log.info("frame %s epoch %s: %d interferogram(s) %s, %d pixel(s) closure-flagged; read %.2f s, invert %.2f s, "
                 "write %.2f s, commit+publish %.2f s", self.frame, epoch, len(names), names, n_flagged,
                 *secs.values())
        return EpochReport(epoch, names, bool(events), secs)

