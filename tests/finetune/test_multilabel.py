"""Multi-label fine-tuning: the label policies reach the training mask, the record keeps the multi-label contract,
--splits-from reuses a multi-label cache's splits, and CheXpert-style policies work on the real label rows."""

from __future__ import annotations

import csv
import json
import logging

import numpy as np
import pytest
import torch

from headstart.cache import write_features
from headstart.data.balance import pos_weights
from headstart.data.labelcodes import BLANK, NEGATIVE, POSITIVE, UNCERTAIN
from headstart.data.sources import load_source
from headstart.data.types import SplitConfig
from headstart.errors import ConfigError
from headstart.finetune.data import SplitImages
from headstart.finetune.labels import decode, label_plan
from headstart.finetune.objective import MultilabelObjective
from headstart.finetune.train import run_finetune, setup
from tests.data.multilabel_files import CHEXPERT_FINDINGS, NIH_FINDINGS, chexpert_rows, make_nih, write_chexpert
from tests.data.sample_files import shared_data
from tests.finetune.conftest import tiny_config

PER_LABEL_KEYS = {"auroc", "auroc_ci", "auprc", "sensitivity", "specificity", "threshold", "n", "n_pos"}


def _by_split(samples, splits=("train", "val", "test")):
    """Samples dealt to the splits in turn, so every split holds every kind of row."""
    return {split: [s for i, s in enumerate(samples) if i % len(splits) == k] for k, split in enumerate(splits)}


@pytest.fixture(scope="module")
def chexpert(tmp_path_factory):
    root = write_chexpert(tmp_path_factory.mktemp("chexpert"), chexpert_rows(n_patients=12, seed=3))
    return load_source(root)


def test_u_ones_and_u_ignore_change_the_training_mask(chexpert):
    by_split = _by_split(chexpert.samples)
    raw = np.array([s.labels for s in by_split["train"]])
    ignore = label_plan(by_split, chexpert.classes, uncertain="ignore", blank="negative")
    ones = label_plan(by_split, chexpert.classes, uncertain="ones", blank="negative")
    y_ignore, known_ignore = decode(ignore.targets["train"])
    y_ones, known_ones = decode(ones.targets["train"])
    uncertain = raw == UNCERTAIN
    assert uncertain.any()
    trained = ignore.trained & ones.trained
    assert not known_ignore[:, trained][uncertain[:, trained]].any()  # U-Ignore: masked
    assert known_ones[:, trained].all()  # U-Ones and blank = negative: every label trains
    assert (y_ones[:, trained][uncertain[:, trained]] == 1).all()
    # evaluation never scores an uncertain label, whatever the training policy
    for plan in (ignore, ones):
        _, scored = decode(plan.targets["val"])
        assert not scored[np.array([s.labels for s in by_split["val"]]) == UNCERTAIN].any()
    # per finding: only Edema's uncertain labels become positives
    edema = chexpert.classes.index("Edema")
    only = label_plan(by_split, chexpert.classes, uncertain="ones:Edema", blank="negative")
    y_only, known_only = decode(only.targets["train"])
    assert known_only[uncertain[:, edema], edema].all() and (y_only[uncertain[:, edema], edema] == 1).all()
    others = np.ones(len(chexpert.classes), dtype=bool)
    others[edema] = False
    assert not (known_only[:, others] & uncertain[:, others]).any()
    assert only.describe()["uncertain_per_label"] == {"Edema": "ones"}


def test_blank_unknown_masks_blanks_and_the_loader_carries_the_mask(chexpert):
    by_split = _by_split(chexpert.samples)
    raw = np.array([s.labels for s in by_split["train"]])
    plan = label_plan(by_split, chexpert.classes, uncertain="zeros", blank="unknown")
    y, known = decode(plan.targets["train"])
    no_finding = raw[:, 0] == POSITIVE
    blank_not_cleared = (raw == BLANK) & ~no_finding[:, None]
    assert not known[blank_not_cleared].any()
    trained = plan.trained
    assert (known[:, trained][(raw == UNCERTAIN)[:, trained]]).all()  # U-Zeros: scored negatives
    assert (y[(raw == UNCERTAIN) & known] == 0).all()
    images = SplitImages(chexpert, by_split["train"], _prep(), targets=plan.targets["train"])
    _, label, position, error = images[(1, -1)]
    assert error == "" and position == 1
    assert torch.equal(torch.isnan(label), torch.from_numpy(~known[1] | ~trained | np.isnan(plan.targets["train"][1])))


def _prep():
    from headstart.backbones.registry import create_model

    return create_model("resnet18", num_classes=2, weights="random", image_size=32, seed=0)[1]


