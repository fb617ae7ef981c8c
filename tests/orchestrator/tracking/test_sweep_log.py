"""The MLflow view is logged on a thread of its own: a stalled tracking store holds up
logging, never training."""

from __future__ import annotations

import os
import sys
import threading
import time
import types

import pytest

import doodl.orchestrator.tracking._sweep_log as tracking
from doodl.orchestrator.store import SweepStore
from tests.conftest import run_cli, tiny_spec_dict, write_spec


@pytest.mark.usefixtures("ray_session")
def test_training_finishes_while_logging_is_held(tmp_path, monkeypatch):
    held, release, real = threading.Event(), threading.Event(), tracking.log_units

    def stalled(sink, store, rows_by_unit, unit_ids, outcome):
        if unit_ids:  # a committed unit: the tracking store "hangs" until the test says so
            held.set()
            assert release.wait(300), "the test never released logging"
        return real(sink, store, rows_by_unit, unit_ids, outcome)

    monkeypatch.setattr(tracking, "log_units", stalled)
    store, db = str(tmp_path / "store"), f"sqlite:///{tmp_path / 'm.db'}"
    spec = write_spec(tmp_path, tiny_spec_dict("held", resources={"variants_per_unit": 2, "num_actors": 2}))
    result = {}
    cli = threading.Thread(target=lambda: result.update(
        zip(("code", "out", "err"), run_cli(["sweep", str(spec), "--store", store, "--tracking-uri", db,
                                             "--no-progress"]))))
    cli.start()
    try:
        assert held.wait(300), "no unit was committed"
        sweep = SweepStore(store, "held")
        units = sorted(set(sweep.read_variants()["unit_id"].to_pylist()))
        deadline = time.monotonic() + 300
        while {s.state for s in sweep.unit_states(units, "none").values()} != {"committed"}:
            assert time.monotonic() < deadline, "training stopped while logging was held"
            time.sleep(0.2)
        # every unit trained and committed while the first unit's logging never returned
        assert cli.is_alive()  # the sweep itself waits for logging to catch up before it reports
    finally:
        release.set()
        cli.join(300)
    assert result["code"] == 0, result["err"][-2000:]
    assert "trained 4, already done 0, failed 0; logged 8 MLflow runs" in result["out"]
    # the user is told that training is done and logging is catching up, and how long each took
    assert "committed units to MLflow" in result["err"] and "(training " in result["out"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own CPU priority is Linux's")
def test_the_logging_thread_yields_the_cpu_to_training(tmp_path, monkeypatch):
    seen = {}

    def no_tracking_store(*args):  # runs on the logging thread, first thing it does
        seen["logger"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        return None

    monkeypatch.setattr(tracking, "open_sink", no_tracking_store)
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    log = tracking.SweepLog("sqlite:///unused.db", "e", SweepStore(str(tmp_path), "s"), {}, {},
                            outcome=types.SimpleNamespace(mlflow_error=None, sweep_id="s"))
    log.finish([], complete=False)
    assert seen["logger"] == max(before, tracking.LOGGER_NICE)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before  # the driver's own thread is untouched
