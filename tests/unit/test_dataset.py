import numpy as np

from truthwatch.dataset import fingerprint, load_digits_split


def test_digits_split_is_stratified_and_reproducible():
    first = load_digits_split(0.2, seed=7)
    second = load_digits_split(0.2, seed=7)

    assert first.rows == 1797
    assert first.x_train.shape == (1437, 64)
    assert first.x_heldout.shape == (360, 64)
    assert np.array_equal(first.x_heldout, second.x_heldout)
    assert np.bincount(first.y_heldout).min() >= 35  # every digit is held out about 36 times
    assert first.feature_names[9] == "pixel_1_1"
    assert first.class_names == tuple("0123456789")


def test_a_different_seed_holds_out_other_rows():
    assert not np.array_equal(load_digits_split(seed=1).y_heldout, load_digits_split(seed=2).y_heldout)


def test_fingerprint_changes_with_one_label_and_not_with_dtype():
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    y = np.array([0, 1, 1])

    assert fingerprint(x, y) == fingerprint(x.astype(np.float64), y.astype(np.int32))
    assert fingerprint(x, y) != fingerprint(x, np.array([0, 1, 0]))
