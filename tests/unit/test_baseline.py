import numpy as np
import pytest

from truthwatch.baseline import bin_indices, build_baseline, shared_edges


def test_shared_edges_split_the_range_into_equal_bins():
    x = np.array([[0.0, 16.0], [8.0, 4.0]])

    assert shared_edges(x, bins=4) == (4.0, 8.0, 12.0)


def test_bin_indices_have_open_ends():
    edges = np.array([4.0, 8.0, 12.0])

    got = bin_indices(np.array([-100.0, 0.0, 4.0, 7.99, 8.0, 12.0, 1e9]), edges)

    assert got.tolist() == [0, 0, 1, 1, 2, 3, 3]


def test_baseline_counts_proportions_per_feature_and_class_priors():
    x = np.array([[0.0, 16.0], [0.0, 16.0], [16.0, 0.0], [0.0, 8.0]])
    y = np.array([0, 0, 1, 0])

    baseline = build_baseline(x, y, ("a", "b"), n_classes=3, bins=2)

    assert baseline.features[0].bin_edges == (8.0,)
    assert baseline.features[0].proportions == (0.75, 0.25)
    assert baseline.features[1].proportions == (0.25, 0.75)
    assert baseline.class_priors == (0.75, 0.25, 0.0)


def test_constant_data_still_gets_an_edge():
    x = np.zeros((3, 2))

    baseline = build_baseline(x, np.array([0, 0, 0]), ("a", "b"), n_classes=1)

    assert baseline.features[0].bin_edges == (0.0,)
    assert baseline.features[0].proportions == pytest.approx((0.0, 1.0))
