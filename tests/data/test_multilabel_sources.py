"""Multi-label readers: NIH and CheXpert layouts, generic CSV columns, (N, L) npz, and their one-line errors."""

from __future__ import annotations

import csv
import logging
from collections import Counter

import numpy as np
import pytest

from headstart.data.dataset import build_dataset, manifest_hash
from headstart.data.labelcodes import BLANK, NEGATIVE, POSITIVE, UNCERTAIN
from headstart.data.options import SourceOptions
from headstart.data.sources import load_source
from headstart.data.types import SplitConfig
from headstart.errors import ConfigError, DataError
from tests.data.multilabel_files import (CHEXPERT_FINDINGS, NIH_FINDINGS, chexpert_rows, image, make_nih,
                                         write_chexpert)
from tests.data.sample_files import shared_data


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


# ------------------------------------------------------------------------------------------------ NIH


def test_nih_layout_reads_findings_groups_and_wins_over_folders(tmp_path, caplog):
    root = make_nih(tmp_path / "nih")
    with caplog.at_level(logging.INFO, logger="headstart.data.sources"):
        src = load_source(root)
    assert "NIH ChestX-ray14 layout" in caplog.text
    assert src.kind == "nih" and src.multilabel and src.classes == list(NIH_FINDINGS)
    assert len(src.samples) == 36 and src.samples[0].id == "images_001/images/00000001_000.png"
    lines = (root / "Data_Entry_2017_v2020.csv").read_text().splitlines()[1:]
    by_name = {line.split(",")[0]: line.split(",")[1] for line in lines}
    for s in src.samples:
        text = by_name[s.id.rsplit("/", 1)[1]]
        expected = [POSITIVE if f in text.split("|") else NEGATIVE for f in NIH_FINDINGS]
        assert list(s.labels) == expected  # No Finding: all negative; no blanks or uncertain in NIH
        assert s.group == str(int(s.id.rsplit("/", 1)[1][:8]))  # Patient ID


def test_nih_official_split_and_val_carved_by_patient(tmp_path):
    root = make_nih(tmp_path / "nih", n_patients=40, split_lists=True)
    ds = build_dataset(root, split_config=SplitConfig(), find_duplicates=False)
    test_names = set((root / "test_list.txt").read_text().split())
    assert {s.id.rsplit("/", 1)[1] for s in ds.samples if s.split == "test"} == test_names
    assert Counter(s.split for s in ds.samples)["val"] > 0
    splits_of_patient: dict[str, set] = {}
    for s in ds.samples:
        splits_of_patient.setdefault(s.group, set()).add(s.split)
    assert all(len(v) == 1 for v in splits_of_patient.values())
    assert ds.task == "multilabel"


def test_nih_missing_images_one_error_or_one_warning(tmp_path, caplog):
    root = make_nih(tmp_path / "nih", absent=5)
    with pytest.raises(DataError) as err:
        load_source(root)
    assert "5 row(s) name files that do not exist" in _one_line(err) and "--allow-missing" in str(err.value)
    with caplog.at_level(logging.WARNING):
        src = load_source(root, options=SourceOptions(allow_missing=True))
    assert len(src.samples) == 31
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "do not exist" in r.getMessage()]
    assert len(warnings) == 1 and "5 of 36" in warnings[0].getMessage()


def test_nih_unknown_finding_names_file_row_and_column(tmp_path):
    root = make_nih(tmp_path / "nih", n_patients=2)
    path = root / "Data_Entry_2017_v2020.csv"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[1], "Cardiomegaly|Flu", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        load_source(root)
    assert f"{path}, row 4, column 'Finding Labels': 'Flu' is not one of NIH's 14 findings" in _one_line(err)


def test_nih_shared_sample(tmp_path):
    root = shared_data("nih_cxr14_sample")
    src = load_source(root)
    assert src.kind == "nih" and len(src.samples) == 528 and len({s.group for s in src.samples}) == 158
    y = np.array([s.labels for s in src.samples])
    assert y.shape == (528, 14) and set(np.unique(y)) <= {0, 1}
    # the unquoted header splits into two columns like every row, and the three named columns still line up
    first = next(s for s in src.samples if s.id.endswith("00000001_001.png"))
    assert [NIH_FINDINGS[j] for j in np.flatnonzero(first.labels)] == ["Cardiomegaly", "Emphysema"]


