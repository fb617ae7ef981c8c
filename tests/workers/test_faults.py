"""The test-only fault plan: read once from the environment, a no-op unless asked for."""

import threading

import pyarrow.fs as pafs

from doodl.workers.faults import FaultPlan, NoFaults, fault_plan


def _plan(tmp_path, environ):
    return fault_plan(pafs.LocalFileSystem(), str(tmp_path), threading.Lock(), environ=environ)


def test_no_variables_no_faults(tmp_path):
    plan = _plan(tmp_path, {"DOODL_FAULT_HOLD_FILE": "", "OTHER": "x"})
    assert isinstance(plan, NoFaults)
    plan.before_unit("u0", 1)


def test_the_plan_is_what_the_variables_say(tmp_path):
    plan = _plan(tmp_path, {"DOODL_FAULT_EXIT_UNIT": "u3", "DOODL_FAULT_HOLD_FILE": "/x", "DOODL_FAULT_HOLD_AFTER": "2"})
    assert isinstance(plan, FaultPlan)
    assert (plan.exit_unit, plan.hold_file, plan.hold_after) == ("u3", "/x", 2)
    assert _plan(tmp_path, {"DOODL_FAULT_HOLD_FILE": "/x"}).hold_after == 1


def test_exit_only_on_the_first_attempt_of_its_unit_and_no_hold_below_the_count(tmp_path):
    plan = _plan(tmp_path, {"DOODL_FAULT_EXIT_UNIT": "u3", "DOODL_FAULT_HOLD_FILE": str(tmp_path / "never")})
    plan.before_unit("u1", 1)  # another unit: no exit; an empty store: no hold
    plan.before_unit("u3", 2)  # a retry of the unit: no exit
