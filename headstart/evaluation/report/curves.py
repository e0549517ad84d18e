"""The learning-curve section: every curve.json of a data set, fine-tunes on the same axes, and the crossover.

A fine-tune trained on a draw (`finetune --train-size`) sits at its realised n_train; one trained on all of train
sits at the whole split. Fine-tune seeds of one configuration and size collapse into one point (mean, with the
t-interval over seeds, or the one run's bootstrap interval). The crossover is the smallest n at which the
fine-tune's interval lies entirely above the head's interval at the same nominal size.
"""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np
from matplotlib.figure import Figure

from headstart.data.draws import parse_size
from headstart.errors import ConfigError
from headstart.evaluation.records import RunRecord
from headstart.evaluation.report.document import Block, Heading, Image, Paragraph, Table
from headstart.evaluation.report.plots import to_png
from headstart.evaluation.report.summary import DatasetGroup, all_finite, config_key
from headstart.evaluation.table import fmt_ci, fmt_mean_std_ci
from headstart.evaluation.curve_doc import fit_sentence, labels_text
from headstart.evaluation.curve_fit import mean_ci

FULL = "100%"  # the size label of the whole train split


def attach_curves(groups: list[DatasetGroup], curves: list[dict]) -> list[DatasetGroup]:
    """Give each data set its curves (by manifest hash); a data set with curves only gets a group of its own."""
    by_hash = {group.manifest_hash: group for group in groups}
    for curve in curves:
        key = str(curve["dataset"].get("manifest_hash") or "unknown")
        if key not in by_hash:
            by_hash[key] = DatasetGroup(manifest_hash=key, records=[])
            groups.append(by_hash[key])
        by_hash[key].curves.append(curve)
    return groups


def size_label(record: RunRecord) -> str:
    """The nominal size a fine-tune trained at: its --train-size, or the whole split."""
    text = record.config.get("train_size")
    try:
        return parse_size(text).label if text else FULL
    except ConfigError:
        return str(text)


def finetune_points(records: list[RunRecord], metric: str) -> list[dict]:
    """One point per fine-tune configuration x size: mean n_train and test metric over seeds, with an interval."""
    groups: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for record in records:
        if record.strategy == "finetune" and record.config.get("n_train"):
            series = re.sub(r"-train-[A-Za-z0-9.]+$", "", config_key(record))  # the configuration without its size
            groups[(series, size_label(record))].append(record)
    points = []
    for (series, size), runs in sorted(groups.items()):
        runs.sort(key=lambda r: r.seed)
        values = [r.metrics.get("test", {}).get(metric) for r in runs]
        mean, sd, ci = mean_ci(values)
        if ci is None:
            ci = runs[0].metrics.get("test", {}).get(f"{metric}_ci")
        config = runs[0].config
        points.append({"series": series, "backbone": runs[0].backbone, "size": size, "seeds": [r.seed for r in runs],
                       "label": f"fine-tune {runs[0].backbone}" + (f" (freeze {config['freeze']})"
                                                                   if config.get("freeze") else ""),
                       "n_train": float(np.mean([r.config["n_train"] for r in runs])), "mean": mean, "sd": sd,
                       "ci": ci})
    return points


def crossover(curve: dict, points: list[dict]) -> list[dict]:
    """Per fine-tune series of the curve's backbone: the smallest n where its interval lies above the head's."""
    metric = curve["metric"]
    by_size = {entry["size"]: entry for entry in curve["summary"]}
    out = []
    for series in sorted({p["series"] for p in points if p["backbone"] == curve["backbone"]}):
        matched = sorted(((p, by_size[p["size"]]) for p in points if p["series"] == series and p["size"] in by_size),
                         key=lambda pair: pair[0]["n_train"])
        found = next((pair for pair in matched if _above(pair[0]["ci"], pair[1]["test"][metric]["ci"])), None)
        label = matched[0][0]["label"] if matched else series
        head = f"{curve['feature_set']}/{curve['head']}"
        if not matched:
            text = f"{label} has no fine-tune at the sizes of {head}; no crossover can be measured"
        elif found is None:
            text = (f"{label} vs {head}: no crossover within the measured sizes "
                    f"({', '.join(p['size'] for p, _ in matched)})")
        else:
            ft, entry = found
            text = (f"{label} vs {head}: the fine-tune's interval {fmt_ci(ft['mean'], ft['ci'])} lies above the "
                    f"head's {fmt_ci(entry['test'][metric]['mean'], entry['test'][metric]['ci'])} from "
                    f"n = {ft['n_train']:,.0f} ({ft['size']}) on")
        out.append({"series": series, "curve": head, "n": found[0]["n_train"] if found else None,
                    "size": found[0]["size"] if found else None, "sizes": [p["size"] for p, _ in matched],
                    "text": text})
    return out


def _above(upper_ci: object, lower_ci: object) -> bool:
    """True when the first interval lies entirely above the second."""
    if not (isinstance(upper_ci, (list, tuple)) and isinstance(lower_ci, (list, tuple))):
        return False
    return all_finite(upper_ci[0], lower_ci[1]) and upper_ci[0] > lower_ci[1]


