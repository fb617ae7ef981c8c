"""`doodl reduce` end to end: a small sweep, then its Morse graphs, taxonomy, Koopman
spectra and NTK evolution in the store and MLflow."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from doodl.analysis.ntk_task import thin
from tests.conftest import run_cli, tiny_spec_dict, write_spec

GROUP_FIELDS = {"group_id", "coordinates", "no_verdict", "n_outcomes", "outcome_sizes", "outcome_features", "ari",
                "outcome_accuracy", "outcome_chance", "baseline_accuracy", "versus_baseline", "self_basin_accuracy",
                "self_basin_accuracy_start", "self_basin_chance", "n_transit", "n_undecided",
                "n_morse_sets", "n_attractors", "n_unresolved", "unresolved", "nodes", "edges", "attractors",
                "conley_ranks", "conley_strings", "n_boxes", "boxes", "fidelity", "explained_variance", "warnings",
                "cm_grid", "cm_conley_ranks", "cm_order", "cm_boundary", "cm_n_attractors", "data_n_attractors",
                "data_agrees", "morse_s", "validate_s", "total_s", "param_coordinates", "param_dims", "param_tau",
                "param_subdiv_min", "param_subdiv_max", "param_compose", "param_folds", "run_ids", "final_nodes",
                "end_attractors", "error"}
# a verdict on basins: null for a group below the minimum of runs
VERDICT = ("n_attractors", "n_outcomes", "ari", "outcome_accuracy", "outcome_chance", "baseline_accuracy",
           "versus_baseline", "self_basin_accuracy", "self_basin_chance", "n_transit", "n_undecided", "fidelity")
PICTURES = ["connection_matrix.png", "morse_graph.dot", "morse_graph.png", "morse_sets.png"]


def _runs_by_role(db):
    """The MLflow client, the children (seeds) and the parent of the sweep "red"."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(db)
    runs = client.search_runs([client.get_experiment_by_name("red").experiment_id], max_results=100)
    children = [r for r in runs if r.data.tags.get("doodl.role") == "child"]
    parent = next(r for r in runs if r.data.tags.get("doodl.role") == "parent")
    return client, children, parent


