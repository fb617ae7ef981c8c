"""Image data set files: IDX (MNIST, Fashion-MNIST) and binary CIFAR-10/100 read exactly,
from a local path or a pyarrow URI; known answers from hand-built bytes, not only round
trips through our own writers; broken or missing files fail naming the file."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from doodl.workers.image_files import (
    ImageSplit,
    load_cifar_dir,
    load_mnist_dir,
    read_idx,
)
from tests.workers.image_fixtures import write_cifar_bin, write_idx

IDX_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def random_array(rng: np.random.Generator, dtype, shape) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)  # the full range: sign bits and high bytes exercise byte order
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def random_images(rng, n, c, side) -> np.ndarray:
    return rng.integers(0, 256, size=(n, c, side, side), dtype=np.uint8)


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", IDX_DTYPES)
@pytest.mark.parametrize("shape", [(7,), (3, 5, 4), (0, 28, 28)])
def test_idx_round_trip_is_exact_for_every_dtype(tmp_path, dtype, shape, gz):
    a = random_array(np.random.default_rng(0), dtype, shape)
    path = tmp_path / "a.idx"
    write_idx(str(path), a, gzip=gz)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == gz
    b = read_idx(str(path))
    assert b.dtype == a.dtype and b.dtype.isnative and b.shape == a.shape
    np.testing.assert_array_equal(b, a)
    b[...] = 0  # the result is a writable copy, not a view of a read-only buffer


def test_hand_built_idx3_uint8_file_reads_to_the_known_array(tmp_path):
    path = tmp_path / "hand-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4]))
    a = read_idx(str(path))
    assert a.dtype == np.uint8
    np.testing.assert_array_equal(a, np.array([[[1, 2], [3, 4]]], dtype=np.uint8))


def test_hand_built_big_endian_idx_files_read_to_the_known_values(tmp_path):
    cases = {
        # int16: 0x0102 = 258, 0xFFFE = -2
        "i16": (bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE]), np.int16, [258, -2]),
        "i8": (bytes([0, 0, 0x09, 1, 0, 0, 0, 2, 0x7F, 0x80]), np.int8, [127, -128]),
        # int32: 0x00010000 = 65536
        "i32": (bytes([0, 0, 0x0C, 1, 0, 0, 0, 1, 0x00, 0x01, 0x00, 0x00]), np.int32, [65536]),
        # float32: 0x3FC00000 = 1.5, 0xC0200000 = -2.5
        "f32": (bytes([0, 0, 0x0D, 1, 0, 0, 0, 2, 0x3F, 0xC0, 0, 0, 0xC0, 0x20, 0, 0]), np.float32, [1.5, -2.5]),
        # float64: 0x3FF0000000000000 = 1.0
        "f64": (bytes([0, 0, 0x0E, 1, 0, 0, 0, 1, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0]), np.float64, [1.0]),
    }
    for name, (payload, dtype, values) in cases.items():
        path = tmp_path / name
        path.write_bytes(payload)
        a = read_idx(str(path))
        assert a.dtype == np.dtype(dtype), name
        np.testing.assert_array_equal(a, np.array(values, dtype=dtype))


def test_writer_produces_exactly_the_documented_bytes(tmp_path):
    path = tmp_path / "w"
    write_idx(str(path), np.array([[258, -2, 7]], dtype=np.int16))
    assert path.read_bytes() == bytes([0, 0, 0x0B, 2, 0, 0, 0, 1, 0, 0, 0, 3,
                                       0x01, 0x02, 0xFF, 0xFE, 0x00, 0x07])


def test_gzip_is_detected_by_content_not_by_name(tmp_path):
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    plain_named_gz = tmp_path / "plain.gz"
    write_idx(str(plain_named_gz), a)
    gz_without_suffix = tmp_path / "gzipped-idx2-ubyte"
    write_idx(str(gz_without_suffix), a, gzip=True)
    gz_by_stdlib = tmp_path / "stdlib.idx"  # someone else's gzip, not our writer's
    gz_by_stdlib.write_bytes(gzip.compress(bytes([0, 0, 8, 2, 0, 0, 0, 3, 0, 0, 0, 4]) + bytes(range(12))))
    for path in (plain_named_gz, gz_without_suffix, gz_by_stdlib):
        np.testing.assert_array_equal(read_idx(str(path)), a)


GOOD_IDX = bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6))


@pytest.mark.parametrize("payload, what", [
    (b"", "truncated"),
    (bytes([0, 0, 8]), "truncated"),
    (GOOD_IDX[:10], "truncated IDX header"),
    (GOOD_IDX[:-1], "truncated IDX data"),
    (GOOD_IDX + b"\x00", "bytes after the data"),
    (bytes([1, 0]) + GOOD_IDX[2:], "not an IDX file"),
    (bytes([0, 0, 0x0A]) + GOOD_IDX[3:], "unknown IDX dtype code 0x0A"),
    (bytes([0, 0, 8, 1, 0xFF, 0xFF, 0xFF, 0xFF]), "negative dimension"),
    (gzip.compress(GOOD_IDX)[:-6], "gzip"),
    (gzip.compress(GOOD_IDX[:-2]), "truncated IDX data"),
])
def test_malformed_idx_raises_value_error_naming_the_file(tmp_path, payload, what):
    path = tmp_path / "broken-idx-file"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match=what) as err:
        read_idx(str(path))
    assert str(path) in str(err.value)


def test_write_idx_refuses_dtypes_idx_cannot_store(tmp_path):
    for a in (np.zeros(3, np.int64), np.zeros(3, bool), np.zeros(3, np.uint16)):
        with pytest.raises(ValueError, match="IDX cannot store"):
            write_idx(str(tmp_path / "x"), a)


def test_big_endian_input_arrays_write_the_same_bytes(tmp_path):
    a = np.array([1, -300, 70000], dtype=np.int32)
    write_idx(str(tmp_path / "native"), a)
    write_idx(str(tmp_path / "big"), a.astype(">i4"))
    assert (tmp_path / "native").read_bytes() == (tmp_path / "big").read_bytes()


# --------------------------------------------------------------------------- MNIST


def write_mnist(directory, rng, n_train=6, n_test=4, names=None, gz=(False, True, False, True)):
    """Four MNIST files of random content; returns the arrays written."""
    names = names or ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                      "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    arrays = [
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train, dtype=np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test, dtype=np.uint8),
    ]
    for name, a, z in zip(names, arrays, gz):
        write_idx(str(directory / (name + (".gz" if z else ""))), a, gzip=z)
    return arrays


def check_mnist(split: ImageSplit, arrays) -> None:
    x_train, y_train, x_test, y_test = arrays
    assert split.n_classes == 10
    assert split.x_train.dtype == np.uint8 and split.x_train.shape == (len(x_train), 1, 28, 28)
    assert split.x_test.shape == (len(x_test), 1, 28, 28)
    assert split.y_train.dtype == np.int64 and split.y_test.dtype == np.int64
    np.testing.assert_array_equal(split.x_train[:, 0], x_train)
    np.testing.assert_array_equal(split.y_train, y_train)
    np.testing.assert_array_equal(split.x_test[:, 0], x_test)
    np.testing.assert_array_equal(split.y_test, y_test)


def test_mnist_dir_round_trip_mixing_plain_and_gz(tmp_path):
    arrays = write_mnist(tmp_path, np.random.default_rng(1))
    check_mnist(load_mnist_dir(str(tmp_path)), arrays)


def test_mnist_dir_accepts_the_dotted_mirror_names(tmp_path):
    names = ["train-images.idx3-ubyte", "train-labels.idx1-ubyte",
             "t10k-images.idx3-ubyte", "t10k-labels.idx1-ubyte"]
    arrays = write_mnist(tmp_path, np.random.default_rng(2), names=names, gz=(True, False, True, False))
    check_mnist(load_mnist_dir(str(tmp_path)), arrays)


def test_mnist_dir_through_a_pyarrow_uri(tmp_path):
    arrays = write_mnist(tmp_path, np.random.default_rng(3))
    check_mnist(load_mnist_dir("file://" + str(tmp_path)), arrays)
    np.testing.assert_array_equal(read_idx("file://" + str(tmp_path / "train-images-idx3-ubyte")), arrays[0])


def test_missing_mnist_file_names_the_directory_and_expected_names(tmp_path):
    write_mnist(tmp_path, np.random.default_rng(4))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_mnist_dir(str(tmp_path))
    message = str(err.value)
    assert str(tmp_path) in message
    assert "t10k-labels-idx1-ubyte" in message and "t10k-labels.idx1-ubyte" in message
    assert "train-images" not in message  # only what is actually missing


def test_missing_mnist_directory_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        load_mnist_dir(str(tmp_path / "nowhere"))


def test_mnist_image_label_count_mismatch_is_a_value_error(tmp_path):
    rng = np.random.default_rng(5)
    write_mnist(tmp_path, rng)
    write_idx(str(tmp_path / "train-labels-idx1-ubyte.gz"), rng.integers(0, 10, 5, dtype=np.uint8), gzip=True)
    with pytest.raises(ValueError, match="6 images .* but 5 labels"):
        load_mnist_dir(str(tmp_path))


def test_mnist_truncated_file_names_it(tmp_path):
    write_mnist(tmp_path, np.random.default_rng(6))
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="truncated") as err:
        load_mnist_dir(str(tmp_path))
    assert str(path) in str(err.value)


def test_mnist_label_out_of_range_is_a_value_error(tmp_path):
    write_mnist(tmp_path, np.random.default_rng(7))
    write_idx(str(tmp_path / "t10k-labels-idx1-ubyte"), np.array([0, 1, 10, 2], dtype=np.uint8))
    with pytest.raises(ValueError, match=r"outside \[0, 10\)"):
        load_mnist_dir(str(tmp_path))


# --------------------------------------------------------------------------- CIFAR


def hand_record(label_bytes: list[int]) -> tuple[bytes, np.ndarray]:
    """One record built byte by byte, and the (3, 32, 32) image it must decode to.

    Pixel byte i (after the labels) holds i % 251, so every pixel's value tells where it
    was read from: R plane, then G, then B, each row-major.
    """
    pixels = bytes(i % 251 for i in range(3072))
    expected = np.empty((3, 32, 32), dtype=np.uint8)
    for c in range(3):
        for h in range(32):
            for w in range(32):
                expected[c, h, w] = (c * 1024 + h * 32 + w) % 251
    return bytes(label_bytes) + pixels, expected


def test_cifar10_record_layout_matches_a_hand_built_record(tmp_path):
    record, expected = hand_record([7])
    record = bytearray(record)
    record[1 + 1024 + 1] = 200  # pixel (c=1, h=0, w=1): label byte, R plane, then G's second byte
    expected[1, 0, 1] = 200
    d = tmp_path / "c10"
    d.mkdir()
    (d / "data_batch_1.bin").write_bytes(bytes(record))
    (d / "test_batch.bin").write_bytes(bytes(record) * 2)
    split = load_cifar_dir(str(d), 10)
    assert split.n_classes == 10 and split.x_train.shape == (1, 3, 32, 32) and split.x_test.shape == (2, 3, 32, 32)
    assert split.x_train[0, 1, 0, 1] == 200
    np.testing.assert_array_equal(split.x_train[0], expected)
    np.testing.assert_array_equal(split.x_test[1], expected)
    assert split.y_train.tolist() == [7] and split.y_test.tolist() == [7, 7]
    # and our writer produces the very same bytes
    write_cifar_bin(str(tmp_path / "ours.bin"), expected[None], np.array([7]))
    assert (tmp_path / "ours.bin").read_bytes() == bytes(record)


def test_cifar100_uses_the_fine_label_of_a_hand_built_record(tmp_path):
    record, expected = hand_record([3, 42])  # coarse 3, fine 42
    d = tmp_path / "c100"
    d.mkdir()
    (d / "train.bin").write_bytes(record)
    (d / "test.bin").write_bytes(record)
    split = load_cifar_dir(str(d), 100)
    assert split.n_classes == 100
    assert split.y_train.tolist() == [42] and split.y_test.tolist() == [42]
    np.testing.assert_array_equal(split.x_train[0], expected)
    write_cifar_bin(str(tmp_path / "ours.bin"), expected[None], np.array([42]), coarse_labels=np.array([3]))
    assert (tmp_path / "ours.bin").read_bytes() == record


def test_cifar10_round_trip_uses_existing_batches_in_numeric_order(tmp_path):
    rng = np.random.default_rng(8)
    batches = {i: (random_images(rng, 3 + i, 3, 32), rng.integers(0, 10, 3 + i)) for i in (3, 1, 2)}
    for i, (x, y) in batches.items():  # written out of order: the order must come from the number
        write_cifar_bin(str(tmp_path / f"data_batch_{i}.bin"), x, y)
    x_test, y_test = random_images(rng, 4, 3, 32), rng.integers(0, 10, 4)
    write_cifar_bin(str(tmp_path / "test_batch.bin"), x_test, y_test)
    split = load_cifar_dir(str(tmp_path), 10)
    assert split.x_train.dtype == np.uint8 and split.y_train.dtype == np.int64
    np.testing.assert_array_equal(split.x_train, np.concatenate([batches[i][0] for i in (1, 2, 3)]))
    np.testing.assert_array_equal(split.y_train, np.concatenate([batches[i][1] for i in (1, 2, 3)]))
    np.testing.assert_array_equal(split.x_test, x_test)
    np.testing.assert_array_equal(split.y_test, y_test)


def test_cifar10_batches_with_a_gap_name_the_missing_one(tmp_path):
    """The first k batches are a subset; batches 2 and 4 without 3 are a lost file."""
    rng = np.random.default_rng(8)
    for name in ("data_batch_2.bin", "data_batch_4.bin", "test_batch.bin"):
        write_cifar_bin(str(tmp_path / name), random_images(rng, 2, 3, 32), rng.integers(0, 10, 2))
    with pytest.raises(FileNotFoundError, match="missing data_batch_1.bin, data_batch_3.bin: CIFAR-10"):
        load_cifar_dir(str(tmp_path), 10)


def test_cifar100_round_trip(tmp_path):
    rng = np.random.default_rng(9)
    x, y, coarse = random_images(rng, 5, 3, 32), rng.integers(0, 100, 5), rng.integers(0, 20, 5)
    x_t, y_t = random_images(rng, 2, 3, 32), rng.integers(0, 100, 2)
    write_cifar_bin(str(tmp_path / "train.bin"), x, y, coarse_labels=coarse)
    write_cifar_bin(str(tmp_path / "test.bin"), x_t, y_t, coarse_labels=y_t // 5)
    split = load_cifar_dir(str(tmp_path), 100)
    np.testing.assert_array_equal(split.x_train, x)
    np.testing.assert_array_equal(split.y_train, y)
    np.testing.assert_array_equal(split.x_test, x_t)
    np.testing.assert_array_equal(split.y_test, y_t)


@pytest.mark.parametrize("n_classes, subdir", [(10, "cifar-10-batches-bin"), (100, "cifar-100-binary")])
def test_cifar_parent_directory_form(tmp_path, n_classes, subdir):
    rng = np.random.default_rng(10)
    d = tmp_path / subdir
    x, y = random_images(rng, 3, 3, 32), rng.integers(0, n_classes, 3)
    coarse = None if n_classes == 10 else y // 5
    train, test = ("data_batch_1.bin", "test_batch.bin") if n_classes == 10 else ("train.bin", "test.bin")
    write_cifar_bin(str(d / train), x, y, coarse)
    write_cifar_bin(str(d / test), x[:1], y[:1], None if coarse is None else coarse[:1])
    for uri in (str(tmp_path), str(d), "file://" + str(tmp_path)):
        split = load_cifar_dir(uri, n_classes)
        np.testing.assert_array_equal(split.x_train, x)
        np.testing.assert_array_equal(split.y_train, y)
        np.testing.assert_array_equal(split.x_test, x[:1])


def test_cifar_through_a_pyarrow_uri(tmp_path):
    rng = np.random.default_rng(11)
    x, y = random_images(rng, 2, 3, 32), rng.integers(0, 10, 2)
    write_cifar_bin(str(tmp_path / "data_batch_1.bin"), x, y)
    write_cifar_bin(str(tmp_path / "test_batch.bin"), x, y)
    split = load_cifar_dir("file://" + str(tmp_path), 10)
    np.testing.assert_array_equal(split.x_train, x)
    np.testing.assert_array_equal(split.y_test, y)


@pytest.mark.parametrize("n_classes, train, test", [(10, "data_batch_1.bin", "test_batch.bin"),
                                                     (100, "train.bin", "test.bin")])
def test_truncated_cifar_file_raises_value_error_naming_it(tmp_path, n_classes, train, test):
    rng = np.random.default_rng(12)
    x, y = random_images(rng, 2, 3, 32), rng.integers(0, 10, 2)
    coarse = None if n_classes == 10 else y
    write_cifar_bin(str(tmp_path / train), x, y, coarse)
    write_cifar_bin(str(tmp_path / test), x, y, coarse)
    path = tmp_path / test
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="not a multiple") as err:
        load_cifar_dir(str(tmp_path), n_classes)
    assert str(path) in str(err.value)


def test_cifar100_file_read_as_cifar10_is_a_value_error(tmp_path):
    """The record sizes differ by one byte, so the wrong version is caught, not misread."""
    rng = np.random.default_rng(13)
    x, y = random_images(rng, 3, 3, 32), rng.integers(0, 10, 3)
    write_cifar_bin(str(tmp_path / "data_batch_1.bin"), x, y, coarse_labels=y)
    write_cifar_bin(str(tmp_path / "test_batch.bin"), x, y)
    with pytest.raises(ValueError, match="data_batch_1.bin"):
        load_cifar_dir(str(tmp_path), 10)


def test_missing_cifar_files_and_bad_n_classes(tmp_path):
    write_cifar_bin(str(tmp_path / "test_batch.bin"), np.zeros((1, 3, 32, 32), np.uint8), np.array([0]))
    with pytest.raises(FileNotFoundError, match="data_batch_1.bin") as err:
        load_cifar_dir(str(tmp_path), 10)
    assert str(tmp_path) in str(err.value)
    with pytest.raises(FileNotFoundError, match="train.bin and test.bin"):
        load_cifar_dir(str(tmp_path), 100)
    with pytest.raises(ValueError, match="10 .* or 100"):
        load_cifar_dir(str(tmp_path), 20)


def test_cifar10_label_out_of_range_is_a_value_error(tmp_path):
    record, _ = hand_record([10])
    (tmp_path / "data_batch_1.bin").write_bytes(record)
    (tmp_path / "test_batch.bin").write_bytes(record)
    with pytest.raises(ValueError, match=r"outside \[0, 10\)"):
        load_cifar_dir(str(tmp_path), 10)


def test_write_cifar_bin_validates_its_inputs(tmp_path):
    path = str(tmp_path / "x.bin")
    with pytest.raises(ValueError, match="uint8"):
        write_cifar_bin(path, np.zeros((1, 3, 32, 32), np.float32), np.array([0]))
    with pytest.raises(ValueError, match="uint8"):
        write_cifar_bin(path, np.zeros((1, 32, 32, 3), np.uint8), np.array([0]))
    with pytest.raises(ValueError, match="shape"):
        write_cifar_bin(path, np.zeros((2, 3, 32, 32), np.uint8), np.array([0]))
    with pytest.raises(ValueError, match="single bytes"):
        write_cifar_bin(path, np.zeros((1, 3, 32, 32), np.uint8), np.array([256]))


def test_struct_agrees_with_the_float_known_answers():
    """Guard for the hand-typed float bytes above: they really are 1.5, -2.5 and 1.0."""
    assert struct.unpack(">ff", bytes([0x3F, 0xC0, 0, 0, 0xC0, 0x20, 0, 0])) == (1.5, -2.5)
    assert struct.unpack(">d", bytes([0x3F, 0xF0, 0, 0, 0, 0, 0, 0])) == (1.0,)
