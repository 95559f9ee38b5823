"""Tasks: shapes, the validation split, mnist1d generation and caching, file formats, errors."""

from __future__ import annotations

import gzip
import math
import os
import pickle
import random
import struct

import numpy as np
import pytest
import torch

from lrlab.errors import ConfigError, DatasetNotFoundError, LrlabError
from lrlab.lab import tasks as T


@pytest.fixture(scope="module")
def mnist1d_cache(tmp_path_factory):
    """Generate full-size MNIST-1D once for this module, in a private cache folder."""
    cache = tmp_path_factory.mktemp("lrlab-cache")
    task = T.load_task("mnist1d", cache_dir=cache)
    return cache, task


# --------------------------------------------------------------------------------------------
# mnist1d


def test_mnist1d_shapes_and_standard_split(mnist1d_cache):
    _, task = mnist1d_cache
    # the standard 4,000 / 1,000 split, with 10% of the training set held out for validation
    assert (len(task.y_train), len(task.y_val), len(task.y_test)) == (3600, 400, 1000)
    assert task.x_train.shape == (3600, 40) and task.input_shape == (40,)
    assert task.x_train.dtype == torch.float32 and task.y_train.dtype == torch.int64
    assert task.num_classes == 10 and task.name == "mnist1d"
    assert set(task.y_test.tolist()) == set(range(10))


def test_mnist1d_validation_is_a_holdout_of_the_training_arrays(mnist1d_cache):
    cache, task = mnist1d_cache
    raw = T.mnist1d_arrays(cache)
    tr, va = T.holdout_indices(len(raw["y_train"]))
    # mnist1d is not re-normalised, so the tensors are exactly the generator's arrays
    np.testing.assert_array_equal(task.x_val.numpy(), raw["x_train"][va])
    np.testing.assert_array_equal(task.y_train.numpy(), raw["y_train"][tr])
    np.testing.assert_array_equal(task.x_test.numpy(), raw["x_test"])


def test_holdout_indices_partition_and_are_fixed():
    tr, va = T.holdout_indices(1000)
    assert len(va) == 100 and len(tr) == 900
    assert np.intersect1d(tr, va).size == 0
    np.testing.assert_array_equal(np.union1d(tr, va), np.arange(1000))
    tr2, va2 = T.holdout_indices(1000)
    np.testing.assert_array_equal(va, va2)  # seeded: the same every time
    np.testing.assert_array_equal(tr, tr2)


def test_mnist1d_matches_the_package_generator_and_leaves_global_rng_alone(tmp_path):
    from mnist1d.data import get_dataset_args, make_dataset

    random.seed(123)
    np.random.seed(123)
    before = (random.random(), np.random.rand())
    random.seed(123)
    np.random.seed(123)
    arrays = T.mnist1d_arrays(tmp_path, num_samples=300)
    after = (random.random(), np.random.rand())
    assert before == after  # generation restored the caller's global RNG states

    args = get_dataset_args()
    args.num_samples = 300
    ref = make_dataset(args)
    np.testing.assert_array_equal(arrays["x_train"], ref["x"].astype(np.float32))
    np.testing.assert_array_equal(arrays["y_test"], ref["y_test"])
    assert len(arrays["y_train"]) == 240 and len(arrays["y_test"]) == 60


def test_mnist1d_cache_is_written_atomically_and_reused(tmp_path, monkeypatch):
    first = T.mnist1d_arrays(tmp_path, num_samples=200)
    path = T.mnist1d_cache_path(tmp_path, num_samples=200)
    assert path.is_file() and path.suffix == ".npz"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind

    def boom(*a, **k):
        raise AssertionError("regenerated although the cache exists")

    monkeypatch.setattr(T, "_generate_mnist1d", boom)
    second = T.mnist1d_arrays(tmp_path, num_samples=200)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])


def test_mnist1d_corrupt_cache_is_regenerated(tmp_path):
    path = T.mnist1d_cache_path(tmp_path, num_samples=100)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not an npz file")
    arrays = T.mnist1d_arrays(tmp_path, num_samples=100)
    assert arrays["x_train"].shape == (80, 40)
    with np.load(path) as z:  # and the file was replaced by a good one
        assert z["x_train"].shape == (80, 40)


def test_default_cache_dir_follows_LRLAB_CACHE(tmp_path, monkeypatch):
    monkeypatch.setenv("LRLAB_CACHE", str(tmp_path / "c"))
    assert T.default_cache_dir() == tmp_path / "c"
    assert T.mnist1d_cache_path(num_samples=100).parent == tmp_path / "c"
    monkeypatch.delenv("LRLAB_CACHE")
    assert T.default_cache_dir() == T.Path.home() / ".cache" / "lrlab"


