"""Classification tasks the lab trains on: small in-memory datasets held as torch tensors.

Every task is loaded into a :class:`Task` (train / validation / test tensors). The validation
set is a fixed hold-out of the training set (:data:`VAL_FRACTION` of it, drawn with
:data:`SPLIT_SEED`), so that schedules and policies that react to a validation metric never see
the test set, and the test set stays untouched for the final numbers.

Nothing here downloads: ``mnist1d`` is generated locally by the ``mnist1d`` package's own
generator (and cached as ``.npz``), ``digits`` ships with scikit-learn, and the other datasets
are read from files already on the machine. A missing dataset raises
:class:`~lrlab.errors.DatasetNotFoundError` with a one-line hint saying how to get it.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import pickle
import random
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lrlab.atomic import atomic_write
from lrlab.errors import ConfigError, DatasetNotFoundError, LrlabError, one_line, unknown_name_error

#: Fraction of the training set held out for validation (fixed, seeded, the same for every trial).
VAL_FRACTION = 0.1
#: Seed of the train/validation (and, for ``digits``, train/test) split. Independent of trial seeds,
#: so every trial of a study sees exactly the same three sets.
SPLIT_SEED = 0
#: Where the Debian package ``dataset-fashion-mnist`` installs its idx files.
FASHION_MNIST_DIRS: tuple[str, ...] = ("/usr/share/datasets/fashion-mnist",)
#: Bump when the cached mnist1d array layout changes, so that old cache files are not reused.
_MNIST1D_CACHE_VERSION = 1


class DatasetFormatError(LrlabError, ValueError):
    """A dataset file exists but is not in the expected format (truncated, wrong magic, ...)."""


# --------------------------------------------------------------------------------------------
# The task value


@dataclass(frozen=True, eq=False)
class Task:
    """One dataset, split three ways, as tensors on one device.

    ``x_*`` are float32 with shape ``(n, *input_shape)``; ``y_*`` are int64 class indices.
    Frozen so that a task loaded once can be shared by many trials without one trial changing
    another's data (the tensors themselves are never modified by the trainer).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    input_shape: tuple[int, ...]

    def __repr__(self) -> str:
        return (
            f"Task({self.name!r}, train={len(self.y_train)}, val={len(self.y_val)}, "
            f"test={len(self.y_test)}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes}, device={self.device})"
        )

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    def to(self, device: str | torch.device) -> Task:
        """The same task with every tensor on ``device`` (``self`` if already there)."""
        device = torch.device(device)
        if self.x_train.device == device:
            return self
        moved = {f: getattr(self, f).to(device) for f in _TENSOR_FIELDS}
        return dataclasses.replace(self, **moved)

    def subset(
        self, n_train: int | None = None, n_val: int | None = None, n_test: int | None = None
    ) -> Task:
        """The first ``n`` examples of each split: a quick, still deterministic, smaller task.

        Useful for smoke tests and for timing; ``None`` keeps a split whole.
        """

        def cut(x: torch.Tensor, n: int | None) -> torch.Tensor:
            return x if n is None else x[:n].clone()

        return dataclasses.replace(
            self,
            x_train=cut(self.x_train, n_train),
            y_train=cut(self.y_train, n_train),
            x_val=cut(self.x_val, n_val),
            y_val=cut(self.y_val, n_val),
            x_test=cut(self.x_test, n_test),
            y_test=cut(self.y_test, n_test),
        )


_TENSOR_FIELDS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


