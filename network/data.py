"""Data sets of the network flow: the embedded default and the user's own ``.npz`` files.

The default is scikit-learn's handwritten digits (1797 real 8 x 8 images bundled with
the package, nothing downloaded), scaled to [0, 1] and shaped (N, 1, 8, 8), split once
and for all: :data:`TEST_FRACTION` of the images, stratified by class, with
:data:`SPLIT_SEED`. A user's data set is an ``.npz`` file with the arrays ``inputs`` (the
network's input shape after the batch axis) and ``labels`` (integer classes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Dataset", "digits", "load_npz", "load_dataset", "TEST_FRACTION", "SPLIT_SEED"]

#: Fraction of the digits held out as the test set.
TEST_FRACTION = 0.25
#: Seed of the fixed train/test split of the digits.
SPLIT_SEED = 20261202


@dataclass(frozen=True)
class Dataset:
    """Inputs and integer labels.

    Parameters
    ----------
    inputs : float32 array, shape (N, ...)
    labels : int64 array, shape (N,)
    name : str
        Where the data came from (for reports).
    """

    inputs: np.ndarray
    labels: np.ndarray
    name: str = "data"

    def __post_init__(self):
        x, y = np.asarray(self.inputs), np.asarray(self.labels)
        if x.ndim < 2:
            raise ValueError(f"{self.name}: inputs must have a batch axis and at least one more, not shape {x.shape}")
        if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
            raise ValueError(f"{self.name}: inputs must be real numbers, not {x.dtype}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{self.name}: inputs contain NaN or infinite values")
        if y.shape != (x.shape[0],):
            raise ValueError(f"{self.name}: labels must have shape ({x.shape[0]},) to match the inputs, not {y.shape}")
        if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0):
            raise ValueError(f"{self.name}: labels must be non-negative integers, not {y.dtype} values")
        object.__setattr__(self, "inputs", x.astype(np.float32))
        object.__setattr__(self, "labels", y.astype(np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, count: int | None) -> "Dataset":
        """The first ``count`` examples (all when None)."""
        if count is None:
            return self
        return Dataset(self.inputs[:count], self.labels[:count], self.name)


def digits() -> tuple[Dataset, Dataset]:
    """The embedded default: (train, test) digits, inputs (N, 1, 8, 8) in [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]
    x_train, x_test, y_train, y_test = train_test_split(
        images, bunch.target, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=bunch.target)
    return Dataset(x_train, y_train, "digits-train"), Dataset(x_test, y_test, "digits-test")


def load_npz(path: str | Path) -> Dataset:
    """A user's data set: ``inputs`` and ``labels`` from an ``.npz`` file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in ("inputs", "labels") if key not in data.files]
            if missing:
                raise ValueError(f"{path}: missing array(s) {', '.join(missing)}; an .npz data set needs "
                                 f"'inputs' and 'labels' (found: {', '.join(data.files) or 'none'})")
            inputs, labels = data["inputs"], data["labels"]
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read as .npz: {exc}") from None
    return Dataset(inputs, labels, path.name)


def load_dataset(path: str | Path | None, split: str = "test") -> Dataset:
    """The user's ``.npz`` at ``path``, or the default digits' ``split`` ("train" or "test")."""
    if path is not None:
        return load_npz(path)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    train, test = digits()
    return train if split == "train" else test
