"""``doodl status``: the state of a sweep's variants, read from the store alone."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from orchestrator.store import SweepStore
from workers.config import shown_axes


def sweep_status(store: SweepStore, verify: str = "size") -> list[dict]:
    """One dict per variant: config, unit state, status, steps and final metrics.

    Units are checked by shard sizes (``verify="size"``: nothing downloaded) or in full
    (``"full"``: every shard's checksum, i.e. the whole sweep read once)."""
    store.read_sweep()  # refuses an unknown sweep id with a clear line
    variants = store.read_variants().to_pylist()
    columns = ["run_id", *shown_axes(variants), "seed"]
    unit_ids = sorted({v["unit_id"] for v in variants})
    states = store.unit_states(unit_ids, verify)
    committed = [u for u in unit_ids if states[u].state == "committed"]
    finals = {}
    if committed:
        table = store.read_unit_rows(
            "finals", committed, ["run_id", "status", "steps", "final_train_loss", "final_train_acc", "final_test_acc"]
        )
        finals = {r["run_id"]: r for r in table.to_pylist()}
    out = []
    for v in variants:
        st = states[v["unit_id"]]
        row = {k: v[k] for k in columns}
        row.update(unit_id=v["unit_id"], attempt=st.attempt, problem=st.problem)
        f = finals.get(v["run_id"])
        if st.state == "committed" and f:
            row.update(status=f["status"], steps=f["steps"], train_loss=f["final_train_loss"],
                       train_acc=f["final_train_acc"], test_acc=f["final_test_acc"])
        else:
            row.update(status=st.state, steps=None, train_loss=None, train_acc=None, test_acc=None)
        out.append(row)
    return out


def print_status(store: SweepStore, console: Console | None = None, verify: str = "size") -> list[dict]:
    """Print the status table and a summary line; return the rows."""
    if console is None:
        console = Console()
        if not console.is_terminal:  # piped output: no 80-column squeeze
            console = Console(width=160)
    rows = sweep_status(store, verify)
    table = Table(title=f"sweep {store.sweep_id}", show_lines=False)
    config = [k for k in rows[0] if k not in ("unit_id", "attempt", "problem", "status", "steps", "train_loss",
                                               "train_acc", "test_acc")] if rows else ["run_id"]
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
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    console.print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f" of {len(rows)} variants")
    for r in {r["unit_id"]: r for r in rows if r["problem"]}.values():
        console.print(f"[yellow]unit {r['unit_id']}: {r['problem']}[/]")
    return rows
