"""load_source: layout detection, ids, classes, groups, ignored files, and every malformed-source error."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from headstart.data.groups import group_from_name
from headstart.data.sources import load_source
from headstart.data.synthetic import make_manifest_csv, make_npz, make_phantom_dataset
from headstart.errors import ConfigError, DataError
from tests.data.sample_files import shared_data, write_dicom


def _img(path: Path, value: int = 100, size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (size, size), value).save(path)
    return path


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


# ------------------------------------------------------------------------------------------- folders


def test_split_folder_layout(tmp_path):
    root = make_phantom_dataset(tmp_path / "d", n_train=20, n_test=8, image_size=16)
    src = load_source(root)
    assert src.kind == "split-folder" and src.classes == ["NORMAL", "PNEUMONIA"]
    assert Counter(s.split for s in src.samples) == {"train": 20, "val": 16, "test": 8}
    assert [s.id for s in src.samples] == sorted(s.id for s in src.samples)
    assert all(s.group for s in src.samples)  # Kaggle-style names
    first = src.samples[0]
    assert first.id.startswith("test/NORMAL/") and Path(first.path).is_absolute()
    assert src.load(first).mode == "RGB"
    assert not any(".DS_Store" in s.id for s in src.samples)


def test_split_folder_aliases_valid_and_validation(tmp_path):
    """`valid/` (a common download layout) is the val split, as in manifests; its images are not dropped."""
    root = make_phantom_dataset(tmp_path / "d", n_train=20, n_test=8, image_size=16)
    (root / "val").rename(root / "valid")
    src = load_source(root)
    assert Counter(s.split for s in src.samples) == {"train": 20, "val": 16, "test": 8}


def test_class_folders_only_and_nested_files(tmp_path):
    _img(tmp_path / "b_class" / "x1.png")
    _img(tmp_path / "b_class" / "deeper" / "x2.png")
    _img(tmp_path / "a_class" / "y.png")
    src = load_source(tmp_path)
    assert src.kind == "folder" and src.classes == ["a_class", "b_class"]
    assert [(s.id, s.label, s.split) for s in src.samples] == [
        ("a_class/y.png", 0, ""),
        ("b_class/deeper/x2.png", 1, ""),
        ("b_class/x1.png", 1, ""),
    ]


def test_ignores_hidden_appledouble_and_non_image_files(tmp_path, caplog):
    for cls in ("A", "B"):
        _img(tmp_path / cls / "keep.png")
        _img(tmp_path / cls / "UPPER.JPG")
    (tmp_path / "A" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tmp_path / "A" / "._keep.png").write_bytes(b"\0\5\26\7 AppleDouble")
    (tmp_path / "A" / "notes.txt").write_text("hello")
    (tmp_path / "A" / ".hidden").mkdir()
    _img(tmp_path / "A" / ".hidden" / "h.png")
    _img(tmp_path / "__MACOSX" / "A" / "m.png")
    with caplog.at_level(logging.DEBUG, logger="headstart.data"):
        src = load_source(tmp_path)
    assert sorted(s.id for s in src.samples) == ["A/UPPER.JPG", "A/keep.png", "B/UPPER.JPG", "B/keep.png"]
    assert src.classes == ["A", "B"]
    assert "ignored 3 hidden or non-image file(s)" in caplog.text


def test_dicom_files_in_class_folders(tmp_path):
    ramp = np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (8, 1))
    write_dicom(tmp_path / "NORMAL" / "a.dcm", ramp)
    write_dicom(tmp_path / "SICK" / "b.DCM", ramp, photometric="MONOCHROME1")
    (tmp_path / "SICK" / "c").write_bytes((tmp_path / "NORMAL" / "a.dcm").read_bytes())  # no suffix, DICM magic
    src = load_source(tmp_path)
    assert [s.id for s in src.samples] == ["NORMAL/a.dcm", "SICK/b.DCM", "SICK/c"]
    a, b = (np.asarray(src.load(s))[..., 0].astype(int) for s in src.samples[:2])
    assert (a == 255 - b).all()


def test_empty_class_folder_is_skipped_with_warning(tmp_path, caplog):
    _img(tmp_path / "A" / "1.png")
    _img(tmp_path / "B" / "1.png")
    (tmp_path / "C").mkdir()
    with caplog.at_level(logging.WARNING):
        src = load_source(tmp_path)
    assert src.classes == ["A", "B"]
    assert "C: class folder holds no images, skipped" in caplog.text


def test_group_pattern_overrides_kaggle_names(tmp_path):
    for cls, name in (("A", "pat01_scan1.png"), ("A", "pat01_scan2.png"), ("B", "pat02_x.png"), ("B", "other.png")):
        _img(tmp_path / cls / name)
    src = load_source(tmp_path, group_pattern=r"^(pat\d+)_")
    assert {s.id: s.group for s in src.samples} == {
        "A/pat01_scan1.png": "pat01",
        "A/pat01_scan2.png": "pat01",
        "B/pat02_x.png": "pat02",
        "B/other.png": "",
    }
    whole = load_source(tmp_path, group_pattern=r"pat\d+")  # no capture group: the whole match
    assert whole.samples[0].group == "pat01"


def test_invalid_group_pattern_is_a_config_error(tmp_path):
    _img(tmp_path / "A" / "1.png")
    with pytest.raises(ConfigError, match="--group-pattern"):
        load_source(tmp_path, group_pattern="(unclosed")


@pytest.mark.parametrize(
    "stem, group",
    [
        ("person123_bacteria_45", "person123"),
        ("person7_virus_2", "person7"),
        ("IM-0117-0001", "IM-0117"),
        ("IM-0629-0001-0002", "IM-0629"),
        ("NORMAL2-IM-1427-0001", "NORMAL2-IM-1427"),
        ("scan_0001", ""),
    ],
)
def test_kaggle_group_names(stem, group):
    assert group_from_name(stem) == group


def test_missing_path(tmp_path):
    with pytest.raises(DataError) as err:
        load_source(tmp_path / "nowhere")
    assert "does not exist" in _one_line(err) and "nowhere" in str(err.value)


def test_path_of_unknown_kind(tmp_path):
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(DataError) as err:
        load_source(tmp_path / "data.txt")
    assert "neither a folder, a .csv manifest nor a .npz" in _one_line(err)


def test_empty_folder(tmp_path):
    (tmp_path / ".DS_Store").write_bytes(b"x")
    with pytest.raises(DataError) as err:
        load_source(tmp_path)
    assert "no class folders and no images" in _one_line(err)


def test_flat_folder_of_images(tmp_path):
    for i in range(12):
        _img(tmp_path / f"{i}.png")
    with pytest.raises(DataError) as err:
        load_source(tmp_path)
    assert _one_line(err) == (
        f"found 12 images directly in {tmp_path}; expected class sub-folders like {tmp_path}/NORMAL/... "
        "or a CSV manifest"
    )


def test_flat_split_folder(tmp_path):
    _img(tmp_path / "train" / "a.png")
    with pytest.raises(DataError, match=r"found 1 images directly in .*train; expected class sub-folders"):
        load_source(tmp_path)


def test_split_folders_without_train(tmp_path):
    _img(tmp_path / "val" / "A" / "a.png")
    _img(tmp_path / "test" / "B" / "b.png")
    with pytest.raises(DataError, match="found test/, val/ but no train/"):
        load_source(tmp_path)


@pytest.mark.parametrize("n_classes", [0, 1])
def test_fewer_than_two_classes_with_images(tmp_path, n_classes):
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    if n_classes:
        _img(tmp_path / "A" / "a.png")
    with pytest.raises(DataError) as err:
        load_source(tmp_path)
    assert ("one class only" if n_classes else "no images found") in _one_line(err)


# ------------------------------------------------------------------------------------------- manifest


def test_manifest_with_split_and_group(tmp_path):
    csv_path = make_manifest_csv(tmp_path, n=30, image_size=16)
    src = load_source(csv_path)
    assert src.kind == "manifest" and src.classes == ["normal", "pneumonia"]
    assert len(src.samples) == 30 and all(s.id.startswith("images/p") for s in src.samples)
    assert all(s.group.startswith("patient") and s.split in ("train", "val", "test") for s in src.samples)
    assert src.load(src.samples[0]).size == (16, 16)


def test_manifest_integer_labels_sort_numerically_and_absolute_paths(tmp_path):
    files = [_img(tmp_path / "img" / f"{i}.png", value=i) for i in range(4)]
    rows = [f"{files[0]},10", "img/1.png,9", "img/2.png,10", "img/3.png, 2 "]
    (tmp_path / "m.csv").write_text("path,label\n" + "\n".join(rows) + "\n\n")
    src = load_source(tmp_path / "m.csv")
    assert src.classes == ["2", "9", "10"]
    assert {s.id: src.classes[s.label] for s in src.samples} == {
        "img/0.png": "10", "img/1.png": "9", "img/2.png": "10", "img/3.png": "2"
    }


def test_manifest_without_group_column_falls_back_to_names(tmp_path):
    _img(tmp_path / "person5_virus_1.png")
    _img(tmp_path / "IM-0007-0001.png")
    (tmp_path / "m.csv").write_text("\ufeffPath,Label\nperson5_virus_1.png,P\nIM-0007-0001.png,N\n")  # BOM, caps
    src = load_source(tmp_path / "m.csv")
    assert {s.id: s.group for s in src.samples} == {"person5_virus_1.png": "person5", "IM-0007-0001.png": "IM-0007"}


def test_manifest_missing_columns(tmp_path):
    (tmp_path / "m.csv").write_text("file,class\na.png,x\n")
    with pytest.raises(DataError) as err:
        load_source(tmp_path / "m.csv")
    assert "missing column(s) path, label (found file, class)" in _one_line(err)


def test_manifest_naming_missing_files(tmp_path):
    _img(tmp_path / "ok.png")
    lines = ["ok.png,a"] + [f"gone{i}.png,b" for i in range(5)]
    (tmp_path / "m.csv").write_text("path,label\n" + "\n".join(lines))
    with pytest.raises(DataError) as err:
        load_source(tmp_path / "m.csv")
    assert "5 row(s) name files that do not exist (e.g. gone0.png, gone1.png, gone2.png)" in _one_line(err)


@pytest.mark.parametrize(
    "body, message",
    [
        ("a.png,\n", "row 2 has an empty label"),
        ("a.png,x\nb.png\n", "row 3 has an empty label"),
        ("a.png,x,training\n", "row 2 has split 'training'"),
        ("a.png,x\na.png,y\n", "row 3 repeats 'a.png' (first at row 2)"),
        ("", "manifest has no rows"),
    ],
)
def test_manifest_bad_rows(tmp_path, body, message):
    _img(tmp_path / "a.png")
    _img(tmp_path / "b.png")
    header = "path,label,split\n" if "training" in body else "path,label\n"
    (tmp_path / "m.csv").write_text(header + body)
    with pytest.raises(DataError) as err:
        load_source(tmp_path / "m.csv")
    assert message in _one_line(err)


def test_empty_manifest_file(tmp_path):
    (tmp_path / "m.csv").write_text("")
    with pytest.raises(DataError, match="manifest is empty"):
        load_source(tmp_path / "m.csv")


# ------------------------------------------------------------------------------------------------ npz


@pytest.mark.parametrize("rgb", [False, True])
def test_npz_source(tmp_path, rgb):
    path = make_npz(tmp_path / "x.npz", n_train=6, n_val=2, n_test=4, image_size=12, rgb=rgb)
    src = load_source(path)
    assert src.kind == "npz" and src.classes == ["0", "1"]
    assert [s.id for s in src.samples[:2]] == ["train/00000", "train/00001"]
    assert Counter(s.split for s in src.samples) == {"train": 6, "val": 2, "test": 4}
    img = src.load(src.samples[-1])
    assert img.mode == "RGB" and img.size == (12, 12)
    with np.load(path) as npz:
        expected = npz["test_images"][3]
    assert (np.asarray(img)[..., 0] == (expected[..., 0] if rgb else expected)).all()


def test_npz_class_names_and_pickling_drops_arrays(tmp_path):
    import pickle

    src = load_source(make_npz(tmp_path / "x.npz", n_val=0, n_test=0, classes=["normal", "pneumonia"]))
    assert src.classes == ["normal", "pneumonia"]
    clone = pickle.loads(pickle.dumps(src))
    assert clone._arrays == {} and np.asarray(clone.load(clone.samples[1])).shape == (28, 28, 3)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"train_images": np.zeros((2, 4, 4), np.uint8)}, "missing key(s) train_labels (found train_images)"),
        ({"x": np.zeros(2)}, "missing key(s) train_images, train_labels (found x)"),
        (
            {"train_images": np.zeros((3, 4, 4), np.uint8), "train_labels": np.array([0, 1]),},
            "train_images has 3 rows but train_labels has 2",
        ),
        ({"train_images": np.zeros((2, 4, 4), np.uint8), "train_labels": np.array([0.5, 1.0])}, "non-integer"),
        ({"train_images": np.zeros((2, 4, 4), np.uint8), "train_labels": np.array(["a", "b"])}, "non-integer"),
        ({"train_images": np.zeros((2, 4, 4), np.uint8), "train_labels": np.full((2, 3), 2)},
         "train_labels: row 0, column '0' holds 2.0; expected 1, 0, -1 (uncertain) or blank"),
        ({"train_images": np.zeros((2, 4, 4), np.uint8), "train_labels": np.zeros((3, 3))},
         "train_labels has shape (3, 3) for 2 images"),
        ({"train_images": np.zeros((2, 4), np.uint8), "train_labels": np.array([0, 1])}, "expected (N, H, W)"),
        (
            {"train_images": np.zeros((2, 4, 4), np.uint8), "train_labels": np.array([0, 1]),
             "test_images": np.zeros((2, 4, 4), np.uint8)},
            "missing key(s) test_labels",
        ),
        (
            {"train_images": np.zeros((2, 4, 4), np.uint8), "train_labels": np.array([0, 2]),
             "classes": np.array(["a", "b"])},
            "labels go up to 2 but `classes` names only 2",
        ),
    ],
)
def test_npz_malformed(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError) as err:
        load_source(tmp_path / "bad.npz")
    assert message in _one_line(err) and "bad.npz" in str(err.value)


def test_npz_that_is_not_an_archive(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read as a .npz archive"):
        load_source(tmp_path / "bad.npz")


# ------------------------------------------------------------------------------------------ real data


@pytest.mark.realdata
def test_real_kaggle_224_counts_and_groups():
    src = load_source(shared_data("kaggle_cxr_224"))
    assert src.kind == "split-folder" and src.classes == ["NORMAL", "PNEUMONIA"]
    assert Counter(src.classes[s.label] for s in src.samples) == {"NORMAL": 1341, "PNEUMONIA": 3875}
    assert all(s.group for s in src.samples)
    groups = {s.id.rsplit("/", 1)[1]: s.group for s in src.samples}
    assert groups["person1000_bacteria_2931.jpeg"] == "person1000"
    assert groups["IM-0629-0001-0002.jpeg"] == "IM-0629"
    assert len(set(groups.values())) < len(groups)  # patients repeat


@pytest.mark.realdata
def test_real_pneumoniamnist():
    src = load_source(shared_data("pneumoniamnist_balanced.npz"))
    assert Counter(s.split for s in src.samples) == {"train": 2428, "val": 270, "test": 468}
    assert src.load(src.samples[0]).size == (28, 28)
