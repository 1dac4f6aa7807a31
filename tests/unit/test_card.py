import json
from pathlib import Path

import pytest

from truthwatch.card import FeatureBaseline, InputSpec, read_card
from truthwatch.errors import ModelLoadError


def test_feature_names_must_match_the_input_shape():
    with pytest.raises(ValueError, match="64 features by its shape"):
        InputSpec(shape=(8, 8), feature_names=("a",), value_range=(0.0, 1.0))


def test_proportions_need_one_more_entry_than_edges():
    with pytest.raises(ValueError, match="2 inner edges need 3 proportions"):
        FeatureBaseline(name="a", bin_edges=(1.0, 2.0), proportions=(0.5, 0.5))


def test_nan_is_refused_so_the_card_stays_strict_json():
    with pytest.raises(ValueError):
        FeatureBaseline(name="a", bin_edges=(float("nan"),), proportions=(0.5, 0.5))


def test_card_with_a_missing_field_names_it(tmp_path: Path):
    (tmp_path / "model.json").write_text(json.dumps({"name": "digits", "version": "0123456789ab"}))

    with pytest.raises(
        ModelLoadError, match=r"model\.json: model card is not valid \(created: Field required"
    ):
        read_card(tmp_path)
