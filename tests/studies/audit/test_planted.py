"""The audit on phantoms with a planted size shortcut and planted near-duplicates (random-weight features)."""

from __future__ import annotations

from headstart.studies.audit import AuditConfig, run_audit

FAST = AuditConfig(n_boot=200, power_sims=50)


def _pairs(report) -> set[frozenset]:
    return {frozenset((p["id_a"], p["id_b"])) for p in report.check("near_duplicates").data["pairs"]}


def test_size_shortcut_and_every_planted_copy_found(planted):
    cache, _, _, pairs = planted
    report = run_audit(cache, config=FAST, progress=False)
    baseline = report.check("metadata_baseline")
    assert baseline.flagged and baseline.data["auroc"] > 0.9, baseline.message
    assert "log_width" in baseline.data["features"]
    found = _pairs(report)
    planted_pairs = {frozenset(p) for p in pairs}
    assert planted_pairs <= found, planted_pairs - found
    assert len(found - planted_pairs) <= 3, found - planted_pairs
    methods = {p["method"] for p in report.check("near_duplicates").data["pairs"]}
    assert all(p["hamming"] is not None for p in report.check("near_duplicates").data["pairs"])  # pixel evidence


def test_old_cache_without_meta_still_finds_copies_by_embedding(planted):
    _, old, _, pairs = planted
    report = run_audit(old, config=FAST, progress=False)
    baseline = report.check("metadata_baseline")
    assert baseline.skipped and "no /samples/meta" in baseline.message and not baseline.flagged
    found = _pairs(report)
    planted_pairs = {frozenset(p) for p in pairs}
    assert planted_pairs <= found and len(found - planted_pairs) <= 3
    assert {p["method"] for p in report.check("near_duplicates").data["pairs"]} == {"embedding"}


def test_other_checks_run_and_stay_quiet_on_clean_phantoms(planted):
    cache, _, _, _ = planted
    report = run_audit(cache, config=FAST, progress=False)
    shuffle = report.check("label_shuffle")
    assert not shuffle.skipped and abs(shuffle.data["auroc_mean"] - 0.5) < 0.2 and not shuffle.flagged
    power = report.check("test_power")
    assert not power.skipped and 0 <= power.data["auroc_half_width"] < 0.2  # phantoms: test AUROC near 1
    assert 0 < power.data["min_detectable_auroc_diff"] < 0.5
    shift = report.check("split_shift")
    assert shift.data["domain_auroc"] is not None and "train" in shift.data["class_balance"]
    doc = report.to_json()
    for key in ("metadata_baseline", "near_duplicates", "patient_leakage", "label_shuffle", "split_shift",
                "test_power"):
        assert key in doc
    assert set(doc["metadata_baseline"]) >= {"auroc", "auroc_ci", "features"}
    assert set(doc["near_duplicates"][0]) >= {"id_a", "id_b", "split_a", "split_b", "similarity", "method"}
