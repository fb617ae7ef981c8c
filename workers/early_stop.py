"""Landscape-aware early stopping inside a unit (``early_stop:`` in the spec).

A :class:`StopRule` is a ridge regression from a run's early features
(:func:`doodl.analysis.early_outcome.early_features`, the same ones ``doodl reduce``'s
``early`` analysis stores) to its final test accuracy, fitted on a previous sweep, and a
threshold on the prediction. At step ``round(at * steps)`` the engine computes every
still-training variant's features from what it has recorded so far, and a variant whose
predicted final test accuracy is below the threshold stops there: its trajectory so far is
committed with status ``stopped`` and it leaves the batched model, so the unit's remaining
steps cost only the variants that go on (``docs/methods.md``, "Early stopping").

The rule is plain numbers (no pickled model): the sweep records it in ``sweep.json`` and a
resumed sweep applies the same rule, so a retrained unit stops the same variants.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from doodl.analysis.early_outcome import EarlyRun, early_features


@dataclass(frozen=True)
class StopRule:
    """Stop a run at ``at`` of training when its score, the predicted final test accuracy
    ``intercept + coef . (features - mean) / scale`` before it is clipped to [0, 1], is below
    ``threshold`` (unclipped, so runs predicted beyond 1 still rank: no ties at the top)."""

    at: float
    threshold: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float

    def step(self, total_steps: int) -> int:
        """The step at which the rule is applied (:meth:`EarlyRun.cut`'s, so the features
        are those the predictor was fitted on)."""
        return max(1, int(round(self.at * total_steps)))

    def score(self, features: np.ndarray) -> np.ndarray:
        """The unclipped prediction of each row of ``features`` ``(n, F)``."""
        z = (np.asarray(features, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        return self.intercept + z @ np.asarray(self.coef)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predicted final test accuracy of each row of ``features``, in [0, 1]."""
        return np.clip(self.score(features), 0.0, 1.0)

    def doomed(self, features: np.ndarray) -> np.ndarray:
        """``(n,)`` bool: the rows to stop."""
        return self.score(features) < self.threshold

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> StopRule:
        return cls(float(d["at"]), float(d["threshold"]), tuple(map(float, d["mean"])),
                   tuple(map(float, d["scale"])), tuple(map(float, d["coef"])), float(d["intercept"]))


def fit_stop_rule(features: np.ndarray, final_test_acc: np.ndarray, at: float, keep: float,
                  alpha: float) -> StopRule:
    """The rule from a previous sweep's runs: a ridge regression (standardised features,
    as the ``early`` analysis's held-out model) fitted on all of them, and the threshold that
    keeps the top ``keep`` share of those runs by their score (``keep`` 1: stop none)."""
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(features, dtype=np.float64)
    scaler = StandardScaler().fit(x)
    model = Ridge(alpha=alpha).fit(scaler.transform(x), final_test_acc)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    rule = StopRule(at, 0.0, tuple(scaler.mean_.tolist()), tuple(scale.tolist()), tuple(model.coef_.tolist()),
                    float(model.intercept_))
    threshold = float(np.quantile(rule.score(x), 1.0 - keep)) if keep < 1 else -np.inf
    return StopRule(at, threshold, rule.mean, rule.scale, rule.coef, rule.intercept)


def unit_features(step: int, loss: np.ndarray, acc: np.ndarray, grad_norm: np.ndarray, snapshot_steps: np.ndarray,
                  snapshots: np.ndarray, test_acc: np.ndarray) -> np.ndarray:
    """Each variant's early features at ``step`` from a unit's records so far: per-step
    curves ``(V, T+1)``, the snapshots up to ``step`` ``(S', V, D)`` at ``snapshot_steps``
    ``(S',)`` and their held-out accuracy ``(S', V)``. Returns ``(V, F)``."""
    total = loss.shape[1] - 1
    f = step / total
    out = []
    for v in range(loss.shape[0]):
        theta = np.asarray(snapshots[:, v], dtype=np.float64)
        run = EarlyRun("", "", np.asarray(snapshot_steps), theta, np.linalg.norm(theta, axis=1),
                       np.linalg.norm(theta - theta[0], axis=1), loss[v], acc[v], grad_norm[v], test_acc[:, v],
                       float("nan"))
        out.append(early_features(run, f))
    return np.stack(out) if out else np.empty((0, 0))

