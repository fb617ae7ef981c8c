"""``doodl audit``: has a training setup drifted into another region of the landscape?

An audit trains (or reuses) the sweep of a spec, reduces it, and compares it group by
group with a baseline sweep: a sweep id in the store, or, for ``last``, the sweep the
previous audit of the same spec name (recorded in MLflow) looked at, never the audited
sweep itself (see :func:`last_baseline_id`).

Matching groups. Two sweeps of one setup differ in what the setup changed (say the label
noise went from 0 to 0.3): config fields that have a single value in each sweep but not
the same one are the *setup change*, reported as such and left out of the matching; groups
are then matched by the remaining config values (width, batch size, ...). Per matched
group the audit reports a changed phase, a changed number of attractors, and shifts of
training loss, test accuracy, top Hessian eigenvalue, Hessian trace and mc beyond the
spec's ``audit.tolerances``; unmatched groups are listed. The verdict is ``drift`` when
anything drifted (exit 1), ``ok`` otherwise (exit 0).

Runs stopped early (``early_stop:``) are not compared with runs trained to the end: the
reduction's group results come from the runs that finished, and a group left with fewer
than two of them on either side is noted as not compared, never counted as drift.

Outputs: ``STORE/SWEEP/audits/AUDIT_ID/{report.md, report.json, phase_diagrams.png}`` and
an MLflow run (tag ``doodl.role = audit``) in the spec's experiment, tagged with its
verdict and baseline, with the report as artifacts.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import pyarrow.parquet as pq

from doodl.orchestrator.spec import SweepSpec, ToleranceSpec
from doodl.orchestrator.store import StoreError, SweepLease, SweepStore
from doodl.orchestrator.store.layout import AUDIT_PICTURE, AUDIT_RECORD, AUDIT_REPORT
from doodl.orchestrator.tracking import audit_history, console, log_audit, one_line, tracking_errors
from doodl.workers.config import match_fields
from doodl.workers.store_files import write_atomic
from doodl.workers.timestamps import COMPACT_UTC, utc_timestamp

# what makes two groups the same setup: the data, the family, every grid axis, the training length
MATCH_FIELDS = match_fields()
RELATIVE = ("hessian_top", "hessian_trace")


@dataclass
class GroupDrift:
    key: dict
    audited_group: str
    baseline_group: str
    findings: list[str] = field(default_factory=list)
    note: str = ""  # what was not compared (runs stopped early), not drift


@dataclass
class AuditReport:
    """The comparison of one sweep with its baseline."""

    sweep_id: str
    baseline: str
    setup_change: dict[str, tuple]
    groups: list[GroupDrift]
    unmatched: list[dict]
    verdict: str = "ok"
    created: str = ""
    files: dict[str, str] = field(default_factory=dict)  # report files in the store
    mlflow_run: str | None = None  # the audit's MLflow run, once logged

    @property
    def drifted(self) -> list[GroupDrift]:
        return [g for g in self.groups if g.findings]

    def to_json(self) -> dict:
        return {"sweep_id": self.sweep_id, "baseline": self.baseline, "verdict": self.verdict,
                "created": self.created, "setup_change": {k: list(v) for k, v in self.setup_change.items()},
                        "groups": [asdict(g) for g in self.groups], "unmatched": self.unmatched}

    def to_markdown(self) -> str:
        lines = [f"# Landscape audit of `{self.sweep_id}` against `{self.baseline}`", "",
                 f"Verdict: **{self.verdict}** ({len(self.drifted)} of {len(self.groups)} matched groups drifted; "
                 f"created {self.created})", ""]
        if self.setup_change:
            lines += ["Setup change: " + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in self.setup_change.items()), ""]
        lines += ["| group | findings |", "|---|---|"]
        for g in self.groups:
            label = ", ".join(f"{k} {v}" for k, v in g.key.items()) or "(only group)"
            said = "; ".join(g.findings) or "no drift"
            lines.append(f"| {label} | {said}{f' ({g.note})' if g.note else ''} |")
        if self.unmatched:
            lines += ["", "Groups without a counterpart: " + "; ".join(json.dumps(u) for u in self.unmatched)]
        return "\n".join(lines) + "\n"


def _group_rows(store: SweepStore) -> dict[str, dict]:
    """Per group: its config (from variants.parquet), taxonomy row and Morse row."""
    variants = store.read_variants().to_pylist()
    rows: dict[str, dict] = {}
    for v in variants:
        rows.setdefault(v["group_id"], {"config": {k: v[k] for k in MATCH_FIELDS}, "runs": 0, "stopped": 0})
        rows[v["group_id"]]["runs"] += 1
    finals = store.read_unit_rows("finals", sorted({v["unit_id"] for v in variants}), ["run_id", "status"])
    group_of = {v["run_id"]: v["group_id"] for v in variants}
    for rid, status in zip(finals.column("run_id").to_pylist(), finals.column("status").to_pylist()):
        if status == "stopped":
            rows[group_of[rid]]["stopped"] += 1
    for name in ("taxonomy", "morse"):
        path = store.layout.reduction_table(name)
        try:
            with store.fs.open_input_file(path) as f:
                table = pq.read_table(f).to_pylist()
        except FileNotFoundError:
            raise StoreError(f"sweep {store.sweep_id!r} has no {name} results; run `doodl reduce` first") from None
        for r in table:
            if r["group_id"] in rows:
                rows[r["group_id"]][name] = r
    return rows


def compare(audited: dict[str, dict], baseline: dict[str, dict], tolerances: ToleranceSpec,
            *, phase_change: bool = True, attractor_change: bool = True) -> tuple[dict, list[GroupDrift], list[dict]]:
    """Match groups and list what drifted (pure: takes the rows of :func:`_group_rows`).

    Returns ``(setup_change, matched groups with findings, unmatched group configs)``.
    """
    def values(rows, k):
        return {r["config"].get(k) for r in rows.values()}

    setup_change = {}
    for k in MATCH_FIELDS:
        a, b = values(audited, k), values(baseline, k)
        if len(a) == 1 and len(b) == 1 and a != b:
            setup_change[k] = (next(iter(b)), next(iter(a)))  # baseline -> audited
    keys = [k for k in MATCH_FIELDS if k not in setup_change
            and (len(values(audited, k)) > 1 or len(values(baseline, k)) > 1)]

    def key_of(r):
        return tuple(r["config"].get(k) for k in keys)

    base_by_key = {key_of(r): gid for gid, r in baseline.items()}
    matched, unmatched = [], []
    tol = tolerances.model_dump()
    for gid, row in sorted(audited.items(), key=lambda kv: key_of(kv[1])):
        bid = base_by_key.pop(key_of(row), None)
        if bid is None:
            unmatched.append({"sweep": "audited", **dict(zip(keys, key_of(row)))})
            continue
        drift = GroupDrift(dict(zip(keys, key_of(row))), gid, bid)
        a, b = row.get("taxonomy") or {}, baseline[bid].get("taxonomy") or {}
        drift.note = _stopped_note(row, baseline[bid])
        if drift.note and any(_too_few_finished(r) for r in (row, baseline[bid])):
            matched.append(drift)  # no group result to compare: its runs were stopped on purpose
            continue
        if a.get("error") or b.get("error"):
            drift.findings.append(f"taxonomy failed ({a.get('error') or b.get('error')})")
        else:
            if phase_change and a["phase"] != b["phase"]:
                drift.findings.append(f"phase {b['phase']} -> {a['phase']}")
            for metric, limit in tol.items():
                old, new = b[metric], a[metric]
                change = abs(new - old) / max(abs(old), 1e-12) if metric in RELATIVE else abs(new - old)
                if change > limit:
                    how = f"{change:.0%}" if metric in RELATIVE else f"{new - old:+.3g}"
                    drift.findings.append(f"{metric} {old:.4g} -> {new:.4g} ({how}, tolerance {limit:g})")
        ma, mb = row.get("morse") or {}, baseline[bid].get("morse") or {}
        if attractor_change and _basins_trusted(ma) and _basins_trusted(mb) \
                and ma["n_attractors"] != mb["n_attractors"]:
            drift.findings.append(f"attractors {mb['n_attractors']} -> {ma['n_attractors']}")
        matched.append(drift)
    unmatched += [{"sweep": "baseline", **dict(zip(keys, k))} for k in base_by_key]
    return setup_change, matched, unmatched


def _stopped_note(audited: dict, baseline: dict) -> str:
    """Which side stopped runs early, and what that leaves compared."""
    parts = [f"{r['stopped']} of {r['runs']} runs stopped early in the {side}"
             for side, r in (("audited sweep", audited), ("baseline", baseline)) if r.get("stopped")]
    if not parts:
        return ""
    few = any(_too_few_finished(r) for r in (audited, baseline))
    return "; ".join(parts) + (": not compared" if few else ": compared on the runs that finished")


def _too_few_finished(rows: dict) -> bool:
    """Runs stopped early left fewer than the 2 the taxonomy compares."""
    return bool(rows.get("stopped")) and rows.get("runs", 0) - rows["stopped"] < 2


TRUSTED_ARI = 0.8  # end basins this close to the runs' outcomes: the attractor count counts outcomes


def _basins_trusted(morse_row: dict) -> bool:
    """A group's basin structure is compared only when its graph sees the runs' real
    outcomes: a verdict (enough runs), end basins that match the outcome modes (adjusted
    Rand index at least ``TRUSTED_ARI``) and held-out outcome predictions no worse than the
    nearest-neighbour baseline's. Otherwise its attractor count says nothing about training."""
    if not morse_row or morse_row.get("error") or morse_row.get("no_verdict"):
        return False
    ari = morse_row.get("ari")
    return ari is not None and ari >= TRUSTED_ARI and morse_row.get("versus_baseline") in ("beats", "matches")