@dataclass(frozen=True)
class TaskInfo:
    """What a task is, known without loading it (models check compatibility against this)."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    description: str
    source: str
    loader: Callable[[Path | None, Path | None], dict[str, np.ndarray]] = dataclasses.field(
        repr=False
    )
    normalize: str = "none"  # "none", "scalar" or "channel", see make_task


# --------------------------------------------------------------------------------------------
# Split and normalisation, shared by every task


def holdout_indices(n: int, fraction: float = VAL_FRACTION, seed: int = SPLIT_SEED):
    """``(train_idx, val_idx)``: a fixed random hold-out of ``round(fraction * n)`` examples.

    Both index arrays are sorted, so the kept training examples stay in their original order
    (the trainer shuffles them anyway, with its own seeded generator).
    """
    n_val = int(round(fraction * n))
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _normalise(x_train: np.ndarray, others: list[np.ndarray], mode: str):
    """Standardise with statistics of the (post-split) training set only, so no validation or
    test information leaks into the inputs. ``scalar``: one mean/std; ``channel``: per axis 1."""
    if mode == "none":
        return x_train, others
    if mode == "scalar":
        mean, std = x_train.mean(dtype=np.float64), x_train.std(dtype=np.float64)
    elif mode == "channel":
        axes = (0,) + tuple(range(2, x_train.ndim))
        shape = (1, -1) + (1,) * (x_train.ndim - 2)
        mean = x_train.mean(axis=axes, dtype=np.float64).reshape(shape)
        std = x_train.std(axis=axes, dtype=np.float64).reshape(shape)
    else:
        raise ValueError(f"normalize must be 'none', 'scalar' or 'channel', got {mode!r}")
    std = np.where(std > 0, std, 1.0)

    def apply(x: np.ndarray) -> np.ndarray:
        return ((x - mean) / std).astype(np.float32)

    return apply(x_train), [apply(x) for x in others]


def make_task(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    num_classes: int,
    *,
    normalize: str = "none",
    val_fraction: float = VAL_FRACTION,
    device: str | torch.device = "cpu",
) -> Task:
    """Build a :class:`Task` from train/test arrays: hold out validation, normalise, to tensors.

    This is the one place every dataset goes through, so every task gets the same split rule.
    """
    x_train = np.asarray(x_train, dtype=np.float32)
    x_test = np.asarray(x_test, dtype=np.float32)
    y_train = np.asarray(y_train).astype(np.int64)
    y_test = np.asarray(y_test).astype(np.int64)
    tr, va = holdout_indices(len(y_train), val_fraction)
    x_tr, (x_va, x_te) = _normalise(x_train[tr], [x_train[va], x_test], normalize)

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    return Task(
        name=name,
        x_train=tensor(x_tr),
        y_train=tensor(y_train[tr]),
        x_val=tensor(x_va),
        y_val=tensor(y_train[va]),
        x_test=tensor(x_te),
        y_test=tensor(y_test),
        num_classes=int(num_classes),
        input_shape=tuple(int(s) for s in x_train.shape[1:]),
    )


# --------------------------------------------------------------------------------------------
# Cache location and atomic writes


def default_cache_dir() -> Path:
    """``$LRLAB_CACHE`` if set, else ``~/.cache/lrlab`` (the project-wide cache location)."""
    env = os.environ.get("LRLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lrlab"


def _save_npz_atomic(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``path`` so that readers never see a half-written file, even with parallel
    sweep workers generating the same cache at once."""
    atomic_write(path, lambda f: np.savez(f, **dict(arrays)))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# mnist1d


def _mnist1d_args(num_samples: int | None) -> dict[str, Any]:
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    if num_samples is not None:
        args["num_samples"] = int(num_samples)
    return args


def mnist1d_cache_path(cache_dir: str | Path | None = None, num_samples: int | None = None) -> Path:
    """The cache file for a given generator configuration (its name hashes every generator
    argument and the package version, so a change of either never reuses stale data)."""
    from importlib.metadata import version

    args = _mnist1d_args(num_samples)
    args.pop("url", None)
    payload = json.dumps(
        {"args": args, "mnist1d": version("mnist1d"), "v": _MNIST1D_CACHE_VERSION}, sort_keys=True
    )
    digest = hashlib.sha256(payload.encode()).hexdigest()[:12]
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / f"mnist1d-{args['num_samples']}-{digest}.npz"


def _generate_mnist1d(num_samples: int | None) -> dict[str, np.ndarray]:
    """Run the mnist1d package's generator (never its downloader).

    ``make_dataset`` seeds the *global* ``random`` / ``np.random`` state with its fixed seed (42);
    we restore both afterwards so loading a task has no side effect on the caller's RNGs.
    """
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(ObjectView(_mnist1d_args(num_samples)))
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {
        "x_train": np.asarray(data["x"], dtype=np.float32),
        "y_train": np.asarray(data["y"], dtype=np.int64),
        "x_test": np.asarray(data["x_test"], dtype=np.float32),
        "y_test": np.asarray(data["y_test"], dtype=np.int64),
    }


def mnist1d_arrays(
    cache_dir: str | Path | None = None, *, num_samples: int | None = None
) -> dict[str, np.ndarray]:
    """MNIST-1D train/test arrays (4,000 / 1,000 by default), from the cache or generated.

    ``num_samples`` (default 5,000, split 80/20 by the generator) makes a smaller or larger
    variant; it is cached under its own name.
    """
    path = mnist1d_cache_path(cache_dir, num_samples)
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
        except (OSError, ValueError, KeyError, EOFError):
            pass  # a corrupt or foreign file: regenerate and overwrite it
    arrays = _generate_mnist1d(num_samples)
    _save_npz_atomic(path, arrays)
    return arrays


def _load_mnist1d(data_dir: Path | None, cache_dir: Path | None) -> dict[str, np.ndarray]:
    return mnist1d_arrays(cache_dir)


# --------------------------------------------------------------------------------------------
# digits (scikit-learn)

#: Fraction of scikit-learn's 1,797 digits used as the test set (stratified, seed SPLIT_SEED).
DIGITS_TEST_FRACTION = 0.2