def test_masked_labels_get_no_gradient_and_pos_weight_balances():
    y = np.array([[1, 0], [0, 0], [0, 1], [0, 0]], dtype=np.float32)
    known = np.array([[1, 1], [1, 1], [1, 0], [1, 1]], dtype=bool)
    assert pos_weights(y, known, "balanced").tolist() == [3.0, 1.0]  # finding 2 has no known positive: 1
    assert pos_weights(y, known, "none").tolist() == [1.0, 1.0]
    from headstart.finetune.labels import LabelPlan, encode
    from headstart.tasks.factory import make_task

    plan_like = LabelPlan(task=make_task("multilabel", ["A", "B"]), policy=None, trained=np.array([True, True]),
                          targets={"train": encode(y, known)})
    objective = MultilabelObjective(plan_like, torch.tensor([3.0, 1.0]))
    logits = torch.zeros(4, 2, requires_grad=True)
    objective.loss(logits, torch.from_numpy(encode(y, known))).backward()
    assert logits.grad[2, 1] == 0 and (logits.grad[known] != 0).all()


@pytest.fixture(scope="module")
def nih_run(tmp_path_factory):
    """A multi-label cache (written directly, its splits by patient number) and a 1-epoch fine-tune on its splits."""
    tmp = tmp_path_factory.mktemp("nih")
    root = make_nih(tmp / "nih", n_patients=30, per_patient=2, seed=1)
    source = load_source(root)
    splits = [("train", "train", "val", "test")[int(s.group) % 4] for s in source.samples]
    write_features(tmp / "c.h5", features={"f": np.zeros((len(splits), 4))},
                   labels=np.array([s.labels for s in source.samples], dtype=np.int8),
                   ids=[s.id for s in source.samples], splits=splits, classes=source.classes,
                   groups=[s.group for s in source.samples])
    record = run_finetune(data=str(root), runs_dir=str(tmp / "runs"), config=tiny_config(epochs=1),
                          split_config=SplitConfig(), splits_from=str(tmp / "c.h5"))
    return tmp, root, source, dict(zip((s.id for s in source.samples), splits)), record


def test_multilabel_record_contract(nih_run):
    tmp, _, source, _, record = nih_run
    assert record.run_id == "finetune_resnet18_freeze-none-32px_s0"  # the default policy adds nothing
    data = json.loads((tmp / "runs" / record.run_id / "record.json").read_text())
    assert data["dataset"]["task"] == "multilabel" and data["dataset"]["labels"] == list(NIH_FINDINGS)
    assert data["config"]["label_policy"]["uncertain"] == "ignore"
    assert data["config"]["label_policy"]["blank"] == "negative"
    assert set(data["threshold"]) == set(NIH_FINDINGS)
    for split in ("val", "test"):
        metrics = data["metrics"][split]
        per_label = metrics["per_label"]
        assert set(per_label) == set(NIH_FINDINGS) and all(PER_LABEL_KEYS <= set(v) for v in per_label.values())
        scored = [v["auroc"] for v in per_label.values() if v["auroc"] is not None]
        assert scored and metrics["auroc"] == pytest.approx(np.mean(scored))  # the macro AUROC
        predictions = data["predictions"][split]
        n = len(predictions["ids"])
        assert np.shape(predictions["proba"]) == np.shape(predictions["mask"]) == (n, len(NIH_FINDINGS))
        for name in NIH_FINDINGS[6:]:  # the generator never marks these: no positive in train
            assert per_label[name]["auroc"] is None and "train" in per_label[name]["reason"]
            assert data["threshold"][name] is None
    assert data["config"]["label_policy"]["untrained"] == list(NIH_FINDINGS[6:])
    history = data["history"]
    assert history[0]["val_auroc"] is not None and 0 <= history[0]["val_accuracy"] <= 1


def test_splits_from_a_multilabel_cache_gives_identical_splits(nih_run):
    tmp, root, _, cache_split, record = nih_run
    run = setup(data=str(root), runs_dir=str(tmp / "again"), config=tiny_config(epochs=1),
                split_config=SplitConfig(), splits_from=str(tmp / "c.h5"), resume=False)
    for split in ("train", "val", "test"):
        assert sorted(s.id for s in run.by_split[split]) == sorted(i for i, sp in cache_split.items() if sp == split)
    for split in ("val", "test"):
        assert record.predictions[split]["ids"] == [s.id for s in run.by_split[split]]
    run.replica.close()


def test_multilabel_refuses_a_select_metric_it_cannot_score(nih_run):
    tmp, root, *_ = nih_run
    with pytest.raises(ConfigError, match="not defined for a multi-label task"):
        setup(data=str(root), runs_dir=str(tmp / "bad"), config=tiny_config(select_metric="f1"),
              split_config=SplitConfig(), splits_from=str(tmp / "c.h5"), resume=False)


