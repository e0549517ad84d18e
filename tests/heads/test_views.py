"""heads --views on|off and --tta on|off on a cache made by `extract --views K --tta M`."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from headstart.cli import cli
from headstart.evaluation.records import read_records
from headstart.heads.batched import TorchHeadConfig, TrainSettings, train_batched_seeds
from headstart.heads.fitting import Rows
from headstart.heads.persist import load_head
from headstart.heads.runner import HeadsConfig, run_heads
from headstart.heads.views import for_head

EXTRACT = ["--weights", "random", "--image-size", "32", "--batch-size", "16", "--workers", "0", "--engine", "torch"]
FAST = dict(sweep="quick", n_boot=20, device="cpu")


@pytest.fixture(scope="module")
def views_cache(phantom_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("views") / "c.h5"
    r = CliRunner().invoke(cli, ["extract", str(phantom_dir), "-o", str(out), "-b", "resnet18", *EXTRACT,
                                 "--views", "2", "--tta", "2"])
    assert r.exit_code == 0, r.output
    return out


def _read(path, name):
    with h5py.File(path, "r") as f:
        return (f["features"][name][...].astype(np.float32), np.array([s.decode() for s in f["samples/id"][...]]))


def test_views_and_tta_runs_are_their_own_records_with_tta_averaged_probabilities(views_cache, tmp_path):
    runs = tmp_path / "runs"
    plain = run_heads(cache_path=views_cache, runs_dir=runs, config=HeadsConfig(**FAST), progress=False)
    viewed = run_heads(cache_path=views_cache, runs_dir=runs, config=HeadsConfig(**FAST, views="on", tta="on"),
                       progress=False)
    assert {r.config["views"] for r in plain} == {"off"} and {r.config["tta"] for r in plain} == {"off"}
    assert {r.config["views"] for r in viewed} == {"on"} and {r.config["tta"] for r in viewed} == {"on"}
    assert len({r.run_id for r in read_records(runs)}) == 8  # nothing overwritten: views-tta runs are apart
    x, ids = _read(views_cache, "resnet18")
    tta, _ = _read(views_cache, "resnet18.tta")
    row = {sid: i for i, sid in enumerate(ids)}
    for record in viewed:
        assert "views-tta" in record.run_id
        head = load_head(runs / record.run_id)
        for split in ("val", "test"):
            pred = record.predictions[split]
            rows = np.array([row[i] for i in pred["ids"]])
            views = [x[rows]] + [tta[rows].reshape(len(rows), 2, -1)[:, m] for m in range(2)]
            expected = np.mean([head.predict_proba(v)[:, 1] for v in views], axis=0)
            got = np.asarray(pred["proba"], dtype=np.float64)
            got = got[:, 1] if got.ndim == 2 else got
            np.testing.assert_allclose(got, expected, atol=2e-3)


def test_logreg_and_knn_train_on_view_rows_or_the_view_mean_torch_heads_keep_the_views():
    X = np.arange(12, dtype=np.float32).reshape(3, 4)
    V = np.stack([X + 1, X + 5], axis=1)  # (3, 2, 4)
    splits = {"train": Rows(X, np.array([0, 1, 0]), np.array(["a", "b", "c"]), np.array(["", "", ""]), views=V)}
    for head in ("logreg", "knn"):
        train = for_head(head, splits, mode="mean")["train"]
        np.testing.assert_allclose(train.X, X + 2)  # (X + X+1 + X+5) / 3
        assert train.views is None
        default = for_head(head, splits)["train"]  # the measured default: K + 1 rows per image
        assert default.X.shape == (9, 4) and list(default.ids) == ["a", "b", "c", "a", "a", "b", "b", "c", "c"]
    assert for_head("mlp", splits)["train"].views is V


def test_views_as_extra_rows_keep_each_image_and_patient_in_one_fold():
    from headstart.data.sampling import carve, kfold

    rng = np.random.default_rng(0)
    n, k = 40, 3
    X = rng.normal(size=(n, 4)).astype(np.float32)
    V = rng.normal(size=(n, k, 4)).astype(np.float32)
    ids = np.array([f"img{i}" for i in range(n)])
    groups = np.array([f"p{i // 2}" if i < 20 else "" for i in range(n)])  # patients of two images, then ungrouped
    y = np.arange(n) % 2
    train = for_head("logreg", {"train": Rows(X, y, ids, groups, views=V)}, mode="rows")["train"]
    assert train.X.shape == (n * (k + 1), 4) and train.views is None
    np.testing.assert_array_equal(train.X[:n], X)
    np.testing.assert_array_equal(train.X[n + 2 * k + 1], V[2, 1])  # image-major: image 2, view 1
    assert train.ids[n + 2 * k + 1] == "img2" and train.groups[n + 2 * k + 1] == "p1" and train.y[n + 2 * k + 1] == 0
    fold = kfold(train.ids, train.groups, train.y, k=4, seed=(0,))
    held = np.zeros(len(train.y), dtype=bool)
    held[carve(train.ids, train.groups, train.y, n=len(train.y) // 5, seed=(1,))] = True
    for key in (train.ids, np.where(train.groups != "", train.groups, train.ids)):  # by image, then by patient
        for unit in np.unique(key):
            assert len(np.unique(fold[key == unit])) == 1 and len(np.unique(held[key == unit])) == 1
    with pytest.raises(ValueError, match="rows"):
        for_head("knn", {"train": Rows(X, y, ids, groups, views=V)}, mode="sum")


def test_torch_views_equal_to_the_plain_rows_change_nothing_and_real_views_do():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 8)).astype(np.float32), rng.integers(0, 2, 60)
    Xv, yv = rng.normal(size=(20, 8)).astype(np.float32), rng.integers(0, 2, 20)
    kw = dict(configs=[TorchHeadConfig(lr=1e-2)], settings=TrainSettings(epochs=5, patience=10), n_classes=2,
              seeds=(0, 1))
    base = train_batched_seeds(X, y, Xv, yv, **kw)
    same = train_batched_seeds(X, y, Xv, yv, views=np.stack([X, X, X], axis=1), **kw)
    other = train_batched_seeds(X, y, Xv, yv, views=np.stack([X + 1, X - 1], axis=1), **kw)
    for a, b, c in zip(base, same, other):
        np.testing.assert_allclose(a[0].val_proba, b[0].val_proba, atol=1e-6)
        assert np.abs(a[0].val_proba - c[0].val_proba).max() > 1e-4


def test_tta_without_cached_views_is_one_line(phantom_dir, tmp_path):
    out = tmp_path / "plain.h5"
    r = CliRunner().invoke(cli, ["extract", str(phantom_dir), "-o", str(out), "-b", "resnet18", *EXTRACT])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["heads", str(out), "-o", str(tmp_path / "runs"), "--head", "logreg", "--sweep",
                                 "quick", "--tta", "on"])
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "no cached tta" in r.output and "--tta M" in r.output


def test_report_labels_views_and_tta_rows():
    from headstart.evaluation.report.summary import Row

    class Run:
        config = {"feature_set": "resnet18", "views": "on", "tta": "on"}

    assert Row("k", "cached-head", "resnet18", "logreg", [Run()]).label == "logreg + views + TTA"
    Run.config = {"feature_set": "resnet18", "views": "off", "tta": "off"}
    assert Row("k", "cached-head", "resnet18", "logreg", [Run()]).label == "logreg"
