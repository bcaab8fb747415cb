"""The acquisition calendar of a simulated frame: 12-day slots, missing passes, the event slot.

Sentinel-1 alone revisits every 12 days; a missed pass leaves a 24-day gap, two in a row a
36-day gap (DESIGN.md §2). Missing slots are simply absent from the cube's time axis, as in a
LiCSBAS time series.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Iterable

import numpy as np

#: the event falls in the last 15 % of the slots, nominally at 90 % (the paper trains on 85 %)
EVENT_NOMINAL = 0.90
EVENT_EARLIEST = 0.85


@dataclass(frozen=True)
class Calendar:
    """Which slots were acquired.

    Attributes:
        slot_dates: (n_slots,) datetime64[D], start + 12 * k days.
        acquired: (n_slots,) bool.
        event_slot: calendar slot of the first post-event acquisition, -1 without an event.
        gap_runs: the explicit runs of missing slots, (start slot, length).
    """

    slot_dates: np.ndarray
    acquired: np.ndarray
    event_slot: int
    gap_runs: tuple[tuple[int, int], ...]

    @property
    def dates(self) -> np.ndarray:
        """(n_time,) datetime64[D] of the acquired slots."""
        return self.slot_dates[self.acquired]

    @property
    def slots(self) -> np.ndarray:
        """(n_time,) int64 calendar slot of each acquired epoch."""
        return np.flatnonzero(self.acquired)

    @property
    def missing_dates(self) -> np.ndarray:
        """(n_missing,) datetime64[D] of the slots without an acquisition."""
        return self.slot_dates[~self.acquired]


def _validate_runs(gap_runs: Iterable[tuple[int, int]], n_slots: int) -> tuple[tuple[int, int], ...]:
    runs = []
    for run in gap_runs:
        try:
            start, length = (int(v) for v in run)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"gap run {run!r} is not a (start slot, length) pair of integers") from exc
        if start < 1 or length < 1 or start + length > n_slots:
            raise ValueError(
                f"gap run (start={start}, length={length}) must lie within slots 1..{n_slots - 1} "
                "(slot 0 is the reference epoch and is always acquired); shorten or move the run"
            )
        runs.append((start, length))
    return tuple(runs)


def make_calendar(rng: np.random.Generator, n_slots: int, start: str | date, step_days: int,
                  missing_fraction: float, gap_runs: Iterable[tuple[int, int]], has_event: bool,
                  event_slot: int | None = None) -> Calendar:
    """Draw the calendar.

    Args:
        rng: draws the random single missing passes.
        n_slots: number of calendar slots (the ``n_epochs`` of :func:`simulate`).
        start: date of slot 0 (ISO string or date).
        step_days: revisit, days.
        missing_fraction: probability that a slot is missed (independently per slot).
        gap_runs: explicit runs of consecutive missing slots, (start slot, length).
        has_event: whether to place an event.
        event_slot: slot of the first post-event acquisition; default: the slot nearest 90 % of
            the calendar, in the last 15 %, such that neither it nor the slot before is in a run.

    Raises:
        ValueError: impossible parameters; the message names the value and the fix.
    """
    if n_slots < 2:
        raise ValueError(f"n_epochs={n_slots}: a time series needs at least 2 slots")
    if step_days < 1:
        raise ValueError(f"step_days={step_days} must be >= 1")
    if not 0.0 <= missing_fraction < 0.5:
        raise ValueError(f"missing_fraction={missing_fraction} must be in [0, 0.5)")
    try:
        start_d = np.datetime64(str(start), "D")
    except ValueError as exc:
        raise ValueError(f"start={start!r} is not an ISO date such as 2019-01-05") from exc
    runs = _validate_runs(gap_runs, n_slots)
    in_run = np.zeros(n_slots, dtype=bool)
    for s, n in runs:
        in_run[s:s + n] = True

    slot = -1
    if has_event:
        if event_slot is not None:
            slot = int(event_slot)
            if not 1 <= slot < n_slots:
                raise ValueError(f"event slot {slot} must be in 1..{n_slots - 1}")
            if in_run[slot] or in_run[slot - 1]:
                raise ValueError(f"event slot {slot} (or the slot before it) lies in a gap run; the "
                                 "event must fall between two acquisitions 12 days apart: move it")
        else:
            # a very short calendar still gets its event in the last slot
            lo = min(max(int(np.ceil(EVENT_EARLIEST * n_slots)), 1), n_slots - 1)
            cands = [k for k in range(lo, n_slots) if not (in_run[k] or in_run[k - 1])]
            if not cands:
                raise ValueError(
                    f"no slot in the last 15 % of the {n_slots} slots is free of gap runs for the "
                    "event; shorten the runs or pass event_index explicitly"
                )
            target = EVENT_NOMINAL * n_slots
            slot = min(cands, key=lambda k: (abs(k - target), k))

    missing = rng.random(n_slots) < missing_fraction
    missing |= in_run
    missing[0] = False  # the reference epoch of the time series
    if slot > 0:
        missing[slot] = missing[slot - 1] = False  # the event lies within one 12-day interval
    dates = start_d + np.arange(n_slots) * np.timedelta64(step_days, "D")
    return Calendar(dates, ~missing, slot, runs)


def event_datetime(calendar: Calendar, real_time: str, rng: np.random.Generator) -> tuple[datetime, str]:
    """The event's time: the real one if its date falls strictly between the last pre-event and
    the first post-event acquisition dates, otherwise a day drawn between them at the real time
    of day.

    Returns:
        (aware UTC datetime, a note for the truth attrs).
    """
    real = datetime.fromisoformat(real_time.replace("Z", "+00:00")).astimezone(timezone.utc)
    before = calendar.slot_dates[calendar.event_slot - 1].astype("datetime64[D]").item()
    after = calendar.slot_dates[calendar.event_slot].astype("datetime64[D]").item()
    if before < real.date() < after:
        return real, f"real origin time {real_time}"
    span = (after - before).days
    day = before + timedelta(days=int(rng.integers(1, span)) if span > 1 else 0)
    moved = datetime(day.year, day.month, day.day, real.hour, real.minute, real.second, tzinfo=timezone.utc)
    return moved, (f"real origin {real_time} is outside {before}..{after}, the interval chosen for "
                   "the event; date moved there, time of day kept")
