"""``doodl report``: a sweep as one static web page (``index.html`` plus its images).

Everything comes from the store: the recorded spec and grid, unit states and final
metrics, the reduction's tables and pictures, the audits. No server is needed: the page
opens from a file URL, and is logged as an artifact of the sweep's MLflow parent run when
a tracking URI is given. Each run links to its MLflow run when the tracking server's web
address is known. The page is written by Jinja2 (autoescaped); its only script sorts
tables. Per-group pictures sit in collapsed sections and load lazily, so the index of a
sweep with a thousand variants stays small and opens fast.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import yaml

from doodl.orchestrator.expand import AXES
from doodl.analysis.registry import REGISTRY
from doodl.orchestrator.early_stop import describe, read_stopped_phases
from doodl.orchestrator.status import sweep_status
from doodl.orchestrator.store import SweepStore
from doodl.workers.config import group_label
from doodl.workers.timestamps import READABLE_UTC, utc_timestamp

SWEEP_PICTURES = ("phase_diagram.png", "learning_curves.png", "koopman_classes.png", "early_outcome.png")  # first, in order
GROUP_SHOWN = ("morse_graph.png", "morse_sets.png", "ntk.png")  # per-group pictures on the page
DEFAULT_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves a SQLite database by default
# MLflow 3.17's UI picks GenAI or model-training pages from this query (or the user's last
# choice), not from the experiment's kind tag: links ask for the training runs
TRAINING_VIEW = "?workflowType=machine_learning"


@dataclass
class ReportOutcome:
    """Where ``doodl report`` wrote the page, and what it holds."""

    index: Path
    n_groups: int
    n_runs: int
    n_pictures: int
    mlflow_artifact: str | None = None  # the parent run's id, when logged
    mlflow_error: str | None = None  # why MLflow was left out (unreachable): no links, not logged


def _read_table(store: SweepStore, name: str) -> list[dict]:
    try:
        with store.fs.open_input_file(store.layout.reduction_table(name)) as f:
            return pq.read_table(f).to_pylist()
    except FileNotFoundError:
        return []


def _copy(store: SweepStore, src: str, dest: Path) -> bool:
    try:
        with store.fs.open_input_stream(src) as f:
            payload = f.read()
    except FileNotFoundError:
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(payload)
    return True


def _audits(store: SweepStore) -> list[dict]:
    """The audits of this sweep (``SWEEP/audits/ID/report.json``), newest first."""
    selector = pafs.FileSelector(store.layout.audits_dir, allow_not_found=True)
    out = []
    for info in store.fs.get_file_info(selector):
        if info.type != pafs.FileType.Directory:
            continue
        try:
            with store.fs.open_input_stream(store.layout.audit_record(info.base_name)) as f:
                doc = json.loads(f.read())
        except (FileNotFoundError, json.JSONDecodeError):
            continue
        groups = doc.get("groups", [])
        findings = [f"{', '.join(f'{k} {v}' for k, v in g['key'].items())}: {'; '.join(g['findings'])}"
                    for g in groups if g.get("findings")]
        out.append({"created": doc.get("created", ""), "baseline": doc.get("baseline", ""),
                    "verdict": doc.get("verdict", ""), "n_groups": len(groups), "n_drifted": len(findings),
                    "findings": findings,
                    "setup_change": ", ".join(f"{k} {a} -> {b}" for k, (a, b) in doc.get("setup_change", {}).items())})
    return sorted(out, key=lambda a: a["created"], reverse=True)


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if value != value else f"{value:.4g}"
    return str(value)


NO_VALUE = "-"  # a verdict column of a group without a verdict (too few runs)
# the Morse columns of the groups table: held-out validity against outcomes found without the graph
MORSE_COLUMNS = ("n_outcomes", "n_attractors", "ari", "outcome_accuracy", "outcome_chance", "baseline_accuracy",
                 "versus_baseline")


def _morse_view(morse: dict) -> dict:
    """A group's Morse results as the page shows them: the table's columns (a dash each when
    the group has no verdict), the reason for no verdict, and the secondary figures."""
    reason = morse.get("no_verdict") or None
    view = {k: NO_VALUE if reason else _fmt(morse.get(k)) for k in MORSE_COLUMNS}
    sizes = morse.get("outcome_sizes")
    view.update(no_verdict=reason, outcome_sizes=", ".join(map(str, sizes)) if sizes and not reason else "",
                self_basin_accuracy=_fmt(morse.get("self_basin_accuracy")),
                self_basin_chance=_fmt(morse.get("self_basin_chance")),
                versus_class={"beats": "ok", "below": "bad"}.get(morse.get("versus_baseline") or "", ""))
    return view


def _morse_legend(verdict: bool) -> list[str]:
    """The key of the Morse pictures in their own words, each style with how each picture
    draws it (the pictures show a sample instead)."""
    from doodl.analysis.morse import STYLE_LOOKS, picture_key

    return [f"{text} (graph: {STYLE_LOOKS[style][0]}; sets: {STYLE_LOOKS[style][1]})" if style else text
            for style, text in picture_key(verdict=verdict)]


def _warnings(tables: dict[str, dict], gid: str, skip: str | None) -> dict[str, list[str]]:
    """Each analysis's warnings for the group (the Morse reason for no verdict, shown on its
    own, left out)."""
    out = {}
    for name, table in tables.items():
        found = [w for w in (table.get(gid, {}).get("warnings") or []) if w != skip]
        if found:
            out[name] = found
    return out


def write_report(store: SweepStore, out_dir: str | Path | None = None, *, tracking_uri: str | None = None,
                 ui_url: str | None = None) -> ReportOutcome:
    """Write the sweep's report into ``out_dir`` (default ``SWEEP_ID-report`` in the working
    directory) and, with ``tracking_uri``, log it under ``report/`` on the parent run.
    ``ui_url``: the MLflow web address runs link to (default: the tracking URI when it is a
    web address, else ``mlflow ui``'s own default)."""
    import jinja2

    doc = store.read_sweep()
    out = Path(out_dir or f"{store.sweep_id}-report")
    if out.exists():
        shutil.rmtree(out / "img", ignore_errors=True)
    (out / "img").mkdir(parents=True, exist_ok=True)
    variants = store.read_variants().to_pylist()
    status = {r["run_id"]: r for r in sweep_status(store)}
    tables = {name: {r["group_id"]: r for r in _read_table(store, name)} for name in REGISTRY}
    stopped = read_stopped_phases(store)  # groups early stopping left without a taxonomy

    pictures = 0
    sweep_pics = []
    infos = store.fs.get_file_info(pafs.FileSelector(store.layout.plots_dir, allow_not_found=True))
    names = sorted(i.base_name for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(".png"))
    for name in [n for n in SWEEP_PICTURES if n in names] + [n for n in names if n not in SWEEP_PICTURES]:
        if _copy(store, store.layout.picture(name), out / "img" / name):
            sweep_pics.append({"file": f"img/{name}", "name": name.removesuffix(".png").replace("_", " "),
                               "id": name.removesuffix(".png").replace("_", "-")})
            pictures += 1

    experiment = doc.get("name", store.sweep_id)
    exp_id, mlflow_ids, parent, mlflow_error = None, {}, None, None
    if tracking_uri:
        from doodl.orchestrator.tracking import one_line, probe, sweep_run_ids, tracking_errors, use_short_http_timeouts

        use_short_http_timeouts()
        database = tracking_uri.removeprefix("sqlite:///") if tracking_uri.startswith("sqlite:///") else None
        if database is not None and not Path(database).is_file():
            # MLflow's client would create an empty database there: a report only reads
            mlflow_error = f"no MLflow database at {database}"
        else:
            try:
                probe(tracking_uri)
                exp_id, mlflow_ids, parent = sweep_run_ids(tracking_uri, experiment, store.sweep_id)
            except tracking_errors() as exc:
                mlflow_error = one_line(exc)
    base_url = (ui_url or (tracking_uri if tracking_uri and tracking_uri.startswith("http") else DEFAULT_UI)).rstrip("/")

    groups: dict[str, list[dict]] = {}
    for v in variants:
        groups.setdefault(v["group_id"], []).append(v)
    swept = [a for a in AXES if len({v[a] for v in variants}) > 1]
    group_rows = []
    legends = {verdict: _morse_legend(verdict) for verdict in (False, True)}
    for gid, rows in sorted(groups.items(), key=lambda kv: group_label(kv[1][0])):
        morse, tax = tables["morse"].get(gid, {}), tables["taxonomy"].get(gid, {})
        koop, ntk = tables["koopman"].get(gid, {}), tables["ntk"].get(gid, {})
        pics = []
        for name in GROUP_SHOWN:
            if _copy(store, store.layout.picture(name, gid), out / "img" / gid / name):
                pics.append({"file": f"img/{gid}/{name}", "name": name.removesuffix(".png").replace("_", " ")})
                pictures += 1
        done = [status[r["run_id"]] for r in rows if r["run_id"] in status]
        group_rows.append({
            "id": gid, "label": group_label(rows[0]), "axes": {a: rows[0][a] for a in swept},
            "n_runs": len(rows), "n_ok": sum(1 for d in done if d["status"] == "ok"),
            "n_stopped": sum(1 for d in done if d["status"] == "stopped"),
            "phase": tax.get("phase") or (f"{stopped[gid]['predicted_phase']} (predicted: runs stopped)"
                                          if stopped.get(gid, {}).get("predicted_phase") else ""), "train_loss": _fmt(tax.get("train_loss")),
            "test_acc": _fmt(tax.get("test_acc")), "hessian_top": _fmt(tax.get("hessian_top")),
            "mc": _fmt(tax.get("mc")), "cka": _fmt(tax.get("cka")),
            "morse": _morse_view(morse), "koopman_class": _fmt(koop.get("koopman_class")),
            "modulus_1": _fmt(koop.get("modulus_1")), "ntk_transition": _fmt(ntk.get("transition_step")),
            # what an analysis's registry entry shows per group beyond the sections above
            "results": {name: {c: _fmt(tables[name][gid].get(c)) for c in a.report_columns}
                        for name, a in REGISTRY.items() if a.report_columns and gid in tables[name]},
            "errors": {name: tables[name][gid]["error"] for name in REGISTRY
                       if gid in tables[name] and tables[name][gid].get("error")},
            "warnings": _warnings(tables, gid, morse.get("no_verdict")),
            "pictures": pics,
            "morse_legend": legends[not morse.get("no_verdict")]
            if any(p["name"].startswith("morse") for p in pics) else [],
        })

    runs = []
    for v in sorted(variants, key=lambda v: (group_label(v), v["seed"])):
        s = status.get(v["run_id"], {})
        mid = mlflow_ids.get(v["run_id"])
        runs.append({"run_id": v["run_id"], "group": v["group_id"], "seed": v["seed"],
                     "status": s.get("status", ""), "train_loss": _fmt(s.get("train_loss")),
                     "test_acc": _fmt(s.get("test_acc")), "problem": s.get("problem") or "",
                     "url": f"{base_url}/#/experiments/{exp_id}/runs/{mid}{TRAINING_VIEW}" if mid and exp_id else None})
    counts: dict[str, int] = {}
    for r in runs:
        counts[r["status"]] = counts.get(r["status"], 0) + 1

    env = jinja2.Environment(loader=jinja2.PackageLoader("doodl.orchestrator", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)
    html = env.get_template("report.html.j2").render(
        sweep_id=store.sweep_id, experiment=experiment, created=doc.get("created", ""),
        version=doc.get("doodl_version", ""), written=f"{utc_timestamp(fmt=READABLE_UTC)} UTC",
        spec=yaml.safe_dump(doc.get("spec", {}), sort_keys=False),
        grid={a: sorted({v[a] for v in variants}, key=str) for a in swept}, n_variants=len(variants),
        counts=sorted(counts.items()), groups=group_rows, runs=runs, sweep_pictures=sweep_pics,
        audits=_audits(store), mlflow_url=f"{base_url}/#/experiments/{exp_id}{TRAINING_VIEW}" if exp_id else None,
        failures=[r for r in runs if r["status"] not in ("ok", "stopped")],  # stopped early on purpose
        early_stop=_early_stop_line(doc),
    )
    index = out / "index.html"
    index.write_text(html, encoding="utf-8")
    outcome = ReportOutcome(index, len(group_rows), len(runs), pictures, mlflow_error=mlflow_error)
    if tracking_uri and parent:
        from doodl.orchestrator.tracking import log_report

        try:
            log_report(tracking_uri, parent, out)
            outcome.mlflow_artifact = parent
        except tracking_errors() as exc:
            outcome.mlflow_error = one_line(exc)
    return outcome


def _early_stop_line(doc: dict) -> str:
    """The sweep's early-stopping rule and its held-out figures, if it has one."""
    stop, section = doc.get("early_stop_rule"), doc.get("spec", {}).get("early_stop")
    return describe(stop, section["at"]) if stop and section else ""
