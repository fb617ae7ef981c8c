"""Whole-file writes to a store on any ``pyarrow.fs`` filesystem: a file appears complete or
not at all, and a create-only write for leases.

On object stores (S3, GCS) one PUT is already atomic: an upload that dies is never
completed, so nothing appears. Elsewhere (a local disk, a shared mount) the payload goes to
a temporary name unique to this write (a UUID: process ids repeat across pods on one
mount) and is renamed into place. A caller writing into a Parquet dataset folder passes
``tmp_prefix``, a name outside the folder (``SWEEP/_tmp/...``): a writer killed mid-write
leaves its temporary there, and pandas, ``pyarrow.dataset`` and Polars (which refuses a folder
holding any file of another extension, hidden or not) still read the folder.
:func:`remove_leftovers` sweeps the temporaries of a prefix whose writer is known dead.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid

import pyarrow.fs as pafs

OBJECT_STORES = ("s3", "gcs")
TMP_MARK = ".tmp-"  # readers skip names holding it: a write still in progress


def is_object_store(fs: pafs.FileSystem) -> bool:
    """True for filesystems where a single PUT is atomic and renames are copies."""
    return fs.type_name in OBJECT_STORES


def _tmp_name(path: str) -> str:
    return f"{path}{TMP_MARK}{uuid.uuid4().hex}"


def remove_leftovers(fs: pafs.FileSystem, tmp_prefix: str) -> int:
    """Delete the temporaries of ``tmp_prefix`` (as given to :func:`write_atomic`) that killed
    writers left; returns how many. Only when no writer of that prefix is alive."""
    if is_object_store(fs):  # a PUT that dies leaves nothing: no listing to pay for
        return 0
    folder, name = tmp_prefix.rsplit("/", 1)
    removed = 0
    for info in fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
        if info.type == pafs.FileType.File and info.base_name.startswith(f"{name}{TMP_MARK}"):
            try:
                fs.delete_file(info.path)
                removed += 1
            except FileNotFoundError:
                pass
    return removed


def write_atomic(fs: pafs.FileSystem, path: str, payload: bytes, *, tmp_prefix: str | None = None) -> None:
    """Write ``payload`` to ``path`` so that readers see the old file, or the whole new one;
    the temporary is ``tmp_prefix`` (default ``path``) with a unique suffix, on the same
    filesystem so that the rename is atomic."""
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    if is_object_store(fs):
        with fs.open_output_stream(path) as f:
            f.write(payload)
        return
    if tmp_prefix is not None:
        fs.create_dir(tmp_prefix.rsplit("/", 1)[0], recursive=True)
    tmp = _tmp_name(tmp_prefix or path)
    try:
        with fs.open_output_stream(tmp) as f:
            f.write(payload)
        fs.move(tmp, path)
    except BaseException:  # a write that died: leave no temporary behind
        if fs.get_file_info(tmp).type != pafs.FileType.NotFound:
            fs.delete_file(tmp)
        raise


def create_only(fs: pafs.FileSystem, path: str, payload: bytes) -> bool:
    """Create ``path`` with ``payload`` only if it does not exist; True when this call created it.

    On a local filesystem this is exact (a hard link fails when the name exists). pyarrow has
    no conditional PUT for object stores, so there it is check-then-write: two writers within
    the same few milliseconds can both succeed, which is why a lease is read back after a
    settling delay before it is trusted (:mod:`doodl.orchestrator.store.lease`).
    """
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    if isinstance(fs, pafs.LocalFileSystem):
        tmp = _tmp_name(path)
        try:
            with open(tmp, "wb") as f:  # a full disk fails here: the temporary goes too
                f.write(payload)
            os.link(tmp, path)
            return True
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                return False
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        return False
    with fs.open_output_stream(path) as f:
        f.write(payload)
    return True


def read_bytes(fs: pafs.FileSystem, path: str) -> bytes | None:
    """The file's contents, or None when it does not exist."""
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except FileNotFoundError:
        return None