# ------------------------------------------------------------------------------------------- CheXpert


def test_chexpert_layout_paths_patients_valid_and_raw_codes(tmp_path, caplog):
    train, valid = chexpert_rows(8), chexpert_rows(3, seed=1)
    for row in valid:
        row["Path"] = row["Path"].replace("/train/", "/valid/").replace("patient0", "patient9")
    root = write_chexpert(tmp_path, train, valid)
    with caplog.at_level(logging.INFO, logger="headstart.data.sources"):
        src = load_source(root)
    assert "CheXpert layout" in caplog.text  # not class folders named train/valid
    assert src.kind == "chexpert" and src.classes == list(CHEXPERT_FINDINGS)
    assert Counter(s.split for s in src.samples) == {"train": 16, "val": 6}
    code = {"1.0": POSITIVE, "0.0": NEGATIVE, "-1.0": UNCERTAIN, "": BLANK}
    by_id = {s.id: s for s in src.samples}
    for row in train:
        s = by_id[row["Path"].split("/", 1)[1]]
        assert s.labels == tuple(code[row[f]] for f in CHEXPERT_FINDINGS)
        assert s.group == row["Path"].split("/")[2]


def test_chexpert_projection_and_renamed_folder(tmp_path):
    root = write_chexpert(tmp_path, chexpert_rows(5), folder="my_chexpert")
    assert len(load_source(root).samples) == 10
    frontal = load_source(root, options=SourceOptions(projection="frontal"))
    assert len(frontal.samples) == 5 and all("frontal" in s.id for s in frontal.samples)
    assert all("lateral" in s.id for s in load_source(root, options=SourceOptions(projection="lateral")).samples)


def test_chexpert_bad_value_names_file_row_column(tmp_path):
    rows = chexpert_rows(3)
    rows[2]["Edema"] = "2.0"
    root = write_chexpert(tmp_path, rows)
    with pytest.raises(DataError) as err:
        load_source(root)
    assert f"{root / 'train.csv'}, row 4, column 'Edema': value '2.0' is not a label" in _one_line(err)