def _group_runs(db):
    """The group runs of the sweep "red", by group id."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(db)
    runs = client.search_runs([client.get_experiment_by_name("red").experiment_id],
                              filter_string="tags.`doodl.role` = 'group'", max_results=100)
    return {r.data.tags["doodl.group_id"]: r for r in runs}


@pytest.fixture(scope="module")
def reduced(tmp_path_factory, ray_session):
    """A sweep of 4 groups x 3 seeds; lr 1e4 makes every run of two groups diverge, so their
    reduction fails while the other two succeed."""
    tmp = tmp_path_factory.mktemp("reduce")
    spec = tiny_spec_dict("red", seeds=3, optimizer={"lr": [0.05, 1e4], "steps": 60},
                          record={"every": 4}, resources={"variants_per_unit": 6, "num_actors": 2},
                          # 16 snapshots a run: with 2 delays, 13 pairs, enough for a rank-4 spectrum per seed
                          reduce={"koopman": {"delays": 2, "rank": 4}, "ntk": {"probe": 40}})
    path = write_spec(tmp, spec)
    store, db = str(tmp / "store"), f"sqlite:///{tmp / 'mlflow.db'}"
    code, out, err = run_cli(["sweep", str(path), "--store", store, "--tracking-uri", db, "--no-progress", "--reduce"])
    return tmp, store, db, code, out, err


def test_sweep_then_reduce_writes_a_row_per_group(reduced):
    tmp, store, _, code, out, _ = reduced
    assert ("reduce red: 4 groups; morse: reduced 2, already done 0, failed 2; "
            "taxonomy: reduced 2, already done 0, failed 2; koopman: reduced 2, already done 0, failed 2; "
            "ntk: reduced 2, already done 0, failed 2; early: reduced 2, already done 0, failed 2; "
            "waiting for training 0") in out
    assert code == 1  # some groups failed: the command says so
    groups = pq.read_table(f"{store}/red/reduction/morse.parquet").to_pylist()
    assert len(groups) == 4 and GROUP_FIELDS <= set(groups[0])
    good = [g for g in groups if g["error"] is None]
    bad = [g for g in groups if g["error"] is not None]
    assert len(good) == 2 and len(bad) == 2
    for g in good:  # 3 seeds: the graph is drawn, but it is below the minimum of runs: no verdict
        assert g["n_morse_sets"] == len(g["nodes"]) >= 1 and g["attractors"] == []
        assert len(g["conley_ranks"]) == len(g["nodes"]) and sum(g["n_boxes"]) >= len(g["nodes"])
        assert len(g["explained_variance"]) == 2 and g["coordinates"] == "function"  # auto: full parameters recorded
        assert len(g["run_ids"]) == len(g["final_nodes"]) == len(g["end_attractors"]) == 3
        assert "too few runs to resolve basins: 3 non-diverged, at least 8 needed" in g["no_verdict"]
        assert all(g[k] is None for k in VERDICT), {k: g[k] for k in VERDICT}
        assert g["no_verdict"] in g["warnings"]
        assert set(g["unresolved"]) <= set(g["nodes"])
        assert len(g["cm_conley_ranks"]) >= 1 and g["cm_grid"] == 64 and g["data_agrees"] is None
    for g in bad:
        assert "diverged" in g["error"] and g["n_morse_sets"] is None
    for g in good:
        for name in PICTURES:
            assert (tmp / "store" / "red" / "reduction" / "plots" / g["group_id"] / name).stat().st_size > 100


def test_every_run_has_a_final_point_verdict(reduced):
    _, store, _, _, _, _ = reduced
    runs = pq.read_table(f"{store}/red/reduction/morse_runs.parquet").to_pylist()
    variants = pq.read_table(f"{store}/red/variants.parquet").column("run_id").to_pylist()
    assert sorted(r["run_id"] for r in runs) == sorted(variants)
    for r in runs:
        assert r["status"] in ("ok", "error")  # the failed groups' runs diverged: status "error"
        if r["status"] == "ok":  # no verdict (3 seeds): where the run ended, but no basin or outcome claim
            assert len(r["final_point"]) == 2 and r["final_node"] >= -1
            assert r["final_node"] == -1 or r["itinerary"][-1] == r["final_node"]
            assert r["end_attractor"] is None and r["outcome_correct"] is None and r["fold"] == -1


def test_pictures_and_summaries_are_in_mlflow(reduced):
    """Group results once, on a run per group; each seed's own verdict on its run."""
    client, children, parent = _runs_by_role(reduced[2])
    groups = _group_runs(reduced[2])
    assert len(groups) == 4
    for run in groups.values():
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id and run.data.params["n_seeds"] == "3"
        # named by the axes that vary in the sweep (label noise and lr), nothing else
        params = run.data.params
        assert "seed" not in params and run.info.run_name == f"group noise {params['label_noise']}, lr {params['lr']}"
    ok = {g: r for g, r in groups.items() if "n_morse_sets" in r.data.metrics}
    assert len(ok) == 2
    for run in ok.values():  # no verdict: no count or accuracy as a number, and a tag saying why
        m = run.data.metrics
        assert not {"n_attractors", "outcome_accuracy", "outcome_chance", "self_basin_accuracy"} & set(m)
        assert run.data.tags["doodl.morse_verdict"].startswith("too few runs to resolve basins")
        assert run.data.tags["doodl.morse_coordinates"] == "function"
        names = sorted(a.path for a in client.list_artifacts(run.info.run_id, "morse"))
        assert names == [f"morse/{p}" for p in PICTURES]
    assert sum("doodl.morse_error" in r.data.tags for r in groups.values()) == 2
    seeds = [c for c in children if c.data.tags.get("doodl.group_id") in ok]
    assert len(seeds) == 6
    for child in seeds:
        m, tags = child.data.metrics, child.data.tags
        assert "outcome_correct" not in m and "doodl.itinerary" in tags
        assert not {"n_morse_sets", "outcome_chance", "final_morse_set"} & set(m)  # group results stay on the group
        assert client.list_artifacts(child.info.run_id, "morse") == []  # pictures once per group
    names = {a.path for a in client.list_artifacts(parent.info.run_id, "reduction")}
    assert {"reduction/morse.parquet", "reduction/morse_groups.csv", "reduction/morse_runs.parquet"} <= names
    assert not {"morse_outcome_accuracy", "morse_ari"} & set(parent.data.metrics)  # NaN: no group has a verdict


