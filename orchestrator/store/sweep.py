"""One sweep's directory in a store: ``sweep.json``, ``variants.parquet`` and the state of
each unit ("which units are done?"). Its paths come from :mod:`.layout`; the per-unit shards
and commit markers are read through :mod:`doodl.workers.shards`.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from dataclasses import MISSING, dataclass
from enum import Enum
from importlib.metadata import PackageNotFoundError, version

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from doodl.orchestrator.expand import WorkUnit
from doodl.orchestrator.spec import SWEEP_NAME, SweepSpec
from doodl.orchestrator.store.layout import SweepLayout, sweep_root
from doodl.workers import shards
from doodl.workers.config import VariantConfig
from doodl.workers.store_files import read_bytes, write_atomic
from doodl.workers.timestamps import utc_timestamp

DEFAULT_STORE = "./doodl-store"
ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")  # run, group and unit ids: hashes, never user text


class StoreError(ValueError):
    """A store or sweep that cannot be used; ``str()`` is the one line shown to the user."""


def doodl_version() -> str:
    try:
        return version("doodl")
    except PackageNotFoundError:  # running from a source tree without installing
        return "0+unknown"


def _result_spec(spec: SweepSpec) -> dict:
    """The parts of a spec that change training results (resources only change how fast,
    reduce and audit settings only what is computed from the stored trajectories). Early
    stopping changes them; when off it is left out, so sweeps from before it keep their ids."""
    out = spec.model_dump(mode="json", exclude={"resources", "reduce", "audit"})
    if out.get("early_stop") is None:
        out.pop("early_stop", None)
    return out


def _differences(a, b, path: str = "") -> set[str]:
    """Dotted paths where two JSON documents differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: set[str] = set()
        for key in set(a) | set(b):
            out |= _differences(a.get(key), b.get(key), f"{path}.{key}" if path else key)
        return out
    return set() if a == b else {path}


class UnitState(str, Enum):
    """Where one unit stands in the store. A ``str``: it compares equal to its value and
    prints as it, so what the store's readers show is unchanged."""

    COMMITTED = "committed"  # its commit marker exists and its shards match it
    TORN = "torn"  # shards without a marker, or a marker its shards do not match: redone
    PENDING = "pending"  # nothing written yet

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class StoredUnit:
    """What the store says about one unit: its state, the attempt that wrote it and, when
    torn, why."""

    unit_id: str
    state: UnitState
    attempt: int = 0
    problem: str | None = None


