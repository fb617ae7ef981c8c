"""`doodl audit`: a sweep against itself is no drift; the same setup with more label
noise drifts, and the report says where; `--baseline last` and `--history` use MLflow."""

from __future__ import annotations

import json
import os

import pytest

from doodl.orchestrator.audit import compare, last_baseline_id
from doodl.orchestrator.spec import ToleranceSpec
from doodl.orchestrator.store import StoreError, SweepLease, SweepStore
from tests.conftest import FAST_REDUCE, run_cli, tiny_spec_dict, write_spec


@pytest.fixture(scope="module")
def audited(tmp_path_factory, ray_session):
    tmp = tmp_path_factory.mktemp("audit")
    # both with the same cheap reduction settings: the audit compares reductions, whose
    # accuracy is tested elsewhere (the drift asserted below is train_loss's)
    base = write_spec(tmp, tiny_spec_dict(name="base", data={"label_noise": 0.0}, seeds=3,
                                          optimizer={"steps": 60}, reduce=FAST_REDUCE), "base.yaml")
    noisy = write_spec(tmp, tiny_spec_dict(name="noisy", data={"label_noise": 0.4}, seeds=3,
                                           optimizer={"steps": 60}, reduce=FAST_REDUCE), "noisy.yaml")
    common = ["--store", str(tmp / "store"), "--tracking-uri", f"sqlite:///{tmp / 'm.db'}", "--no-progress"]
    return tmp, base, noisy, common


def test_audit_against_itself_is_no_drift(audited):
    tmp, base, _, common = audited
    code, out, err = run_cli(["sweep", str(base), *common, "--reduce"])
    assert code == 0, err
    code, out, err = run_cli(["audit", str(base), "--baseline", "base", *common])
    assert code == 0, err
    assert "audit base against base: ok; 0 of 2 groups drifted" in out
    report = json.loads(next((tmp / "store" / "base" / "audits").glob("*/report.json")).read_text())
    assert report["verdict"] == "ok" and report["setup_change"] == {}
    assert next((tmp / "store" / "base" / "audits").glob("*/phase_diagrams.png")).stat().st_size > 5000


def test_more_label_noise_drifts_and_names_what(audited):
    tmp, _, noisy, common = audited
    code, out, err = run_cli(["audit", str(noisy), "--baseline", "base", *common])
    assert code == 1, err
    assert "audit noisy against base: drift" in out and "setup change: label_noise 0.0 -> 0.4" in out
    assert "train_loss" in out  # the finding names the metric that moved
    md = next((tmp / "store" / "noisy" / "audits").glob("*/report.md")).read_text()
    assert "Verdict: **drift**" in md and "label_noise 0.0 -> 0.4" in md


def test_baseline_last_and_history(audited):
    _, base, noisy, common = audited
    code, out, err = run_cli(["audit", str(noisy), "--baseline", "last", *common])
    # the only earlier audit of "noisy" was of "noisy" itself, against "base": a rerun compares
    # with that baseline again, never with itself
    assert code == 1, err
    assert "audit noisy against base: drift" in out
    code, out, _ = run_cli(["audit", str(noisy), "--history", *common])
    lines = [ln for ln in out.splitlines() if "baseline" in ln]
    assert code == 0 and len(lines) == 2
    assert all("drift  sweep noisy  baseline base" in ln for ln in lines)
    # "base" was only ever audited against itself: nothing else to compare with, one line refuses
    code, out, err = run_cli(["audit", str(base), "--baseline", "last", *common])
    assert code == 2 and "every earlier audit compared sweep 'base' with itself" in err
    assert len(err.strip().splitlines()) == 1 and "audit base against" not in out
    code, _, err = run_cli(["audit", str(base), "--baseline", "nope", *common])
    assert code == 2 and "unknown sweep 'nope'" in err


def _history(*audits: tuple[str, str]) -> list[dict]:
    """Audit records newest first, as ``audit_history`` returns them: (sweep, baseline) pairs."""
    return [{"sweep_id": s, "baseline": b, "verdict": "ok"} for s, b in audits]


def test_baseline_last_is_the_previous_audit_never_the_sweep_itself():
    # fresh audits each audit a new sweep: "last" is the sweep audited last time
    assert last_baseline_id(_history(("s-2", "s-1"), ("s-1", "s")), "s-3") == "s-2"
    # rerunning an audit of the same sweep: the baseline it used (the old code returned "noisy")
    assert last_baseline_id(_history(("noisy", "base")), "noisy") == "base"
    # the newest audit of another sweep wins over this sweep's own earlier audits
    assert last_baseline_id(_history(("a", "x"), ("b", "y")), "a") == "b"
    assert last_baseline_id(_history(("b", "y"), ("a", "x")), "a") == "b"
    # only audits of this sweep: the newest baseline that is not the sweep itself
    assert last_baseline_id(_history(("a", "a"), ("a", "x"), ("a", "z")), "a") == "x"
    with pytest.raises(StoreError, match="compared sweep 'a' with itself"):
        last_baseline_id(_history(("a", "a"), ("a", "a")), "a")