def test_reduce_writes_outcomes_and_their_validity_for_every_group(tmp_path, ray_session):
    """Eight seeds a group: a verdict. Outcome modes, the adjusted Rand index, held-out
    outcome accuracy beside its chance level and the baseline's, in morse.parquet (each run's
    outcome and predictions in morse_runs.parquet), on the MLflow group runs and the parent,
    and in the command's summary line. (Cheap grid settings: this checks what is written,
    the analysis's accuracy is tested in tests/analysis.)"""
    from tests.conftest import FAST_REDUCE

    spec = tiny_spec_dict("verdict", seeds=8, data={"label_noise": 0.0}, optimizer={"lr": 0.05, "steps": 60},
                          record={"every": 4}, resources={"variants_per_unit": 8, "num_actors": 2},
                          reduce={"morse": {**FAST_REDUCE["morse"], "folds": 4}})
    path = write_spec(tmp_path, spec)
    store, db = str(tmp_path / "store"), f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert run_cli(["sweep", str(path), "--store", store, "--tracking-uri", db, "--no-progress"])[0] == 0
    code, out, _ = run_cli(["reduce", "verdict", "--store", store, "--tracking-uri", db, "--no-progress",
                            "--only", "morse"])
    assert code == 0 and "Morse graphs: held-out outcome accuracy" in out and "ARI" in out
    groups = pq.read_table(f"{store}/verdict/reduction/morse.parquet").to_pylist()
    runs = pq.read_table(f"{store}/verdict/reduction/morse_runs.parquet").to_pylist()
    assert len(groups) == 1 and len(runs) == 8
    g = groups[0]
    assert g["no_verdict"] is None and all(g[k] is not None for k in VERDICT)
    assert sum(g["outcome_sizes"]) == 8 and len(g["outcome_sizes"]) == g["n_outcomes"]
    assert g["outcome_chance"] == max(g["outcome_sizes"]) / 8
    assert g["outcome_accuracy"] == sum(r["outcome_correct"] for r in runs) / 8  # the runs' verdicts add up
    assert g["baseline_accuracy"] == sum(r["baseline_correct"] for r in runs) / 8
    assert g["versus_baseline"] in ("beats", "matches", "below") and -1 <= g["ari"] <= 1
    for r in runs:
        assert 0 <= r["outcome"] < g["n_outcomes"] and r["outcome_correct"] == (r["predicted_outcome"] == r["outcome"])
        assert r["baseline_correct"] == (r["baseline_outcome"] == r["outcome"]) and 0 <= r["fold"] < 4
    from mlflow.tracking import MlflowClient

    client = MlflowClient(db)
    exp = client.get_experiment_by_name("verdict").experiment_id
    group = client.search_runs([exp], filter_string="tags.`doodl.role` = 'group'")[0]
    m = group.data.metrics
    assert m["outcome_accuracy"] == g["outcome_accuracy"] and m["outcome_chance"] == g["outcome_chance"]
    assert m["outcome_baseline_accuracy"] == g["baseline_accuracy"] and m["outcome_ari"] == g["ari"]
    assert m["n_outcomes"] == g["n_outcomes"] and group.data.tags["doodl.morse_verdict"].endswith("the baseline")
    parent = client.search_runs([exp], filter_string="tags.`doodl.role` = 'parent'")[0]
    assert parent.data.metrics["morse_outcome_accuracy"] == g["outcome_accuracy"]
    assert parent.data.metrics["morse_outcome_chance"] == g["outcome_chance"]
    assert parent.data.metrics["morse_baseline_accuracy"] == g["baseline_accuracy"]


