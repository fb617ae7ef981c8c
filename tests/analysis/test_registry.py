"""The analysis registry: a new analysis is one entry plus its module, and it flows through
``doodl reduce``, MLflow, ``doodl sync`` and the report; every registered analysis keeps
the group-task contract."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from doodl.analysis import registry
from doodl.analysis.registry import REGISTRY
from tests.analysis.toy_analysis import TOY
from tests.conftest import FAST_REDUCE, run_cli, tiny_spec_dict
from tests.orchestrator.stores import train_in_process


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(REGISTRY, TOY.name, TOY)
    return TOY


def test_register_refuses_a_name_taken(toy):
    with pytest.raises(ValueError, match="already registered"):
        registry.register(TOY)


def test_the_spec_reduce_section_is_the_registry(tmp_path):
    """Each analysis's settings model is its reduce section, with its defaults."""
    from doodl.orchestrator.spec import ReduceSpec

    assert tuple(ReduceSpec.model_fields) == registry.analyses()
    for name, analysis in REGISTRY.items():
        assert getattr(ReduceSpec(), name) == analysis.settings()


def test_a_fifth_analysis_flows_through_reduce_mlflow_sync_and_the_report(tmp_path, toy, ray_session):
    from mlflow.tracking import MlflowClient

    store_uri, db = str(tmp_path / "store"), tmp_path / "mlflow.db"
    spec = tiny_spec_dict("toyflow", seeds=2, data={"label_noise": [0.0, 0.25]}, optimizer={"lr": 0.05})
    store = train_in_process(store_uri, spec)

    code, out, err = run_cli(["reduce", "toyflow", "--store", store_uri, "--tracking-uri", f"sqlite:///{db}",
                              "--only", "toy", "--no-progress"])
    assert code == 0, err
    assert "toy: reduced 2, already done 0, failed 0" in out

    # the known answer: twice the mean of each group's final losses in the store
    from doodl.orchestrator.store import SweepStore

    variants = SweepStore(store_uri, "toyflow").read_variants().to_pylist()
    rows = SweepStore(store_uri, "toyflow").read_unit_rows(
        "finals", sorted({v["unit_id"] for v in variants}), ["run_id", "final_train_loss"]).to_pylist()
    loss = {r["run_id"]: r["final_train_loss"] for r in rows}
    by_group: dict[str, list[float]] = {}
    for v in variants:
        by_group.setdefault(v["group_id"], []).append(loss[v["run_id"]])
    table = {r["group_id"]: r for r in pq.read_table(store.layout.reduction_table("toy")).to_pylist()}
    assert set(table) == set(by_group)
    for gid, losses in by_group.items():
        assert table[gid]["scaled_mean_loss"] == pytest.approx(2.0 * sum(losses) / len(losses), rel=1e-6)

    def toy_view():
        client = MlflowClient(f"sqlite:///{db}")
        exp = client.get_experiment_by_name("toyflow")
        runs = client.search_runs([exp.experiment_id], max_results=100)
        return {role: [r for r in runs if r.data.tags.get("doodl.role") == role] for role in ("parent", "group", "child")}

    view = toy_view()
    assert len(view["group"]) == 2 and len(view["child"]) == 4
    for run in view["group"]:
        assert run.data.tags["doodl.toy"].startswith("{") and run.data.tags["doodl.toy_note"] == "toy"
        assert run.data.metrics["toy_scaled_mean_loss"] == pytest.approx(table[run.data.tags["doodl.group_id"]]
                                                                         ["scaled_mean_loss"])
    assert all("toy_final_loss" in r.data.metrics for r in view["child"])
    parent = view["parent"][0]
    assert parent.data.metrics["toy_groups_reduced"] == 2 and parent.data.metrics["toy_groups_total"] == 2

    # MLflow lost: doodl sync logs the stored toy results again, from the store alone
    db.unlink()
    code, out, err = run_cli(["sync", "toyflow", "--store", store_uri, "--tracking-uri", f"sqlite:///{db}"])
    assert code == 0, err
    view = toy_view()
    assert sorted(r.data.metrics["toy_scaled_mean_loss"] for r in view["group"]) == pytest.approx(
        sorted(r["scaled_mean_loss"] for r in table.values()))
    assert all("toy_final_loss" in r.data.metrics for r in view["child"])

    code, out, err = run_cli(["report", "toyflow", "--store", store_uri, "--tracking-uri", f"sqlite:///{db}",
                              "--out", str(tmp_path / "rep")])
    assert code == 0, err
    html = (tmp_path / "rep" / "index.html").read_text()
    assert html.count('class="analysis-toy"') == 2 and "scaled mean loss" in html


@pytest.fixture(scope="module")
def stored_group(tmp_path_factory):
    """One group of 4 seeds trained into a store (the group tasks read shards, as under Ray)."""
    store = train_in_process(str(tmp_path_factory.mktemp("battery") / "store"),
                             tiny_spec_dict("battery", seeds=4, data={"label_noise": 0.0}, optimizer={"lr": 0.1,
                                                                                                     "steps": 40},
                                            record={"every": 4}))
    variants = store.read_variants().to_pylist()
    return store, variants


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_registered_analysis_keeps_the_group_task_contract(name, stored_group):
    """In the spirit of scikit-learn's ``check_estimator``: each entry's task, run on a stored
    group, returns a row and one run per seed that fit its declared schemas, only pictures it
    declares, the same results twice, and its views read what it returns."""
    import pyarrow as pa

    store, variants = stored_group
    analysis = REGISTRY[name]
    settings = analysis.settings(**FAST_REDUCE.get(name, {})).computation()
    task = registry.load(analysis.task)
    units = sorted({v["unit_id"] for v in variants})
    args = (store.uri, variants[0]["group_id"], units, variants, settings) + (("g",) if analysis.titled else ())
    first, second = task(*args), task(*args)

    row, runs = first["row"], first["runs"]
    assert row["error"] is None and row["group_id"] == variants[0]["group_id"]
    assert sorted(r["run_id"] for r in runs) == sorted(v["run_id"] for v in variants)
    assert set(first["pictures"]) <= set(analysis.group_pictures)
    group_schema, run_schema = analysis.schemas
    assert pa.Table.from_pylist([row], group_schema).num_rows == 1
    assert pa.Table.from_pylist(runs, run_schema).num_rows == len(variants)
    assert set(analysis.table_columns) - {"label"} <= set(group_schema.names)

    timing = {n for n in group_schema.names if n.endswith(("_s", "seconds")) or n == "timings"}
    assert {k: v for k, v in row.items() if k not in timing} == {k: v for k, v in second["row"].items()
                                                                 if k not in timing}
    values, tags, curves = analysis.group_view(row)
    assert values and all(isinstance(v, str) for v in tags.values())
    for run in runs:
        analysis.seed_view(run)
