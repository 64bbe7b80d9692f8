"""Class schemes and source-label mappings (data.classes)."""
import numpy as np
import pytest

from data.classes import DFC8, WORLDCOVER, ClassScheme, label_mapping, read_label_mapping, scheme_of_root
from data.errors import DatasetError
from data.labels import DFC10_TO_DFC8, IGNORE_INDEX


def test_dfc8_scheme_is_the_original_mapping():
    assert (DFC8.to_indices(np.arange(11)) == DFC10_TO_DFC8).all()
    assert DFC8.to_indices(np.array([11, 300, -1])).tolist() == [IGNORE_INDEX] * 3
    assert DFC8.is_dfc8


def test_worldcover_preset_lands_on_the_dfc_classes():
    codes = np.array([10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100, 0])
    names = [DFC8.names[i] if i != IGNORE_INDEX else None for i in DFC8.to_indices(WORLDCOVER.apply(codes))]
    assert names == ["Forest", "Shrubland", "Grassland", "Croplands", "Urban/Built-up", "Barren", None,
                     "Water", "Wetlands", "Wetlands", "Grassland", None]
    with pytest.raises(DatasetError, match=r"label code\(s\) 11 are not in the class mapping"):
        WORLDCOVER.apply(np.array([10, 11]))


def test_class_files_json_and_csv_agree(tmp_path):
    (tmp_path / "c.csv").write_text("code,name,color\n3,Water,#0000ff\n1,Crop,\n2,Crop,\n0,ignore,\n")
    (tmp_path / "c.json").write_text('{"classes": [{"name": "Water", "color": "#0000ff", "codes": [3]},'
                                     ' {"name": "Crop", "codes": [1, 2]}], "ignore": [0]}')
    a, b = read_label_mapping(tmp_path / "c.csv"), read_label_mapping(tmp_path / "c.json")
    assert a.scheme.names == b.scheme.names == ("Water", "Crop")
    assert a.scheme.colors[0] == "#0000ff" and a.scheme.colors == b.scheme.colors
    assert a.apply(np.array([3, 1, 2, 0])).tolist() == [1, 2, 2, 0] == b.apply(np.array([3, 1, 2, 0])).tolist()
    assert a.scheme.to_indices(a.apply(np.array([3, 2, 0]))).tolist() == [0, 1, IGNORE_INDEX]


@pytest.mark.parametrize("text, suffix, message", [
    ("{not json", ".json", "not valid JSON"),
    ("code,name\nx,Water\n", ".csv", "is not a number"),
    ("code,name\n1,Water\n1,Crop\n", ".csv", "code 1 is given twice"),
    ("code,name,color\n1,Water,blue\n", ".csv", "is not #rrggbb"),
    ("a: b", ".yaml", "expected a .json or .csv"),
])
def test_a_bad_class_file_is_one_line_naming_it(tmp_path, text, suffix, message):
    path = tmp_path / f"classes{suffix}"
    path.write_text(text)
    with pytest.raises(DatasetError, match=message) as err:
        label_mapping(str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_scheme_round_trips_through_a_dataset_root(tmp_path):
    assert scheme_of_root(tmp_path) is DFC8
    scheme = ClassScheme(("Water", "Crop"), ("#0000ff", "#00ff00"), (1, 2), "mine")
    scheme.save(tmp_path / "classes.json")
    assert scheme_of_root(tmp_path) == scheme
