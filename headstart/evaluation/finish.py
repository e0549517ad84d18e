"""Finishing a run, one way for every strategy: threshold on val, val and test metrics with intervals, the record.

A cached head and a fine-tune differ only in how they produce their final val and test probabilities, so they
hand that step to `finish_run` as a function. From there one code path times it, chooses the decision
threshold on val and freezes it for test, evaluates both splits with bootstrap intervals and builds (and
writes) the RunRecord. "Same thresholds, same metrics, same timers" is a property of this module rather than a
promise kept by two copies.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from headstart.evaluation.records import RunRecord, write_record
from headstart.evaluation.thresholds import rule_outcome
from headstart.evaluation.timing import Timer, describe_device, peak_memory_mb
from headstart.tasks.core import Task
from headstart.tasks.factory import task_for_proba

FINAL_SPLITS = ("val", "test")  # the threshold is chosen on the first and frozen for the second


@dataclass
class SplitPredictions:
    """One split's final outputs: the metrics are computed from them and the record stores them."""

    ids: list[str]  # sample ids, in the split's order
    y_true: np.ndarray  # (n,) label indices; multi-label: (n, L) 0/1 truth
    proba: np.ndarray  # (n, n_classes) probabilities over every class of the data set; multi-label (n, L)
    groups: list[str] | None = None  # patient per sample ("" unknown): intervals and paired tests resample patients
    mask: np.ndarray | None = None  # multi-label (n, L): True where the label is scored (never an uncertain one)

    def to_dict(self) -> dict:
        out = {"ids": [str(i) for i in self.ids], "y_true": np.asarray(self.y_true).tolist(),
               "proba": np.asarray(self.proba, dtype=np.float64).tolist()}
        if self.groups is not None:
            out["groups"] = [str(g) for g in self.groups]
        if self.mask is not None:
            out["mask"] = np.asarray(self.mask, dtype=bool).tolist()
        return out


@dataclass
class RunOutline:
    """Everything a record holds that the strategy knows before its final evaluation; `finish_run` adds the
    metrics, predictions, threshold and the evaluation's timing."""

    run_id: str  # see records.make_run_id
    strategy: str  # "cached-head" | "finetune"
    backbone: str
    head: str | None  # None for fine-tunes
    seed: int  # the run's seed; it also seeds the bootstrap
    config: dict  # selected hyperparameters and options, as the record shows them
    dataset: dict  # manifest_hash, classes, and the cache or data path
    history: list = field(default_factory=list)  # per-epoch dicts, where the strategy trains in epochs
    timing: dict = field(default_factory=dict)  # train_seconds, extract_seconds, images_per_second, ...


@dataclass
class FinalEvaluation:
    """How the final evaluation runs: the same options mean the same numbers for every strategy."""

    threshold_rule: str  # chooses the binary decision threshold on val, e.g. youden or sensitivity:0.9
    n_boot: int  # bootstrap resamples behind each 95% interval
    device: Any = "cpu"  # where `predict` computes: the timer synchronises it; peak memory and the label come from it
    write: bool = True  # False on torchrun ranks other than 0: every rank builds the record, one writes it
    task: Task | None = None  # what is asked: thresholds and metrics; None = the single-label task of the probas


def finish_run(predict: Callable[[], dict[str, SplitPredictions]], *, outline: RunOutline,
               final: FinalEvaluation, runs_dir: str | os.PathLike) -> RunRecord:
    """Predict val and test once (`predict`), choose the threshold on val, evaluate both with intervals, and
    write `runs_dir/<run_id>/record.json`; returns the record.

    `timing.eval_seconds` covers all of it, prediction through intervals, with the same synchronised timer for
    every strategy; `peak_memory_mb` is read after it.
    """
    with Timer(device=final.device) as timer:
        outputs = predict()  # the one and only look at test
        val = outputs["val"]
        task = final.task or task_for_proba(val.proba)
        threshold = task.choose_threshold(val.y_true, np.asarray(val.proba), rule=final.threshold_rule,
                                          mask=val.mask)
        metrics = {split: task.evaluate(outputs[split].y_true, outputs[split].proba, threshold=threshold,
                                        n_boot=final.n_boot, seed=outline.seed, mask=outputs[split].mask,
                                        groups=outputs[split].groups)
                   for split in FINAL_SPLITS}
        outcome = rule_outcome(final.threshold_rule, metrics["val"]) if task.kind == "binary" else None
        if outcome is not None:  # what a sensitivity/specificity target achieved on val, where it was chosen
            metrics["val"]["threshold_rule"] = outcome
    record = RunRecord(
        run_id=outline.run_id, strategy=outline.strategy, backbone=outline.backbone, head=outline.head,
        config=outline.config, metrics=metrics, history=outline.history,
        timing={**outline.timing, "eval_seconds": timer.seconds, "peak_memory_mb": peak_memory_mb(final.device),
                "device": describe_device(final.device)},
        predictions={split: outputs[split].to_dict() for split in FINAL_SPLITS},
        threshold=task.record_threshold(threshold), seed=outline.seed, dataset=outline.dataset,
    )
    if final.write:
        write_record(runs_dir, record)
    return record
