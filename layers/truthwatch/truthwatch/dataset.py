"""The training data: scikit-learn's handwritten digits, split the same way every time.

The digits data set (1,797 images of 8x8 pixels, values 0 to 16) ships inside scikit-learn, so
training and the demo never download anything.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

DIGITS_SOURCE = "sklearn.datasets.load_digits"


@dataclass(frozen=True)
class Split:
    """A stratified train / held-out split of a labelled data set.

    Attributes
    ----------
    x_train, x_heldout
        Feature rows, shape ``(n, n_features)``, float32.
    y_train, y_heldout
        Class indices, shape ``(n,)``, int64.
    feature_names, class_names
        Names in column and class-index order.
    fingerprint
        sha256 of the whole data set before splitting (features and labels).
    """

    x_train: npt.NDArray[np.float32]
    y_train: npt.NDArray[np.int64]
    x_heldout: npt.NDArray[np.float32]
    y_heldout: npt.NDArray[np.int64]
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    fingerprint: str

    @property
    def rows(self) -> int:
        """Rows in the whole data set."""
        return len(self.y_train) + len(self.y_heldout)


def fingerprint(x: npt.NDArray[np.generic], y: npt.NDArray[np.generic]) -> str:
    """sha256 of features and labels, independent of their in-memory dtype width."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(x, dtype="<f8").tobytes())
    digest.update(np.ascontiguousarray(y, dtype="<i8").tobytes())
    return digest.hexdigest()


def load_digits_split(heldout_fraction: float = 0.2, seed: int = 42) -> Split:
    """Load the digits and split them, stratified by class, with a fixed seed.

    Parameters
    ----------
    heldout_fraction
        Share of rows kept out of training for evaluation.
    seed
        Seed of the shuffle; the same seed gives the same split.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = np.asarray(data.data, dtype=np.float32)
    y = np.asarray(data.target, dtype=np.int64)
    x_train, x_heldout, y_train, y_heldout = train_test_split(
        x, y, test_size=heldout_fraction, stratify=y, random_state=seed
    )
    feature_names = tuple(f"pixel_{r}_{c}" for r in range(8) for c in range(8))
    class_names = tuple(str(name) for name in data.target_names)
    return Split(x_train, y_train, x_heldout, y_heldout, feature_names, class_names, fingerprint(x, y))
