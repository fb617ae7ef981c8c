"""A fifth analysis for the registry's tests: each group's mean final training loss, scaled.

Everything an analysis needs is here (settings, group task, schemas, MLflow views) plus one
registry entry (:data:`TOY`); its answer is known: the mean of the finals rows the store holds.
"""

from __future__ import annotations

import pyarrow as pa
from pydantic import Field

from doodl.analysis.registry import Analysis
from doodl.analysis.settings import AnalysisSettings

METHOD_VERSION = 1


class ToySettings(AnalysisSettings):
    scale: float = Field(default=2.0, gt=0)


GROUP_SCHEMA = pa.schema([("group_id", pa.string()), ("n_runs", pa.int64()), ("run_ids", pa.list_(pa.string())),
                          ("scaled_mean_loss", pa.float64()), ("param_scale", pa.float64()),
                          ("settings_key", pa.string()), ("error", pa.string())])
RUN_SCHEMA = pa.schema([("run_id", pa.string()), ("group_id", pa.string()), ("status", pa.string()),
                        ("final_loss", pa.float64())])


def toy_for_group(sweep_root_uri: str, group_id: str, unit_ids: list[str], variants: list[dict],
                  settings: dict) -> dict:
    """The group's mean final training loss times ``scale``; each seed's own final loss."""
    import pyarrow.compute as pc

    from doodl.workers import shards

    cfg = ToySettings(**settings)
    run_ids = [v["run_id"] for v in variants]
    fs, root = shards.resolve_filesystem(sweep_root_uri)
    finals = shards.read_units(fs, root, shards.FINALS, unit_ids, filter=pc.field("run_id").isin(run_ids))
    loss = dict(zip(finals.column("run_id").to_pylist(), finals.column("final_train_loss").to_pylist()))
    runs = [{"run_id": r, "group_id": group_id, "status": "ok", "final_loss": float(loss[r])} for r in run_ids]
    mean = sum(r["final_loss"] for r in runs) / len(runs)
    return {"row": {"group_id": group_id, "n_runs": len(run_ids), "run_ids": run_ids, "error": None,
                    "scaled_mean_loss": cfg.scale * mean},
            "runs": runs, "pictures": {}}


def group_view(row: dict):
    return {"toy_scaled_mean_loss": row["scaled_mean_loss"]}, {"doodl.toy_note": "toy"}, []


def seed_view(run: dict):
    return {"toy_final_loss": run["final_loss"]}, {}, []


TOY = Analysis("toy", ToySettings, task=f"{__name__}:toy_for_group", method=__name__,
               group_view=group_view, seed_view=seed_view,
               table_columns=("group_id", "n_runs", "scaled_mean_loss", "error"),
               schemas=(GROUP_SCHEMA, RUN_SCHEMA), report_columns=("scaled_mean_loss",),
               summary=lambda groups_table, runs_table, groups: {"toy_groups_total": float(groups_table.num_rows)})
