"""Image data for the vision modules, all available offline.

- :func:`load_digits_split`: scikit-learn's bundled 8x8 handwritten digits (1797 images, 10
  classes) as normalised tensors with a deterministic, stratified train/test split.
- :func:`random_shift`: the cheap augmentation the small models need (translate by a few pixels).
- :func:`balanced_subset`: a small labelled subset with the same number of images per class
  (the "small-data regime" of the distillation module).
- :func:`load_cifar10`: CIFAR-10 from a local copy of the python version
  (``cifar-10-batches-py``) when the user has one; nothing is ever downloaded.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
CIFAR10_FOLDER = "cifar-10-batches-py"


@dataclass(frozen=True)
class ImageSplit:
    """Train and test images ``(n, c, h, w)`` (float32, normalised) with their labels ``(n,)`` (int64)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def denormalise(self, images: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation, for display: ``(n, c, h, w)`` back to the raw pixel range [0, 1]."""
        mean = torch.tensor(self.mean, dtype=images.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype).view(1, -1, 1, 1)
        return images * std + mean


def load_digits_split(test_fraction: float = 0.25, seed: int = 0, image_size: int = 8) -> ImageSplit:
    """scikit-learn's digits as ``(n, 1, s, s)`` tensors, split train/test per class, deterministically.

    Pixels (0..16) are scaled to [0, 1] and, if ``image_size`` is not 8, resized bilinearly to
    ``image_size`` x ``image_size``; then they are standardised with the *training* mean and
    standard deviation (one number each), so test statistics never leak into the preprocessing.
    The same ``seed`` always gives the same split.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0  # (1797, 8, 8) in [0, 1]
    if image_size != 8:
        resized = torch.nn.functional.interpolate(torch.from_numpy(images).unsqueeze(1), size=image_size,
                                                  mode="bilinear", align_corners=False)
        images = resized.squeeze(1).clamp(0.0, 1.0).numpy()  # (1797, s, s)
    labels = digits.target.astype(np.int64)
    index = np.arange(len(labels))
    train_index, test_index = train_test_split(index, test_size=test_fraction, random_state=seed,
                                               stratify=labels)
    train_index, test_index = np.sort(train_index), np.sort(test_index)
    mean = float(images[train_index].mean())
    std = float(images[train_index].std())

    def tensor(rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((images[rows] - mean) / std).unsqueeze(1)  # (n, 1, 8, 8)

    return ImageSplit(
        x_train=tensor(train_index), y_train=torch.from_numpy(labels[train_index]),
        x_test=tensor(test_index), y_test=torch.from_numpy(labels[test_index]),
        mean=(mean,), std=(std,), classes=tuple(str(d) for d in range(10)),
    )


def random_shift(images: torch.Tensor, max_shift: int = 1,
                 generator: torch.Generator | None = None, fill: float | None = None) -> torch.Tensor:
    """Translate each image ``(n, c, h, w)`` by its own random offset in [-max_shift, max_shift]² pixels.

    Uncovered pixels take the value ``fill`` (default: the smallest value in ``images``, i.e. the
    background of normalised digits). Returns a new tensor of the same shape.
    """
    if max_shift == 0:
        return images.clone()
    n, _, h, w = images.shape
    s = max_shift
    background = float(images.min()) if fill is None else fill
    padded = torch.nn.functional.pad(images, (s, s, s, s), value=background)  # (n, c, h+2s, w+2s)
    offsets = torch.randint(0, 2 * s + 1, (n, 2), generator=generator)
    rows = offsets[:, 0, None] + torch.arange(h)  # (n, h)
    cols = offsets[:, 1, None] + torch.arange(w)  # (n, w)
    batch = torch.arange(n)[:, None, None]
    # padded[i, :, rows[i], cols[i]] for every i, gathered with advanced indexing: (n, h, w, c)
    shifted = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return shifted.permute(0, 3, 1, 2).contiguous()  # (n, c, h, w)


def balanced_subset(labels: torch.Tensor, per_class: int, seed: int = 0) -> torch.Tensor:
    """Indices of ``per_class`` examples of every class in ``labels``, chosen at random by ``seed``.

    Returns the sorted indices (int64). Raises ``ValueError`` if a class has too few examples.
    """
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for cls in torch.unique(labels).tolist():
        rows = torch.nonzero(labels == cls).flatten()
        if len(rows) < per_class:
            raise ValueError(f"class {cls} has only {len(rows)} examples, {per_class} requested")
        chosen.append(rows[torch.randperm(len(rows), generator=generator)[:per_class]])
    return torch.sort(torch.cat(chosen)).values


def _cifar_folder(root: str | Path) -> Path:
    root = Path(root).expanduser()
    for candidate in (root, root / CIFAR10_FOLDER):
        if (candidate / "test_batch").is_file():
            return candidate
    raise FileNotFoundError(
        f"No CIFAR-10 found under '{root}'. Give the folder that holds the python version "
        f"('{CIFAR10_FOLDER}' with data_batch_1 ... data_batch_5 and test_batch), or its parent. "
        "Nothing is downloaded: get cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
        "and unpack it."
    )


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as handle:
        batch = pickle.load(handle, encoding="bytes")
    data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)  # rows are R, G, B planes
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    return data, labels


def _cifar_tensor(data: np.ndarray) -> torch.Tensor:
    images = torch.from_numpy(data).float() / 255.0  # (n, 3, 32, 32)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def load_cifar10(root: str | Path, train_limit: int | None = None,
                 test_limit: int | None = None) -> ImageSplit:
    """CIFAR-10 from a local copy: ``(n, 3, 32, 32)`` float tensors normalised per channel.

    ``root`` is the ``cifar-10-batches-py`` folder or its parent. ``train_limit``/``test_limit``
    keep only the first images (CPU-sized experiments). Never downloads anything.
    """
    folder = _cifar_folder(root)
    train_files = sorted(folder.glob("data_batch_*"))
    if not train_files:
        raise FileNotFoundError(f"'{folder}' has a test_batch but no data_batch_* files.")
    parts = [_read_cifar_batch(path) for path in train_files]
    x_train = np.concatenate([p[0] for p in parts])[:train_limit]
    y_train = np.concatenate([p[1] for p in parts])[:train_limit]
    x_test, y_test = _read_cifar_batch(folder / "test_batch")
    x_test, y_test = x_test[:test_limit], y_test[:test_limit]
    classes = CIFAR10_CLASSES
    meta = folder / "batches.meta"
    if meta.is_file():
        with open(meta, "rb") as handle:
            names = pickle.load(handle, encoding="bytes").get(b"label_names")
        if names:
            classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    return ImageSplit(
        x_train=_cifar_tensor(x_train), y_train=torch.from_numpy(y_train),
        x_test=_cifar_tensor(x_test), y_test=torch.from_numpy(y_test),
        mean=CIFAR10_MEAN, std=CIFAR10_STD, classes=classes,
    )
