"""MLflow's own tracebacks never reach the user on paths doodl handles: a locked SQLite
database gives doodl's one line, and two commands creating one new database at once both
log (the second waits for the first)."""

from __future__ import annotations

import pytest

import sqlite3
import subprocess
import sys
import textwrap

from doodl.orchestrator.cli import main
from tests.conftest import tiny_spec_dict, write_spec

# `doodl ARGS` in its own process (MLflow's log handlers write to that process's stderr),
# giving up on a locked database after one attempt (MLflow's 20 s busy timeout) instead of five
DOODL_NO_LOCK_RETRIES = textwrap.dedent("""
    import sys

    from doodl.orchestrator.tracking._sink import MlflowSink
    from doodl.orchestrator.cli import main

    MlflowSink.__init__.__defaults__ = ((), None)
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.slow  # in the nightly run (.ci/nightly): waits out MLflow's retries (about 25 s)
def test_a_locked_database_gives_one_line_and_no_traceback(tmp_path, ray_session):
    spec = write_spec(tmp_path, tiny_spec_dict(name="locked"))
    store = ["--store", str(tmp_path / "store")]
    (tmp_path / "afile").write_text("not a directory")
    assert main(["sweep", str(spec), *store, "--tracking-uri", f"sqlite:///{tmp_path}/afile/m.db",
                 "--no-progress"]) == 3  # trained, logging deferred
    db = tmp_path / "m.db"
    from doodl.orchestrator.tracking import MlflowSink

    MlflowSink(f"sqlite:///{db}", "other", "other")  # the database exists, its tables made
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another writer holds it past the busy timeout
    try:
        done = subprocess.run([sys.executable, "-c", DOODL_NO_LOCK_RETRIES, "sync", "locked", *store,
                               "--tracking-uri", f"sqlite:///{db}"], capture_output=True, text=True)
    finally:
        holder.execute("COMMIT")
        holder.close()
    assert done.returncode == 1, done.stderr
    assert "doodl: error: MLflow logging still failing: MlflowException: (sqlite3.OperationalError) " \
           "database is locked" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr


# one of two commands opening a new SQLite database through doodl's sink at once. Whichever
# finds the database without its tables holds there until the other has found the same (or
# is seen waiting to create it, as doodl serializes creation with a file lock): without that
# lock, both then create the tables and run MLflow's migrations together.
RACING_SINK = textwrap.dedent("""
    import fcntl, os, sys, time

    import mlflow.store.db.utils as db_utils

    from doodl.orchestrator.tracking import MlflowSink

    uri, signals, me, other = sys.argv[1:5]

    def signal(name):
        open(os.path.join(signals, name), "w").close()

    def seen(name):
        return os.path.exists(os.path.join(signals, name))

    real_check, real_flock = db_utils._all_tables_exist, fcntl.flock

    def check(engine):
        found = real_check(engine)
        if not found:
            signal(f"checked-{me}")
            deadline = time.monotonic() + 120  # a give-up only: the other never fails to show
            while not (seen(f"checked-{other}") or seen(f"blocked-{other}")) and time.monotonic() < deadline:
                time.sleep(0.02)
        return found

    def flock(fd, op):
        if op == fcntl.LOCK_EX:
            try:
                return real_flock(fd, op | fcntl.LOCK_NB)
            except BlockingIOError:
                signal(f"blocked-{me}")
        return real_flock(fd, op)

    db_utils._all_tables_exist, fcntl.flock = check, flock
    if sys.argv[5] == "sink":
        sink = MlflowSink(uri, f"race-{me}", f"sweep-{me}")
        sink.log_parent({"n_variants": 1}, {"n_variants_done": 1.0})
    else:  # a command that only reads the view (doodl report's run links)
        from doodl.orchestrator.tracking import sweep_run_ids

        assert sweep_run_ids(uri, f"race-{me}", f"sweep-{me}") == (None, {}, None)
""")


@pytest.mark.parametrize("second", ["sink", "reader"])
def test_two_commands_creating_one_new_database_at_once_both_log(tmp_path, second):
    uri = f"sqlite:///{tmp_path / 'new.db'}"
    signals = tmp_path / "signals"
    signals.mkdir()
    racers = [subprocess.Popen([sys.executable, "-c", RACING_SINK, uri, str(signals), me, other, mode],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for me, other, mode in (("a", "b", "sink"), ("b", "a", second))]
    outcomes = [(r.wait(), r.stderr.read()) for r in racers]
    for code, err in outcomes:
        assert code == 0 and "Traceback" not in err, err
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    for me in ("a", "b") if second == "sink" else ("a",):
        exp = client.get_experiment_by_name(f"race-{me}")
        assert len(client.search_runs([exp.experiment_id])) == 1