class SweepStore:
    """One sweep's directory in a store (a local path or any ``pyarrow.fs`` URI)."""

    def __init__(self, store_uri: str, sweep_id: str):
        if not SWEEP_NAME.match(sweep_id):
            raise StoreError(f"sweep id {sweep_id!r}: must be letters, digits, '_', '-' or '.'")
        try:
            self.fs, base = shards.resolve_filesystem(store_uri)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
            raise StoreError(f"store {store_uri}: not a usable location ({exc})") from None
        self.store_uri = store_uri
        self.sweep_id = sweep_id
        self.base = base.rstrip("/")
        self.root = sweep_root(self.base, sweep_id)
        self.layout = SweepLayout(self.root)

    @property
    def uri(self) -> str:
        """The sweep root as a URI a worker on another machine can open: the store's scheme
        and its options (``?endpoint_override=...``). Credentials written into the URI
        (``s3://KEY:SECRET@bucket``) are left out: it is logged to MLflow and handed to every
        worker, which take credentials from their environment as the driver can."""
        if "://" not in self.store_uri:
            return self.root
        scheme = self.store_uri.split("://", 1)[0]
        query = urllib.parse.urlsplit(self.store_uri).query
        return f"{scheme}://{self.root}" + (f"?{query}" if query else "")

    # --- checks -------------------------------------------------------------------
    def mark_torn(self, unit_id: str) -> None:
        """Withdraw a unit's commit (a shard of it cannot be read): it counts as torn from now
        on, readers leave it out, and the next ``doodl sweep`` retrains it."""
        try:
            self.fs.delete_file(self.layout.unit_files(unit_id)[shards.COMMITS])
        except FileNotFoundError:
            pass

    def check_writable(self) -> None:
        """Refuse a store that is a file or cannot be written, before writing anything."""
        info = self.fs.get_file_info(self.base)
        if info.type == pafs.FileType.File:
            raise StoreError(f"store {self.store_uri}: is a file, not a directory")
        try:
            self.fs.create_dir(self.root, recursive=True)
        except OSError as exc:
            raise StoreError(f"store {self.store_uri}: not writable ({exc})") from None

    def exists(self) -> bool:
        return self.fs.get_file_info(self.layout.sweep_json).type == pafs.FileType.File

    # --- sweep.json and variants.parquet -----------------------------------------
    def read_sweep(self) -> dict:
        try:
            with self.fs.open_input_stream(self.layout.sweep_json) as f:
                return json.loads(f.read())
        except FileNotFoundError:
            raise StoreError(f"unknown sweep {self.sweep_id!r} in store {self.store_uri}") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise StoreError(f"{self.layout.sweep_json}: corrupted (not JSON)") from None

    def matches(self, spec: SweepSpec) -> bool:
        """True when the recorded sweep trains what ``spec`` trains. The recorded spec is
        read again by this version first, so fields added since it was written take their
        defaults (a sweep of an older version resumes)."""
        doc = self.read_sweep()
        if doc.get("spec_results") == _result_spec(spec):
            return True
        try:
            recorded = SweepSpec.model_validate(doc.get("spec", {}))
        except ValueError:
            return False
        return _result_spec(recorded) == _result_spec(spec)

    def check_same_spec(self, spec: SweepSpec) -> None:
        """Refuse a spec that trains something else than the recorded sweep (if there is one):
        its ids and data would not match."""
        if self.exists() and not self.matches(spec):
            changed = self.changed_fields(spec)
            what = f" ({', '.join(changed[:6])}{', ...' if len(changed) > 6 else ''} changed)" if changed else ""
            raise StoreError(
                f"sweep {self.sweep_id!r} already exists in {self.store_uri} with a different spec{what}; "
                "give the changed sweep a new name, or pass --new-sweep"
            )

    def changed_fields(self, spec: SweepSpec) -> list[str]:
        """The spec fields (dotted paths, e.g. ``optimizer.lr``) where ``spec`` trains something
        else than the recorded sweep."""
        doc = self.read_sweep()
        try:  # read again by this version, as matches() does: fields added since take their defaults
            recorded = _result_spec(SweepSpec.model_validate(doc.get("spec", {})))
        except ValueError:
            recorded = doc.get("spec_results") or {}
        return sorted(_differences(recorded, _result_spec(spec)))

    def initialise(self, spec: SweepSpec, variants: list[VariantConfig], units: list[WorkUnit]) -> bool:
        """Create the sweep directory, or check that it belongs to this same spec.

        Returns True when the sweep is new. A sweep with the same name but a different
        spec (other than ``resources``) is refused: its ids and data would not match.
        """
        if self.exists():
            self.check_same_spec(spec)
            self.read_variants()  # refuses a corrupted variants.parquet early
            return False
        self.check_writable()
        table = variants_table(variants, units)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        write_atomic(self.fs, self.layout.variants, sink.getvalue().to_pybytes())
        doc = {
            "sweep_id": self.sweep_id,
            "name": spec.name,  # the MLflow experiment; the sweep id differs after --new-sweep
            "spec": spec.model_dump(mode="json"),
            "spec_results": _result_spec(spec),
            "doodl_version": doodl_version(),
            "created": utc_timestamp(),
            "n_variants": len(variants),
            "n_units": len(units),
        }
        # sweep.json last: its presence says the sweep directory is complete
        write_atomic(self.fs, self.layout.sweep_json, json.dumps(doc, indent=1).encode())
        return True

    def record_reduce_settings(self, spec: SweepSpec) -> list[str]:
        """Make ``spec``'s ``reduce`` section the sweep's (``sweep.json`` holds the one source of
        reduce settings that ``doodl reduce`` and ``doodl sweep --reduce`` both read). Returns
        the settings that changed (dotted paths, e.g. ``morse.dims``); nothing is written
        when none did."""
        doc = self.read_sweep()
        recorded = doc.get("spec", {}).get("reduce", {})
        wanted = spec.reduce.model_dump(mode="json")
        changed = sorted(_differences(recorded, wanted))
        if changed:
            doc["spec"] = {**doc.get("spec", {}), "reduce": wanted}
            write_atomic(self.fs, self.layout.sweep_json, json.dumps(doc, indent=1).encode())
        return changed

    def record_stop_rule(self, rule: dict) -> None:
        """Record the early-stopping rule the sweep trains with (``sweep.json``'s
        ``early_stop_rule``): a resumed sweep applies this one, whatever its predictor sweep
        holds by then."""
        doc = self.read_sweep()
        doc["early_stop_rule"] = rule
        write_atomic(self.fs, self.layout.sweep_json, json.dumps(doc, indent=1).encode())

    def stop_rule(self) -> dict | None:
        """The recorded early-stopping rule (see :meth:`record_stop_rule`), if any."""
        return self.read_sweep().get("early_stop_rule")

    def read_variants(self) -> pa.Table:
        """variants.parquet, checked: ids are used in paths, so each must be a plain hash."""
        path = self.layout.variants
        try:
            with self.fs.open_input_file(path) as f:
                table = pq.read_table(f)
        except FileNotFoundError:
            raise StoreError(f"{path}: missing; the sweep directory is incomplete") from None
        except (pa.ArrowInvalid, OSError) as exc:
            raise StoreError(f"{path}: corrupted ({_first_line(exc)})") from None
        for column in ("run_id", "group_id", "unit_id"):
            if column not in table.column_names:
                raise StoreError(f"{path}: corrupted (no {column} column)")
            bad = [v for v in table.column(column).to_pylist() if not (isinstance(v, str) and ID_PATTERN.match(v))]
            if bad:
                raise StoreError(f"{path}: corrupted ({column} {str(bad[0])[:40]!r} is not a doodl id)")
        # a sweep written before a config field existed holds its default
        for name, f in VariantConfig.__dataclass_fields__.items():
            if name not in table.column_names and f.default is not MISSING:
                value = list(f.default) if isinstance(f.default, tuple) else f.default
                table = table.append_column(name, pa.array([value] * table.num_rows))
        return table

    # --- units ---------------------------------------------------------------------
    def recorded_units(self, variants: list[VariantConfig]) -> list[WorkUnit]:
        """The sweep's units as ``variants.parquet`` records them, with ``variants`` (the
        spec's expansion) as their members.

        ``resources`` change how fast a sweep trains, never which variants share a unit:
        unit ids name the store's shards, so a rerun with other resources finishes the
        recorded units instead of packing new ones.
        """
        by_run = {v.run_id: v for v in variants}
        members: dict[str, list[VariantConfig]] = {}
        table = self.read_variants()
        for run_id, unit_id in zip(table.column("run_id").to_pylist(), table.column("unit_id").to_pylist()):
            if run_id not in by_run:
                raise StoreError(f"{self.layout.variants}: run {run_id} is not a variant of this spec")
            members.setdefault(unit_id, []).append(by_run[run_id])
        if sum(map(len, members.values())) != len(variants):
            raise StoreError(f"{self.layout.variants}: holds {table.num_rows} variants, the spec {len(variants)}")
        return [WorkUnit(unit_id=u, variants=tuple(vs)) for u, vs in members.items()]

    def record_failure(self, unit_id: str, attempt: int, cause: str) -> None:
        """Add a failed attempt of a unit (its cause in one line, the attempt, the time) to
        its record in the store, where ``doodl status`` finds it. Only the driver writes it."""
        attempts = self.failures([unit_id]).get(unit_id, [])
        attempts.append({"attempt": int(attempt), "cause": cause, "time": utc_timestamp()})
        write_atomic(self.fs, self.layout.failure(unit_id), json.dumps({"attempts": attempts}).encode())

    def failures(self, unit_ids: list[str]) -> dict[str, list[dict]]:
        """The recorded failed attempts of these units (those with any), oldest first; a
        unit committed since keeps its record as history."""
        wanted = set(unit_ids)
        infos = self.fs.get_file_info(pafs.FileSelector(self.layout.failures_dir, allow_not_found=True))
        out = {}
        for info in infos:
            unit = info.base_name.removesuffix(".json")
            if unit in wanted and info.type == pafs.FileType.File:
                payload = read_bytes(self.fs, info.path)
                try:
                    out[unit] = json.loads(payload)["attempts"] if payload else []
                except (ValueError, KeyError):  # a record torn by a crash is no reason to fail a command
                    out[unit] = []
        return out

    def unit_states(self, unit_ids: list[str], verify: str = "size") -> dict[str, StoredUnit]:
        """The state of each unit: sound commits count, torn ones are reported and redone.

        ``verify`` ``"size"`` (the default: no shard is downloaded) or ``"full"`` (checksums
        and row counts): see :func:`doodl.workers.shards.verify_unit`."""
        found = shards.committed_units(self.fs, self.root, verify=verify)
        out = {}
        for u in unit_ids:
            c = found.get(u)
            if c is None:
                leftover = [k for k, path in self.layout.unit_files(u).items() if k != shards.COMMITS
                            and self.fs.get_file_info(path).type == pafs.FileType.File]
                if leftover:  # written, never committed: a write that was interrupted
                    out[u] = StoredUnit(u, UnitState.TORN, 0, f"{' and '.join(leftover)} shard without a commit marker")
                else:
                    out[u] = StoredUnit(u, UnitState.PENDING)
            elif c.problem:
                out[u] = StoredUnit(u, UnitState.TORN, int(c.marker.get("attempt", 0)), c.problem)
            else:
                out[u] = StoredUnit(u, UnitState.COMMITTED, int(c.marker.get("attempt", 1)))
        return out

    def read_unit_rows(self, kind: str, unit_ids: list[str], columns: list[str] | None = None) -> pa.Table:
        """Trajectory or finals rows of committed units (callers pass only sound units)."""
        return shards.read_units(self.fs, self.root, kind, unit_ids, columns)

    def read_snapshot_rows(self, unit_ids: list[str], columns: list[str] | None = None) -> pa.Table:
        """Snapshot rows (recorded parameters and held-out metrics) of committed units."""
        return shards.read_snapshots(self.fs, self.root, unit_ids, columns)


