"""Readers for the image data set files people already have on disk.

Nothing here downloads anything: every loader takes a local path or any URI
``pyarrow.fs`` understands (``file://``, ``s3://``, ``gs://``, ...) and reads the files
found there. Two formats are covered.

**IDX** (MNIST, Fashion-MNIST, KMNIST): one array per file. The file starts with a
four-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then ``ndim`` big-endian int32
dimension sizes, then the data in C order, big-endian. Dtype codes: ``0x08`` uint8,
``0x09`` int8, ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64. Mirrors
serve the files gzipped (``*.gz``) or not, and some rename them, so gzip is recognised by
its magic bytes ``1f 8b`` rather than by the name. A directory of the four standard files
(``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``) is one MNIST-style data set.

**CIFAR binary** (the ``*-binary.tar.gz`` downloads, never the Python pickles, which
would execute code on load). A file is a sequence of fixed-size records with no header.
CIFAR-10 (``data_batch_1.bin`` .. ``data_batch_5.bin``, ``test_batch.bin``): one label
byte, then 3072 pixel bytes: the 1024 red values of the 32x32 image in row-major order,
then the 1024 green, then the 1024 blue. CIFAR-100 (``train.bin``, ``test.bin``): one
coarse-label byte (20 superclasses), one fine-label byte (100 classes), then the same
3072 pixel bytes; the fine label is the one used.

All loaders return an :class:`ImageSplit` of uint8 images in ``(N, C, H, W)`` order (what
torch convolutions take) and int64 labels. Malformed or truncated files raise
``ValueError`` naming the file; missing files raise ``FileNotFoundError`` naming the
directory and the names that were looked for.
"""

from __future__ import annotations

import gzip as gzip_lib
import os
import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow.fs as pafs

# IDX dtype code -> big-endian numpy dtype (the format is big-endian throughout).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"

# MNIST file roles -> accepted base names (the canonical one first, then the dotted
# spelling some mirrors use); each may also carry a ``.gz`` suffix.
MNIST_FILES: dict[str, tuple[str, ...]] = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}
MNIST_CLASSES = 10

CIFAR_SIDE = 32
CIFAR_PIXELS = 3 * CIFAR_SIDE * CIFAR_SIDE  # 3072 bytes per image
CIFAR10_DIR = "cifar-10-batches-bin"
CIFAR100_DIR = "cifar-100-binary"
CIFAR10_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST = "test_batch.bin"
CIFAR100_TRAIN = "train.bin"
CIFAR100_TEST = "test.bin"


@dataclass(frozen=True)
class ImageSplit:
    """A train/test image data set: uint8 ``(N, C, H, W)`` images and int64 labels."""

    x_train: np.ndarray  # uint8, (N, C, H, W)
    y_train: np.ndarray  # int64, (N,)
    x_test: np.ndarray  # uint8, (M, C, H, W)
    y_test: np.ndarray  # int64, (M,)
    n_classes: int

    def __post_init__(self) -> None:
        # Catch a loader bug here rather than as a shape error deep inside training.
        for name, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if x.dtype != np.uint8 or x.ndim != 4:
                raise ValueError(f"{name} images must be uint8 (N, C, H, W), got {x.dtype} {x.shape}")
            if y.dtype != np.int64 or y.shape != (x.shape[0],):
                raise ValueError(f"{name} labels must be int64 ({x.shape[0]},), got {y.dtype} {y.shape}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(f"train images {self.x_train.shape[1:]} and test images "
                             f"{self.x_test.shape[1:]} differ in shape")


# --------------------------------------------------------------------------- filesystem