def test_reduce_again_skips_done_groups_and_retries_failed_ones(reduced):
    _, store, db, _, _, _ = reduced
    before = pq.read_table(f"{store}/red/reduction/morse.parquet")
    code, out, _ = run_cli(["reduce", "red", "--store", store, "--tracking-uri", db, "--no-progress"])
    assert code == 1 and "morse: reduced 0, already done 2, failed 2" in out
    assert "taxonomy: reduced 0, already done 2, failed 2" in out and "logged 0 MLflow results" in out
    assert "koopman: reduced 0, already done 2, failed 2" in out and "ntk: reduced 0, already done 2, failed 2" in out
    after = pq.read_table(f"{store}/red/reduction/morse.parquet")
    assert after.column("group_id").to_pylist() == before.column("group_id").to_pylist()
    code, out, _ = run_cli(["reduce", "red", "--store", store, "--tracking-uri", db, "--no-progress",
                            "--subdiv-min", "12", "--only", "morse"])
    # new Morse settings: the good groups are redone (the failed ones are always retried)
    assert "morse: reduced 2, already done 0, failed 2" in out and "taxonomy" not in out and "koopman" not in out
    assert "logged 16 MLflow results" in out  # every seed and group run gets results under the new settings
    rows = pq.read_table(f"{store}/red/reduction/morse.parquet").to_pylist()
    assert {r["param_subdiv_min"] for r in rows} == {12}


def test_taxonomy_row_per_group_with_phase_and_pictures(reduced):
    tmp, store, _, _, _, _ = reduced
    rows = pq.read_table(f"{store}/red/reduction/taxonomy.parquet").to_pylist()
    assert len(rows) == 4
    good = [r for r in rows if r["error"] is None]
    assert len(good) == 2
    for r in good:
        assert r["phase"] in ("I", "II", "III", "IV-A", "IV-B")
        assert len(r["hessian_top_seeds"]) == len(r["hessian_trace_seeds"]) == 3 == r["n_seeds"]
        assert len(r["mc_pairs"]) == 3 and len(r["cka_pairs"]) == 3 and len(r["curve_errors"][0]) == 5
        assert 0 <= r["cka"] <= 1 and r["l2"] > 0 and r["hessian_top"] > 0
        assert (r["threshold_train_loss"], r["threshold_mc_tolerance"], r["threshold_cka"]) == (0.01, 2.0, 0.68)
    bad = [r for r in rows if r["error"] is not None]
    assert all("seeds trained to the end" in r["error"] and r["phase"] is None for r in bad)
    plots = tmp / "store" / "red" / "reduction" / "plots"
    assert (plots / "phase_diagram.png").read_bytes()[:4] == b"\x89PNG"
    assert (plots / "heatmap_hessian_top.png").exists() and (plots / "heatmap_mc.png").exists()


def test_taxonomy_is_on_every_group_run_and_the_parent(reduced):
    client, children, parent = _runs_by_role(reduced[2])
    with_phase = [r for r in _group_runs(reduced[2]).values() if "doodl.phase" in r.data.tags]
    assert len(with_phase) == 2
    for r in with_phase:
        assert {"hessian_top", "mc", "cka", "final_train_loss"} <= set(r.data.metrics)
        assert r.data.tags["doodl.threshold_cka"] == "0.68"
    own = [c for c in children if "hessian_top" in c.data.metrics]
    assert len(own) == 6 and not any("mc" in c.data.metrics or "doodl.phase" in c.data.tags for c in own)
    names = {a.path for a in client.list_artifacts(parent.info.run_id, "reduction")}
    assert {"reduction/taxonomy.parquet", "reduction/taxonomy_groups.csv", "reduction/phase_diagram.png",
            "reduction/heatmap_cka.png"} <= names


def test_reduce_refuses_bad_input(reduced, tmp_path):
    _, store, db, _, _, _ = reduced
    code, _, err = run_cli(["reduce", "nope", "--store", store, "--tracking-uri", db])
    assert code == 2 and "unknown sweep 'nope'" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["reduce", "red", "--store", store, "--tracking-uri", db, "--dims", "5"])
    assert code == 2 and "--dims" in err
    code, _, err = run_cli(["reduce", "red", "--store", store, "--tracking-uri", db, "--subdiv-min", "12",
                         "--subdiv-max", "8"])
    assert code == 2 and "subdiv_max" in err


