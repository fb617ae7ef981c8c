"""Sweeps written to a store without Ray: for tests of what reads a store (status, ls),
which need its files, not the driver that writes them."""

from __future__ import annotations

from doodl.orchestrator.expand import expand, plan_units
from doodl.orchestrator.spec import parse_spec
from doodl.orchestrator.store import SweepStore
from doodl.workers import shards
from doodl.workers.engine import train_unit


def train_in_process(store_uri: str, spec: dict, units: int | None = None) -> SweepStore:
    """Initialise the spec's sweep as the driver does, then train and commit its first
    ``units`` units (all by default) in this process, as an actor does: same packing, same
    shards and commit markers, no actors to start."""
    parsed = parse_spec(spec)
    variants = expand(parsed)
    store = SweepStore(store_uri, parsed.name)
    store.initialise(parsed, variants, plan_units(parsed, variants))
    for unit in store.recorded_units(variants)[:units]:
        shards.write_unit(store.fs, store.root, unit.unit_id, train_unit(list(unit.variants)))
    return store
