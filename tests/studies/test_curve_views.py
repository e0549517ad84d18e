"""`headstart curve --views on`: every curve gets a twin on the cached views, on the same draws."""

from __future__ import annotations

import json

import pytest

from tests.cli_run import invoke

EXTRACT = ["--weights", "random", "--image-size", "32", "--batch-size", "16", "--workers", "0", "--engine", "torch"]
CURVE = ["--sizes", "50%", "--repeats", "2", "--n-boot", "20", "--sweep", "quick"]



@pytest.fixture(scope="module")
def caches(phantom_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("curve_views")
    for name, extra in (("plain.h5", []), ("views.h5", ["--views", "2"])):
        r = invoke("extract", str(phantom_dir), "-o", str(folder / name), "-b", "resnet18", *EXTRACT, *extra)
        assert r.exit_code == 0, r.output
    return folder


def test_views_on_adds_a_views_twin_on_the_same_draws(caches, tmp_path):
    r = invoke("curve", str(caches / "views.h5"), "-o", str(tmp_path), "--head", "logreg", "--head", "linear", *CURVE,
               "--views", "on")
    assert r.exit_code == 0, r.output
    for head in ("logreg", "linear"):
        plain = json.loads((tmp_path / f"curve_resnet18_{head}" / "curve.json").read_text())
        views = json.loads((tmp_path / f"curve_resnet18_{head}-views" / "curve.json").read_text())
        assert (plain["views"], views["views"]) == ("off", "on") and views["config"]["views"] == "on"
        assert [p["size"] for p in plain["points"]] == [p["size"] for p in views["points"]] == ["50%"] * 2 + ["100%"]
        # a pair at every size: the same images drawn, trained with and without their views
        for a, b in zip(plain["points"], views["points"]):
            assert (a["seed"], a["n_train"], a["per_class"]) == (b["seed"], b["n_train"], b["per_class"])
        diff = [abs(a["metrics"]["test"]["auroc"] - b["metrics"]["test"]["auroc"]) +
                abs(a["metrics"]["test"]["accuracy"] - b["metrics"]["test"]["accuracy"])
                for a, b in zip(plain["points"], views["points"])]
        assert max(diff) > 0, head  # the views changed what was trained
    # without --views the plain curve is the same as the twin's plain half
    r = invoke("curve", str(caches / "views.h5"), "-o", str(tmp_path / "again"), "--head", "logreg", *CURVE)
    assert r.exit_code == 0, r.output
    again = json.loads((tmp_path / "again" / "curve_resnet18_logreg" / "curve.json").read_text())
    first = json.loads((tmp_path / "curve_resnet18_logreg" / "curve.json").read_text())
    assert [p["metrics"]["test"]["auroc"] for p in again["points"]] == [p["metrics"]["test"]["auroc"]
                                                                         for p in first["points"]]
    assert not (tmp_path / "again" / "curve_resnet18_logreg-views").exists()
    from headstart.evaluation.curve_doc import read_curves

    assert sorted(c["head"] for c in read_curves(tmp_path)) == ["linear", "linear (views)", "logreg",
                                                                 "logreg (views)"]  # the report's labels


def test_views_on_without_cached_views_is_one_line(caches, tmp_path):
    r = invoke("curve", str(caches / "plain.h5"), "-o", str(tmp_path), *CURVE, "--views", "on")
    assert r.exit_code == 1 and "--views K" in r.output and len(r.output.strip().splitlines()) <= 2, r.output
