"""`doodl sweep SPEC --dry-run`: the spec checked and the sweep's size and cost printed,
with nothing written and no Ray started."""

from __future__ import annotations

import os
import subprocess
import sys

from doodl.orchestrator import dry_run
from doodl.orchestrator.expand import expand, pack
from doodl.orchestrator.spec import parse_spec
from tests.conftest import run_cli, tiny_spec_dict, write_spec
from tests.orchestrator.stores import train_in_process

# two widths of a one-hidden-layer MLP on 6 features and 3 classes: 16 variants, 8 groups
SPEC = tiny_spec_dict(name="dry", model={"width": [8, 16]})


def _mlp_params(width: int, features: int = 6, classes: int = 3) -> int:
    return features * width + width + width * classes + classes


def _run_bytes(params: int, steps: int = 23, every: int = 5) -> int:
    """Uncompressed values of one run: snapshots (step, test loss and accuracy, theta),
    trajectory rows (step, epoch, 4 float metrics) and finals (steps, 4 metrics, theta)."""
    snapshots = len(range(0, steps + 1, every)) + (steps % every != 0)
    return snapshots * (12 + 4 * params) + (steps + 1) * 24 + (20 + 4 * params)


def _files(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_prints_the_counts_and_writes_nothing(tmp_path, monkeypatch):
    spec = write_spec(tmp_path, SPEC)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    before = _files(tmp_path)
    code, out, err = run_cli(["sweep", str(spec), "--dry-run"])  # the default store and MLflow database
    assert code == 0, err
    code, again, err = run_cli(["sweep", str(spec), "--dry-run", "--store", str(tmp_path / "store"),
                                "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"])
    assert code == 0, err
    assert _files(tmp_path) == before  # no store, no MLflow database, nothing in the working directory
    assert not (tmp_path / "cwd" / "doodl-store").exists() and not (tmp_path / "store").exists()

    lines = out.splitlines()
    assert lines[0] == "dry run of sweep dry: the spec is valid; nothing was written or trained"
    assert "variants    16 in 8 groups (configs without the seed)" in lines
    # variants_per_unit 3: each width's 8 variants in ceil(8 / 3) = 3 units
    assert any(line.startswith("units       6 (variants_per_unit 3") for line in lines)
    assert "mlp width 8 depth 1: 83 parameters (8 variants)" in out and _mlp_params(8) == 83
    assert f"mlp width 16 depth 1: {_mlp_params(16)} parameters (8 variants)" in out
    total = 8 * _run_bytes(_mlp_params(8)) + 8 * _run_bytes(_mlp_params(16))
    assert f"({total:,} bytes of values" in out
    actors = min(2, os.cpu_count())  # num_actors 2, at most one per core here
    assert f"estimated on this machine with {actors} actor" in out and "on 2 of 2 unit shapes" in out


def test_auto_units_are_split_for_the_actors_as_the_sweep_splits_them(tmp_path):
    """`variants_per_unit: auto` packs each width's 32 variants into one unit (tiny models:
    the largest size); the sweep then splits units until each of its 3 actors can get two:
    3 units of 10-11 variants per width."""
    spec = dict(SPEC, seeds=8, resources={"variants_per_unit": "auto", "num_actors": 3})
    assert len(pack(expand(parse_spec(spec)), "auto")) == 2  # before the split
    code, out, err = run_cli(["sweep", str(write_spec(tmp_path, spec)), "--dry-run", "--store", str(tmp_path / "s")])
    assert code == 0, err
    assert "variants    64 in 8 groups (configs without the seed)" in out
    assert "units       6 (variants_per_unit auto" in out


def test_a_bad_spec_exits_2_as_the_sweep_does(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, tiny_spec_dict(name="bad", optimizer={"batch_size": [16, 5000]}))
    dry = run_cli(["sweep", str(spec), "--dry-run"])
    assert dry[0] == 2 and dry[2].startswith(f"doodl: error: {spec}: optimizer.batch_size[1]: 5000 is larger")
    assert run_cli(["sweep", str(spec)]) == dry
    assert _files(tmp_path) == ["spec.yaml"]


def test_what_the_store_holds_is_left_out_and_a_changed_spec_refused(tmp_path):
    store = str(tmp_path / "store")
    train_in_process(store, SPEC, units=2)
    before = _files(tmp_path)
    code, out, err = run_cli(["sweep", str(write_spec(tmp_path, SPEC)), "--dry-run", "--store", store])
    assert code == 0, err
    assert "the store already holds 2: 4 to train" in out and "on 2 of 2 unit shapes" in out

    changed = write_spec(tmp_path, dict(SPEC, seeds=3), "changed.yaml")
    args = ["sweep", str(changed), "--store", store, "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]
    refused = run_cli([*args, "--dry-run"])
    assert refused[0] == 2 and "already exists" in refused[2] and refused == run_cli(args)
    code, out, _ = run_cli([*args, "--dry-run", "--new-sweep"])
    assert code == 0 and out.startswith("dry run of sweep dry-") and "variants    24 in 8 groups" in out
    assert _files(tmp_path) == sorted([*before, "spec.yaml", "changed.yaml"])


def test_calibration_separates_the_cost_of_a_step_from_a_units_fixed_cost(monkeypatch):
    """Fake units on a fake clock: one costing 0.5 s plus 0.01 s a step (both recovered, the
    budget kept), one costing 1 s a step (timed in its first steps alone, within budget + 1 step)."""
    now, steps_run = [0.0], []
    cost = {"fixed": 0.5, "step": 0.01}

    def fake_train(configs):
        steps_run.append(configs[0].steps)
        now[0] += cost["fixed"] + cost["step"] * configs[0].steps

    monkeypatch.setattr("doodl.workers.engine.train_unit", fake_train)
    unit = pack(expand(parse_spec(SPEC)), 3)[0]
    c = dry_run.calibrate(unit, budget_s=3.0, clock=lambda: now[0])
    assert abs(c.step_s - 0.01) < 1e-9 and abs(c.fixed_s - 0.5) < 1e-9 and c.variants == 3
    assert now[0] <= 3.0 and len(steps_run) == 3 and max(steps_run) <= 23

    now[0], cost["fixed"], cost["step"] = 0.0, 0.0, 1.0
    steps_run.clear()
    c = dry_run.calibrate(unit, budget_s=3.0, clock=lambda: now[0])
    assert c.step_s == 1.0 and now[0] <= 4.0 and sum(steps_run) == 4


def test_a_dry_run_starts_no_ray(tmp_path):
    spec = write_spec(tmp_path, SPEC)
    script = ("import sys; from doodl.orchestrator.cli import main; "
              f"code = main(['sweep', {str(spec)!r}, '--dry-run', '--store', {str(tmp_path / 'store')!r}]); "
              "ray = sys.modules.get('ray'); print('RESULT', code, bool(ray and ray.is_initialized()))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.stdout.splitlines()[-1] == "RESULT 0 False", done.stderr[-2000:]
    assert _files(tmp_path) == ["spec.yaml"]
