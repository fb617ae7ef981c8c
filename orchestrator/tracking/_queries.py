"""Reading the MLflow view back: every page of a search, the sweep's run ids (the report's
links), the audits of a spec (``doodl audit --history`` and ``--baseline last``); and the
report's upload to its parent run."""

from __future__ import annotations

from collections.abc import Iterator

from doodl.orchestrator.tracking.tags import TAG_BASELINE, TAG_ROLE, TAG_RUN, TAG_SWEEP, TAG_VERDICT
from doodl.workers.timestamps import READABLE_UTC, utc_timestamp
from doodl.orchestrator.tracking._client import tracking_client

PAGE = 1000  # MLflow's largest page of search results


def search_all(client, experiment_ids: list[str], filter_string: str = "", order_by: list[str] | None = None) -> Iterator:
    """Every run matching ``filter_string``, page after page (a single search stops at
    :data:`PAGE` runs)."""
    token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string, order_by=order_by, max_results=PAGE,
                                  page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def sweep_run_ids(tracking_uri: str, experiment: str, sweep_id: str) -> tuple[str | None, dict[str, str], str | None]:
    """(experiment id, doodl run id -> MLflow run id, parent run id) of the sweep."""
    client = tracking_client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None, {}, None
    runs = list(search_all(client, [exp.experiment_id], f"tags.`{TAG_SWEEP}` = '{sweep_id}'"))
    children = {r.data.tags[TAG_RUN]: r.info.run_id for r in runs
                if r.data.tags.get(TAG_ROLE) == "child" and TAG_RUN in r.data.tags}
    parent = next((r.info.run_id for r in runs if r.data.tags.get(TAG_ROLE) == "parent"), None)
    return exp.experiment_id, children, parent


def audit_history(spec_name: str, tracking_uri: str) -> list[dict]:
    """Past audits of a spec, newest first, from MLflow (all of them: every page)."""
    client = tracking_client(tracking_uri)
    exp = client.get_experiment_by_name(spec_name)
    if exp is None:
        return []
    runs = search_all(client, [exp.experiment_id], f"tags.`{TAG_ROLE}` = 'audit'", ["attributes.start_time DESC"])
    return [{"run_id": r.info.run_id, "started": utc_timestamp(r.info.start_time / 1000, READABLE_UTC),
             "sweep_id": r.data.tags.get(TAG_SWEEP), "baseline": r.data.tags.get(TAG_BASELINE),
             "verdict": r.data.tags.get(TAG_VERDICT), "drifted": int(r.data.metrics.get("groups_drifted", 0))}
            for r in runs]


def log_report(tracking_uri: str, parent_run_id: str, directory) -> None:
    """Upload a report directory under ``report/`` on the sweep's parent run."""
    tracking_client(tracking_uri).log_artifacts(parent_run_id, str(directory), artifact_path="report")
