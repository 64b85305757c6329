"""When a schedule ticks. Cron times are wall-clock times in the schedule's time zone with Dagster's own
rules across daylight-saving changes (a time skipped by the spring change runs at the first valid time after
it; a time repeated in autumn runs once, at its later occurrence), so a schedule made through the API ticks
exactly as a `dg.ScheduleDefinition` with the same cron and time zone. Interval schedules tick at multiples
of `interval_seconds` since the Unix epoch (as Temporal's interval specs do), whatever the time zone."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterator

# (start Unix time, cron, IANA zone, ascending) -> the cron's times from start on (or back from it):
# Dagster's cron_string_iterator, which the service passes in (the domain imports no Dagster)
CronIterator = Callable[[float, str, str, bool], Iterator[datetime]]


@dataclass(frozen=True)
class Cadence:
    """A schedule's cadence: a 5-field cron in `timezone`, or every `interval_seconds`."""

    cron: str | None
    interval_seconds: int | None
    timezone: str


def next_tick(cadence: Cadence, after: float, cron_times: CronIterator) -> int:
    """The first tick strictly after `after` (Unix seconds), as Unix seconds."""
    if cadence.interval_seconds:
        step = cadence.interval_seconds
        return (math.floor(after / step) + 1) * step
    assert cadence.cron is not None  # ScheduleFields: exactly one of the two
    for when in cron_times(after, cadence.cron, cadence.timezone, True):
        if when.timestamp() > after:
            return int(when.timestamp())
    raise ValueError(f"cron {cadence.cron!r} never ticks")  # an iterator of a valid cron does not end


def latest_tick(cadence: Cadence, at_or_before: float, cron_times: CronIterator) -> int:
    """The last tick at or before `at_or_before` (Unix seconds), as Unix seconds."""
    if cadence.interval_seconds:
        step = cadence.interval_seconds
        return math.floor(at_or_before / step) * step
    assert cadence.cron is not None
    for when in cron_times(at_or_before, cadence.cron, cadence.timezone, False):
        if when.timestamp() <= at_or_before:
            return int(when.timestamp())
    raise ValueError(f"cron {cadence.cron!r} never ticked")
