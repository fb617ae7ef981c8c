"""An audit in MLflow: one run in the spec's experiment, tagged with its verdict, baseline
and sweep, with the report as artifacts."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from doodl.orchestrator.tracking._probe import probe
from doodl.orchestrator.tracking._sink import MlflowSink
from doodl.orchestrator.tracking.tags import TAG_BASELINE, TAG_ROLE, TAG_SPEC, TAG_SWEEP, TAG_VERDICT


def log_audit(tracking_uri: str, spec_name: str, report, files: dict[str, str], fs) -> str:
    """Log ``report`` (an :class:`doodl.orchestrator.audit.AuditReport`) and its ``files`` (store
    paths on ``fs``); return the MLflow run id."""
    from mlflow.entities import Metric, RunTag

    probe(tracking_uri)
    sink = MlflowSink(tracking_uri, spec_name, report.sweep_id)
    run = sink.client.create_run(sink.experiment_id, run_name=f"audit-{report.created}", tags={
        TAG_ROLE: "audit", TAG_SWEEP: report.sweep_id, TAG_BASELINE: report.baseline,
        TAG_VERDICT: report.verdict, TAG_SPEC: spec_name})
    now = int(time.time() * 1000)
    sink.client.log_batch(run.info.run_id, metrics=[
        Metric("groups_matched", float(len(report.groups)), now, 0),
        Metric("groups_drifted", float(len(report.drifted)), now, 0),
        Metric("groups_unmatched", float(len(report.unmatched)), now, 0)],
        tags=[RunTag("doodl.setup_change", json.dumps({k: list(v) for k, v in report.setup_change.items()}))])
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in files.items():
            local = Path(tmp) / name
            with fs.open_input_stream(path) as f:
                local.write_bytes(f.read())
            sink.client.log_artifact(run.info.run_id, str(local), artifact_path="audit")
    sink.client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id
