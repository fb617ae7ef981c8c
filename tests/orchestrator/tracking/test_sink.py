"""Processes of one sweep that log at once (the training driver, `doodl reduce` while it
trains, `doodl sync`) create each MLflow run once: runs are created under the sweep's
tracking lock, and a sink whose view went stale reads it again before creating.

The race is laid out in order, not left to timing: both sinks read the view, then both log.
"""

from __future__ import annotations

import pytest

from doodl.orchestrator.store import SweepMutex, SweepStore
from doodl.orchestrator.tracking import MlflowSink, log_units, open_group_runs
from tests.conftest import run_cli, tiny_spec_dict, write_spec


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ray_session):
    """A trained tiny sweep: its store, and its variants by unit."""
    tmp = tmp_path_factory.mktemp("sink")
    spec = write_spec(tmp, tiny_spec_dict(name="shared"))
    code, _, err = run_cli(["sweep", str(spec), "--store", str(tmp / "store"), "--no-progress",
                            "--tracking-uri", f"sqlite:///{tmp / 'elsewhere.db'}"])
    assert code == 0, err
    store = SweepStore(str(tmp / "store"), "shared")
    rows_by_unit: dict[str, list[dict]] = {}
    for v in store.read_variants().to_pylist():
        rows_by_unit.setdefault(v["unit_id"], []).append(v)
    return store, rows_by_unit


class _Outcome:
    logged_runs = 0
    mlflow_error = None
    sweep_id = "shared"


def _roles(uri: str) -> dict[str, int]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    roles: dict[str, int] = {}
    for run in client.search_runs([client.get_experiment_by_name("shared").experiment_id], max_results=1000):
        roles[run.data.tags["doodl.role"]] = roles.get(run.data.tags["doodl.role"], 0) + 1
    return roles


def _two_sinks(store, uri, locked: bool):
    lock = (lambda: SweepMutex(store, "tracking")) if locked else (lambda: None)
    return (MlflowSink(uri, "shared", "shared", creation_lock=lock()),
            MlflowSink(uri, "shared", "shared", creation_lock=lock()))


def test_two_sinks_with_stale_views_create_each_child_once(trained, tmp_path):
    store, rows_by_unit = trained
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    driver, reducer = _two_sinks(store, uri, locked=True)  # both read an empty view
    units = sorted(rows_by_unit)
    first, second = _Outcome(), _Outcome()
    log_units(reducer, store, rows_by_unit, units[:2], first)  # the reducer logs what is committed so far
    log_units(driver, store, rows_by_unit, units, second)  # the driver, its view stale, logs every unit
    assert first.mlflow_error is None and second.mlflow_error is None
    assert _roles(uri) == {"parent": 1, "child": 8}
    # each variant logged once, by whoever created its run
    n_first = sum(len(rows_by_unit[u]) for u in units[:2])
    assert (first.logged_runs, second.logged_runs) == (n_first, 8 - n_first)
    assert driver.children == reducer.children | driver.children  # the driver knows the reducer's runs
    assert set(driver.logged) == {v["run_id"] for rows in rows_by_unit.values() for v in rows}


def test_without_the_lock_stale_views_duplicate_children(trained, tmp_path):
    """The same order of events with no lock: what happened before (the test above can fail)."""
    store, rows_by_unit = trained
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    driver, reducer = _two_sinks(store, uri, locked=False)
    units = sorted(rows_by_unit)
    log_units(reducer, store, rows_by_unit, units[:2], _Outcome())
    log_units(driver, store, rows_by_unit, units, _Outcome())
    assert _roles(uri)["child"] > 8


def test_group_runs_are_created_once_by_two_sinks(trained, tmp_path):
    store, rows_by_unit = trained
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    one, other = _two_sinks(store, uri, locked=True)
    groups: dict[str, list[dict]] = {}
    for rows in rows_by_unit.values():
        for v in rows:
            groups.setdefault(v["group_id"], []).append(v)
    open_group_runs(one, groups, _Outcome())
    open_group_runs(other, groups, _Outcome())
    assert _roles(uri) == {"parent": 1, "group": 4}
    assert other.groups == one.groups


def test_a_sink_finds_a_child_made_after_its_view_when_logging_seed_results(trained, tmp_path):
    """`doodl reduce` logs a group's seed results on children the training driver made after
    the reducer read the view."""
    store, rows_by_unit = trained
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    driver, reducer = _two_sinks(store, uri, locked=True)
    unit = sorted(rows_by_unit)[0]
    log_units(driver, store, rows_by_unit, [unit], _Outcome())
    rid = rows_by_unit[unit][0]["run_id"]
    assert rid not in reducer.children
    reducer._look_up_children([rid])
    assert reducer.children[rid] == driver.children[rid] and rid in reducer.logged
