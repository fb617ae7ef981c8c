"""One driver per sweep and purpose at a time: a lease in the store.

A driver that trains a sweep (or reduces it) first creates ``SWEEP/_leases/PURPOSE.json``
(:meth:`.layout.SweepLayout.lease`) with a create-only write: its owner (a random id, host,
process), when it was taken and when it expires. A heartbeat thread renews the expiry while
the driver works; the driver deletes the lease when it stops. A second driver finds the
lease and refuses with one line (exit 2), unless the lease is stale: expired (its driver
stopped renewing it: killed, or its pod gone) or held by a process of this host that no
longer exists (a driver killed a moment ago need not wait for the expiry).

On object stores pyarrow has no conditional PUT, so a new lease is read back after
:data:`SETTLE_S` and trusted only if it is still this driver's: of two drivers that wrote
within that window, the later write wins and the other refuses.

A :class:`SweepMutex` is the same lease held for a moment and waited for instead of refused:
processes of one sweep that may run at once (the training driver, ``doodl reduce``,
``doodl sync``) take it around each creation of MLflow runs, so a run is never created twice.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from doodl.orchestrator.store.sweep import StoreError, SweepStore
from doodl.workers.timestamps import utc_timestamp
from doodl.workers.store_files import create_only, is_object_store, read_bytes, write_atomic

TTL_S = 60.0  # a lease not renewed for this long is stale
HEARTBEAT_S = 15.0
SETTLE_S = 2.0  # object stores: how long a written lease must survive before it is trusted
TAKEOVER_TRIES = 3
# How long a SweepMutex waits for its holder: past TTL_S, so a holder killed on another host
# (its lock expires) is waited out rather than refused.
MUTEX_WAIT_S = 2 * TTL_S
MUTEX_POLL_S = 0.05


class LeaseHeld(StoreError):
    """Another driver holds the sweep's lease; ``str()`` is the one line for the user."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, as recorded in its file."""

    owner: str
    host: str
    pid: int
    acquired: str
    expires: float

    @classmethod
    def parse(cls, payload: bytes | None) -> Holder | None:
        try:
            doc = json.loads(payload) if payload else None
            return cls(doc["owner"], doc["host"], int(doc["pid"]), doc["acquired"], float(doc["expires"]))
        except (ValueError, KeyError, TypeError):
            return None  # unreadable: treated as stale, it protects nothing

    @staticmethod
    def owner_of(payload: bytes | None) -> str | None:
        """The ``owner`` a lease or handoff record names (None: no record, or unreadable)."""
        try:
            return str(json.loads(payload)["owner"]) if payload else None
        except (ValueError, KeyError, TypeError):
            return None

    def stale(self, now: float) -> bool:
        """Expired, or held by a process of this host that is gone."""
        return self.expires < now or (self.host == socket.gethostname() and not _alive(self.pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def live_holder(store: SweepStore, purpose: str) -> Holder | None:
    """Who holds the sweep's lease for ``purpose`` now, or None when no driver is at work
    (no lease, or a stale one: see :meth:`Holder.stale`). Reads the lease; writes nothing."""
    holder = Holder.parse(read_bytes(store.fs, store.layout.lease(purpose)))
    return holder if holder is not None and not holder.stale(time.time()) else None


class SweepLease:
    """The lease of one sweep for one purpose (``training``, ``reducing``); a context manager."""

    def __init__(self, store: SweepStore, purpose: str, ttl: float = TTL_S, heartbeat: float = HEARTBEAT_S,
                 settle: float = SETTLE_S):
        self.store, self.purpose = store, purpose
        self.path = store.layout.lease(purpose)
        self.ttl, self.heartbeat, self.settle = ttl, heartbeat, settle
        self.owner = uuid.uuid4().hex
        self.acquired = utc_timestamp()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _record(self) -> bytes:
        return json.dumps({"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(),
                           "purpose": self.purpose, "acquired": self.acquired,
                           "expires": time.time() + self.ttl}).encode()

    def _holder(self) -> Holder | None:
        return Holder.parse(read_bytes(self.store.fs, self.path))

    def acquire(self, wait: float = 0.0) -> SweepLease:
        """Take the lease or raise :class:`LeaseHeld`; start renewing it. While another
        driver holds it, try again every :data:`MUTEX_POLL_S` for up to ``wait`` seconds."""
        deadline = time.monotonic() + wait
        while True:
            try:
                return self._take()
            except LeaseHeld:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(MUTEX_POLL_S)

    def _take(self) -> SweepLease:
        fs = self.store.fs
        for _ in range(TAKEOVER_TRIES):
            try:
                created = create_only(fs, self.path, self._record())
            except OSError as exc:
                raise StoreError(f"store {self.store.store_uri}: not writable ({exc})") from None
            if created:
                if is_object_store(fs):
                    time.sleep(self.settle)
                    holder = self._holder()
                    if holder is None or holder.owner != self.owner:
                        raise self._held(holder)
                self._thread = threading.Thread(target=self._renew_until_stopped, daemon=True,
                                                name=f"doodl-lease-{self.purpose}")
                self._thread.start()
                return self
            holder = self._holder()
            if holder is not None and not holder.stale(time.time()):
                raise self._held(holder)
            # stale: remove it, unless someone replaced it since it was read
            if Holder.parse(read_bytes(fs, self.path)) == holder:
                try:
                    fs.delete_file(self.path)
                except FileNotFoundError:
                    pass
        raise self._held(self._holder())

    def _held(self, holder: Holder | None) -> LeaseHeld:
        who = f"{holder.host} (pid {holder.pid}) since {holder.acquired}" if holder else "another driver"
        return LeaseHeld(
            f"sweep {self.store.sweep_id!r} is already being {self.purpose.replace('ing', 'ed')} by {who}; "
            f"wait for it to finish (a driver that was killed releases it within {self.ttl:.0f} s), then run "
            "this again")

    def renew(self) -> bool:
        """Push the expiry forward; False (and no write) when the lease is no longer ours."""
        holder = self._holder()
        if holder is None or holder.owner != self.owner:
            return False
        write_atomic(self.store.fs, self.path, self._record())
        return True

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                if not self.renew():
                    return
            except OSError:  # the store hiccuped: try again at the next beat, well inside the TTL
                continue

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        holder = self._holder()
        if holder is not None and holder.owner == self.owner:
            try:
                self.store.fs.delete_file(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> SweepLease:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class SweepMutex:
    """A lock of one sweep shared by the processes that may work on it at once, through the
    store (local or object store alike, so across hosts): :meth:`hold` takes the sweep's
    ``purpose`` lease, waiting up to ``wait`` seconds for another holder, and says whether
    another process held it since this mutex last did. A holder that reads a view of shared
    state once and updates it only under the lock needs to read it again only then."""

    def __init__(self, store: SweepStore, purpose: str, wait: float = MUTEX_WAIT_S, **lease_options):
        self.store, self.purpose, self.wait = store, purpose, wait
        self.lease_options = lease_options
        self.id = uuid.uuid4().hex
        self.handoff = store.layout.lease_handoff(purpose)

    @contextmanager
    def hold(self) -> Iterator[bool]:
        """Hold the lock for the body; yields True when another mutex held it since this one
        last did (or since it was made, for the first hold). Raises :class:`LeaseHeld` when
        the wait runs out."""
        lease = SweepLease(self.store, self.purpose, **self.lease_options).acquire(wait=self.wait)
        try:
            last = Holder.owner_of(read_bytes(self.store.fs, self.handoff))
            if last != self.id:  # written first: a body that fails halfway still counts
                write_atomic(self.store.fs, self.handoff, json.dumps({"owner": self.id}).encode())
            yield last is not None and last != self.id
        finally:
            lease.release()