def test_cache_path_depends_on_generator_arguments(tmp_path):
    assert T.mnist1d_cache_path(tmp_path, 100) != T.mnist1d_cache_path(tmp_path, 200)
    assert T.mnist1d_cache_path(tmp_path, 100) == T.mnist1d_cache_path(tmp_path, 100)


# --------------------------------------------------------------------------------------------
# digits


def test_digits_shapes_split_and_normalisation():
    task = T.load_task("digits")
    assert task.input_shape == (1, 8, 8) and task.num_classes == 10
    n_total = len(task.y_train) + len(task.y_val) + len(task.y_test)
    assert n_total == 1797
    assert len(task.y_test) == math.ceil(1797 * T.DIGITS_TEST_FRACTION)  # sklearn rounds up
    assert len(task.y_val) == round(0.1 * (1797 - len(task.y_test)))
    # standardised with the training set's own statistics
    assert abs(task.x_train.mean().item()) < 1e-4
    assert task.x_train.std().item() == pytest.approx(1.0, abs=1e-3)
    # the split is fixed: loading twice gives the same test set
    np.testing.assert_array_equal(task.y_test.numpy(), T.load_task("digits").y_test.numpy())


# --------------------------------------------------------------------------------------------
# idx files (Fashion-MNIST)


def write_idx(path, array: np.ndarray, compress: bool) -> None:
    """Write ``array`` (uint8) in the idx format, as the real files are."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def make_fake_fashion(folder, n_train=40, n_test=12, compress=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(n_test, dtype=np.uint8) % 10,
    }
    for name, a in arrays.items():
        write_idx(folder / name, a, compress)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_round_trip(tmp_path, compress):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x-idx3-ubyte", a, compress)
    name = "x-idx3-ubyte.gz" if compress else "x-idx3-ubyte"
    np.testing.assert_array_equal(T.read_idx(tmp_path / name), a)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(T.DatasetFormatError, match="bad magic"):
        T.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x00" * 3)
    with pytest.raises(T.DatasetFormatError, match="file has 3"):
        T.read_idx(tmp_path / "short")


@pytest.mark.parametrize("compress,sub", [(True, ""), (False, "fashion-mnist")])
def test_fashion_mnist_from_fake_idx_files(tmp_path, compress, sub):
    arrays = make_fake_fashion(tmp_path / sub if sub else tmp_path, compress=compress)
    task = T.load_task("fashion-mnist", data_dir=tmp_path)
    assert task.input_shape == (1, 28, 28) and task.num_classes == 10
    assert (len(task.y_train), len(task.y_val), len(task.y_test)) == (36, 4, 12)
    np.testing.assert_array_equal(task.y_test.numpy(), arrays["t10k-labels-idx1-ubyte"])
    tr, _ = T.holdout_indices(40)
    np.testing.assert_array_equal(task.y_train.numpy(), arrays["train-labels-idx1-ubyte"][tr])
    # scalar standardisation with training statistics keeps the pixel order: check one image
    raw = arrays["train-images-idx3-ubyte"][tr[0]].astype(np.float64)
    got = task.x_train[0, 0].double().numpy()
    corr = np.corrcoef(raw.ravel(), got.ravel())[0, 1]
    assert corr == pytest.approx(1.0, abs=1e-6)


def test_fashion_mnist_missing_gives_one_line_hint(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        T.load_task("fashion-mnist", data_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert "apt-get install dataset-fashion-mnist" in message and "--data-dir" in message
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, LrlabError)


def test_fashion_mnist_default_location_is_the_debian_package(monkeypatch, tmp_path):
    assert "/usr/share/datasets/fashion-mnist" in T.FASHION_MNIST_DIRS
    make_fake_fashion(tmp_path / "sys", n_train=20, n_test=5)
    monkeypatch.setattr(T, "FASHION_MNIST_DIRS", (str(tmp_path / "sys"),))
    assert len(T.load_task("fashion-mnist").y_test) == 5


# --------------------------------------------------------------------------------------------
# CIFAR python pickles


def write_cifar_batch(path, data: np.ndarray, labels, label_key: bytes) -> None:
    with open(path, "wb") as f:
        pickle.dump({b"data": data, label_key: list(labels), b"batch_label": b"fake"}, f)


def make_fake_cifar10(folder, per_batch=4, n_test=6, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    batches = []
    for i in range(1, 6):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch)
        write_cifar_batch(folder / f"data_batch_{i}", data, labels, b"labels")
        batches.append((data, labels))
    test = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    write_cifar_batch(folder / "test_batch", test, rng.integers(0, 10, n_test), b"labels")
    return batches, test


def test_cifar10_layout_is_channel_major(tmp_path):
    batches, _ = make_fake_cifar10(tmp_path)
    raw = T.TASKS["cifar10"].loader(tmp_path, None)
    assert raw["x_train"].shape == (20, 3, 32, 32) and raw["x_test"].shape == (6, 3, 32, 32)
    first = batches[0][0][0]  # R plane (1024 bytes), then G, then B, each row-major 32x32
    np.testing.assert_allclose(raw["x_train"][0, 1, 0, :], first[1024:1056] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(raw["y_train"][:4], batches[0][1])


def test_cifar10_task_per_channel_normalised(tmp_path):
    make_fake_cifar10(tmp_path / "cifar-10-batches-py", per_batch=8)
    task = T.load_task("cifar10", data_dir=tmp_path)  # the parent folder works too
    assert task.input_shape == (3, 32, 32) and task.num_classes == 10
    assert (len(task.y_train), len(task.y_val), len(task.y_test)) == (36, 4, 6)
    means = task.x_train.double().mean(dim=(0, 2, 3))
    stds = task.x_train.double().std(dim=(0, 2, 3), unbiased=False)
    np.testing.assert_allclose(means.numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(stds.numpy(), 1.0, atol=1e-4)


def test_cifar100_uses_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    labels = rng.integers(0, 100, 30)
    write_cifar_batch(
        folder / "train", rng.integers(0, 256, (30, 3072), dtype=np.uint8), labels, b"fine_labels"
    )
    write_cifar_batch(
        folder / "test", rng.integers(0, 256, (5, 3072), dtype=np.uint8), range(5), b"fine_labels"
    )
    task = T.load_task("cifar100", data_dir=tmp_path)
    assert task.num_classes == 100 and len(task.y_test) == 5
    tr, _ = T.holdout_indices(30)
    np.testing.assert_array_equal(task.y_train.numpy(), labels[tr])


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_missing_gives_one_line_hint(tmp_path, name):
    for data_dir in (None, tmp_path):
        with pytest.raises(DatasetNotFoundError) as info:
            T.load_task(name, data_dir=data_dir)
        assert "\n" not in str(info.value) and "--data-dir" in str(info.value)


def test_cifar_wrong_format_is_an_lrlab_error(tmp_path):
    make_fake_cifar10(tmp_path)
    (tmp_path / "test_batch").write_bytes(b"garbage")
    with pytest.raises(LrlabError, match="test_batch"):
        T.load_task("cifar10", data_dir=tmp_path)


# --------------------------------------------------------------------------------------------
# Registry, Task helpers


def test_unknown_task_names_the_allowed_values():
    with pytest.raises(ConfigError) as info:
        T.load_task("mnist-1d")
    message = str(info.value)
    assert "did you mean 'mnist1d'" in message
    for name in T.TASKS:
        assert name in message


def test_registry_shapes_match_loaded_tasks(mnist1d_cache):
    _, task = mnist1d_cache
    assert T.TASKS["mnist1d"].input_shape == task.input_shape
    assert set(T.TASKS) == {"mnist1d", "digits", "fashion-mnist", "cifar10", "cifar100"}


def test_task_subset_and_to(mnist1d_cache):
    _, task = mnist1d_cache
    small = task.subset(n_train=100, n_val=20, n_test=30)
    assert (len(small.y_train), len(small.y_val), len(small.y_test)) == (100, 20, 30)
    assert torch.equal(small.x_train, task.x_train[:100])
    assert small.to("cpu") is small
    assert "train=100" in repr(small)
    with pytest.raises(Exception):
        small.name = "other"  # frozen


def test_make_task_on_custom_arrays():
    x = np.arange(50 * 2, dtype=np.float32).reshape(50, 2)
    y = np.arange(50) % 2
    task = T.make_task("toy", x, y, x[:10], y[:10], 2, normalize="scalar")
    assert (len(task.y_train), len(task.y_val)) == (45, 5)
    assert task.input_shape == (2,)
    assert abs(task.x_train.mean().item()) < 1e-5


def test_no_stray_files_written_outside_the_cache(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    T.mnist1d_arrays(tmp_path / "cache", num_samples=100)
    assert sorted(os.listdir(tmp_path)) == ["cache"]  # never mnist1d's ./mnist1d_data.pkl