def curve_section(group: DatasetGroup, *, stem: str) -> tuple[list[Block], dict, list[Image]]:
    """Heading, the chart, one table and one fit sentence per curve, and the crossover sentences."""
    curves = group.curves
    metric = curves[0]["metric"] if curves else "auroc"
    points = finetune_points(group.records, metric)
    subsampled = [p for p in points if p["size"] != FULL]
    if not curves and not subsampled:
        return [], {}, []
    blocks: list[Block] = [Heading(3, f"Learning curves: test {metric} against labelled training images")]
    png = learning_curve_figure(curves, points, metric=metric)
    alt = (f"Test {metric} against labelled training images (log x): mean over draws with its 95% band, fine-tunes "
           f"overlaid, plateaus dashed")
    images = [Image(path=f"{stem}learning_curve.png", alt=alt, png=png)] if png else []
    blocks += images
    data: dict = {"curves": [], "finetune_points": points}
    for curve in curves:
        crossings = crossover(curve, points)
        config = curve.get("config") or {}
        blocks += [Paragraph(f"{curve['feature_set']} / {curve['head']} ({config.get('repeats')} draws per "
                             f"size, sweep {config.get('sweep')}): {fit_sentence(curve)}."),
                   _curve_table(curve)]
        blocks += [Paragraph(c["text"] + ".") for c in crossings]
        blocks += [Paragraph(f"Note: {note}") for note in curve.get("notes", [])[:3]]
        data["curves"].append({"path": curve["path"], "feature_set": curve["feature_set"], "head": curve["head"],
                               "backbone": curve["backbone"], "metric": metric, "fit": curve.get("fit"),
                               "fit_reason": curve.get("fit_reason"), "crossovers": crossings})
    if not curves:
        blocks.append(Paragraph("Fine-tunes on training draws were found but no curve; run `headstart curve CACHE -o "
                                "RUNS` to put cached heads on the same axes."))
    return blocks, data, images


def best_curve(curves: list[dict]) -> dict | None:
    """The curve with the highest fitted plateau (curves without a fit never win)."""
    fitted = [c for c in curves if c.get("fit")]
    return max(fitted, key=lambda c: c["fit"]["plateau"]) if fitted else None


def plateau_sentence(curve: dict) -> str:
    """How many labels reach 95% of the plateau, for the verdict."""
    fit, metric = curve["fit"], curve["metric"]
    return (f"On the learning curve of {curve['feature_set']}/{curve['head']}, {metric} plateaus at "
            f"{fit['plateau']:.3f}, and 95% of that ({0.95 * fit['plateau']:.3f}) takes "
            f"{labels_text(fit.get('labels_95'), fit)} (measured from {fit['n_min']:,.0f} to {fit['n_max']:,.0f}).")


def _curve_table(curve: dict) -> Table:
    metric = curve["metric"]
    rows = []
    for entry in curve["summary"]:
        test, (low, high) = entry["test"][metric], entry["n_train_range"]
        rows.append([entry["size"], str(entry["repeats"]), str(low) if low == high else f"{low}-{high}",
                     f"{entry['n_patients']:.0f}", fmt_mean_std_ci(test["mean"], test["sd"], test["ci"])])
    return Table(headers=["size", "draws", "n train", "patients", f"test {metric} mean ± sd [95% CI]"], rows=rows,
                 numeric=[False, True, True, True, True])


def learning_curve_figure(curves: list[dict], points: list[dict], *, metric: str) -> bytes | None:
    """Metric against labels (log x): a line and band per curve, its plateau dashed, fine-tunes as error bars."""
    if not curves and not points:
        return None
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    colors = _palette()
    for curve in curves:
        color = next(colors)
        summary = [e for e in curve["summary"] if all_finite(e["n_train"], e["test"][metric]["mean"])]
        x = np.array([e["n_train"] for e in summary])
        y = np.array([e["test"][metric]["mean"] for e in summary])
        low = np.array([(e["test"][metric]["ci"] or [m, m])[0] for e, m in zip(summary, y)], dtype=float)
        high = np.array([(e["test"][metric]["ci"] or [m, m])[1] for e, m in zip(summary, y)], dtype=float)
        ax.plot(x, y, "o-", color=color, label=f"{curve['feature_set']} / {curve['head']}")
        ax.fill_between(x, low, high, color=color, alpha=0.18, linewidth=0)
        if curve.get("fit"):
            ax.axhline(curve["fit"]["plateau"], color=color, linestyle="--", linewidth=1,
                       label=f"plateau {curve['fit']['plateau']:.3f}")
    for series in sorted({p["series"] for p in points}):
        mine = sorted((p for p in points if p["series"] == series and all_finite(p["mean"])),
                      key=lambda p: p["n_train"])
        if not mine:
            continue
        y = np.array([p["mean"] for p in mine])
        err = np.array([[m - (p["ci"] or [m, m])[0], (p["ci"] or [m, m])[1] - m] for p, m in zip(mine, y)]).T
        ax.errorbar([p["n_train"] for p in mine], y, yerr=np.clip(err, 0, None), fmt="s:", color=next(colors),
                    capsize=3, label=mine[0]["label"])
    ax.set_xscale("log")
    ax.set_xlabel("labelled training images (log scale; realised n, mean over draws)")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"Learning curves: test {metric} against labels")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    return to_png(fig)


def _palette():
    from matplotlib import colormaps

    colors = colormaps["tab10"].colors
    while True:
        yield from colors