def sweep_ids(store_uri: str) -> list[str]:
    """The sweeps in a store, sorted: its directories holding a ``sweep.json`` (one listing
    and one lookup per directory; a missing store holds none). A store that is a file, or
    a location pyarrow cannot open, raises :class:`StoreError`."""
    try:
        fs, base = shards.resolve_filesystem(store_uri)
        info = fs.get_file_info(base)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
        raise StoreError(f"store {store_uri}: not a usable location ({exc})") from None
    if info.type == pafs.FileType.File:
        raise StoreError(f"store {store_uri}: is a file, not a directory")
    base = base.rstrip("/")
    dirs = [i.base_name for i in fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
            if i.type == pafs.FileType.Directory and SWEEP_NAME.match(i.base_name)]
    return sorted(d for d in dirs
                  if fs.get_file_info(SweepLayout(sweep_root(base, d)).sweep_json).type == pafs.FileType.File)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def sweep_store_for(spec: SweepSpec, store_uri: str, *, new_sweep: bool = False,
                    sweep_id: str | None = None) -> SweepStore:
    """The sweep ``spec`` trains into (reads only): ``sweep_id``, else the spec's name; with
    ``new_sweep``, when that sweep exists with another spec, the changed spec's own sweep
    (:func:`derived_sweep_id`). A sweep of that id recorded with another spec is refused."""
    store = SweepStore(store_uri, sweep_id or spec.name)
    if new_sweep and store.exists() and not store.matches(spec):
        store = SweepStore(store_uri, derived_sweep_id(spec))
    store.check_same_spec(spec)
    return store


def derived_sweep_id(spec: SweepSpec) -> str:
    """The id of a changed spec's new sweep (``--new-sweep``): its name and a hash of what
    it trains, so the same changed spec always lands in the same new sweep."""
    digest = hashlib.sha256(json.dumps(_result_spec(spec), sort_keys=True).encode()).hexdigest()[:8]
    # the name gives way, never the hash: a long name's changed specs stay apart from it and each other
    return f"{spec.name[:100 - len(digest) - 1]}-{digest}"


CONFIG_COLUMNS = [f for f in VariantConfig.__dataclass_fields__ if f != "dataset_options"]


def variants_table(variants: list[VariantConfig], units: list[WorkUnit]) -> pa.Table:
    """One row per variant: ids, its unit and its config columns."""
    unit_of = {v.run_id: u.unit_id for u in units for v in u.variants}
    rows = {
        "run_id": [v.run_id for v in variants],
        "group_id": [v.group_id for v in variants],
        "unit_id": [unit_of[v.run_id] for v in variants],
    }
    for name in CONFIG_COLUMNS:
        rows[name] = [getattr(v, name) for v in variants]
    rows["dataset_options"] = [json.dumps(dict(v.dataset_options), sort_keys=True) for v in variants]
    return pa.table(rows)

