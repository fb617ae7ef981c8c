"""The store on S3, for real: moto's S3 server on 127.0.0.1 stands in for the bucket, and
the `doodl` CLI runs against it as a user runs it on a cluster.

| fault or path                              | what a user relies on                                         |
|--------------------------------------------|---------------------------------------------------------------|
| `doodl sweep` / `doodl status` on S3       | exit 0; variants, commit markers and rows read back from S3   |
| the driver SIGKILLed after 1st commit      | the rerun trains only what is missing; the store equals an    |
|                                            | uninterrupted run's, row for row; committed units untouched   |
| `doodl reduce` on S3                       | a Morse and a taxonomy row per group, pictures, all in S3     |
| `doodl audit` with a baseline in S3        | exit 0 (no drift: same data), the report written to S3        |
| a store URI with `?endpoint_override=`     | workers open the same endpoint as the driver (the query       |
|                                            | reaches them; credentials in the URI never reach MLflow)      |

The store is `s3://doodl/store?endpoint_override=127.0.0.1:PORT&scheme=http`, the form
`pyarrow.fs.FileSystem.from_uri` takes; the CLI's subprocesses get no `AWS_ENDPOINT_URL`, so
the workers find the endpoint in the URI they are handed or nowhere.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from doodl.orchestrator.store import SweepStore
from tests.conftest import tiny_spec_dict, write_spec
from tests.orchestrator.test_cli import DOODL
from doodl.workers import shards

BUCKET = "doodl"
N_VARIANTS, N_GROUPS, STEPS = 8, 4, 60
# cheap reduction settings: the analysis is covered elsewhere, here it is what lands in S3
CHEAP_REDUCE = {
    "morse": {"subdiv_min": 6, "subdiv_max": 8, "compose": 2, "folds": 2},
    "taxonomy": {"curve_steps": 40, "power_iters": 20, "trace_samples": 10, "cka_probe": 128, "hessian_batch": 64},
    "ntk": {"probe": 16, "max_kernels": 4},
}
AWS_ENV = {"AWS_ACCESS_KEY_ID": "doodl-test-key", "AWS_SECRET_ACCESS_KEY": "doodl-test-secret",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3:
    """The moto server, its bucket, the store URI and the environment of a CLI subprocess."""

    def __init__(self, port: int, tmp):
        self.port = port
        self.tmp = tmp
        self.endpoint = f"127.0.0.1:{port}"
        self.uri = f"s3://{BUCKET}/store?endpoint_override={self.endpoint}&scheme=http"
        self.fs, self.base = pafs.FileSystem.from_uri(self.uri)
        self.env = {**os.environ, **AWS_ENV}

    def cli(self, *args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([DOODL, *args], cwd=self.tmp, capture_output=True, text=True, timeout=timeout,
                              env={**self.env, **(env or {})})

    def common(self) -> list[str]:
        return ["--store", self.uri, "--tracking-uri", f"sqlite:///{self.tmp / 'm.db'}", "--no-progress"]

    def listing(self, sweep: str, sub: str = "") -> list[pafs.FileInfo]:
        sel = pafs.FileSelector(f"{self.base}/{sweep}{sub}", recursive=True, allow_not_found=True)
        return [i for i in self.fs.get_file_info(sel) if i.type == pafs.FileType.File]

    def read_bytes(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as f:
            return f.read()


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server on a free loopback port with one bucket; this process reads the store
    with the same credentials and no endpoint in its environment."""
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in (*AWS_ENV, "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE")}
    for k in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        os.environ.pop(k, None)
    os.environ.update(AWS_ENV)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        bucket_fs, _ = pafs.FileSystem.from_uri(
            f"s3://{BUCKET}?endpoint_override=127.0.0.1:{port}&scheme=http&allow_bucket_creation=true")
        bucket_fs.create_dir(BUCKET)
        yield S3(port, tmp_path_factory.mktemp("s3"))
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _spec(name: str) -> dict:
    """8 variants (4 groups x 2 seeds), one per unit, trained by one actor."""
    return tiny_spec_dict(name, optimizer={"steps": STEPS}, reduce=CHEAP_REDUCE,
                          resources={"variants_per_unit": 1, "num_actors": 1})


@pytest.fixture(scope="module")
def base(s3):
    """An uninterrupted sweep "base" into the S3 store: the reference for everything else."""
    spec = write_spec(s3.tmp, _spec("base"), "base.yaml")
    done = s3.cli("sweep", str(spec), *s3.common())
    return spec, done


def _rows(store: SweepStore, kind: str) -> dict:
    units = sorted(set(store.read_variants()["unit_id"].to_pylist()))
    order = [("run_id", "ascending")] + ([("step", "ascending")] if kind != "finals" else [])
    return store.read_unit_rows(kind, units).sort_by(order).to_pydict()


