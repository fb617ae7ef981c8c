"""What runs show: one text form per param, names led by the axes that vary, curves thinned
to the points the UI compares with both ends kept."""

from __future__ import annotations

import numpy as np

from doodl.orchestrator.tracking._views import (CURVE_POINTS, group_name, group_run_name, param_text, run_name,
                                          subsample_steps, varying_axes)


def test_param_text_has_one_form_per_value():
    assert [param_text(v) for v in (0.0, 1.0, 0.25, 0.05, 1e-05, 10000.0, 3, "mlp", True)] == [
        "0", "1", "0.25", "0.05", "1e-05", "10000", "3", "mlp", "true"]
    assert param_text(0.1 + 0.2) == "0.30000000000000004"  # never rounded: two values, two texts


def _cfg(**kw):
    base = {"width": 16, "depth": 2, "label_noise": 0.0, "train_fraction": 1.0, "lr": 0.05, "batch_size": 32,
            "weight_decay": 0.0, "seed": 1, "run_id": "abcdef123456", "group_id": "g"}
    return {**base, **kw}


def test_names_lead_with_the_axes_that_vary():
    configs = [_cfg(label_noise=n, lr=lr) for n in (0.0, 0.2) for lr in (0.05, 0.1)]
    varying = varying_axes(configs)
    assert varying == ["label_noise", "lr"]  # grid order; width, batch size... are the same everywhere
    assert run_name(configs[3], varying) == "noise0.2-lr0.1-s1-abcdef"
    assert group_run_name(configs[3], varying) == "group noise 0.2, lr 0.1"
    assert group_name(configs[0], []) == "the sweep's only group"
    assert run_name(configs[0], []) == "s1-abcdef"


def test_curves_are_thinned_to_the_points_the_ui_compares_keeping_both_ends():
    kept = subsample_steps(501)
    assert len(kept) == CURVE_POINTS == 25 and kept[0] == 0 and kept[-1] == 500
    assert np.all(np.diff(kept) > 0)
    assert list(subsample_steps(24)) == list(range(24))  # short curves are logged whole
