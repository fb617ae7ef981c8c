"""``doodl status``: the state of a sweep's variants, read from the store alone.

A variant is ``ok``, ``diverged`` or ``stopped`` (by the sweep's early-stopping rule) once
its unit is committed (its final row says which),
``torn`` when its unit's shards are not sound, ``training`` while a driver holds the sweep's
training lease and its unit is not yet committed, ``failed`` when it is not trained, no
driver is at work and its unit's attempts failed (the store keeps each failed attempt's
cause), and ``pending`` when it is not trained and nothing was tried (a cancelled sweep's
rest, a unit never started). The next ``doodl sweep`` trains the failed and the pending.
"""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

from doodl.orchestrator.store import Holder, SweepStore, UnitState, live_holder
from doodl.workers.config import group_label, shown_axes
from doodl.workers.shards import FINAL_METRICS

# the summary's columns, in this order: a committed unit's runs by their final row, else its unit's state
STATES = ("ok", "diverged", "stopped", "training", "failed", UnitState.TORN.value, UnitState.PENDING.value)


def sweep_status(store: SweepStore, verify: str = "size") -> list[dict]:
    """One dict per variant: config, unit state, status, steps and final metrics.

    Units are checked by shard sizes (``verify="size"``: nothing downloaded) or in full
    (``"full"``: every shard's checksum, i.e. the whole sweep read once)."""
    store.read_sweep()  # refuses an unknown sweep id with a clear line
    variants = store.read_variants().to_pylist()
    columns = ["run_id", *shown_axes(variants), "seed"]
    unit_ids = sorted({v["unit_id"] for v in variants})
    states = store.unit_states(unit_ids, verify)
    at_work = live_holder(store, "training") is not None
    failed = store.failures([u for u in unit_ids if states[u].state != UnitState.COMMITTED])
    committed = [u for u in unit_ids if states[u].state == UnitState.COMMITTED]
    finals = {}
    if committed:
        table = store.read_unit_rows(
            "finals", committed, ["run_id", "status", "steps", *FINAL_METRICS]
        )
        finals = {r["run_id"]: r for r in table.to_pylist()}
    out = []
    for v in variants:
        st = states[v["unit_id"]]
        row = {k: v[k] for k in columns}
        row.update(group_id=v["group_id"], unit_id=v["unit_id"], attempt=st.attempt, problem=st.problem)
        f = finals.get(v["run_id"])
        if st.state == UnitState.COMMITTED and f:
            row.update(status=f["status"], steps=f["steps"], train_loss=f["final_train_loss"],
                       train_acc=f["final_train_acc"], test_acc=f["final_test_acc"])
        else:
            state = "training" if st.state == UnitState.PENDING and at_work else st.state.value
            attempts = failed.get(v["unit_id"])
            if attempts and st.state == UnitState.PENDING and not at_work:
                last = attempts[-1]
                state = "failed"
                row.update(attempt=last["attempt"],
                           problem=f"failed {len(attempts)} attempt(s), last at {last['time']}: {last['cause']}")
            row.update(status=state, steps=None, train_loss=None, train_acc=None, test_acc=None)
        out.append(row)
    return out


def group_counts(rows: list[dict]) -> dict[str, Counter]:
    """Variants per status (see :data:`STATES`) for each group, in the rows' order."""
    out: dict[str, Counter] = {}
    for r in rows:
        out.setdefault(r["group_id"], Counter())[r["status"]] += 1
    return out


def print_status(store: SweepStore, console: Console | None = None, verify: str = "size",
                 show_all: bool = False) -> list[dict]:
    """Print the summary (counts per status, over the sweep and per group), the units'
    problems, and with ``show_all`` the table of every variant; return the rows."""
    if console is None:
        console = Console()
        if not console.is_terminal:  # piped output: no 80-column squeeze
            console = Console(width=160)
    rows = sweep_status(store, verify)
    groups = group_counts(rows)
    first = {}
    for r in rows:
        first.setdefault(r["group_id"], r)
    n_units = len({r["unit_id"] for r in rows})
    console.print(f"sweep {store.sweep_id}: {len(rows)} variants in {len(groups)} groups, {n_units} units"
                  + "".join(f"; {_at_work(p, h)}" for p in ("training", "reducing")
                            if (h := live_holder(store, p)) is not None))
    summary = Table(show_edge=False, box=None, pad_edge=False)
    summary.add_column("group")
    for c in ("variants", *STATES):
        summary.add_column(c, justify="right")
    for gid, counts in groups.items():
        summary.add_row(group_label(first[gid]), str(sum(counts.values())), *(str(counts[s]) for s in STATES))
    total = sum(groups.values(), Counter())
    summary.add_row("all groups", str(len(rows)), *(str(total[s]) for s in STATES), style="bold")
    console.print(summary)
    console.print(", ".join(f"{n} {s}" for s, n in sorted(total.items())) + f" of {len(rows)} variants")
    if total["failed"]:
        console.print(f"{total['failed']} failed: their unit's attempts failed (the cause is below); "
                      "`doodl sweep SPEC` trains them again")
    if total["pending"]:
        console.print(f"{total['pending']} pending: not trained and no driver at work (cancelled, or not yet "
                      "started); `doodl sweep SPEC` trains them")
    for r in {r["unit_id"]: r for r in rows if r["problem"]}.values():
        console.print(f"[yellow]unit {r['unit_id']}: {r['problem']}[/]")
    if show_all:
        _print_variants(console, store, rows)
    return rows


def _at_work(purpose: str, holder: Holder) -> str:
    return f"{purpose} now by {holder.host} (pid {holder.pid}) since {holder.acquired}"


def _print_variants(console: Console, store: SweepStore, rows: list[dict]) -> None:
    """The table of every variant: config, status, attempt, steps and final metrics."""
    table = Table(title=f"sweep {store.sweep_id}", show_lines=False)
    config = [k for k in rows[0] if k not in ("group_id", "unit_id", "attempt", "problem", "status", "steps",
                                               "train_loss", "train_acc", "test_acc")] if rows else ["run_id"]
    cols = [*config, "status", "attempt", "steps", "train_loss", "train_acc", "test_acc"]
    for c in cols:
        table.add_column(c, justify="left" if c in ("run_id", "status") else "right")

    def fmt(x):
        if x is None:
            return "-"
        if isinstance(x, float):
            return f"{x:.4g}"
        return str(x)

    for r in rows:
        table.add_row(*(fmt(r[c]) for c in cols))
    console.print(table)
