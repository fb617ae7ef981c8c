"""MLflow's own tracebacks never reach the user on paths doodl handles: a locked SQLite
database gives doodl's one line, and two commands creating one new database at once both
log (the second waits for the first)."""

from __future__ import annotations

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