def side_by_side(audited: SweepStore, baseline: SweepStore) -> bytes:
    """The two sweeps' phase diagrams next to each other (PNG)."""
    import io

    import matplotlib.image as mpimg

    from doodl.analysis.figures import png, pyplot

    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(12, 5), dpi=110)
    for ax, store, title in ((axes[0], baseline, "baseline"), (axes[1], audited, "audit")):
        ax.axis("off")
        ax.set_title(f"{title}: {store.sweep_id}", fontsize=10)
        try:
            with store.fs.open_input_file(store.layout.picture("phase_diagram.png")) as f:
                ax.imshow(mpimg.imread(io.BytesIO(f.read()), format="png"))
        except FileNotFoundError:
            ax.text(0.5, 0.5, "no phase diagram", ha="center")
    return png(fig)


def resolve_baseline(ref: str, spec: SweepSpec, store_uri: str, tracking_uri: str,
                     audited: str | None = None) -> SweepStore:
    """The baseline sweep: ``ref`` itself, or for ``last`` what the spec's audits compared
    last (:func:`last_baseline_id`), never the sweep being audited.

    ``audited`` is the id of the sweep this audit audits; ``None`` means the spec's own sweep
    (``spec.name``), which is what an audit without ``--fresh`` trains or reuses.
    """
    if ref == "last":
        history = audit_history(spec.name, tracking_uri)
        if not history:
            raise StoreError(f"--baseline last: no earlier audit of {spec.name!r} in MLflow at {tracking_uri}")
        ref = last_baseline_id(history, audited or spec.name)
    store = SweepStore(store_uri, ref)
    store.read_sweep()  # refuses an unknown (or since deleted) sweep with one line
    return store


