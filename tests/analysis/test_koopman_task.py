"""The Koopman task's choices: the early window, and the sweep's classes from stored rows."""

import numpy as np
import pytest

from doodl.analysis.koopman_task import _window, sweep_conjugacy


def test_the_early_window_keeps_the_recordings_up_to_its_fraction_of_the_run():
    steps = np.arange(0, 101, 10)
    theta = np.arange(11.0)[:, None]
    assert len(_window(steps, theta, "all", 0.3)) == 11
    np.testing.assert_array_equal(_window(steps, theta, "early", 0.3).ravel(), [0, 1, 2, 3])


def _rows(gid, spectra):
    return [{"group_id": gid, "eig_real": list(np.real(e)), "eig_imag": list(np.imag(e))} for e in spectra]


def test_sweep_classes_come_from_the_seeds_spectra_and_every_pair_is_recorded():
    close = [np.array([0.9, 0.5]), np.array([0.91, 0.5]), np.array([0.9, 0.52])]
    far = [np.array([0.2, -0.3]), np.array([0.21, -0.3])]
    groups = [{"group_id": g, "error": None} for g in ("a", "b", "c")] + [{"group_id": "d", "error": "diverged"}]
    runs = _rows("a", close[:2]) + _rows("b", close[1:]) + _rows("c", far)
    runs.append({"group_id": "c", "eig_real": None, "eig_imag": None})  # a seed too short for its own spectrum
    classes, pairs = sweep_conjugacy(groups, runs)
    assert classes == {"a": 0, "b": 0, "c": 1}  # the failed group has no class
    assert len(pairs) == 6 and {(p["group_a"], p["group_b"]) for p in pairs} >= {("a", "b"), ("b", "a")}
    ab = next(p for p in pairs if (p["group_a"], p["group_b"]) == ("a", "b"))
    assert ab["conjugate"] and ab["ratio"] == pytest.approx(ab["distance"] / max(ab["spread_a"], ab["spread_b"]))
    assert not next(p for p in pairs if (p["group_a"], p["group_b"]) == ("a", "c"))["conjugate"]
