"""Does MLflow show what the store holds? Checked at the end of ``sweep``, ``reduce`` and
``audit`` by reading the view back (never from what the command believes it logged): every
committed variant has a fully logged run, the sweep its parent, and every stored analysis
result is on its group's run and its seeds' runs, computed with the stored settings."""

from __future__ import annotations

from dataclasses import dataclass

from doodl.analysis.registry import REGISTRY
from doodl.orchestrator.store import ReductionStore, SweepStore, UnitState
from doodl.orchestrator.tracking._probe import TrackingUnavailable, one_line, probe, tracking_errors, use_short_http_timeouts
from doodl.orchestrator.tracking._sink import SweepView, read_view
from doodl.orchestrator.tracking._client import tracking_client


@dataclass
class ViewGap:
    """What the store holds and MLflow does not show."""

    sweep_id: str
    runs: int  # committed variants (and the sweep's parent) without a fully logged run
    expected_runs: int
    results: int  # stored results (an analysis on a group run or a seed's run) not in MLflow
    expected_results: int
    reason: str | None = None  # why MLflow could not be read at all

    @property
    def complete(self) -> bool:
        return self.runs == 0 and self.results == 0 and self.reason is None

    def line(self, tracking_uri: str, store_uri: str) -> str:
        """One line: how much is missing, why, and the command that catches up."""
        why = f" ({self.reason})" if self.reason else ""
        return (f"MLflow at {tracking_uri} lacks {self.runs} of {self.expected_runs} runs and {self.results} of "
                f"{self.expected_results} results of sweep {self.sweep_id}{why}; the store is complete: run "
                f"`doodl sync {self.sweep_id} --store {store_uri} --tracking-uri {tracking_uri}` to log them")


def _expected(store: SweepStore) -> tuple[set[str], list[tuple[str, dict]]]:
    """The committed variants' run ids, and each stored (analysis, group row)."""
    variants = store.read_variants().to_pylist()
    units = sorted({v["unit_id"] for v in variants})
    committed = {u for u, s in store.unit_states(units).items() if s.state == UnitState.COMMITTED}
    run_ids = {v["run_id"] for v in variants if v["unit_id"] in committed}
    results = [(name, row) for name in REGISTRY
               for row in ReductionStore(store.fs, store.root, name).reduced_groups().values()]
    return run_ids, results


def _missing(view: SweepView, run_ids: set[str], results: list[tuple[str, dict]]) -> tuple[int, int, int]:
    """(missing runs, missing results, expected results) of the view."""
    runs = len(run_ids - view.logged) + (view.parent is None and bool(run_ids))
    missing = expected = 0
    for name, row in results:
        logged, key = view.reduction_logged[name], row.get("settings_key")
        targets = [view.groups.get(row["group_id"])]
        if row.get("error") is None:  # a failed group's error goes on its group run only
            targets += [view.children.get(r) for r in row.get("run_ids") or []]
        for run in targets:
            expected += 1
            missing += run is None or logged.get(run) != key
    return runs, missing, expected


def view_gap(tracking_uri: str, experiment: str, store: SweepStore) -> ViewGap:
    """Compare the MLflow view of ``store``'s sweep with the store."""
    run_ids, results = _expected(store)
    expected_runs = len(run_ids) + bool(run_ids)
    everything = ViewGap(store.sweep_id, expected_runs, expected_runs, 0, 0)
    _, everything.results, everything.expected_results = _missing(SweepView(), set(), results)
    use_short_http_timeouts()
    try:
        probe(tracking_uri)
        client = tracking_client(tracking_uri)
        exp = client.get_experiment_by_name(experiment)
        view = read_view(client, exp.experiment_id, store.sweep_id) if exp is not None else SweepView()
    except TrackingUnavailable as exc:
        everything.reason = f"{exc.kind}: {exc}"
        return everything
    except tracking_errors() as exc:
        everything.reason = one_line(exc)
        return everything
    runs, missing, expected = _missing(view, run_ids, results)
    return ViewGap(store.sweep_id, runs, expected_runs, missing, expected)
