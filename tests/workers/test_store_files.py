"""Whole-file writes: readers see the old file or the whole new one, never a part; temporary
names never collide (process ids repeat across pods on one shared mount); create-only is exact
on a local filesystem."""

from __future__ import annotations

import threading

import pyarrow.fs as pafs
import pytest

from doodl.workers.store_files import TMP_MARK, create_only, read_bytes, write_atomic


def test_writers_sharing_a_process_id_never_tear_each_others_files(tmp_path, monkeypatch):
    """Eight writers of one file at once, all with the same pid (as pods on one mount have):
    the file is always one writer's whole payload, and no temporary file is left."""
    import os

    monkeypatch.setattr(os, "getpid", lambda: 1)
    fs, path = pafs.LocalFileSystem(), str(tmp_path / "sweep" / "sweep.json")
    payloads = [bytes([65 + i]) * (200_000 + i) for i in range(8)]
    start = threading.Barrier(len(payloads))
    errors = []

    def write(p):
        start.wait()
        try:
            for _ in range(20):
                write_atomic(fs, path, p)
        except Exception as exc:  # collected: the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert read_bytes(fs, path) in payloads
    assert [p.name for p in (tmp_path / "sweep").iterdir()] == ["sweep.json"]


def test_a_write_that_dies_leaves_the_old_file_and_no_temporary(tmp_path):
    fs, path = pafs.LocalFileSystem(), str(tmp_path / "report.json")
    write_atomic(fs, path, b"old")

    class Dies:
        def __init__(self, stream):
            self.stream = stream

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.stream.close()

        def write(self, payload):
            self.stream.write(payload[:2])
            raise OSError("disk full")

    real = fs.open_output_stream
    # a local filesystem whose output streams die after two bytes
    wrapped = type("Wrapped", (), {"open_output_stream": lambda self, p: Dies(real(p)),
                                   "create_dir": fs.create_dir, "move": fs.move,
                                   "get_file_info": fs.get_file_info, "delete_file": fs.delete_file,
                                   "type_name": "local"})()
    with pytest.raises(OSError, match="disk full"):
        write_atomic(wrapped, path, b"new and longer")
    assert read_bytes(fs, path) == b"old"
    assert not [p for p in tmp_path.iterdir() if TMP_MARK in p.name]


def test_create_only_creates_once(tmp_path):
    fs, path = pafs.LocalFileSystem(), str(tmp_path / "_leases" / "training.json")
    assert create_only(fs, path, b"first")
    assert not create_only(fs, path, b"second")
    assert read_bytes(fs, path) == b"first"
    assert read_bytes(fs, str(tmp_path / "absent")) is None
    assert [p.name for p in (tmp_path / "_leases").iterdir()] == ["training.json"]



def test_a_temporary_goes_where_the_caller_says_and_leftovers_are_swept(tmp_path):
    """With ``tmp_prefix`` the temporary is written outside the target's folder (a killed
    writer leaves it there); remove_leftovers deletes that prefix's temporaries only."""
    from doodl.workers.store_files import remove_leftovers

    fs, path = pafs.LocalFileSystem(), str(tmp_path / "finals" / "unit=u" / "part-0.parquet")
    prefix = str(tmp_path / "_tmp" / "u.finals")
    write_atomic(fs, path, b"whole", tmp_prefix=prefix)
    assert read_bytes(fs, path) == b"whole" and list((tmp_path / "_tmp").iterdir()) == []
    for name in (f"u.finals{TMP_MARK}0123", f"v.finals{TMP_MARK}0123", "u.finals"):
        (tmp_path / "_tmp" / name).write_bytes(b"x")
    assert remove_leftovers(fs, prefix) == 1
    assert sorted(p.name for p in (tmp_path / "_tmp").iterdir()) == ["u.finals", f"v.finals{TMP_MARK}0123"]
    assert remove_leftovers(fs, str(tmp_path / "absent" / "u.finals")) == 0
