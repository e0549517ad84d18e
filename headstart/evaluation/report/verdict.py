"""The report's first section: the answer in a few sentences, each built from the numbers below it.

1. the best run by the validation selection metric, its test AUROC with interval, and what it cost; then the
   cheapest run within its validation interval (chosen on val, its test AUROC reported as the outcome);
2. whether the best cached head and the best fine-tune differ (DeLong on the same test images), and the cost
   ratio of their measured seconds;
3. how many labels reach 95% of the plateau, when a learning curve exists (and the crossover, when fine-tunes
   share its axes);
4. a warning when results come from random weights.

For a multi-label task, 1. gives the macro AUROC and 2. the macro-AUROC paired bootstrap, naming the findings
that differ after the Holm correction.
"""

from __future__ import annotations

import math

from headstart.evaluation.report.comparisons import compare_runs
from headstart.evaluation.report.cost import best_finetune, seconds_spent
from headstart.evaluation.report.curves import best_curve, plateau_sentence
from headstart.evaluation.report.multilabel import contrast_phrase
from headstart.evaluation.report.multilabel_paired import is_multilabel
from headstart.evaluation.report.summary import Row, all_finite, best_by_val, best_cached_head
from headstart.evaluation.table import fmt_ci, fmt_seconds, fmt_value

SIGNIFICANCE = 0.05  # DeLong p below this reads as "differ"
MAX_SENTENCES = 5


def verdict(rows: list[Row], *, curves: list[dict], crossovers: list[dict], select_metric: str,
            tests: list[dict] | None = None) -> list[str]:
    """The verdict's sentences for one data set (at most MAX_SENTENCES); `tests` are the paired tests already run
    (`paired_comparisons`), reused rather than recomputed when they hold the pair the verdict contrasts."""
    sentences = []
    full = [row for row in rows if not row.reference.config.get("train_size")]  # draws belong to the curve
    best = best_by_val(full, select_metric=select_metric)
    if best is not None:
        test = best.reference.metrics.get("test", {})
        sentences.append(
            f"The best run by validation {select_metric} is {_name(best)}: test {_auroc(best)} "
            f"{fmt_ci(best.mean('test', 'auroc'), test.get('auroc_ci'))}, for {_cost(best)}.")
        cheap = cheapest_match(full, best)
        if cheap is not None:
            sentences.append(
                f"The cheapest run whose validation AUROC reaches that run's validation interval is {_name(cheap)} "
                f"(val AUROC {fmt_value(cheap.mean('val', 'auroc'))}, test AUROC "
                f"{fmt_value(cheap.mean('test', 'auroc'))}), for {_cost(cheap)}: "
                f"{fmt_value(seconds_spent(best) / seconds_spent(cheap), digits=1)}x less.")
    head = _best_head(rows, select_metric)
    finetune = best_finetune(rows, backbone=None, select_metric=select_metric)
    if head is not None and finetune is not None:
        sentences.append(_contrast(head, finetune, tests or []))
    elif rows:
        missing = "fine-tune" if finetune is None else "cached-head"
        sentences.append(f"There is no {missing} record to contrast with; run `headstart "
                         f"{'finetune' if finetune is None else 'heads'}` on the same splits for the comparison.")
    curve = best_curve(curves)
    if curve is not None and not rows:  # curves only: say what the whole split scores, and what is missing
        sentences.append(full_split_sentence(curve))
        if len(curves) > 1:
            sentences.append(f"Of {len(curves)} curves, {curve['feature_set']}/{curve['head']} has the highest "
                             f"fitted plateau.")
    if curve is not None:
        sentences.append(plateau_sentence(curve))
        mine = [c for c in crossovers if c["curve"] == f"{curve['feature_set']}/{curve['head']}"]
        if mine:
            sentences.append(mine[0]["text"][0].upper() + mine[0]["text"][1:] + ".")
    elif curves:
        sentences.append(f"No learning curve could be fitted ({curves[0].get('fit_reason')}).")
    if rows and not curves:
        sentences.append("No learning curve is here; `headstart curve CACHE -o RUNS` measures how many labels each "
                         "cached head needs.")
    if curves and not rows:
        sentences.append("There are no run records here, so no cost or strategy comparison; `headstart heads` and "
                         "`headstart finetune` on the same splits add them.")
    if any(str(r.reference.config.get("weights_tag") or r.reference.config.get("weights")).startswith("random")
           for r in rows):
        sentences.append("Some runs used random weights: their timings are real, their accuracy is not a "
                         "statement about pretrained features.")
    return sentences[:MAX_SENTENCES]


