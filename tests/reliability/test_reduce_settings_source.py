"""One source of reduce settings per sweep (issue 25): a spec whose ``reduce:`` section
changed is recorded as the sweep's by ``doodl sweep``, saying what changed and which results
it redoes; ``doodl reduce SWEEP`` then uses the same settings and redoes nothing."""

from __future__ import annotations

import json

from tests.conftest import FAST_REDUCE, run_cli, tiny_spec_dict, write_spec


def test_sweep_and_reduce_read_the_same_reduce_settings(tmp_path, ray_session):
    store, db = str(tmp_path / "store"), f"sqlite:///{tmp_path / 'm.db'}"
    base = dict(seeds=2, data={"label_noise": 0.0}, optimizer={"lr": 0.1}, reduce=FAST_REDUCE)
    first = write_spec(tmp_path, tiny_spec_dict("one", **base), "first.yaml")
    args = ["--store", store, "--tracking-uri", db, "--no-progress"]
    code, out, err = run_cli(["sweep", str(first), "--reduce", *args])
    assert code == 0, err
    assert "morse: reduced 1, already done 0" in out

    changed_reduce = {**FAST_REDUCE, "morse": {**FAST_REDUCE["morse"], "padding": 0.2}}
    second = write_spec(tmp_path, tiny_spec_dict("one", **{**base, "reduce": changed_reduce}), "second.yaml")
    code, out, err = run_cli(["sweep", str(second), "--reduce", *args])
    assert code == 0, err
    assert ("reduce settings of sweep one changed (morse.padding); recorded for `doodl reduce`: it redoes morse"
            in " ".join(err.split()))
    assert "morse: reduced 1, already done 0" in out and "taxonomy: reduced 0, already done 1" in out
    recorded = json.loads((tmp_path / "store" / "one" / "sweep.json").read_text())["spec"]["reduce"]
    assert recorded["morse"]["padding"] == 0.2

    # the sweep's settings are the spec's now: reduce redoes nothing and logs nothing again
    code, out, err = run_cli(["reduce", "one", *args])
    assert code == 0, err
    assert "morse: reduced 0, already done 1" in out and "logged 0 MLflow results" in out

    code, out, err = run_cli(["sweep", str(second), *args])  # the same spec again: nothing to say
    assert code == 0 and "reduce settings" not in out + err