def test_chexpert_policies_on_the_real_label_rows(tmp_path, caplog):
    """Images generated at the paths of real CheXpert rows; U-Ones on Edema, blanks unknown, one epoch."""
    with open(shared_data("chexpert_labels_sample.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))[:120]
    root = write_chexpert(tmp_path, rows)
    with caplog.at_level(logging.WARNING):
        record = run_finetune(data=str(root), runs_dir=str(tmp_path / "runs"),
                              config=tiny_config(epochs=1, uncertain="ones:Edema", blank="unknown"),
                              split_config=SplitConfig(val_fraction=0.3, test_fraction=0.3))
    policy = record.config["label_policy"]
    assert policy["blank"] == "unknown" and policy["uncertain_per_label"] == {"Edema": "ones"}
    assert record.run_id.endswith("u-ignore-ones-Edema-blank-unknown_s0")  # apart from a default-policy run
    train_ids = set(record.predictions["val"]["ids"]) | set(record.predictions["test"]["ids"])
    train_rows = [r for r in rows if r["Path"].split("/", 1)[1] not in train_ids]
    assert not {"Edema", "Cardiomegaly"} & set(policy["untrained"])
    for name in ("Edema", "Cardiomegaly"):  # masked in train: blanks (not cleared by No Finding) + uncertain
        expected = sum(1 for r in train_rows if r[name] == "" and r["No Finding"] != "1.0")
        expected += 0 if name == "Edema" else sum(1 for r in train_rows if r[name] == "-1.0")
        assert policy["n_masked_train"][name] == expected
    test = record.predictions["test"]
    y_raw = {r["Path"].split("/", 1)[1]: r for r in rows}
    edema = record.dataset["labels"].index("Edema")
    for i, sample_id in enumerate(test["ids"]):
        if y_raw[sample_id]["Edema"] == "-1.0":
            assert test["mask"][i][edema] is False  # evaluation never scores an uncertain label
    assert record.metrics["test"]["per_label"]["Edema"]["n"] == sum(row[edema] for row in test["mask"])
    warnings = [r for r in caplog.records if "left out of training" in r.getMessage()]
    assert len(warnings) == len(policy["untrained"])  # one warning per untrained finding, none twice


def test_chexpert_generated_rows_finetune_under_u_ones(tmp_path):
    root = write_chexpert(tmp_path, chexpert_rows(n_patients=16, seed=5))
    record = run_finetune(data=str(root), runs_dir=str(tmp_path / "runs"), config=tiny_config(epochs=1, uncertain="ones"),
                          split_config=SplitConfig(val_fraction=0.3, test_fraction=0.3))
    assert record.dataset["labels"] == list(CHEXPERT_FINDINGS) and record.config["label_policy"]["uncertain"] == "ones"
    assert record.run_id == "finetune_resnet18_freeze-none-32px-u-ones_s0"
    assert record.config["label_policy"]["n_masked_train"] == {name: 0 for name in CHEXPERT_FINDINGS}


def test_cli_on_a_csv_with_labels_and_a_policy(tmp_path):
    """`finetune CSV --labels A,B,C --uncertain ones:B --blank unknown`: the reader and policy options reach the run."""
    from click.testing import CliRunner

    from headstart.cli import cli
    from tests.data.multilabel_files import image

    rng = np.random.default_rng(2)
    lines = []
    for i in range(48):
        image(tmp_path / "img" / f"{i:03d}.png", value=i * 5)
        cells = [str(rng.choice(["1", "0", "-1", ""], p=[0.35, 0.45, 0.1, 0.1])) for _ in range(3)]
        lines.append(f"img/{i:03d}.png,p{i // 2},{','.join(cells)}")
    (tmp_path / "labels.csv").write_text("file,pid,A,B,C\n" + "\n".join(lines) + "\n")
    result = CliRunner().invoke(cli, ["finetune", str(tmp_path / "labels.csv"), "-o", str(tmp_path / "runs"),
                                      "-b", "resnet18", "--weights", "random", "--image-size", "32", "--batch-size",
                                      "16", "--workers", "0", "--epochs", "1", "--labels", "A,B,C", "--path-column",
                                      "file", "--group-column", "pid", "--uncertain", "ones:B", "--blank", "unknown",
                                      "--val-fraction", "0.3", "--test-fraction", "0.3"])
    assert result.exit_code == 0, result.output
    assert "test macro AUROC" in result.output
    run = tmp_path / "runs" / "finetune_resnet18_freeze-none-32px-u-ignore-ones-B-blank-unknown_s0"
    data = json.loads((run / "record.json").read_text())
    assert data["dataset"]["labels"] == ["A", "B", "C"] and data["config"]["source"]["labels"] == ["A", "B", "C"]
    assert data["config"]["label_policy"]["uncertain_per_label"] == {"B": "ones"}


def test_npz_label_matrix_finetunes(tmp_path):
    """A ChestMNIST-style .npz with (N, L) labels is a multi-label fine-tune with one output per column."""
    rng = np.random.default_rng(0)
    arrays = {f"{s}_images": rng.integers(0, 255, (n, 16, 16), dtype=np.uint8)
              for s, n in (("train", 40), ("val", 16), ("test", 16))}
    labels = {f"{s}_labels": rng.integers(0, 2, (n, 3)) for s, n in (("train", 40), ("val", 16), ("test", 16))}
    np.savez(tmp_path / "chest.npz", **arrays, **labels)
    record = run_finetune(data=str(tmp_path / "chest.npz"), runs_dir=str(tmp_path / "runs"),
                          config=tiny_config(epochs=1), split_config=SplitConfig())
    assert record.dataset["task"] == "multilabel" and record.dataset["labels"] == ["0", "1", "2"]
    assert np.shape(record.predictions["test"]["proba"]) == (16, 3)
    assert record.predictions["test"]["y_true"] == labels["test_labels"].tolist()