def last_baseline_id(history: list[dict], audited: str) -> str:
    """The sweep ``--baseline last`` means for sweep ``audited``, given the spec's audits
    newest first (:func:`audit_history`).

    "Compare with what I audited last time": the sweep of the newest audit of another sweep.
    When every earlier audit was of ``audited`` itself (an audit rerun without ``--fresh``),
    the baseline the newest of them used, so a rerun compares with what it compared with
    before. A sweep is never its own baseline: with nothing else on record, one line refuses.
    """
    others = [a["sweep_id"] for a in history if a.get("sweep_id") and a["sweep_id"] != audited]
    if others:
        return others[0]
    earlier = [a["baseline"] for a in history if a.get("baseline") and a["baseline"] != audited]
    if earlier:
        return earlier[0]
    raise StoreError(f"--baseline last: every earlier audit compared sweep {audited!r} with itself; "
                     "name a baseline sweep instead")


def write_report(store: SweepStore, baseline: SweepStore, report: AuditReport) -> dict[str, str]:
    """report.md, report.json and phase_diagrams.png under ``SWEEP/audits/AUDIT_ID``."""
    fs = store.fs
    audit_id = report.created.replace("-", "").replace(":", "")
    files = {AUDIT_REPORT: report.to_markdown().encode(), AUDIT_RECORD: json.dumps(report.to_json(), indent=1).encode(),
             AUDIT_PICTURE: side_by_side(store, baseline)}
    out = {}
    for name, payload in files.items():
        out[name] = store.layout.audit_file(audit_id, name)
        write_atomic(fs, out[name], payload)
    return out


