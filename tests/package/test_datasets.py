"""Tests of vlmcourse.datasets: digits split, augmentation, subsets and the offline CIFAR-10 reader."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from vlmcourse.datasets import (
    CIFAR10_FOLDER,
    CIFAR10_MEAN,
    CIFAR10_STD,
    balanced_subset,
    load_cifar10,
    load_digits_split,
    random_shift,
)


def test_digits_split_shapes_and_types() -> None:
    data = load_digits_split()
    assert data.x_train.shape[1:] == (1, 8, 8) and data.x_test.shape[1:] == (1, 8, 8)
    assert data.x_train.shape[0] + data.x_test.shape[0] == 1797
    assert data.x_test.shape[0] == 450  # 25 % of 1797, rounded up by scikit-learn
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert data.num_classes == 10


def test_digits_split_is_deterministic_and_seed_dependent() -> None:
    a, b, c = load_digits_split(seed=0), load_digits_split(seed=0), load_digits_split(seed=1)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.y_train, c.y_train)


def test_digits_resized() -> None:
    small, large = load_digits_split(), load_digits_split(image_size=16)
    assert large.x_train.shape[1:] == (1, 16, 16) and torch.equal(small.y_train, large.y_train)
    assert abs(float(large.x_train.mean())) < 1e-4
    pooled = torch.nn.functional.avg_pool2d(large.denormalise(large.x_train), 2)
    assert float((pooled - small.denormalise(small.x_train)).abs().mean()) < 0.1  # a blurred copy of the 8x8 image


def test_digits_normalised_with_train_statistics() -> None:
    data = load_digits_split()
    assert abs(float(data.x_train.mean())) < 1e-4
    assert abs(float(data.x_train.std()) - 1.0) < 1e-3
    raw = data.denormalise(data.x_train)
    assert float(raw.min()) > -1e-5 and float(raw.max()) < 1 + 1e-5


def test_digits_split_is_stratified_and_disjoint() -> None:
    data = load_digits_split()
    train_counts = torch.bincount(data.y_train, minlength=10).float()
    test_counts = torch.bincount(data.y_test, minlength=10).float()
    ratio = test_counts / (train_counts + test_counts)
    assert float((ratio - 0.25).abs().max()) < 0.02
    train_rows = {tuple(row.flatten().tolist()) for row in data.x_train[:300]}
    # digits has a few duplicate images, but almost none of the test images appear in train
    overlap = sum(tuple(row.flatten().tolist()) in train_rows for row in data.x_test)
    assert overlap < 5


def test_random_shift_moves_pixels_and_keeps_shape() -> None:
    images = torch.zeros(64, 2, 5, 5)
    images[:, :, 2, 2] = 1.0
    shifted = random_shift(images, max_shift=1, generator=torch.Generator().manual_seed(0), fill=0.0)
    assert shifted.shape == images.shape
    assert torch.equal(shifted.sum(dim=(2, 3)), images.sum(dim=(2, 3)))  # nothing leaves a 1-pixel border
    rows, cols = torch.nonzero(shifted[:, 0] == 1.0, as_tuple=True)[1:]
    assert set(rows.tolist()) == {1, 2, 3} and set(cols.tolist()) == {1, 2, 3}
    assert torch.equal(shifted[:, 0], shifted[:, 1])  # all channels move together
    assert torch.equal(random_shift(images, max_shift=0), images)


def test_random_shift_matches_explicit_roll() -> None:
    images = torch.randn(8, 1, 6, 6)
    generator = torch.Generator().manual_seed(3)
    offsets = torch.randint(0, 3, (8, 2), generator=torch.Generator().manual_seed(3))
    shifted = random_shift(images, max_shift=1, generator=generator, fill=0.0)
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1))
    for i, (dr, dc) in enumerate(offsets.tolist()):
        assert torch.equal(shifted[i], padded[i, :, dr:dr + 6, dc:dc + 6])


def test_balanced_subset() -> None:
    labels = torch.arange(100) % 10
    subset = balanced_subset(labels, per_class=3, seed=0)
    assert len(subset) == 30 and torch.equal(torch.bincount(labels[subset]), torch.full((10,), 3))
    assert torch.equal(subset, balanced_subset(labels, per_class=3, seed=0))
    assert not torch.equal(subset, balanced_subset(labels, per_class=3, seed=1))
    with pytest.raises(ValueError):
        balanced_subset(labels, per_class=11)


def _write_fake_cifar(folder: Path, per_batch: int = 4) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        with open(folder / name, "wb") as handle:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, handle)
        written[name] = data
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship",
             b"truck"]
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": per_batch}, handle)
    return written


def test_cifar10_reads_local_python_batches(tmp_path: Path) -> None:
    written = _write_fake_cifar(tmp_path / CIFAR10_FOLDER)
    data = load_cifar10(tmp_path)  # the parent folder works
    assert data.x_train.shape == (20, 3, 32, 32) and data.x_test.shape == (4, 3, 32, 32)
    assert data.classes[3] == "cat" and data.y_train.dtype == torch.int64
    # first training image, red channel, top-left pixel: the first of the 3072 bytes
    expected = (written["data_batch_1"][0, 0] / 255.0 - CIFAR10_MEAN[0]) / CIFAR10_STD[0]
    assert abs(float(data.x_train[0, 0, 0, 0]) - expected) < 1e-5
    # green plane starts at byte 1024, row-major inside each plane
    expected_green = (written["data_batch_1"][0, 1024 + 32 + 5] / 255.0 - CIFAR10_MEAN[1]) / CIFAR10_STD[1]
    assert abs(float(data.x_train[0, 1, 1, 5]) - expected_green) < 1e-5
    # the batches are concatenated in order 1..5
    expected_last = (written["data_batch_5"][-1, 3071] / 255.0 - CIFAR10_MEAN[2]) / CIFAR10_STD[2]
    assert abs(float(data.x_train[-1, 2, 31, 31]) - expected_last) < 1e-5
    restored = data.denormalise(data.x_test)
    assert torch.allclose(restored * 255, torch.from_numpy(written["test_batch"]).float().view(4, 3, 32, 32),
                          atol=1e-3)


def test_cifar10_limits_and_batch_folder(tmp_path: Path) -> None:
    _write_fake_cifar(tmp_path / CIFAR10_FOLDER)
    data = load_cifar10(tmp_path / CIFAR10_FOLDER, train_limit=7, test_limit=2)
    assert data.x_train.shape[0] == 7 and data.x_test.shape[0] == 2


def test_cifar10_missing_path_explains(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Nothing is downloaded"):
        load_cifar10(tmp_path / "nowhere")
