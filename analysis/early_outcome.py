"""Where will a run end? Predicted from its first fraction ``f`` of training, graded out of
sample against what really happened (``docs/methods.md``, "Early outcome prediction").

Two questions, each beside its chance level and a curve-only baseline, each graded against
labels defined without the predictor:

- **its outcome within its group**: the outcome mode its end state falls in
  (:mod:`doodl.analysis._outcomes`, clusters of end states, defined without any of this).
  Leave one run out: a random forest on the other runs' *early states* (train loss,
  accuracy and gradient norm at ``f``, the spread of the state and the distance travelled,
  beside the first principal components of the state itself: the model's outputs on the
  probe set, or its parameters) predicts the held-out run's mode. A forest, not nearest neighbours: the direction that decides a basin can be
  one among many that do not (a run's nearest early state can be its mirror image across
  the ridge between two basins), and its splits find that direction. Chance: the share of the largest mode. Baseline: the same
  classifier on the loss curve up to ``f`` alone;
- **its final test accuracy**: a ridge regression across groups on early features (train
  loss and accuracy at ``f``, the loss curve's log-log slope, the gradient norm, the held-out
  accuracy at ``f``, the distance travelled in parameters relative to their size), fitted
  with the run's whole group left out. Chance: the left-out groups' runs predicted by the
  mean of the others. Baseline: the held-out accuracy curve up to ``f``, extrapolated as a
  power law in the step to the end of training.

Fort et al. find that the basin is fixed within the first 2-3 epochs (a chaotic transient),
so early states carry the outcome where loss curves, identical for symmetric basins, cannot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

FRACTIONS = (0.05, 0.1, 0.2)
TREES = 50
STATE_COMPONENTS = 3  # principal components of the early state beside its scalars
RIDGE_ALPHA = 1.0


@dataclass(frozen=True)
class EarlyRun:
    """What one run's first part and its end say: snapshots (steps ``(S,)``, outputs on the
    probe set ``(S, F)`` or parameters ``(S, P)``), the per-step train loss, accuracy and
    gradient norm ``(T+1,)``, the held-out accuracy at the snapshots ``(S,)``, and its end."""

    run_id: str
    group_id: str
    steps: np.ndarray
    state: np.ndarray  # (S, F): function-space outputs (or parameters) at the snapshots
    theta_norm: np.ndarray  # (S,) the parameters' norm at the snapshots
    theta_travel: np.ndarray  # (S,) distance of the parameters from their start
    loss: np.ndarray  # (T+1,)
    acc: np.ndarray
    grad_norm: np.ndarray
    test_acc: np.ndarray  # (S,) held-out accuracy at the snapshots
    final_test_acc: float
    outcome: int = 0  # its outcome mode within its group

    @property
    def total_steps(self) -> int:
        return len(self.loss) - 1

    def cut(self, f: float) -> tuple[int, int]:
        """(last step, last snapshot index) of the first fraction ``f`` of training."""
        step = max(1, int(round(f * self.total_steps)))
        return step, max(0, int(np.searchsorted(self.steps, step, side="right")) - 1)


def early_state(run: EarlyRun, f: float) -> tuple[np.ndarray, np.ndarray]:
    """The run's state at ``f``: a few scalars (train loss, accuracy and recent gradient norm
    there, the spread of its state's values, the distance travelled relative to the start's
    norm) and the state itself (its outputs on the probe set, or its parameters)."""
    step, snap = run.cut(f)
    state = np.asarray(run.state[snap], dtype=np.float64).ravel()
    scalars = np.array([_finite(run.loss[step]), _finite(run.acc[step]),
                        _finite(np.nanmean(run.grad_norm[max(0, step - 10): step + 1])), float(np.std(state)),
                        _finite(run.theta_travel[snap] / max(run.theta_norm[0], 1e-12))])
    return scalars, state


def curve_features(run: EarlyRun, f: float, points: int = 8) -> np.ndarray:
    """The train loss curve up to ``f``, at ``points`` evenly spaced steps (the baseline's view)."""
    step, _ = run.cut(f)
    at = np.linspace(0, step, points).round().astype(int)
    return np.array([_finite(v) for v in run.loss[at]])


def early_features(run: EarlyRun, f: float) -> np.ndarray:
    """Scalar early features for the cross-group regression (see the module docstring)."""
    step, snap = run.cut(f)
    window = np.asarray(run.loss[max(1, step // 2): step + 1], dtype=np.float64)
    t = np.arange(max(1, step // 2), step + 1, dtype=np.float64)
    ok = np.isfinite(window) & (window > 0)
    slope = float(np.polyfit(np.log(t[ok]), np.log(window[ok]), 1)[0]) if ok.sum() >= 2 else 0.0
    travel = run.theta_travel[snap] / max(run.theta_norm[0], 1e-12)
    return np.array([_finite(run.loss[step]), _finite(run.acc[step]), slope,
                     _finite(np.nanmean(run.grad_norm[max(0, step - 10): step + 1])),
                     _finite(run.test_acc[snap]), _finite(travel)])


def _finite(value, fill: float = 0.0) -> float:
    value = float(value)
    return value if np.isfinite(value) else fill


@dataclass
class OutcomeVerdict:
    """Leave-one-run-out outcome prediction in one group at one fraction."""

    f: float
    n_runs: int
    n_outcomes: int
    accuracy: float  # the early-state classifier, out of sample
    chance: float  # the share of the largest outcome mode
    baseline: float  # the same classifier on the loss curve alone
    predicted: list[int] = field(default_factory=list)


def predict_outcomes(runs: Sequence[EarlyRun], f: float) -> OutcomeVerdict:
    """Each run's outcome mode predicted from its early state by the group's other runs."""
    labels = np.array([r.outcome for r in runs])
    chance = float(np.bincount(labels).max() / len(labels)) if len(labels) else float("nan")
    if len(runs) < 3:
        return OutcomeVerdict(f, len(runs), int(labels.max()) + 1 if len(labels) else 0, float("nan"), chance,
                              float("nan"))
    scalars, states = zip(*(early_state(r, f) for r in runs))
    early = _leave_one_out(np.stack(scalars), labels, np.stack(states))
    curve = _leave_one_out(np.stack([curve_features(r, f) for r in runs]), labels)
    return OutcomeVerdict(f, len(runs), int(labels.max()) + 1, float(np.mean(early == labels)), chance,
                          float(np.mean(curve == labels)), early.tolist())


def _leave_one_out(x: np.ndarray, labels: np.ndarray, states: np.ndarray | None = None) -> np.ndarray:
    """A seeded random forest's predictions, each run left out of its own fit (a fold whose
    runs share one outcome predicts it). ``states`` (one row per run, often hundreds of
    values) join ``x`` as their first :data:`STATE_COMPONENTS` principal components, fitted
    on the fold's runs only: raw, they would drown the scalars among a forest's random
    feature choices."""
    from sklearn.decomposition import PCA
    from sklearn.ensemble import RandomForestClassifier

    out = np.empty(len(labels), dtype=labels.dtype)
    for i in range(len(labels)):
        rest = np.arange(len(labels)) != i
        if len(set(labels[rest].tolist())) == 1:
            out[i] = labels[rest][0]
            continue
        z = x
        if states is not None:
            k = min(STATE_COMPONENTS, int(rest.sum()) - 1, states.shape[1])
            if k >= 1 and np.ptp(states[rest], axis=0).max() > 0:
                pca = PCA(n_components=k, random_state=0).fit(states[rest])
                z = np.hstack([x, pca.transform(states)])
        model = RandomForestClassifier(n_estimators=TREES, random_state=0).fit(z[rest], labels[rest])
        out[i] = model.predict(z[i : i + 1])[0]
    return out


@dataclass
class AccuracyVerdict:
    """Leave-one-group-out prediction of final test accuracy at one fraction."""

    f: float
    n_groups: int
    mae: float  # the early-feature model, out of sample
    chance_mae: float  # predicting the other groups' mean
    baseline_mae: float  # the held-out accuracy curve extrapolated
    r2: float
    predicted: dict[str, float] = field(default_factory=dict)  # run id -> predicted final test accuracy


def predict_final_accuracy(runs: Sequence[EarlyRun], f: float) -> AccuracyVerdict:
    """Each run's final test accuracy from its early features, its whole group left out."""
    return accuracy_verdict(f, [r.run_id for r in runs], [r.group_id for r in runs],
                            np.stack([early_features(r, f) for r in runs]),
                            np.array([r.final_test_acc for r in runs], dtype=np.float64),
                            np.array([extrapolate_accuracy(r, f) for r in runs]))


def accuracy_verdict(f: float, run_ids: Sequence[str], group_ids: Sequence[str], x: np.ndarray, y: np.ndarray,
                     curve: np.ndarray) -> AccuracyVerdict:
    """Leave-one-group-out ridge predictions of ``y`` (final test accuracies) from ``x``
    (each run's :func:`early_features`), beside chance and the ``curve`` baseline."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    groups = np.asarray(group_ids)
    names = sorted(set(groups.tolist()))
    pred, chance = np.full_like(y, np.nan), np.full_like(y, np.nan)
    if len(names) >= 2:
        for g in names:
            out = groups == g
            model = make_pipeline(StandardScaler(), Ridge(alpha=RIDGE_ALPHA)).fit(x[~out], y[~out])
            pred[out] = np.clip(model.predict(x[out]), 0.0, 1.0)
            chance[out] = y[~out].mean()
    ss = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum((y - pred) ** 2)) / ss if ss > 0 and len(names) >= 2 else float("nan")
    return AccuracyVerdict(f, len(names), float(np.mean(np.abs(pred - y))), float(np.mean(np.abs(chance - y))),
                           float(np.mean(np.abs(curve - y))), r2, dict(zip(run_ids, pred.tolist())))


def extrapolate_accuracy(run: EarlyRun, f: float) -> float:
    """The curve-only baseline: the held-out error ``1 - acc`` at the snapshots up to ``f``
    fitted as a power law ``a * step**b`` (least squares in log-log) and read at the last
    step; with fewer than two usable points, the last accuracy seen."""
    _, snap = run.cut(f)
    steps = np.asarray(run.steps[: snap + 1], dtype=np.float64)
    err = 1.0 - np.asarray(run.test_acc[: snap + 1], dtype=np.float64)
    ok = (steps > 0) & np.isfinite(err) & (err > 0)
    if ok.sum() < 2:
        last = run.test_acc[snap]
        return float(last) if np.isfinite(last) else 0.0
    b, log_a = np.polyfit(np.log(steps[ok]), np.log(err[ok]), 1)
    return float(np.clip(1.0 - np.exp(log_a) * run.total_steps ** b, 0.0, 1.0))


def early_runs(result, group_ids: Sequence[str], outcomes: Sequence[int], states: Sequence[np.ndarray] | None = None
               ) -> list[EarlyRun]:
    """:class:`EarlyRun` of each variant of a trained unit (a
    :class:`doodl.workers.engine.UnitResult`): ``states`` are their function-space outputs at
    the snapshots (``(S, F)`` each), the parameters when not given."""
    snaps = np.asarray(result.snapshots, dtype=np.float64)  # (S, V, D)
    out = []
    for k, rid in enumerate(result.run_ids):
        theta = snaps[:, k, :]
        out.append(EarlyRun(
            rid, group_ids[k], np.asarray(result.snapshot_steps), theta if states is None else states[k],
            np.linalg.norm(theta, axis=1), np.linalg.norm(theta - theta[0], axis=1),
            result.loss[k], result.acc[k], result.grad_norm[k], result.test_acc[:, k],
            float(result.final_metrics["final_test_acc"][k]), int(outcomes[k])))
    return out