def test_koopman_spectra_classes_and_the_numbers_behind_each_verdict(reduced):
    tmp, store, _, _, _, _ = reduced
    rows = pq.read_table(f"{store}/red/reduction/koopman.parquet").to_pylist()
    good = [r for r in rows if r["error"] is None]
    assert len(rows) == 4 and len(good) == 2
    for r in good:
        assert len(r["eig_real"]) == len(r["eig_imag"]) == 4  # rank 4
        assert r["modulus_1"] == pytest.approx(abs(complex(r["eig_real"][0], r["eig_imag"][0])))
        assert r["modulus_1"] >= r["modulus_2"] >= r["modulus_3"]
        assert r["n_spectra"] == 3 and r["spread"] > 0 and r["koopman_class"] in (0, 1)
        assert (r["param_delays"], r["param_rank"], r["param_snapshots"]) == (2, 4, "all")
    assert all("diverged" in r["error"] and r["koopman_class"] is None for r in rows if r["error"] is not None)
    pairs = pq.read_table(f"{store}/red/reduction/koopman_pairs.parquet").to_pylist()
    assert len(pairs) == 2  # the two good groups, both ways round
    for p in pairs:
        assert p["ratio"] == pytest.approx(p["distance"] / max(p["spread_a"], p["spread_b"]))
        assert p["conjugate"] == (p["ratio"] <= 1)
    a, b = good
    assert (a["koopman_class"] == b["koopman_class"]) == pairs[0]["conjugate"]
    runs = pq.read_table(f"{store}/red/reduction/koopman_runs.parquet").to_pylist()
    assert sum(r["eig_real"] is not None for r in runs) == 6  # each good seed has its own spectrum
    assert (tmp / "store" / "red" / "reduction" / "plots" / "koopman_classes.png").read_bytes()[:4] == b"\x89PNG"


def test_ntk_curves_per_run_and_group_with_a_picture(reduced):
    tmp, store, _, _, _, _ = reduced
    rows = pq.read_table(f"{store}/red/reduction/ntk.parquet").to_pylist()
    good = [r for r in rows if r["error"] is None]
    assert len(good) == 2 and good[0]["n_probe"] == 40
    for r in good:
        assert r["steps"] == [4 * i for i in thin(16, 12)]  # 16 recordings thinned to the default 12 kernels
        assert r["distance_init"][0] == 0.0 and r["distance_final"][-1] == pytest.approx(0.0, abs=1e-6)
        assert r["velocity"][0] is None and all(v >= 0 for v in r["velocity"][1:])
        assert r["final_distance_init"] == pytest.approx(r["distance_init"][-1])
        assert (tmp / "store" / "red" / "reduction" / "plots" / r["group_id"] / "ntk.png").stat().st_size > 1000
    runs = [r for r in pq.read_table(f"{store}/red/reduction/ntk_runs.parquet").to_pylist() if r["status"] == "ok"]
    assert len(runs) == 6 and all(len(r["distance_init"]) == 12 for r in runs)


