"""`audit --fix`: the grouping rule as a table, and the re-split it publishes (features kept, test only with --yes)."""

from __future__ import annotations

import hashlib
import json
import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from headstart.cache.reader import FeatureCache
from headstart.cache.writer import publish_splits
from headstart.cache.schema import staging_dir
from headstart.cli import cli
from headstart.errors import CacheError
from headstart.studies.audit.fix import fix_splits, plan_fix
from headstart.studies.audit.result import CheckResult
from tests.studies.audit.caches import table_cache

FAST = ["--shuffle-repeats", "2"]


def _pairs(*pairs: tuple[str, str]) -> list[dict]:
    return [{"id_a": a, "id_b": b} for a, b in pairs]


def _plan(splits: str, groups: str, pairs: list[tuple[str, str]]):
    """Rows named a, b, c, ...; splits and groups one letter per row (t=train, v=val, s=test; '.' no group)."""
    names = [chr(ord("a") + i) for i in range(len(splits))]
    split_of = {"t": "train", "v": "val", "s": "test"}
    fix = plan_fix(np.array(names, dtype=object), np.array([split_of[c] for c in splits], dtype=object),
                   np.array(["" if g == "." else g for g in groups], dtype=object), _pairs(*pairs))
    return "".join({v: k for k, v in split_of.items()}[s] for s in fix.splits), fix


@pytest.mark.parametrize("splits, groups, pairs, expected, test_moves", [
    ("tvs", "...", [("a", "b")], "tts", 0),  # a tie goes to train: the val copy moves, test is untouched
    ("tvs", "...", [("a", "c")], "tvt", 1),  # a train-test pair: the test image moves (tie -> train)
    ("tss", "...", [("a", "b"), ("a", "c")], "sss", 1),  # the majority is test: the train image joins it
    ("tss", "...", [("a", "b"), ("b", "c")], "sss", 1),  # chains are one group
    ("ttv", "PP.", [("a", "c")], "ttt", 0),  # patient P's other image counts: train 2 - val 1
    ("tvvs", "P.P.", [("a", "b")], "vvvs", 0),  # patient P spans train and val: the whole group meets in val
    ("tvs", "...", [("a", "zz")], "tvs", 0),  # ids the cache does not hold are ignored
    ("tts", "...", [("a", "b")], "tts", 0),  # a group inside one split does not move
])
def test_each_group_ends_in_its_majority_split(splits, groups, pairs, expected, test_moves):
    got, fix = _plan(splits, groups, pairs)
    assert got == expected
    assert fix.test_moves == test_moves
    assert len(fix.moves) == sum(a != b for a, b in zip(splits, expected))


def _cache(tmp_path):
    labels = [0, 1] * 12
    splits = ["train"] * 12 + ["val"] * 6 + ["test"] * 6
    return table_cache(tmp_path / "c.h5", labels=labels, splits=splits)


def _check(*pairs: tuple[str, str]) -> CheckResult:
    return CheckResult("near_duplicates", True, "pairs", {"pairs": _pairs(*pairs)})


def test_a_train_val_fix_publishes_without_confirmation_and_keeps_features(tmp_path):
    cache = _cache(tmp_path)
    with FeatureCache(cache) as c:
        (name,) = c.feature_sets
        ids, before = c.ids.tolist(), c.load(name)
    fix = fix_splits(str(cache), _check((ids[0], ids[12])), confirm=False)  # train 0 ~ val 12
    assert fix.published and fix.refused is None and fix.moves == [
        {"id": ids[12], "group": 1, "from": "val", "to": "train"}]
    with FeatureCache(cache) as c:
        assert c.splits[12] == "train" and (c.splits[13:18] == "val").all()
        np.testing.assert_array_equal(c.load(name)[0], before[0])
    with h5py.File(cache, "r") as f:
        assert json.loads(f.attrs["resplit"])["by"] == "headstart audit --fix"
    assert CliRunner().invoke(cli, ["cache", "verify", str(cache)]).exit_code == 0


def test_a_fix_that_changes_test_is_refused_without_confirmation(tmp_path):
    cache = _cache(tmp_path)
    digest = hashlib.sha256(cache.read_bytes()).hexdigest()
    with FeatureCache(cache) as c:
        ids = c.ids.tolist()
    fix = fix_splits(str(cache), _check((ids[0], ids[20])), confirm=False)  # train 0 ~ test 20
    assert not fix.published and "--yes" in fix.refused and fix.test_moves == 1
    assert hashlib.sha256(cache.read_bytes()).hexdigest() == digest


def test_publish_refuses_beside_an_unfinished_extraction(tmp_path):
    cache = _cache(tmp_path)
    staging_dir(cache).mkdir()
    with FeatureCache(cache) as c:
        splits = c.splits.tolist()
    with pytest.raises(CacheError, match="unfinished extraction"):
        publish_splits(cache, ["train"] * 2 + splits[2:])


def test_cli_fix_refused_then_confirmed_on_planted_copies(planted, tmp_path):
    source, _, _, planted_pairs = planted
    cache = tmp_path / "c.h5"
    shutil.copy(source, cache)
    digest = hashlib.sha256(cache.read_bytes()).hexdigest()
    refused = CliRunner().invoke(cli, ["audit", str(cache), "--fix", *FAST])
    assert refused.exit_code == 1, refused.output
    errors = [line for line in refused.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "--yes" in errors[0] and "Traceback" not in refused.output
    assert "fix: would move" in refused.output and hashlib.sha256(cache.read_bytes()).hexdigest() == digest

    done = CliRunner().invoke(cli, ["audit", str(cache), "--fix", "--yes", *FAST])
    assert done.exit_code == 0, done.output
    moved = [line for line in done.output.splitlines() if line.startswith("fix: moved ")]
    assert len(moved) >= len(planted_pairs) and "published new splits" in done.output
    with FeatureCache(cache) as c:
        split_of = dict(zip(c.ids.tolist(), c.splits.tolist()))
    assert all(split_of[a] == split_of[b] for a, b in planted_pairs)  # each copy now shares its original's split
    with h5py.File(cache, "r") as f, h5py.File(source, "r") as g:
        np.testing.assert_array_equal(f["features/resnet18"][()], g["features/resnet18"][()])
        np.testing.assert_array_equal(f["samples/meta/phash"][()], g["samples/meta/phash"][()])
    again = CliRunner().invoke(cli, ["audit", str(cache), "--json", *FAST])
    pairs = {frozenset((p["id_a"], p["id_b"])) for p in json.loads(again.stdout)["near_duplicates"]}
    assert not pairs & {frozenset(p) for p in planted_pairs}


def test_yes_without_fix_is_a_usage_error(planted):
    result = CliRunner().invoke(cli, ["audit", str(planted[0]), "--yes", *FAST])
    assert result.exit_code == 2 and "--fix" in result.output