def _load_digits(data_dir: Path | None, cache_dir: Path | None) -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]  # 1 x 8 x 8, pixels 0..16
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=DIGITS_TEST_FRACTION, random_state=SPLIT_SEED, stratify=y
    )
    return {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te}


# --------------------------------------------------------------------------------------------
# Fashion-MNIST (idx files)

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_FASHION_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def read_idx(path: str | Path) -> np.ndarray:
    """Parse one idx file (the MNIST format), gzipped (``.gz``) or not, into a NumPy array.

    Layout: two zero bytes, a type code, the number of dimensions, one big-endian uint32 per
    dimension, then the data, big-endian, row-major.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DatasetFormatError(f"{path} is not an idx file (bad magic number)")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetFormatError(f"{path} is truncated (incomplete idx header)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    count = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header != count * dtype.itemsize:
        raise DatasetFormatError(
            f"{path}: idx header says {dims} ({count * dtype.itemsize} bytes of data), "
            f"file has {len(raw) - header}"
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))
    )


def _find_file(folders: list[Path], stem: str) -> Path | None:
    for folder in folders:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def _load_fashion_mnist(data_dir: Path | None, cache_dir: Path | None) -> dict[str, np.ndarray]:
    # An explicit data_dir is the only place looked at, so a test or a user is never surprised
    # by a system-wide copy; without one, the Debian package's location.
    folders = (
        [data_dir, data_dir / "fashion-mnist"]
        if data_dir is not None
        else [Path(d) for d in FASHION_MNIST_DIRS]
    )
    paths = {key: _find_file(folders, stem) for key, stem in _FASHION_FILES.items()}
    missing = [_FASHION_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        where = data_dir if data_dir is not None else folders[0]
        raise DatasetNotFoundError(
            f"fashion-mnist not found in {where} (missing {missing[0]}[.gz]): run "
            f"'apt-get install dataset-fashion-mnist' or pass --data-dir DIR holding the 4 idx files"
        )
    arrays = {key: read_idx(p) for key, p in paths.items() if p is not None}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DatasetFormatError(
                f"fashion-mnist {split}: images {x.shape} and labels {y.shape} do not match"
            )
        arrays[f"x_{split}"] = (x.astype(np.float32) / 255.0)[:, None, :, :]
        arrays[f"y_{split}"] = y.astype(np.int64)
    return arrays


# --------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 (python pickle batches)

_CIFAR: dict[str, dict[str, Any]] = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "label_key": "labels",
        "archive": "cifar-10-python.tar.gz",
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "label_key": "fine_labels",
        "archive": "cifar-100-python.tar.gz",
    },
}


def _unpickle_cifar(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR python batch: ``data`` (N x 3072 uint8, channel-major) and labels.

    These are pickles (the format the CIFAR authors publish); only load folders you trust.
    """
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise DatasetFormatError(f"{path} is not a CIFAR python batch ({exc})") from exc
    if not isinstance(batch, Mapping):
        raise DatasetFormatError(f"{path} is not a CIFAR python batch (not a dict)")
    # The official files have bytes keys; accept str keys from re-saved copies too.
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or label_key not in batch:
        raise DatasetFormatError(f"{path} has no 'data' / {label_key!r} entries")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DatasetFormatError(
            f"{path}: expected data N x 3072 and N labels, got {data.shape} and {labels.shape}"
        )
    return data.reshape(-1, 3, 32, 32), labels


def _load_cifar(name: str, data_dir: Path | None) -> dict[str, np.ndarray]:
    meta = _CIFAR[name]
    hint = (
        f"download the python version ({meta['archive']}) from "
        f"https://www.cs.toronto.edu/~kriz/cifar.html, unpack it and pass --data-dir DIR"
    )
    if data_dir is None:
        raise DatasetNotFoundError(f"{name} needs a data folder: {hint}")
    folder = next(
        (
            d
            for d in (data_dir, data_dir / meta["folder"])
            if all((d / f).is_file() for f in meta["train"] + meta["test"])
        ),
        None,
    )
    if folder is None:
        raise DatasetNotFoundError(
            f"{name} not found in {data_dir} (need {meta['folder']}/{meta['test'][0]} etc.): {hint}"
        )
    out = {}
    for split in ("train", "test"):
        parts = [_unpickle_cifar(folder / f, meta["label_key"]) for f in meta[split]]
        out[f"x_{split}"] = np.concatenate([p[0] for p in parts]).astype(np.float32) / 255.0
        out[f"y_{split}"] = np.concatenate([p[1] for p in parts])
    return out


# --------------------------------------------------------------------------------------------
# Registry