def test_chexpert_rows_of_the_real_label_file(tmp_path):
    """Images generated at the paths of 300 real CheXpert rows; every value parses, patients come from paths."""
    with open(shared_data("chexpert_labels_sample.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))[:300]
    root = write_chexpert(tmp_path, rows)
    src = load_source(root)
    assert len(src.samples) == 300 and len(src.classes) == 14 and src.classes[0] == "No Finding"
    y = np.array([s.labels for s in src.samples])
    assert set(np.unique(y)) == {POSITIVE, NEGATIVE, UNCERTAIN, BLANK}
    assert all(s.group.startswith("patient") for s in src.samples)
    frontal = sum(1 for r in rows if r["Frontal/Lateral"] == "Frontal")
    assert len(load_source(root, options=SourceOptions(projection="frontal")).samples) == frontal


def test_patient_folders_read_as_classes_get_one_warning(tmp_path, caplog):
    for p in range(120):
        image(tmp_path / "d" / f"patient{p:05d}" / "view1.png", value=p)
    with caplog.at_level(logging.WARNING):
        src = load_source(tmp_path / "d")
    assert len(src.classes) == 120
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "look like patient or study folders" in warnings[0]


# ------------------------------------------------------------------------------------------ generic CSV


def _csv(tmp_path, header: str, lines: list[str]) -> object:
    for line in lines:
        image(tmp_path / line.split(",")[0])
    path = tmp_path / "labels.csv"
    path.write_text(header + "\n" + "\n".join(lines) + "\n")
    return path


def test_generic_csv_label_columns_with_custom_path_group_split(tmp_path):
    path = _csv(tmp_path, "file,pid,fold,A,B,C", ["a.png,p1,train,1.0,,-1", "b.png,p1,train,0,True,1",
                                                   "c.png,p2,test,False,0.0,"])
    options = SourceOptions(labels=["A", "B", "C"], path_column="file", group_column="pid", split_column="fold")
    src = load_source(path, options=options)
    assert src.kind == "table" and src.classes == ["A", "B", "C"]
    assert [(s.labels, s.group, s.split) for s in src.samples] == [
        ((1, -2, -1), "p1", "train"), ((0, 1, 1), "p1", "train"), ((0, 0, -2), "p2", "test")]


def test_generic_csv_joined_labels(tmp_path):
    path = _csv(tmp_path, "path,Finding Labels", ["a.png,Edema|Mass", "b.png,No Finding", "c.png,", "d.png,Mass"])
    src = load_source(path, options=SourceOptions(label_column="Finding Labels", label_sep="|"))
    assert src.classes == ["Edema", "Mass"]
    assert [s.labels for s in src.samples] == [(1, 1), (0, 0), (-2, -2), (0, 1)]


@pytest.mark.parametrize("options, message", [
    (SourceOptions(labels=["A", "Z"]), "--labels column 'Z' does not exist (found path, A, B)"),
    (SourceOptions(labels=["A", "B"], group_column="pid"), "--group-column column 'pid' does not exist"),
    (SourceOptions(labels=["A", "B"], path_column="file"), "--path-column column 'file' does not exist"),
])
def test_generic_csv_missing_columns(tmp_path, options, message):
    path = _csv(tmp_path, "path,A,B", ["a.png,1,0"])
    with pytest.raises(DataError) as err:
        load_source(path, options=options)
    assert message in _one_line(err)


def test_generic_csv_bad_value_and_bad_option_combinations(tmp_path):
    path = _csv(tmp_path, "path,A,B", ["a.png,1,0", "b.png,yes,maybe"])
    with pytest.raises(DataError) as err:
        load_source(path, options=SourceOptions(labels=["A", "B"]))
    assert f"{path}, row 3, column 'B': value 'maybe' is not a label" in _one_line(err)
    with pytest.raises(ConfigError):
        load_source(path, options=SourceOptions(labels=["A", "B"], label_sep="|"))
    with pytest.raises(ConfigError):
        load_source(path, options=SourceOptions(labels=["A"]))


def test_single_label_manifest_with_renamed_columns(tmp_path):
    path = _csv(tmp_path, "file,diagnosis", ["a.png,x", "b.png,y"])
    src = load_source(path, options=SourceOptions(path_column="file", label_column="diagnosis"))
    assert not src.multilabel and src.classes == ["x", "y"]


# ---------------------------------------------------------------------------------------------- npz


def test_npz_with_label_matrix_is_multilabel_and_n1_stays_binary(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {f"{s}_images": rng.integers(0, 255, (n, 8, 8), dtype=np.uint8) for s, n in (("train", 6), ("test", 3))}
    multi = {**arrays, "train_labels": rng.integers(0, 2, (6, 4)), "test_labels": rng.integers(0, 2, (3, 4))}
    np.savez(tmp_path / "chest.npz", **multi)
    src = load_source(tmp_path / "chest.npz")
    assert src.multilabel and src.classes == ["0", "1", "2", "3"]
    assert [s.labels for s in src.samples if s.split == "train"] == [tuple(r) for r in multi["train_labels"]]
    np.savez(tmp_path / "pneu.npz", **arrays, train_labels=np.array([[0], [1]] * 3), test_labels=np.array([[0], [1], [0]]))
    assert not load_source(tmp_path / "pneu.npz").multilabel


def test_manifest_hash_sees_a_changed_raw_label(tmp_path):
    path = _csv(tmp_path, "path,A,B", ["a.png,1,0", "b.png,0,1"])
    before = load_source(path, options=SourceOptions(labels=["A", "B"]))
    path.write_text("path,A,B\na.png,1,-1\nb.png,0,1\n")
    after = load_source(path, options=SourceOptions(labels=["A", "B"]))
    assert manifest_hash(before.samples, before.classes) != manifest_hash(after.samples, after.classes)


def test_findings_without_positives_in_train_get_one_warning(tmp_path, caplog):
    root = make_nih(tmp_path / "nih", n_patients=20)  # only the first six findings ever occur
    with caplog.at_level(logging.WARNING):
        build_dataset(root, split_config=SplitConfig(), find_duplicates=False)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "8 finding(s) have one class only" in warnings[0]
    assert "Hernia (0 positive" in warnings[0] and "Atelectasis" not in warnings[0]


def test_a_known_label_file_as_data_reads_its_folder_layout(tmp_path):
    nih = make_nih(tmp_path / "nih", n_patients=3)
    assert load_source(nih / "Data_Entry_2017_v2020.csv").kind == "nih"
    chexpert = write_chexpert(tmp_path, chexpert_rows(2))
    src = load_source(chexpert / "train.csv")
    assert src.kind == "chexpert" and len(src.samples) == 4