def _resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """``(filesystem, path)`` for a local path or any URI ``pyarrow.fs`` knows."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    return pafs.FileSystem.from_uri(uri)


def _display(fs: pafs.FileSystem, path: str) -> str:
    """How error messages name a file: the plain path locally, scheme-prefixed elsewhere."""
    if isinstance(fs, pafs.LocalFileSystem):
        return path
    return f"{fs.type_name}://{path}"


def _join(directory: str, name: str) -> str:
    return f"{directory.rstrip('/')}/{name}"


def _read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    # compression=None: pyarrow would otherwise guess gzip from a ".gz" name, and names lie.
    with fs.open_input_stream(path, compression=None) as f:
        return f.read()


def _list_dir(fs: pafs.FileSystem, directory: str) -> dict[str, pafs.FileType]:
    """Base name -> type of every entry directly in ``directory``."""
    info = fs.get_file_info(directory)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{_display(fs, directory)}: no such directory")
    if info.type != pafs.FileType.Directory:
        raise NotADirectoryError(f"{_display(fs, directory)}: not a directory")
    entries = fs.get_file_info(pafs.FileSelector(directory, recursive=False))
    return {e.base_name: e.type for e in entries}


# --------------------------------------------------------------------------- IDX


def _parse_idx(data: bytes, name: str) -> np.ndarray:
    """Decode the bytes of one IDX file (``name`` is only for error messages)."""
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip_lib.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
            raise ValueError(f"{name}: corrupt or truncated gzip stream ({exc})") from exc
    if len(data) < 4:
        raise ValueError(f"{name}: truncated IDX file: {len(data)} bytes, shorter than the 4-byte magic")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(f"{name}: not an IDX file: magic starts {data[:2].hex()}, expected 0000")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise ValueError(f"{name}: unknown IDX dtype code 0x{code:02X} "
                         f"(known: {', '.join(f'0x{c:02X}' for c in IDX_DTYPES)})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name}: truncated IDX header: {ndim} dimensions need {header} bytes, "
                         f"file has {len(data)}")
    # Signed, as the format specifies int32; a negative size can only mean corruption.
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    if any(d < 0 for d in shape):
        raise ValueError(f"{name}: negative dimension in IDX header {shape}")
    dtype = IDX_DTYPES[code]
    count = 1
    for d in shape:
        count *= d  # Python ints: no overflow from a corrupt header
    expected = header + count * dtype.itemsize
    if len(data) < expected:
        raise ValueError(f"{name}: truncated IDX data: shape {shape} of {dtype.newbyteorder('=')} "
                         f"needs {expected} bytes, file has {len(data)}")
    if len(data) > expected:
        raise ValueError(f"{name}: malformed IDX file: {len(data) - expected} bytes after the "
                         f"data of shape {shape}")
    # astype to native order copies, so the result is writable and independent of `data`.
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header)
    return array.astype(dtype.newbyteorder("=")).reshape(shape)


def read_idx(uri: str) -> np.ndarray:
    """Read one IDX file, gzipped or not, as a native-endian array of its stored dtype.

    ``uri`` is a local path or a ``pyarrow.fs`` URI. Gzip is detected from the content,
    so a plain file named ``*.gz`` (or a gzipped one without the suffix) reads correctly.
    Raises ``ValueError`` naming the file if it is truncated or malformed.
    """
    fs, path = _resolve(uri)
    return _parse_idx(_read_bytes(fs, path), _display(fs, path))


# --------------------------------------------------------------------------- MNIST


def _find_mnist_file(names: dict[str, pafs.FileType], role: str) -> str | None:
    for base in MNIST_FILES[role]:
        for candidate in (base, base + ".gz"):
            if names.get(candidate) == pafs.FileType.File:
                return candidate
    return None


def load_mnist_dir(uri: str) -> ImageSplit:
    """Load an MNIST-format directory (MNIST, Fashion-MNIST) of four IDX files.

    Each file may be gzipped and may use the canonical (``train-images-idx3-ubyte``)
    or dotted (``train-images.idx3-ubyte``) name, with or without ``.gz``. Images come
    out ``(N, 1, H, W)`` uint8 (28x28 for MNIST and Fashion-MNIST), labels int64,
    ``n_classes`` 10. Raises ``FileNotFoundError`` naming the directory and the expected
    names if a file is missing, ``ValueError`` if counts, shapes or labels disagree.
    """
    fs, directory = _resolve(uri)
    where = _display(fs, directory)
    names = _list_dir(fs, directory)
    found = {role: _find_mnist_file(names, role) for role in MNIST_FILES}
    missing = [role for role, name in found.items() if name is None]
    if missing:
        expected = "; ".join(" or ".join(f"{b}[.gz]" for b in MNIST_FILES[r]) for r in missing)
        raise FileNotFoundError(f"{where}: missing MNIST files: expected {expected}")

    arrays = {}
    for role, name in found.items():
        path = _join(directory, name)
        arrays[role] = (_parse_idx(_read_bytes(fs, path), _display(fs, path)), _display(fs, path))

    parts = []
    for split in ("train", "test"):
        (x, x_name), (y, y_name) = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if x.dtype != np.uint8 or x.ndim != 3:
            raise ValueError(f"{x_name}: expected uint8 images of shape (N, H, W), got {x.dtype} {x.shape}")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{y_name}: expected integer labels of shape (N,), got {y.dtype} {y.shape}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{where}: {split} split has {x.shape[0]} images ({x_name}) "
                             f"but {y.shape[0]} labels ({y_name})")
        labels = _check_labels(y.astype(np.int64), MNIST_CLASSES, y_name)
        parts += [x[:, None, :, :], labels]  # add the channel axis: (N, 1, H, W)
    if parts[0].shape[1:] != parts[2].shape[1:]:
        raise ValueError(f"{where}: train images {parts[0].shape[2:]} and test images "
                         f"{parts[2].shape[2:]} differ in size")
    return ImageSplit(*parts, n_classes=MNIST_CLASSES)


def _check_labels(labels: np.ndarray, n_classes: int, name: str) -> np.ndarray:
    # A label outside [0, n_classes) would only surface later as an index error in the loss.
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"{name}: labels span [{labels.min()}, {labels.max()}], "
                         f"outside [0, {n_classes})")
    return labels


# --------------------------------------------------------------------------- CIFAR


def _cifar_layout(n_classes: int) -> tuple[str, int, int]:
    """``(directory name, record size, offset of the label used)`` for CIFAR-10 / -100."""
    if n_classes == 10:
        return CIFAR10_DIR, 1 + CIFAR_PIXELS, 0
    if n_classes == 100:
        return CIFAR100_DIR, 2 + CIFAR_PIXELS, 1  # byte 0 is the coarse label
    raise ValueError(f"n_classes must be 10 (CIFAR-10) or 100 (CIFAR-100), got {n_classes}")


def _parse_cifar(data: bytes, name: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    _, record, label_at = _cifar_layout(n_classes)
    if len(data) == 0:
        raise ValueError(f"{name}: empty CIFAR file")
    if len(data) % record:
        raise ValueError(f"{name}: size {len(data)} is not a multiple of the {record}-byte "
                         f"CIFAR-{n_classes} record (truncated, or the wrong CIFAR version)")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, record)
    labels = _check_labels(records[:, label_at].astype(np.int64), n_classes, name)
    # Pixels are stored as three whole planes, so (N, 3, 32, 32) is a plain reshape.
    images = records[:, record - CIFAR_PIXELS:].reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE).copy()
    return images, labels


def _cifar_files(names: dict[str, pafs.FileType], n_classes: int) -> tuple[list[str], str] | None:
    """The train files (in order) and test file present in one listing, or None if incomplete."""
    def is_file(n: str) -> bool:
        return names.get(n) == pafs.FileType.File

    if n_classes == 10:
        train = [n for n in CIFAR10_TRAIN if is_file(n)]  # CIFAR10_TRAIN is in numeric order
        test = CIFAR10_TEST
    else:
        train = [CIFAR100_TRAIN] if is_file(CIFAR100_TRAIN) else []
        test = CIFAR100_TEST
    return (train, test) if train and is_file(test) else None


def load_cifar_dir(uri: str, n_classes: int) -> ImageSplit:
    """Load the binary CIFAR-10 (``n_classes=10``) or CIFAR-100 (``n_classes=100``) files.

    ``uri`` is the directory holding the ``.bin`` files, or its parent containing
    ``cifar-10-batches-bin`` / ``cifar-100-binary`` (where the tarballs extract to). For
    CIFAR-10 the first k of ``data_batch_1.bin`` .. ``data_batch_5.bin`` are used, in
    numeric order, plus ``test_batch.bin`` (a gap, such as batches 1, 2, 4 and 5 without
    3, raises ``FileNotFoundError`` naming the missing file); for CIFAR-100, ``train.bin`` and
    ``test.bin`` with the fine labels. Images come out ``(N, 3, 32, 32)`` uint8.
    """
    subdir, _, _ = _cifar_layout(n_classes)
    fs, directory = _resolve(uri)
    names = _list_dir(fs, directory)
    files = _cifar_files(names, n_classes)
    if files is None and names.get(subdir) == pafs.FileType.Directory:
        directory = _join(directory, subdir)
        files = _cifar_files(_list_dir(fs, directory), n_classes)
    if files is None:
        if n_classes == 10:
            expected = f"at least one of {', '.join(CIFAR10_TRAIN)} and {CIFAR10_TEST}"
        else:
            expected = f"{CIFAR100_TRAIN} and {CIFAR100_TEST}"
        raise FileNotFoundError(f"{_display(fs, directory)}: missing CIFAR-{n_classes} binary files: "
                                f"expected {expected}, here or in {subdir}/")
    train_names, test_name = files
    if n_classes == 10:  # a subset is the first k batches; a gap is a lost file, not a choice
        gaps = [n for n in CIFAR10_TRAIN[:CIFAR10_TRAIN.index(train_names[-1])] if n not in train_names]
        if gaps:
            raise FileNotFoundError(f"{_display(fs, directory)}: missing {', '.join(gaps)}: CIFAR-10 training "
                                    f"batches must run from data_batch_1.bin without gaps "
                                    f"(found {', '.join(train_names)})")

    def load(name: str) -> tuple[np.ndarray, np.ndarray]:
        path = _join(directory, name)
        return _parse_cifar(_read_bytes(fs, path), _display(fs, path), n_classes)

    train = [load(n) for n in train_names]
    x_test, y_test = load(test_name)
    return ImageSplit(
        x_train=np.concatenate([x for x, _ in train]),
        y_train=np.concatenate([y for _, y in train]),
        x_test=x_test,
        y_test=y_test,
        n_classes=n_classes,
    )
