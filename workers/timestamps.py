"""Times as doodl writes them: the timestamp formats, and durations for people.

Here in ``workers/`` because workers stamp what they write (a unit's commit marker) and the
orchestrator, which may import workers but not the other way round, stamps the rest
(``sweep.json``'s ``created``, the lease, audits, listings, the report). Every timestamp is
UTC.
"""

from __future__ import annotations

import datetime as dt
import time

ISO_UTC = "%Y-%m-%dT%H:%M:%SZ"  # what files record: sweep.json's created, commit markers, the lease, ``doodl ls``
COMPACT_UTC = "%Y%m%dT%H%M%SZ"  # inside identifiers (an audit's sweep id)
READABLE_UTC = "%Y-%m-%d %H:%M:%S"  # for people: the report, MLflow run listings


def utc_timestamp(when: float | dt.datetime | None = None, fmt: str = ISO_UTC) -> str:
    """``when`` (seconds since the epoch, or a datetime; default now) in UTC, formatted."""
    if isinstance(when, dt.datetime):
        return when.astimezone(dt.timezone.utc).strftime(fmt)
    return time.strftime(fmt, time.gmtime(when))


def human_duration(seconds: float) -> str:
    """A duration in the unit a person reads it in: ``4.2 s``, ``95 s``, ``12 min``, ``3.5 h``."""
    if seconds < 10:
        return f"{seconds:.2g} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
