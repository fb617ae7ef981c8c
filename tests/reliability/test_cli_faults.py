"""Small faults a new user hits at the command line (issue 25): each is one line and the
right exit code, never a traceback."""

from __future__ import annotations

import os

import pytest

from doodl.orchestrator.spec import parse_spec
from doodl.orchestrator.store import derived_sweep_id
from tests.conftest import run_cli, tiny_spec_dict
from tests.orchestrator.stores import train_in_process


def test_version_prints_the_installed_version():
    import shutil
    import subprocess
    import sys
    from importlib.metadata import version
    from pathlib import Path

    doodl = shutil.which("doodl") or str(Path(sys.executable).with_name("doodl"))
    done = subprocess.run([doodl, "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == f"doodl {version('doodl')}", done.stderr


@pytest.mark.parametrize("length", [92, 96, 100])
def test_a_long_name_keeps_the_hash_of_its_changed_specs(length):
    """``--new-sweep`` ids are the name and a hash of the spec; a name near the 100-character
    limit gives way, so two changed specs never share an id, nor with the original."""
    name = "n" * length
    ids = {derived_sweep_id(parse_spec(tiny_spec_dict(name, optimizer={"steps": steps}))) for steps in (23, 30, 31)}
    assert len(ids) == 3 and name not in ids
    assert all(len(i) <= 100 and i.rsplit("-", 1)[1].isalnum() and len(i.rsplit("-", 1)[1]) == 8 for i in ids)


def test_a_refused_changed_spec_names_what_changed(tmp_path):
    from doodl.orchestrator.store import StoreError, SweepStore

    train_in_process(str(tmp_path / "store"), tiny_spec_dict("chg"), units=0)
    changed = parse_spec(tiny_spec_dict("chg", optimizer={"steps": 30, "lr": [0.05, 0.2]}, seeds=3))
    with pytest.raises(StoreError, match=r"with a different spec \(optimizer\.lr, optimizer\.steps, seeds changed\)"):
        SweepStore(str(tmp_path / "store"), "chg").check_same_spec(changed)


def test_report_to_a_place_it_cannot_write_is_one_line(tmp_path):
    store = str(tmp_path / "store")
    train_in_process(store, tiny_spec_dict("rep"), units=0)
    afile = tmp_path / "afile"
    afile.write_text("x")
    places = [afile / "report"]  # under a file: refused for every user, root included
    if os.geteuid() != 0:  # a read-only directory stops everyone but root
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        places.append(ro / "report")
    for out in places:
        code, stdout, err = run_cli(["report", "rep", "--store", store, "--out", str(out)])
        assert code == 2 and err.strip().count("\n") == 0 and "Traceback" not in err
        assert err.strip().startswith(f"doodl: error: cannot write the report to {out}")