def run_audit(spec: SweepSpec, baseline_ref: str, *, store_uri: str, tracking_uri: str, address: str | None = None,
              show_progress: bool = True, fresh: bool = False) -> AuditReport:
    """Train (or reuse) and reduce the spec's sweep, compare it with the baseline, write the
    report and log the audit run. Raises StoreError/SpecError on bad input.

    ``fresh`` trains the spec anew under the id ``NAME-YYYYMMDDTHHMMSSZ`` (a recurring audit:
    the spec is the same, what it trains on or with may have changed).

    One audit of a spec at a time: the audit holds the ``auditing`` lease of the spec's name
    (``STORE/NAME/_leases/auditing.json``) while it runs, so a scheduled audit that starts
    while the previous one still runs refuses (:class:`doodl.orchestrator.store.LeaseHeld`, exit 2)
    before it trains anything. KubeRay's RayCronJob has no concurrency policy; this is it."""
    with SweepLease(SweepStore(store_uri, spec.name), "auditing"):
        return _audit(spec, baseline_ref, store_uri=store_uri, tracking_uri=tracking_uri, address=address,
                      show_progress=show_progress, fresh=fresh)


def _audit(spec: SweepSpec, baseline_ref: str, *, store_uri: str, tracking_uri: str, address: str | None,
           show_progress: bool, fresh: bool) -> AuditReport:
    from doodl.orchestrator.driver import run_sweep
    from doodl.orchestrator.reduce import run_reduce

    sweep_id = f"{spec.name}-{utc_timestamp(fmt=COMPACT_UTC)}"[:100] if fresh else None
    baseline = resolve_baseline(baseline_ref, spec, store_uri, tracking_uri, audited=sweep_id or spec.name)
    for name in ("taxonomy", "morse"):
        if baseline.fs.get_file_info(baseline.layout.reduction_table(name)).type.name != "File":
            raise StoreError(f"baseline sweep {baseline.sweep_id!r} has no {name} results; run `doodl reduce "
                             f"{baseline.sweep_id}` first")
    outcome = run_sweep(spec, store_uri=store_uri, tracking_uri=tracking_uri, address=address,
                        show_progress=show_progress, sweep_id=sweep_id)
    if outcome.failed_units:
        raise RuntimeError(f"{len(outcome.failed_units)} units failed to train; run the audit again")
    store = SweepStore(store_uri, outcome.sweep_id)
    run_reduce(store, tracking_uri=tracking_uri, settings=spec.reduce, address=address, show_progress=show_progress)
    setup, groups, unmatched = compare(_group_rows(store), _group_rows(baseline), spec.audit.tolerances,
                                       phase_change=spec.audit.phase_change,
                                       attractor_change=spec.audit.attractor_change)
    report = AuditReport(store.sweep_id, baseline.sweep_id, setup, groups, unmatched,
                         created=utc_timestamp())
    report.verdict = "drift" if report.drifted or unmatched else "ok"
    files = write_report(store, baseline, report)
    report.files = files
    try:
        report.mlflow_run = log_audit(tracking_uri, spec.name, report, files, store.fs)
    except tracking_errors() as exc:  # the report is in the store; MLflow can catch up later
        console.print(f"[yellow]warning:[/] the audit run could not be logged to MLflow ({one_line(exc)})")
    report.files = files
    return report
