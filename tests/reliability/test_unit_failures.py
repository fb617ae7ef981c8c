"""A unit that fails in its worker (a full disk, memory, a store it cannot write; issue 25):
the cause in one line, recorded in the store, and ``doodl status`` shows the unit's variants
as failed with the cause and the attempts, not as pending."""

from __future__ import annotations

from tests.conftest import run_cli, tiny_spec_dict, write_spec
from tests.orchestrator.stores import train_in_process


def test_a_unit_failing_in_its_worker_is_one_line_and_failed_in_status(tmp_path, ray_session):
    spec = tiny_spec_dict("fails", resources={"variants_per_unit": 3, "num_actors": 1, "max_retries": 1})
    path = write_spec(tmp_path, spec)
    store_uri = str(tmp_path / "store")
    store = train_in_process(store_uri, spec, units=0)  # the sweep laid out, nothing trained
    blocked = store.read_variants().column("unit_id").to_pylist()[0]
    # a file where the unit's shard folder goes: every attempt to write the unit fails in the
    # worker, as on a full or read-only disk
    (tmp_path / "store" / "fails" / "trajectories").mkdir(parents=True, exist_ok=True)
    (tmp_path / "store" / "fails" / "trajectories" / f"unit={blocked}").write_text("in the way")

    code, out, err = run_cli(["sweep", str(path), "--store", store_uri, "--tracking-uri",
                              f"sqlite:///{tmp_path / 'm.db'}", "--no-progress"])
    assert code == 1
    text = " ".join(err.split())
    assert f"unit {blocked} failed (" in text and f"unit {blocked} failed after 2 attempts: " in text
    assert "ray::" not in err and "\x1b[" not in err and "pid=" not in err
    assert f"failed 1 (unit {blocked}: see `doodl status`);" in out

    code, out, err = run_cli(["status", "fails", "--store", store_uri])
    text = " ".join(out.split())
    assert code == 0 and "failed: their unit's attempts failed" in text
    assert f"unit {blocked}: failed 2 attempt(s), last at" in text
    records = store.failures([blocked])[blocked]
    assert [r["attempt"] for r in records] == [1, 2] and records[0]["cause"] == records[1]["cause"]
    assert "\n" not in records[0]["cause"] and "ray::" not in records[0]["cause"]
