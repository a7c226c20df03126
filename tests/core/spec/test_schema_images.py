"""core/spec/schema.py: DatasetSpec's source "images", its image_size and color_mode."""

import pytest

from core.spec import DatasetSpec, SpecError, StackSpec
from core.spec.schema import COLOR_MODES, DATASET_SOURCES


def test_an_image_dataset_round_trips_through_json():
    spec = StackSpec(dataset=DatasetSpec(source="images", path="sha256:" + "a" * 64, image_size=(32, 48),
                                         color_mode="grayscale"))
    again = StackSpec.from_json(spec.to_json())
    assert again == spec and again.dataset.image_size == (32, 48)
    assert spec.to_dict()["dataset"]["image_size"] == [32, 48]
    assert "images" in DATASET_SOURCES and COLOR_MODES == ("rgb", "grayscale")


def test_a_document_without_the_image_fields_reads_with_their_defaults():
    spec = StackSpec.from_dict({"schema_version": 2, "dataset": {"source": "images", "path": "pets.zip"}})
    assert spec.dataset.image_size == (64, 64) and spec.dataset.color_mode == "rgb"


@pytest.mark.parametrize("dataset, match", [
    ({"source": "images", "image_size": [2, 64]}, r"'dataset.image_size\[0\]' must be between 4 and 1024, received 2"),
    ({"source": "images", "image_size": [64, 5000]}, r"'dataset.image_size\[1\]' must be between 4 and 1024"),
    ({"source": "images", "image_size": [64, 64, 64]}, r"'dataset.image_size' must be \[height, width\], two whole "
                                                      r"numbers, received \[64, 64, 64\]"),
    ({"source": "images", "image_size": [32.5, 32]}, r"'dataset.image_size\[0\]' must be an integer, received 32.5"),
    ({"source": "images", "color_mode": "rgba"}, r"'dataset.color_mode' must be one of \['rgb', 'grayscale'\], "
                                                 r"received 'rgba'"),
    ({"source": "csv", "image_size": [32, 32]}, r"'dataset.image_size' is read only for source 'images', but the "
                                                r"source is 'csv'"),
    ({"source": "builtin", "color_mode": "grayscale"}, r"'dataset.color_mode' is read only for source 'images'"),
])
def test_bad_image_fields_name_the_key(dataset, match):
    with pytest.raises(SpecError, match=match):
        StackSpec.from_dict({"dataset": dataset})
