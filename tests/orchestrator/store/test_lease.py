"""The sweep lease: one driver per sweep and purpose; stale leases (expired, or of a dead
process on this host) are taken over; a lease is renewed while held and deleted on release."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading

import pytest

from doodl.orchestrator.store import LeaseHeld, SweepLease, SweepMutex, SweepStore


@pytest.fixture()
def store(tmp_path):
    s = SweepStore(str(tmp_path / "store"), "leased")
    s.check_writable()
    return s


def _write_holder(store, purpose, **fields):
    doc = {"owner": "someone", "host": socket.gethostname(), "pid": 1, "acquired": "2026-01-01T00:00:00Z",
           "expires": 4e9, **fields}
    path = store.fs.get_file_info(store.root).path + f"/_leases/{purpose}.json"
    store.fs.create_dir(path.rsplit("/", 1)[0])
    with store.fs.open_output_stream(path) as f:
        f.write(json.dumps(doc).encode())
    return path


def test_a_second_driver_is_refused_until_the_first_releases(store):
    first = SweepLease(store, "training").acquire()
    with pytest.raises(LeaseHeld, match=r"sweep 'leased' is already being trained by .* \(pid \d+\) since"):
        SweepLease(store, "training").acquire()
    with SweepLease(store, "reducing"):  # another purpose: training and reducing may overlap
        pass
    first.release()
    with SweepLease(store, "training") as again:
        assert again.renew()  # held: renewing works
    assert store.fs.get_file_info(again.path).type.name == "NotFound"  # released: deleted


def test_a_lease_of_a_dead_process_on_this_host_is_taken_over(store):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _write_holder(store, "training", pid=int(dead.stdout))
    with SweepLease(store, "training") as lease:
        assert json.loads(store.fs.open_input_stream(lease.path).read())["owner"] == lease.owner


def test_a_live_lease_of_another_host_is_respected_until_it_expires(store):
    path = _write_holder(store, "training", host="another-pod", pid=12345)
    with pytest.raises(LeaseHeld, match="another-pod"):
        SweepLease(store, "training").acquire()
    _write_holder(store, "training", host="another-pod", pid=12345, expires=1.0)  # stopped renewing long ago
    with SweepLease(store, "training") as lease:
        assert json.loads(store.fs.open_input_stream(path).read())["owner"] == lease.owner


def test_renewal_moves_the_expiry_and_stops_when_the_lease_was_taken(store):
    lease = SweepLease(store, "training", ttl=60, heartbeat=3600).acquire()
    first = json.loads(store.fs.open_input_stream(lease.path).read())["expires"]
    assert lease.renew()
    assert json.loads(store.fs.open_input_stream(lease.path).read())["expires"] >= first
    _write_holder(store, "training", owner="usurper")
    assert not lease.renew()  # not ours any more: left alone
    lease.release()
    assert json.loads(store.fs.open_input_stream(lease.path).read())["owner"] == "usurper"


def test_an_unreadable_lease_protects_nothing(store):
    path = _write_holder(store, "training")
    with store.fs.open_output_stream(path) as f:
        f.write(b"{torn")
    with SweepLease(store, "training"):
        pass


def test_the_mutex_waits_for_its_holder_and_says_who_held_it_since(store):
    mine, theirs = SweepMutex(store, "test-lock"), SweepMutex(store, "test-lock", wait=30)
    with mine.hold() as stale:
        assert not stale  # nobody held it before
    with mine.hold() as stale:
        assert not stale  # only this mutex since
    holding, release, order = threading.Event(), threading.Event(), []

    def hold_theirs():
        with theirs.hold():
            holding.set()
            release.wait(30)
            order.append("theirs released")

    thread = threading.Thread(target=hold_theirs)
    thread.start()
    assert holding.wait(30)
    waiter = threading.Thread(target=lambda: _hold_and_record(mine, order))
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive() and order == []  # waiting: however long, it never holds it alongside
    release.set()  # the waiter gets the lock only after this
    thread.join(30)
    waiter.join(30)
    assert order == ["theirs released", "mine held (stale=True)"]


def _hold_and_record(mutex, order):
    with mutex.hold() as stale:
        order.append(f"mine held (stale={stale})")


def test_a_mutex_held_past_its_wait_refuses(store):
    with SweepMutex(store, "test-wait").hold(), pytest.raises(LeaseHeld):
        with SweepMutex(store, "test-wait", wait=0.2).hold():
            pass
