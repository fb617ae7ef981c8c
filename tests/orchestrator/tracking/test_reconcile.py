"""At the end of sweep, reduce and audit, doodl reads the MLflow view back and compares it
with the store: a view that lacks runs or results is one line and exit 3, never success."""

from __future__ import annotations

import pytest

from doodl.orchestrator.store import SweepStore
from doodl.orchestrator.tracking import view_gap
from tests.conftest import FAST_REDUCE, run_cli, tiny_spec_dict, write_spec

# 8 variants (+ the parent); 4 groups x 5 analyses on the group run and its 2 seeds' runs
RUNS, RESULTS = 9, 4 * 5 * 3


@pytest.fixture(scope="module")
def refused_sweep(host_refusing_server, ray_session, tmp_path_factory):
    url, _ = host_refusing_server
    tmp = tmp_path_factory.mktemp("view")
    spec = write_spec(tmp, tiny_spec_dict(name="view", reduce=FAST_REDUCE))
    store = str(tmp / "store")
    code, out, err = run_cli(["sweep", str(spec), "--store", store, "--tracking-uri", url, "--no-progress", "--reduce"])
    return tmp, spec, store, url, code, out, err


def test_a_server_refusing_the_api_is_exit_3_with_one_line(refused_sweep):
    _, _, store, url, code, out, err = refused_sweep
    assert code == 3, err[-2000:]
    assert "trained 3, already done 0, failed 0; logged 0 MLflow runs" in out  # the store is complete
    assert "morse: reduced 4" in out
    assert f"MLflow at {url} refuses the API" in err and "is back" not in err
    last = [ln for ln in err.splitlines() if ln.startswith("doodl: ")]
    assert len(last) == 1
    assert f"lacks {RUNS} of {RUNS} runs and {RESULTS} of {RESULTS} results of sweep view (refused:" in last[0]
    assert "--allowed-hosts" in last[0] and f"`doodl sync view --store {store} --tracking-uri {url}`" in last[0]


def test_a_working_tracking_store_completes_the_view_and_exits_0(refused_sweep):
    tmp, spec, store, _, _, _, _ = refused_sweep
    db = f"sqlite:///{tmp / 'good.db'}"
    gap = view_gap(db, "view", SweepStore(store, "view"))
    assert (gap.runs, gap.expected_runs, gap.results, gap.expected_results) == (RUNS, RUNS, RESULTS, RESULTS)
    code, out, err = run_cli(["sync", "view", "--store", store, "--tracking-uri", db])
    assert code == 0, err
    assert view_gap(db, "view", SweepStore(store, "view")).complete
    code, out, err = run_cli(["reduce", "view", "--store", store, "--tracking-uri", db, "--no-progress"])
    assert code == 0 and "doodl: MLflow" not in err, err


def test_the_check_reads_the_view_back(refused_sweep):
    """A run deleted and a result logged with other settings since: both are found."""
    from mlflow.tracking import MlflowClient

    tmp, _, store, _, _, _, _ = refused_sweep
    db = f"sqlite:///{tmp / 'good.db'}"
    run_cli(["sync", "view", "--store", store, "--tracking-uri", db])
    client = MlflowClient(db)
    runs = client.search_runs([client.get_experiment_by_name("view").experiment_id], max_results=100)
    child = next(r for r in runs if r.data.tags.get("doodl.role") == "child")
    group = next(r for r in runs if r.data.tags.get("doodl.role") == "group")
    client.delete_run(child.info.run_id)
    client.set_tag(group.info.run_id, "doodl.ntk", "other-settings")
    gap = view_gap(db, "view", SweepStore(store, "view"))
    # the deleted seed's run and its 5 results, and the group's NTK result
    assert (gap.runs, gap.results, gap.reason) == (1, 6, None)
    code, _, err = run_cli(["sync", "view", "--store", store, "--tracking-uri", db])
    assert code == 0 and view_gap(db, "view", SweepStore(store, "view")).complete, err
