"""MLflow outages: training and the store carry on, logging is deferred with one warning,
`doodl sync` catches up idempotently; a locked SQLite database is retried with backoff."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

import pytest

from doodl.orchestrator.cli import main
from doodl.orchestrator.tracking import MlflowSink
from doodl.orchestrator.tracking._client import RetryOnLock
from tests.conftest import FAST_REDUCE, tiny_spec_dict, write_spec


def _runs(db):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("outage")
    return client.search_runs([exp.experiment_id], max_results=1000)


def test_unreachable_mlflow_defers_and_sync_catches_up(tmp_path, ray_session, capsys):
    # the reduction's results are what is deferred and synced, not its accuracy: cheap settings
    spec = write_spec(tmp_path, tiny_spec_dict(name="outage", reduce=FAST_REDUCE))
    store = ["--store", str(tmp_path / "store")]
    (tmp_path / "afile").write_text("not a directory")
    bad = f"sqlite:///{tmp_path}/afile/m.db"  # MLflow cannot create a database there
    # the store is complete, the MLflow view is not: exit 3, and one line says so
    assert main(["sweep", str(spec), *store, "--tracking-uri", bad, "--no-progress", "--reduce"]) == 3
    captured = capsys.readouterr()
    assert "trained 3, already done 0, failed 0; logged 0 MLflow runs" in captured.out
    assert "morse: reduced 4" in captured.out and "taxonomy: reduced 4" in captured.out
    assert captured.err.count("logging is deferred: run `doodl sync outage`") == 2  # once per command
    assert captured.err.count(f"doodl: MLflow at {bad} lacks 9 of 9 runs and 60 of 60 results") == 1

    good = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["sync", "outage", *store, "--tracking-uri", good]) == 0
    # 8 runs + 5 analyses x (8 seeds + 4 groups) results
    assert "sync outage: logged 68 MLflow runs and results" in capsys.readouterr().out
    runs = _runs(tmp_path / "mlflow.db")
    children = [r for r in runs if r.data.tags.get("doodl.role") == "child"]
    groups = [r for r in runs if r.data.tags.get("doodl.role") == "group"]
    assert len(runs) == 1 + 8 + 4 and all("n_morse_sets" in g.data.metrics and "doodl.phase" in g.data.tags
                                          for g in groups)
    # Koopman classes are sweep-wide: sync works them out from the store before logging them
    assert all("doodl.koopman_class" in g.data.tags for g in groups)
    # 2 seeds a group: no Morse verdict, so the seeds carry their itinerary but no outcome metric
    assert all("ntk_distance_init" in c.data.metrics and "doodl.itinerary" in c.data.tags for c in children)
    assert main(["sync", "outage", *store, "--tracking-uri", good]) == 0
    assert "logged 0 MLflow runs and results" in capsys.readouterr().out  # idempotent
    assert len(_runs(tmp_path / "mlflow.db")) == 13

    assert main(["sync", "outage", *store, "--tracking-uri", bad]) == 1  # still down: says so
    assert "MLflow logging still failing" in capsys.readouterr().err


class _Flaky:
    """A client whose calls find the database locked ``failures`` times, then succeed."""

    def __init__(self, failures):
        self.failures, self.calls = failures, 0

    def log_batch(self, *args):
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"


def test_lock_retries_back_off_then_give_up(caplog):
    caplog.set_level(logging.WARNING, "doodl.mlflow")
    flaky = _Flaky(failures=2)
    t0 = time.perf_counter()
    assert RetryOnLock(flaky, delays=(0.05, 0.1, 0.2)).log_batch() == "ok"
    assert flaky.calls == 3 and time.perf_counter() - t0 >= 0.15  # waited 0.05 then 0.1
    assert caplog.text.count("database is locked") == 2
    stuck = _Flaky(failures=100)
    with pytest.raises(RuntimeError, match="locked"):
        RetryOnLock(stuck, delays=(0.01, 0.01)).log_batch()
    assert stuck.calls == 3  # then the caller defers logging, as for any MLflow failure


def test_locked_database_is_retried_with_backoff(tmp_path, caplog):
    """Another writer holds the real SQLite database longer than its 20 s busy timeout."""
    caplog.set_level(logging.WARNING, "doodl.mlflow")
    db = tmp_path / "m.db"
    sink = MlflowSink(f"sqlite:///{db}", "outage", "locked")
    locked = threading.Event()

    def hold(seconds):
        con = sqlite3.connect(db, isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(seconds)
        con.execute("COMMIT")
        con.close()

    holder = threading.Thread(target=hold, args=(22.0,))
    holder.start()
    locked.wait()
    t0 = time.perf_counter()
    sink.log_parent({"n_variants": 8}, {"n_variants_done": 8.0})
    holder.join()
    assert time.perf_counter() - t0 >= 20  # the first attempt did hit the lock
    assert "MLflow database is locked" in caplog.text
    run = sink.client.get_run(sink.parent_id)
    assert run.data.params["n_variants"] == "8" and run.data.metrics["n_variants_done"] == 8.0


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on exit: nothing listens there


def test_a_server_that_accepts_but_never_answers_is_down_after_the_probe_timeout():
    import socket

    from doodl.orchestrator.tracking import TrackingUnavailable, probe

    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        start = time.monotonic()
        with pytest.raises(TrackingUnavailable, match="within 0.5 s"):
            probe(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.5)
        assert time.monotonic() - start < 10  # the probe's own timeout, not MLflow's minutes of retries
    with pytest.raises(TrackingUnavailable):
        probe(f"http://127.0.0.1:{_closed_port()}")
    probe("sqlite:///anything.db")  # no server to probe


def test_a_tracking_server_that_is_down_never_reaches_the_mlflow_client(tmp_path, ray_session, capsys, monkeypatch):
    """The MLflow client retries a dead server for minutes per call: with the probe failing,
    it is never created, so training starts at once; `doodl sync` then logs everything once."""
    spec = write_spec(tmp_path, tiny_spec_dict(name="outage"))
    store = ["--store", str(tmp_path / "store")]
    down = f"http://127.0.0.1:{_closed_port()}"

    def never(*args, **kwargs):
        raise AssertionError("the MLflow client was created for a server that is down")

    with monkeypatch.context() as patch:
        patch.setattr(MlflowSink, "__init__", never)
        assert main(["sweep", str(spec), *store, "--tracking-uri", down, "--no-progress"]) == 3
    captured = capsys.readouterr()
    assert "trained 3, already done 0, failed 0; logged 0 MLflow runs" in captured.out
    assert f"MLflow logging deferred: TrackingUnavailable: no answer from {down} within 10 s" in captured.err
    assert f"lacks 9 of 9 runs and 0 of 0 results of sweep outage (down: no answer from {down}" in captured.err
    good = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["sync", "outage", *store, "--tracking-uri", good]) == 0
    assert "sync outage: logged 8 MLflow runs" in capsys.readouterr().out
    assert main(["sync", "outage", *store, "--tracking-uri", good]) == 0
    assert "logged 0 MLflow runs" in capsys.readouterr().out
    assert len(_runs(tmp_path / "mlflow.db")) == 9


def test_a_programming_error_in_logging_is_raised_not_deferred(tmp_path, ray_session, monkeypatch):
    """Only what MLflow and the network raise means "tracking is unavailable"; a bug fails loudly."""
    from doodl.orchestrator.driver import run_sweep
    from doodl.orchestrator.spec import load_spec

    def broken(self, *args, **kwargs):
        raise TypeError("a bug in doodl")

    monkeypatch.setattr(MlflowSink, "log_variants", broken)
    spec = load_spec(write_spec(tmp_path, tiny_spec_dict(name="outage")))
    with pytest.raises(TypeError, match="a bug in doodl"):
        run_sweep(spec, store_uri=str(tmp_path / "store"), tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
                  show_progress=False)


def test_a_tracking_server_that_comes_back_mid_sweep_gets_everything_logged(tmp_path):
    """The server is down when the sweep starts and comes up while it trains (the first
    driver holds its second unit until then): training never waited on it, and by the end
    every variant is logged to the real server, once, without `doodl sync`."""
    import os
    import signal
    import subprocess
    import urllib.request

    from tests.orchestrator.test_cli import DOODL
    from tests.reliability.test_worker_and_driver_death import _stop, _wait_for_commits

    port = _closed_port()
    tracking = f"http://127.0.0.1:{port}"
    spec = write_spec(tmp_path, tiny_spec_dict(name="outage", resources={"variants_per_unit": 3, "num_actors": 1}))
    release = tmp_path / "release"
    sweep = subprocess.Popen(
        [DOODL, "sweep", str(spec), "--store", str(tmp_path / "store"), "--no-progress", "--tracking-uri", tracking],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "DOODL_FAULT_HOLD_FILE": str(release), "DOODL_FAULT_HOLD_AFTER": "1"})
    server = None
    try:
        _wait_for_commits(sweep, tmp_path / "store" / "outage" / "_commits", 1)  # trained with the server down
        server = subprocess.Popen(
            ["mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
             "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1"],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{tracking}/health", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
                time.sleep(0.5)
        release.touch()
        out, err = sweep.communicate(timeout=300)
    finally:
        _stop(sweep)
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
    assert sweep.returncode == 0, err[-6000:]
    assert "trained 3, already done 0, failed 0; logged 8 MLflow runs" in out
    assert "is unreachable" in err and "MLflow logging deferred" not in err  # caught up, nothing left for sync
    roles = {}
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'server.db'}")
    for run in client.search_runs([client.get_experiment_by_name("outage").experiment_id], max_results=100):
        roles[run.data.tags["doodl.role"]] = roles.get(run.data.tags["doodl.role"], 0) + 1
        if run.data.tags["doodl.role"] == "parent":
            assert run.info.status == "FINISHED"
    assert roles == {"parent": 1, "child": 8}