def _rows(phase, loss, attractors, ari=1.0, versus="matches", no_verdict=None, **config):
    cfg = {"dataset": "d", "test_fraction": 0.2, "split_seed": 0, "label_noise": 0.0, "train_fraction": 1.0,
           "model": "mlp", "width": 8, "depth": 1, "optimizer": "sgd", "lr": 0.1, "batch_size": 16,
           "weight_decay": 0.0, "steps": 10, "momentum": 0.9, **config}
    tax = {"error": None, "phase": phase, "train_loss": loss, "test_acc": 0.9, "hessian_top": 2.0,
           "hessian_trace": 10.0, "mc": 0.0}
    return {"config": cfg, "taxonomy": tax,
            "morse": {"error": None, "n_attractors": attractors, "ari": ari, "versus_baseline": versus,
                      "no_verdict": no_verdict}}


def test_compare_matches_by_grid_position_and_applies_tolerances():
    base = {"a": _rows("IV-A", 0.001, 2, width=8), "b": _rows("IV-A", 0.001, 2, width=16)}
    same = {"x": _rows("IV-A", 0.02, 2, width=8), "y": _rows("IV-A", 0.001, 2, width=16)}
    setup, groups, unmatched = compare(same, base, ToleranceSpec())
    assert setup == {} and unmatched == [] and all(not g.findings for g in groups)  # 0.019 < 0.05
    moved = {"x": _rows("I", 0.5, 3, width=8, lr=0.2), "y": _rows("IV-A", 0.001, 2, width=16, lr=0.2)}
    setup, groups, _ = compare(moved, base, ToleranceSpec())
    assert setup == {"lr": (0.1, 0.2)}
    by_width = {g.key["width"]: g.findings for g in groups}
    assert by_width[16] == []
    assert any(f.startswith("phase IV-A -> I") for f in by_width[8])
    assert any(f.startswith("train_loss") for f in by_width[8]) and "attractors 2 -> 3" in by_width[8]
    # a graph whose basins are not the runs' outcomes, that predicts less than the baseline, or
    # that has too few runs for a verdict says nothing about attractors
    for blind in ({"ari": 0.0}, {"versus": "below"}, {"no_verdict": "too few runs to resolve basins: 3 ..."}):
        rows = {"x": _rows("IV-A", 0.001, 3, width=8, **blind), "y": _rows("IV-A", 0.001, 2, width=16)}
        _, groups, _ = compare(rows, base, ToleranceSpec())
        assert all(not g.findings for g in groups), blind


def test_groups_whose_runs_stopped_early_are_noted_never_counted_as_drift():
    """Early stopping (``early_stop:``): a group with fewer than 2 runs trained to the end has no
    taxonomy to compare; one with enough is compared on the runs that finished."""
    base = {"a": _rows("IV-A", 0.001, 2, width=8), "b": _rows("IV-A", 0.001, 2, width=16)}
    failed = {"error": "needs at least 2 seeds trained to the end (not diverged or stopped) ..."}
    audited = {"x": {**_rows("IV-A", 0.001, 2, width=8), "taxonomy": failed, "runs": 3, "stopped": 3},
               "y": {**_rows("I", 0.001, 2, width=16), "runs": 3, "stopped": 1}}
    _, groups, _ = compare(audited, base, ToleranceSpec())
    by_width = {g.key["width"]: g for g in groups}
    assert by_width[8].findings == [] and by_width[8].note == "3 of 3 runs stopped early in the audited sweep: not compared"
    assert by_width[16].note.endswith("compared on the runs that finished")
    assert by_width[16].findings == ["phase IV-A -> I"]  # the finished runs still drift
    # a taxonomy that failed for another reason is still drift
    audited["x"] = {**audited["x"], "stopped": 0}
    _, groups, _ = compare(audited, base, ToleranceSpec())
    assert any(f.startswith("taxonomy failed") for f in groups[0].findings)


def test_a_second_audit_of_a_spec_refuses_while_the_first_runs(audited):
    """Scheduled audits that overlap (RayCronJob has no concurrency policy): the later one
    refuses in one line, exit 2, before it trains anything; a `--fresh` audit, which trains a
    sweep of its own, is refused just the same."""
    tmp, base, _, common = audited
    first = SweepLease(SweepStore(str(tmp / "store"), "base"), "auditing").acquire()  # an audit at work
    try:
        before = sorted(p.name for p in (tmp / "store").iterdir())
        for extra in ([], ["--fresh"]):
            code, out, err = run_cli(["audit", str(base), "--baseline", "base", *extra, *common])
            assert code == 2 and "is already being audited by" in err and f"(pid {os.getpid()})" in err
            assert len(err.strip().splitlines()) == 1 and out == ""
        assert sorted(p.name for p in (tmp / "store").iterdir()) == before  # no sweep trained
    finally:
        first.release()


@pytest.mark.slow  # in the nightly run (.ci/nightly): determinism is also checked by the driver-death resume tests
def test_fresh_audit_retrains_and_matches_its_deterministic_baseline(audited):
    tmp, base, _, common = audited
    code, out, err = run_cli(["audit", str(base), "--baseline", "base", "--fresh", *common])
    assert code == 0, err  # same spec, same seeds, CPU training is deterministic: no drift
    fresh = [p.name for p in (tmp / "store").iterdir() if p.name.startswith("base-")]
    assert len(fresh) == 1 and f"audit {fresh[0]} against base: ok; 0 of 2 groups drifted" in out
