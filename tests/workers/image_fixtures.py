"""Writers of the image data set formats :mod:`doodl.workers.image_files` reads (IDX and
CIFAR binary), for building test files; doodl itself only reads them."""

from __future__ import annotations

import gzip as gzip_lib
import os

import numpy as np

from doodl.workers.image_files import CIFAR_PIXELS, CIFAR_SIDE, IDX_DTYPES

# numpy dtype (native byte order) -> IDX dtype code
_IDX_CODES: dict[np.dtype, int] = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}


def write_idx(path: str, array: np.ndarray, gzip: bool = False) -> None:
    """Write ``array`` to the local file ``path`` as IDX, gzipped if ``gzip``.

    The dtype must be one IDX stores (uint8, int8, int16, int32, float32, float64);
    anything else raises ``ValueError`` rather than being silently converted.
    """
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _IDX_CODES:
        raise ValueError(f"IDX cannot store dtype {array.dtype}; use one of "
                         f"{', '.join(str(d) for d in _IDX_CODES)}")
    if array.ndim > 255:
        raise ValueError(f"IDX stores at most 255 dimensions, array has {array.ndim}")
    if any(d >= 2**31 for d in array.shape):
        raise ValueError(f"IDX dimensions are int32; shape {array.shape} is too large")
    header = bytes([0, 0, _IDX_CODES[native], array.ndim])
    header += np.asarray(array.shape, dtype=">i4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=native.newbyteorder(">")).tobytes()
    if gzip:
        payload = gzip_lib.compress(payload, mtime=0)  # mtime=0: same array, same bytes
    _write_local(path, payload)


def _write_local(path: str, payload: bytes) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    with open(path, "wb") as f:
        f.write(payload)


def write_cifar_bin(path: str, images: np.ndarray, labels: np.ndarray,
                    coarse_labels: np.ndarray | None = None) -> None:
    """Write a CIFAR binary file to the local ``path``.

    ``images`` is uint8 ``(N, 3, 32, 32)``, ``labels`` ``(N,)`` integers in [0, 255].
    Without ``coarse_labels`` the records are CIFAR-10's (label, pixels); with them,
    CIFAR-100's (coarse label, fine label = ``labels``, pixels).
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.shape[1:] != (3, CIFAR_SIDE, CIFAR_SIDE):
        raise ValueError(f"images must be uint8 (N, 3, 32, 32), got {images.dtype} {images.shape}")
    n = images.shape[0]
    label_columns = [labels] if coarse_labels is None else [coarse_labels, labels]
    records = np.empty((n, len(label_columns) + CIFAR_PIXELS), dtype=np.uint8)
    for i, column in enumerate(label_columns):
        column = np.asarray(column)
        if column.shape != (n,) or not np.issubdtype(column.dtype, np.integer):
            raise ValueError(f"labels must be integers of shape ({n},), got {column.dtype} {column.shape}")
        if n and (column.min() < 0 or column.max() > 255):
            raise ValueError("CIFAR labels are single bytes: values must lie in [0, 255]")
        records[:, i] = column
    records[:, len(label_columns):] = images.reshape(n, CIFAR_PIXELS)
    _write_local(path, records.tobytes())
