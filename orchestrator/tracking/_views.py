"""What each kind of run shows in MLflow: a variant's curves, params and name; each
analysis's metrics and tags on a group run and on a seed's run (declared by the analysis,
:mod:`doodl.analysis.views`, through its registry entry)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from doodl.analysis.registry import REGISTRY
from doodl.workers.config import axes, param_fields

# per curve: enough to compare runs in the UI (every step is in the store); MLflow writes a
# row per point and logging time grows with them (about 0.1 ms a point with SQLite here)
CURVE_POINTS = 25
CURVES = ("train_loss", "train_acc", "grad_norm", "lr")
HELD_OUT_CURVES = ("test_loss", "test_acc")  # measured at recorded steps only
# config fields shown as MLflow params (the rest are in variants.parquet): every grid axis
PARAM_FIELDS = param_fields()


def subsample_steps(n_steps: int, points: int = CURVE_POINTS) -> np.ndarray:
    """Indices ``0..n_steps-1`` thinned to at most ``points``, always keeping the last."""
    if n_steps <= points:
        return np.arange(n_steps)
    return np.unique(np.linspace(0, n_steps - 1, points).round().astype(np.int64))


def param_text(value) -> str:
    """A param's one text form, the same on every run type: an integral float without its
    ``.0`` (``0.0`` is ``'0'``, as run names say), other floats as Python writes them
    (``0.05``, ``1e-05``), booleans ``true``/``false``. Search with it:
    ``params.label_noise = '0'`` and ``params.lr = '0.05'``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def varying_axes(configs: Iterable[Mapping]) -> list[str]:
    """The grid axes that take more than one value among ``configs``, in grid order."""
    values: dict[str, set] = {name: set() for name in axes()}
    for cfg in configs:
        for name in values:
            values[name].add(cfg.get(name))
    return [name for name, seen in values.items() if len(seen) > 1]


def _labelled(cfg: Mapping, varying: list[str], sep: str) -> list[str]:
    return [f"{axes()[name].metadata['label']}{sep}{param_text(cfg[name])}" for name in varying]


def run_name(cfg: Mapping, varying: list[str]) -> str:
    """A variant's run name: the axes that vary in the sweep (what tells runs apart; the
    rest are params), then the seed; the id keeps names of equal configs apart."""
    return "-".join([*_labelled(cfg, varying, ""), f"s{cfg['seed']}", cfg["run_id"][:6]])


def group_name(cfg: Mapping, varying: list[str]) -> str:
    """A group's readable name: the values of the axes that vary in the sweep."""
    return ", ".join(_labelled(cfg, varying, " ")) or "the sweep's only group"


def group_run_name(cfg: Mapping, varying: list[str]) -> str:
    """A group's run name: ``group`` and its :func:`group_name`."""
    return f"group {group_name(cfg, varying)}"


def metrics_of(values: dict, curves: list[tuple[str, int, float]], now: int) -> list:
    from mlflow.entities import Metric

    out = [Metric(k, float(v), now, 0) for k, v in values.items() if v is not None and np.isfinite(float(v))]
    return out + [Metric(k, float(v), now, int(step)) for k, step, v in curves if v is not None and np.isfinite(v)]


def group_results(name: str, row: dict) -> tuple[dict, dict[str, str], list]:
    """What a group run shows of one analysis: metrics, tags, curves (name, step, value),
    as its registry entry's view says."""
    return REGISTRY[name].group_view(row)


def seed_results(name: str, run: dict) -> tuple[dict, dict[str, str], list]:
    """What a seed's run shows of one analysis: its own values only."""
    return REGISTRY[name].seed_view(run)