def full_split_sentence(curve: dict) -> str:
    """What the head scores on the whole train split, the curve's last point."""
    metric, last = curve["metric"], curve["summary"][-1]
    score = last["test"][metric]
    return (f"Trained on {last['n_train']:,.0f} images ({last['size']} of train), {curve['feature_set']}/"
            f"{curve['head']} scores test {metric} {fmt_ci(score['mean'], score['ci'])}.")


def cheapest_match(rows: list[Row], best: Row) -> Row | None:
    """The cheapest row (measured seconds) whose mean validation AUROC reaches the lower end of the best row's
    validation interval; None when that is the best row itself or nothing is cheaper. Chosen on val only: a
    recommendation chosen on test would be model selection on test. Its test AUROC is then the outcome."""
    ci = best.reference.metrics.get("val", {}).get("auroc_ci")
    floor = ci[0] if isinstance(ci, (list, tuple)) and all_finite(ci[0]) else best.mean("val", "auroc")
    within = [row for row in rows if all_finite(row.mean("val", "auroc"), seconds_spent(row))
              and row.mean("val", "auroc") >= floor and seconds_spent(row) > 0]
    cheap = min(within, key=seconds_spent, default=None)
    if cheap is None or cheap is best or not seconds_spent(cheap) < seconds_spent(best):
        return None
    return cheap


def _best_head(rows: list[Row], select_metric: str) -> Row | None:
    backbones = sorted({r.backbone for r in rows})
    heads = [best_cached_head(rows, backbone=b, select_metric=select_metric) for b in backbones]
    return best_by_val([h for h in heads if h is not None], select_metric=select_metric)


def _contrast(head: Row, finetune: Row, tests: list[dict]) -> str:
    ids = (head.reference.run_id, finetune.reference.run_id)
    test = next((t for t in tests if (t.get("a"), t.get("b")) == ids), None)
    test = test or compare_runs(head.reference, finetune.reference)
    delong = test.get("delong")
    spent_ft, spent_head = seconds_spent(finetune), seconds_spent(head)
    ratio = spent_ft / spent_head if spent_head > 0 else math.nan
    cost = (f"the fine-tune took {fmt_value(ratio, digits=1)}x the head's measured seconds "
            f"({fmt_seconds(spent_ft)} s against {fmt_seconds(spent_head)} s, extraction included)"
            if all_finite(ratio) else "their cost ratio is unknown (timings missing)")
    pair = f"The best cached head ({head.backbone} {head.label}) and the best fine-tune ({_name(finetune)})"
    if test.get("task") == "multilabel" and not test.get("note"):
        return f"{pair} {contrast_phrase(test)}; {cost}."
    if not delong:
        return f"{pair} could not be tested against each other ({test.get('note') or 'no paired predictions'}); {cost}."
    p = delong.get("p_value")
    differ = all_finite(p) and p < SIGNIFICANCE
    name = (f"DeLong clustered over {delong.get('n_clusters')} patients," if delong.get("method") == "clustered-delong"
            else "DeLong")
    return (f"{pair} {'differ' if differ else 'do not differ significantly'} in test AUROC (head - fine-tune "
            f"{fmt_ci(delong.get('diff'), delong.get('ci_diff'))}, {name} p {_p(p)}); {cost}.")


def _auroc(row: Row) -> str:
    return "macro AUROC" if is_multilabel(row.reference) else "AUROC"


def _name(row: Row) -> str:
    return f"{row.backbone} {row.label}" + (" (cached head)" if row.strategy == "cached-head" else "")


def _cost(row: Row) -> str:
    train = fmt_seconds(row.mean_timing("train_seconds"))
    if row.strategy == "finetune":
        return f"{train} s of fine-tuning"
    extract = fmt_seconds(row.mean_timing("extract_seconds"))
    return f"{fmt_seconds(seconds_spent(row))} s ({extract} s extraction + {train} s training)"


def _p(value: object) -> str:
    if not all_finite(value):
        return "unknown"
    return "< 0.001" if value < 0.001 else f"= {value:.3f}"