def _assert_same_rows(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for column in a:
        if column == "theta":
            assert len(a[column]) == len(b[column])
            for x, y in zip(a[column], b[column]):
                assert (x is None and y is None) or np.array_equal(np.asarray(x), np.asarray(y))
        else:
            assert a[column] == b[column], column


def test_sweep_and_status_on_s3(s3, base):
    _, done = base
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"trained {N_VARIANTS}, already done 0, failed 0" in done.stdout

    store = SweepStore(s3.uri, "base")  # read back through pyarrow, as `doodl status` does
    assert store.read_sweep()["n_variants"] == N_VARIANTS
    variants = store.read_variants()
    assert variants.num_rows == N_VARIANTS and len(set(variants["group_id"].to_pylist())) == N_GROUPS
    units = sorted(set(variants["unit_id"].to_pylist()))
    states = store.unit_states(units)
    assert {s.state for s in states.values()} == {"committed"} and len(states) == N_VARIANTS
    markers = [i.base_name for i in s3.listing("base", "/_commits")]
    assert sorted(markers) == sorted(f"{u}.json" for u in units)  # no .tmp-* marker left behind
    traj = store.read_unit_rows("trajectories", units, ["run_id", "step"])
    assert traj.num_rows == N_VARIANTS * (STEPS + 1)
    snaps = store.read_snapshot_rows(units, ["run_id", "step", "theta"])
    assert snaps.num_rows == N_VARIANTS * (STEPS // 5 + 1) and snaps["theta"].null_count == 0  # every 5 steps and 60
    finals = store.read_unit_rows("finals", units)
    assert sorted(finals["run_id"].to_pylist()) == sorted(variants["run_id"].to_pylist())
    assert set(finals["status"].to_pylist()) == {"ok"}
    # nothing landed on the local disk: only the specs, the MLflow database and its artifacts
    assert {p.name for p in s3.tmp.iterdir()} <= {"base.yaml", "resumed.yaml", "killed.log", "m.db", "mlartifacts"}

    status = s3.cli("status", "base", "--store", s3.uri)
    assert status.returncode == 0, status.stderr[-3000:]
    assert f"{N_VARIANTS} ok of {N_VARIANTS} variants" in status.stdout
    assert re.search(rf"^all groups\s+{N_VARIANTS}\s+{N_VARIANTS}(\s+0){{6}}\s*$", status.stdout, re.M)  # none torn or failed
    listing = s3.cli("ls", "--store", s3.uri)  # sweeps, states and times from the bucket's listing
    assert listing.returncode == 0, listing.stderr[-3000:]
    line = next(line.split() for line in listing.stdout.splitlines() if line.startswith("base "))
    assert line[:4] == ["base", str(N_VARIANTS), "trained", f"{len(units)}/{len(units)}"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", line[4])


@pytest.fixture(scope="module")
def resumed(s3, base):
    """Sweep "resumed" (the same grid: the same run and unit ids) SIGKILLed once its first
    commit marker is in S3, then the same command again. Returns the markers committed
    before the kill (path -> bytes) and the rerun."""
    assert base[1].returncode == 0, base[1].stderr[-3000:]
    spec = write_spec(s3.tmp, _spec("resumed"), "resumed.yaml")
    log = s3.tmp / "killed.log"
    # DOODL_FAULT_HOLD_FILE (workers/faults.py) holds the actor after the first commit, so the
    # kill lands mid-sweep on a busy machine too; without the hook the count just varies
    with open(log, "w") as out:
        proc = subprocess.Popen([DOODL, "sweep", str(spec), *s3.common()], cwd=s3.tmp, stdout=out, stderr=out,
                                env={**s3.env, "DOODL_FAULT_HOLD_FILE": str(s3.tmp / "never")},
                                start_new_session=True)
    deadline = time.time() + 180
    while not [i for i in s3.listing("resumed", "/_commits") if i.base_name.endswith(".json")]:
        assert proc.poll() is None and time.time() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait(timeout=30)
    time.sleep(1.0)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the local Ray it started: its actor could still commit
    except ProcessLookupError:
        pass
    before = {i.path: s3.read_bytes(i.path) for i in s3.listing("resumed", "/_commits")
              if i.base_name.endswith(".json")}
    again = s3.cli("sweep", str(spec), *s3.common())
    return spec, before, again


def test_killed_driver_resumes_to_the_same_store_on_s3(s3, resumed):
    _, before, again = resumed
    assert 1 <= len(before) < N_VARIANTS
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"trained {N_VARIANTS - len(before)}, already done {len(before)}, failed 0" in again.stdout
    for path, payload in before.items():  # committed units were not trained again
        assert s3.read_bytes(path) == payload

    ref, got = SweepStore(s3.uri, "base"), SweepStore(s3.uri, "resumed")
    units = sorted(set(got.read_variants()["unit_id"].to_pylist()))
    assert {s.state for s in got.unit_states(units).values()} == {"committed"}
    for kind in ("trajectories", "snapshots", "finals"):
        _assert_same_rows(_rows(ref, kind), _rows(got, kind))


@pytest.fixture(scope="module")
def reduced(s3, base):
    assert base[1].returncode == 0, base[1].stderr[-3000:]
    return s3.cli("reduce", "base", *s3.common())


def test_reduce_on_s3(s3, reduced):
    assert reduced.returncode == 0, reduced.stderr[-3000:]
    assert (f"reduce base: {N_GROUPS} groups; morse: reduced {N_GROUPS}, already done 0, failed 0; "
            f"taxonomy: reduced {N_GROUPS}, already done 0, failed 0; koopman: reduced {N_GROUPS}, already done 0, "
            f"failed 0; ntk: reduced {N_GROUPS}, already done 0, failed 0; early: reduced {N_GROUPS}, already done 0, "
            f"failed 0; waiting for training 0") in reduced.stdout

    root = f"{s3.base}/base/reduction"
    groups = set(SweepStore(s3.uri, "base").read_variants()["group_id"].to_pylist())
    tables = {name: pq.read_table(pa.BufferReader(s3.read_bytes(f"{root}/{name}.parquet"))).to_pylist()
              for name in ("morse", "taxonomy", "koopman", "ntk")}
    for name, rows in tables.items():
        assert {r["group_id"] for r in rows} == groups and all(r["error"] is None for r in rows), name
    # 2 seeds a group: the graph is drawn, with no verdict on basins
    assert all(r["n_morse_sets"] >= 1 and r["n_attractors"] is None and r["no_verdict"] for r in tables["morse"])
    assert all(r["phase"] in ("I", "II", "III", "IV-A", "IV-B") for r in tables["taxonomy"])
    assert s3.read_bytes(f"{root}/plots/phase_diagram.png")[:4] == b"\x89PNG"
    assert s3.read_bytes(f"{root}/plots/koopman_classes.png")[:4] == b"\x89PNG"
    assert pq.read_table(pa.BufferReader(s3.read_bytes(f"{root}/koopman_pairs.parquet"))).num_rows == \
        len(groups) * (len(groups) - 1)
    for g in groups:
        assert s3.read_bytes(f"{root}/plots/{g}/morse_graph.png")[:4] == b"\x89PNG"
        assert s3.read_bytes(f"{root}/plots/{g}/ntk.png")[:4] == b"\x89PNG"


@pytest.mark.slow  # in the nightly run (.ci/nightly): audits are tested on a local store in the default run
def test_audit_against_a_baseline_in_the_same_s3_store(s3, resumed, reduced):
    """Audit the resumed sweep against "base", reduced in the same store: the same data, so
    no drift. The audit reduces "resumed" itself and writes its report to S3."""
    spec, _, again = resumed
    assert again.returncode == 0 and reduced.returncode == 0
    done = s3.cli("audit", str(spec), "--baseline", "base", *s3.common())
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"audit resumed against base: ok; 0 of {N_GROUPS} groups drifted" in done.stdout
    reports = [i.path for i in s3.listing("resumed", "/audits")]
    assert sorted(p.rsplit("/", 1)[1] for p in reports) == ["phase_diagrams.png", "report.json", "report.md"]
    report = json.loads(s3.read_bytes(next(p for p in reports if p.endswith("report.json"))))
    assert report["verdict"] == "ok" and report["baseline"] == "base" and report["setup_change"] == {}
    for name in ("morse", "taxonomy"):  # the audit reduced "resumed" into S3
        assert s3.fs.get_file_info(f"{s3.base}/resumed/reduction/{name}.parquet").type == pafs.FileType.File


def test_workers_open_the_store_the_driver_names(s3, base):
    """What UnitTrainer.__init__ and the reduce tasks do with the URI the driver hands them,
    in an environment without AWS_ENDPOINT_URL (a user who put the endpoint in the URI)."""
    assert base[1].returncode == 0, base[1].stderr[-3000:]
    store = SweepStore(s3.uri, "base")
    assert store.exists()  # the driver side reads the store
    fs, root = shards.resolve_filesystem(store.uri)  # was OSError: cannot resolve host doodl.s3.us-east-1.amazonaws.com
    assert fs.get_file_info(f"{root}/sweep.json").type == pafs.FileType.File
    secret = SweepStore(s3.uri.replace("s3://", f"s3://{AWS_ENV['AWS_ACCESS_KEY_ID']}:hunter2@"), "base")
    assert secret.exists() and "hunter2" not in secret.uri  # never logged to MLflow nor sent to workers
    assert secret.uri == store.uri