TASKS: dict[str, TaskInfo] = {
    "mnist1d": TaskInfo(
        name="mnist1d",
        input_shape=(40,),
        num_classes=10,
        description="MNIST-1D (Greydanus 2020): 4,000 train / 1,000 test signals of length 40",
        source="generated locally by the mnist1d package (seed 42), cached as .npz",
        loader=_load_mnist1d,
        normalize="none",  # the generator already centres the data and scales it to std 1
    ),
    "digits": TaskInfo(
        name="digits",
        input_shape=(1, 8, 8),
        num_classes=10,
        description="scikit-learn's 8x8 digits: 1,797 images, 80/20 stratified train/test",
        source="bundled with scikit-learn (sklearn.datasets.load_digits)",
        loader=_load_digits,
        normalize="scalar",
    ),
    "fashion-mnist": TaskInfo(
        name="fashion-mnist",
        input_shape=(1, 28, 28),
        num_classes=10,
        description="Fashion-MNIST: 60,000 train / 10,000 test 28x28 greyscale images",
        source="idx files from /usr/share/datasets/fashion-mnist (apt-get install "
        "dataset-fashion-mnist) or --data-dir",
        loader=_load_fashion_mnist,
        normalize="scalar",
    ),
    "cifar10": TaskInfo(
        name="cifar10",
        input_shape=(3, 32, 32),
        num_classes=10,
        description="CIFAR-10: 50,000 train / 10,000 test 32x32 colour images",
        source="user-supplied cifar-10-batches-py folder (--data-dir)",
        loader=lambda data_dir, cache_dir: _load_cifar("cifar10", data_dir),
        normalize="channel",
    ),
    "cifar100": TaskInfo(
        name="cifar100",
        input_shape=(3, 32, 32),
        num_classes=100,
        description="CIFAR-100 (fine labels): 50,000 train / 10,000 test 32x32 colour images",
        source="user-supplied cifar-100-python folder (--data-dir)",
        loader=lambda data_dir, cache_dir: _load_cifar("cifar100", data_dir),
        normalize="channel",
    ),
}


def task_info(name: str) -> TaskInfo:
    """The registry entry for ``name``; an unknown name is a ConfigError listing the choices."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise unknown_name_error("task", name, TASKS) from None


def load_task(
    name: str,
    *,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> Task:
    """Load task ``name`` (see :data:`TASKS`) onto ``device``.

    ``data_dir`` is where file-based datasets live (fashion-mnist, cifar10, cifar100);
    ``cache_dir`` where generated data is cached (default ``$LRLAB_CACHE`` or ``~/.cache/lrlab``).
    """
    info = task_info(name)
    data_dir = Path(data_dir).expanduser() if data_dir is not None else None
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None
    arrays = info.loader(data_dir, cache_dir)
    task = make_task(
        info.name,
        arrays["x_train"],
        arrays["y_train"],
        arrays["x_test"],
        arrays["y_test"],
        info.num_classes,
        normalize=info.normalize,
        device=device,
    )
    if task.input_shape != info.input_shape:
        raise DatasetFormatError(
            f"{name}: expected inputs of shape {info.input_shape}, the files hold {task.input_shape}"
        )
    return task


# --------------------------------------------------------------------------------------------
# The user's own task

#: Tasks built by user code in this process, by (reference, code folder): a study calls the
#: user's loader once to count its training examples, and each worker once for all its trials.
_USER_TASKS: dict[tuple[str, str | None], Task] = {}


def load_user_task(ref: str, *, code_dir: str | None = None, where: str = "task") -> Task:
    """The :class:`Task` the user's function ``module:function`` returns (called with no
    arguments, once per process). Anything else than a Task is a one-line ConfigError."""
    from lrlab.lab.trial import load_user_callable

    cache_key = (ref, code_dir)
    if cache_key not in _USER_TASKS:
        load = load_user_callable(ref, where, code_dir, "nothing", nargs=0)
        try:
            task = load()
        except LrlabError:
            raise
        except Exception as exc:
            raise LrlabError(f"{where}: {ref}() raised {one_line(exc)}") from None
        if not isinstance(task, Task):
            raise ConfigError(
                f"{where}: {ref}() returned a {type(task).__name__}, not a lrlab.lab.Task "
                "(build one with lrlab.lab.make_task)"
            )
        _USER_TASKS[cache_key] = task
    return _USER_TASKS[cache_key]


def load_any_task(
    name: str,
    *,
    data_dir: str | Path | None = None,
    code_dir: str | None = None,
    device: str | torch.device = "cpu",
) -> Task:
    """A built-in task by name (:func:`load_task`) or the user's (a ``module:function``)."""
    from lrlab.lab.contract import is_code_ref

    if is_code_ref(name):
        return load_user_task(name, code_dir=code_dir).to(device)
    return load_task(name, data_dir=data_dir, device=device)
