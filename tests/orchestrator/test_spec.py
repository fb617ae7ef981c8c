"""Spec validation: bad specs are refused with one line naming the field, exit code 2,
and nothing is written (no store directory, no MLflow database)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from doodl.orchestrator.cli import main
from doodl.orchestrator.spec import SpecError, load_spec, parse_spec
from tests.conftest import tiny_spec_dict, write_spec

BAD_SPECS = [
    # (overrides, expected message fragment)
    ({"bogus": 1}, "spec.yaml: bogus: unknown field"),
    ({"model": {"family": "mlp", "width": 8, "depth": 1, "widht": 4}}, "model.widht: unknown field"),
    ({"model": {"width": "wide"}}, "model.width[0]: Input should be a valid integer"),
    ({"data": {"label_noise": []}}, "data.label_noise: List should have at least 1 item"),
    ({"data": {"label_noise": [0.0, 1.0]}}, "data.label_noise[1]: Input should be less than 1"),
    ({"data": {"label_noise": -0.1}}, "data.label_noise[0]: Input should be greater than or equal to 0"),
    ({"data": {"train_fraction": 0}}, "data.train_fraction[0]: Input should be greater than 0"),
    ({"data": {"train_fraction": 1.5}}, "data.train_fraction[0]: Input should be less than or equal to 1"),
    ({"model": {"width": [8, 0]}}, "model.width[1]: Input should be greater than 0"),
    ({"optimizer": {"steps": 0}}, "optimizer.steps: Input should be greater than 0"),
    ({"optimizer": {"lr": [0.1, -0.01]}}, "optimizer.lr[1]: Input should be greater than 0"),
    ({"optimizer": {"batch_size": [16, 0]}}, "optimizer.batch_size[1]: Input should be greater than 0"),
    ({"optimizer": {"batch_size": [16, 1000]}}, "optimizer.batch_size[1]: 1000 is larger than the smallest training set (300 samples"),
    ({"optimizer": {"name": "rmsprop"}}, "optimizer.name: Input should be 'sgd', 'adam' or 'adamw'"),
    ({"optimizer": {"schedule": "linear"}}, "optimizer.schedule[0]: Input should be 'constant', 'step' or 'cosine'"),
    ({"optimizer": {"milestones": [0.5, 1.5]}}, "optimizer.milestones[1]: Input should be less than 1"),
    ({"model": {"family": "vit"}}, "model.family: Input should be 'mlp', 'cnn', 'resnet' or 'transformer'"),
    ({"model": {"family": "cnn", "width": 4, "depth": 1}}, "model.family: cnn does not take features (blobs); it takes images"),
    ({"model": {"family": "mlp", "width": 4, "depth": 1, "heads": 2}}, "model: heads: family mlp does not use it"),
    ({"model": {"family": "resnet", "width": 4, "depth": [2, 5]}}, "model: depth[1]: 5 is outside 1..4 for family resnet"),
    ({"data": {"augment": True}}, "data.augment: augmentation needs image data; blobs is features"),
    ({"data": {"label_noise_kind": "asymmetric"}}, "data.label_noise_kind[0]: Input should be 'symmetric' or 'pair'"),
    ({"data": {"class_imbalance": 0}}, "data.class_imbalance[0]: Input should be greater than 0"),
    ({"dataset": {"name": "cifar10"}}, "dataset: data set cifar10 is read from files: set dataset.path to their directory"),
    ({"dataset": {"name": "mnist", "path": "no/such/dir"}}, "dataset: dataset.path: directory not found: no/such/dir"),
    ({"dataset": {"name": "digits", "path": "."}}, "dataset: dataset.path is only read for mnist, fashion_mnist, cifar10, cifar100"),
    ({"dataset": {"name": "no/such/file.npz"}}, "dataset.name: data file not found: no/such/file.npz"),
    ({"dataset": {"name": "imagenet"}}, "dataset.name: unknown data set 'imagenet'"),
    ({"name": "../escape"}, "name: must be 1-100 letters"),
    ({"seeds": 0}, "seeds: Input should be greater than 0"),
    ({"record": {"every": 0}}, "record.every: Input should be greater than 0"),
    ({"reduce": {"morse": {"dims": 5}}}, "reduce.morse.dims: Input should be less than or equal to 4"),
    ({"reduce": {"morse": {"subdiv_min": 12, "subdiv_max": 8}}},
     "reduce.morse: subdiv_max (8) must be at least subdiv_min (12)"),
    ({"reduce": {"morse": {"far_field": 0.9}}},
     "reduce.morse: far_field is no longer a setting: the Morse graph's map now comes from the snapshot pairs, "
     "not a Gaussian process (README, 'Morse graphs'); remove it"),
]


@pytest.mark.parametrize("overrides,expected", BAD_SPECS, ids=[e.split(":")[0] if ":" in e else e for _, e in BAD_SPECS])
def test_bad_spec_is_refused_with_one_line_and_nothing_written(tmp_path, capsys, overrides, expected):
    spec = tiny_spec_dict(**overrides)
    if "dataset" in overrides:
        spec["dataset"] = overrides["dataset"]
    path = write_spec(tmp_path, spec)
    store, db = tmp_path / "store", tmp_path / "mlflow.db"
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code = main(["sweep", "spec.yaml", "--store", str(store), "--tracking-uri", f"sqlite:///{db}"])
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("doodl: error: ")
    assert expected in lines[0], lines[0]
    assert not store.exists() and not db.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_missing_spec_file_and_bad_yaml(tmp_path):
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML at line"):
        load_spec(bad)
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        load_spec(top)


def test_scalars_become_one_value_axes_and_defaults_apply():
    spec = parse_spec(tiny_spec_dict(model={"width": 8, "depth": [1, 2]}))
    assert spec.model.width == [8] and spec.model.depth == [1, 2]
    assert spec.data.train_fraction == [1.0]
    assert spec.seed_list == [0, 1]
    assert parse_spec(tiny_spec_dict(seeds=[7, 3])).seed_list == [7, 3]


def test_npz_dataset_path_is_accepted(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(120, 5)), y=rng.integers(0, 3, size=120))
    spec = parse_spec(tiny_spec_dict(dataset={"name": str(tmp_path / "d.npz")}, optimizer={"batch_size": 8}))
    assert spec.dataset.name.endswith("d.npz")


@pytest.mark.parametrize("example", sorted(p.name for p in (Path(__file__).parents[2] / "examples").glob("*.yaml")))
def test_examples_are_valid_specs(example, tmp_path):
    import yaml

    path = Path(__file__).parents[2] / "examples" / example
    data = yaml.safe_load(path.read_text())
    if data["dataset"].get("path"):  # a file-based set: a generated stand-in of its format
        from tests.orchestrator.test_families import _cifar_dir

        data["dataset"]["path"] = _cifar_dir(tmp_path, n_train=1500)
        spec = parse_spec(data, str(path))
    else:
        spec = load_spec(path)
    assert spec.name == Path(example).stem


def test_a_morse_section_recorded_before_the_pair_map_takes_the_new_defaults():
    """A sweep.json written before issue 21 holds the retired Gaussian-process keys and that
    method's resolved depths: reduced again, it runs today's method with today's defaults,
    keeping what the user had set away from the old ones."""
    from doodl.analysis.settings import MorseSettings as MorseReduceSpec

    old = {"coordinates": "auto", "dims": 2, "tau": 1, "late_from": 0.5, "subdiv_min": 10, "subdiv_max": 16,
           "padding": 0.1, "far_field": 0.9, "max_pairs": 600, "compose": 8, "uncertainty": 1.0, "folds": 8}
    assert MorseReduceSpec.from_record(old) == MorseReduceSpec()
    assert MorseReduceSpec.from_record({**old, "subdiv_max": 20, "dims": 3}) == MorseReduceSpec(subdiv_max=20, dims=3)
    assert MorseReduceSpec.from_record({"subdiv_min": 10, "subdiv_max": 16}).subdiv_min == 10  # a new record: as set