def test_koopman_and_ntk_reach_every_good_group_and_seed_and_the_parent(reduced):
    client, children, parent = _runs_by_role(reduced[2])
    groups = [r for r in _group_runs(reduced[2]).values() if "doodl.koopman_class" in r.data.tags]
    assert len(groups) == 2
    for g in groups:
        assert {"koopman_modulus_1", "koopman_spread"} <= set(g.data.metrics)
        assert "koopman_class" not in g.data.metrics  # class numbers are not stable: a tag
        mean = sorted(client.get_metric_history(g.info.run_id, "ntk_distance_init"), key=lambda m: m.step)
        assert [m.step for m in mean] == [4 * i for i in thin(16, 12)] and mean[0].value == 0.0
        assert [a.path for a in client.list_artifacts(g.info.run_id, "ntk")] == ["ntk/ntk.png"]
    seeds = [c for c in children if "koopman_run_modulus_1" in c.data.metrics]
    assert len(seeds) == 6
    for c in seeds:
        history = sorted(client.get_metric_history(c.info.run_id, "ntk_distance_init"), key=lambda m: m.step)
        assert [m.step for m in history] == [4 * i for i in thin(16, 12)] and history[0].value == 0.0
        assert client.list_artifacts(c.info.run_id, "ntk") == [] and "koopman_modulus_1" not in c.data.metrics
    assert sum("doodl.ntk_error" in r.data.tags for r in _group_runs(reduced[2]).values()) == 2
    names = {a.path for a in client.list_artifacts(parent.info.run_id, "reduction")}
    assert {"reduction/koopman.parquet", "reduction/koopman_pairs.parquet", "reduction/koopman_classes.png",
            "reduction/koopman_groups.csv", "reduction/ntk.parquet", "reduction/ntk_groups.csv"} <= names
    assert parent.data.metrics["koopman_classes"] in (1.0, 2.0)


def test_only_ntk_on_projected_snapshots_fails_each_group_with_the_reason(tmp_path, ray_session):
    """Projected snapshots cannot give a kernel: each group says why; Koopman spectra work
    from the projection."""
    spec = tiny_spec_dict("proj", seeds=2, data={"label_noise": 0.0}, optimizer={"lr": 0.05, "steps": 40},
                          record={"every": 4, "projection": {"dim": 6}},
                          reduce={"koopman": {"delays": 1, "rank": 3}})
    store, db = str(tmp_path / "store"), f"sqlite:///{tmp_path / 'mlflow.db'}"
    code, _, _ = run_cli(["sweep", str(write_spec(tmp_path, spec)), "--store", store, "--tracking-uri", db,
                          "--no-progress"])
    assert code == 0
    code, out, err = run_cli(["reduce", "proj", "--store", store, "--tracking-uri", db, "--no-progress",
                              "--only", "ntk", "--only", "koopman"])
    assert code == 1 and "koopman: reduced 1, already done 0, failed 0" in out
    assert "ntk: reduced 0, already done 0, failed 1" in out and "morse" not in out
    (row,) = pq.read_table(f"{store}/proj/reduction/ntk.parquet").to_pylist()
    assert "projected snapshots" in row["error"] and "full parameters" in row["error"]


def test_one_text_form_per_param_and_one_meaning_per_metric(reduced):
    """The README's search example works, and final_* means end-of-training full-split
    figures on every run type (a group's are its seeds' mean): curves keep curve names."""
    client, children, _ = _runs_by_role(reduced[2])
    exp = client.get_experiment_by_name("red").experiment_id
    clean = client.search_runs([exp], filter_string="params.label_noise = '0' and tags.`doodl.role` = 'child'")
    assert len(clean) == 6 and all(r.info.run_name.startswith("noise0-lr") for r in clean)
    assert client.search_runs([exp], filter_string="params.label_noise = '0.0'") == []
    assert {r.data.params["lr"] for r in children} == {"0.05", "10000"}
    groups = _group_runs(reduced[2])
    taxonomy = {r["group_id"]: r for r in pq.read_table(f"{reduced[1]}/red/reduction/taxonomy.parquet").to_pylist()}
    for gid, run in groups.items():
        if taxonomy[gid]["error"] is None:
            assert run.data.metrics["final_test_acc"] == pytest.approx(taxonomy[gid]["test_acc"])
            assert "test_acc" not in run.data.metrics and "train_loss" not in run.data.metrics
    # seeds sit beside their group run (MLflow's UI keeps a tree only under its default sort),
    # and both carry the group's readable name for the runs table's "Group by"
    for run in children:
        group = groups[run.data.tags["doodl.group_id"]]
        assert run.data.tags["doodl.group"] == group.data.tags["doodl.group"] == group.info.run_name.removeprefix("group ")
    for run in children:  # a seed's curve and its own final figure, under different names
        history = client.get_metric_history(run.info.run_id, "test_acc")
        assert len(history) > 1 and "final_test_acc" in run.data.metrics
