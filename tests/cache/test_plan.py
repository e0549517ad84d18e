"""The planner as a table: (what is at the path, what is staged, the request) -> decision. No files are touched."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from headstart.cache.fingerprint import compute_samples_sha256
from headstart.cache.header import CacheHeader, FileKind
from headstart.cache.plan import MISMATCHES, Action, CacheRequest, Refusal, SamplesTable, plan
from headstart.cache.schema import STAGING_FORMAT, STAGING_VERSION
from headstart.errors import CacheError, CacheMismatchError
from tests.cache.synthetic import make_spec, make_table

PATH = Path("/nowhere/c.h5")
T = make_table()
OTHER = make_table(seed=1)  # other labels: other images as far as the cache can tell


def _resplit(t: SamplesTable) -> SamplesTable:
    """Same images, labels and groups; every split moved on by one."""
    splits = [{"train": "val", "val": "test", "test": "train"}[s] for s in t.splits]
    manifest = compute_samples_sha256(ids=t.ids, labels=t.labels, splits=splits, groups=t.groups, classes=t.classes)
    return replace(t, splits=splits, manifest_hash=manifest)


R = _resplit(T)


def spec(table=T, name="resnet18", **kw):
    return make_spec(table, name, **kw)


def stored(s, *, complete=True, drop=()) -> dict:
    """A feature set's attributes as the header reader returns them."""
    meta = {**s.identity(), "fingerprint": s.fingerprint, "dtype": s.dtype, "dim": s.dim, "complete": complete,
            "name": s.name}
    return {k: v for k, v in meta.items() if k not in drop}


def cache(*sets: dict, table=T) -> CacheHeader:
    return CacheHeader(PATH, FileKind.CACHE, format_version=1, root_attrs={"manifest_hash": table.manifest_hash},
                       classes=list(table.classes), ids=np.array(table.ids, dtype=object),
                       labels=np.asarray(table.labels), splits=np.array(table.splits, dtype=object),
                       groups=np.array(table.groups, dtype=object), feature_sets={m["name"]: m for m in sets})


def unusable(kind: FileKind) -> CacheHeader:
    return CacheHeader(PATH, kind, found=f"{PATH} is {kind.value}", advice="reader advice")


def staged(*specs, table=T) -> dict:
    return {"format": STAGING_FORMAT, "version": STAGING_VERSION, "manifest_hash": table.manifest_hash,
            "n_rows": len(table), "sets": {s.name: s.staged_entry() for s in specs}}


A, B = spec(), spec(name="vit", dim=4)
A_OTHER_WEIGHTS, A_F32 = spec(weights="file:mine.pt"), spec(dtype="float32")
AR, BR = spec(R), spec(R, name="vit", dim=4)
MISSING = unusable(FileKind.MISSING)
NEW_ALL = (Action.NEW_FILE, None, ("resnet18", "vit"), ())

# id: (header, request specs, table, overwrite, staged state, (action, refusal, todo, keep))
CASES = {
    "missing file -> new file": (MISSING, [A, B], T, False, None, NEW_ALL),
    "folder": (unusable(FileKind.FOLDER), [A], T, False, None, (Action.REFUSE, Refusal.OUTPUT_IS_FOLDER, (), ())),
    "junk or truncated": (unusable(FileKind.UNREADABLE), [A], T, False, None,
                          (Action.REFUSE, Refusal.UNREADABLE, (), ())),
    "junk or truncated, --overwrite": (unusable(FileKind.UNREADABLE), [A], T, True, None,
                                       (Action.REFUSE, Refusal.UNREADABLE, (), ())),
    "foreign hdf5": (unusable(FileKind.FOREIGN), [A], T, False, None, (Action.REFUSE, Refusal.NOT_A_CACHE, (), ())),
    "foreign hdf5, --overwrite": (unusable(FileKind.FOREIGN), [A], T, True, None,
                                  (Action.REFUSE, Refusal.NOT_A_CACHE, (), ())),
    "newer format": (unusable(FileKind.NEWER), [A], T, False, None, (Action.REFUSE, Refusal.NEWER, (), ())),
    "newer format, --overwrite": (unusable(FileKind.NEWER), [A], T, True, None,
                                  (Action.REFUSE, Refusal.NEWER, (), ())),
    "damaged cache": (unusable(FileKind.DAMAGED), [A], T, False, None, (Action.REFUSE, Refusal.DAMAGED, (), ())),
    "damaged cache, --overwrite": (unusable(FileKind.DAMAGED), [A, B], T, True, None, NEW_ALL),
    "same set complete -> done": (cache(stored(A)), [A], T, False, None, (Action.DONE, None, (), ("resnet18",))),
    "new set -> add": (cache(stored(A)), [A, B], T, False, None, (Action.ADD_SETS, None, ("vit",), ("resnet18",))),
    "incomplete set -> redo": (cache(stored(A, complete=False), stored(B)), [A], T, False, None,
                               (Action.ADD_SETS, None, ("resnet18",), ("vit",))),
    "other weights": (cache(stored(A)), [A_OTHER_WEIGHTS], T, False, None,
                      (Action.REFUSE, Refusal.SET_FINGERPRINT, (), ())),
    "other weights, --overwrite": (cache(stored(A), stored(B)), [A_OTHER_WEIGHTS], T, True, None,
                                   (Action.ADD_SETS, None, ("resnet18",), ("vit",))),
    "other dtype": (cache(stored(A)), [A_F32], T, False, None, (Action.REFUSE, Refusal.SET_DTYPE, (), ())),
    "other dtype, --overwrite": (cache(stored(A)), [A_F32], T, True, None, (Action.ADD_SETS, None, ("resnet18",), ())),
    "other data": (cache(stored(A)), [spec(OTHER)], OTHER, False, None, (Action.REFUSE, Refusal.OTHER_DATA, (), ())),
    "other data, --overwrite": (cache(stored(A)), [spec(OTHER)], OTHER, True, None,
                                (Action.NEW_FILE, None, ("resnet18",), ())),
    "new splits -> re-split only": (cache(stored(A)), [AR], R, False, None, (Action.RESPLIT, None, (), ("resnet18",))),
    "new splits and a new set": (cache(stored(A), stored(B, complete=False)), [AR, BR], R, False, None,
                                 (Action.RESPLIT, None, ("vit",), ("resnet18",))),
    "new splits, other weights": (cache(stored(A)), [spec(R, weights="file:mine.pt")], R, False, None,
                                  (Action.REFUSE, Refusal.SET_FINGERPRINT, (), ())),
    "new splits, other dtype": (cache(stored(A)), [spec(R, dtype="float32")], R, False, None,
                                (Action.REFUSE, Refusal.SET_DTYPE, (), ())),
    "new splits, --overwrite -> rebuild": (cache(stored(A)), [AR], R, True, None,
                                           (Action.NEW_FILE, None, ("resnet18",), ())),
    "new splits, set lacks its attributes": (cache(stored(A, drop=("weights",))), [AR], R, False, None,
                                             (Action.REFUSE, Refusal.SET_ATTRS_MISSING, (), ())),
    "staged for this request -> resume": (MISSING, [A, B], T, False, staged(A), NEW_ALL),
    "staged for other data": (MISSING, [A], T, False, staged(spec(OTHER), table=OTHER),
                              (Action.REFUSE, Refusal.STAGED_OTHER_DATA, (), ())),
    "staged set with other weights": (MISSING, [A], T, False, staged(A_OTHER_WEIGHTS),
                                      (Action.REFUSE, Refusal.STAGED_SET, (), ())),
    "staged set with other weights, --overwrite": (MISSING, [A], T, True, staged(A_OTHER_WEIGHTS),
                                                   (Action.NEW_FILE, None, ("resnet18",), ())),
    "staged set not requested now": (cache(stored(A)), [A, B], T, False, staged(A_F32),
                                     (Action.ADD_SETS, None, ("vit",), ("resnet18",))),
    "done, stale staging ignored": (cache(stored(A)), [A], T, False, staged(spec(OTHER), table=OTHER),
                                    (Action.DONE, None, (), ("resnet18",))),
}


@pytest.mark.parametrize("case", list(CASES))
def test_plan_table(case):
    header, specs, table, overwrite, state, (action, refusal, todo, keep) = CASES[case]
    decided = plan(header, CacheRequest.of(PATH, table, specs, overwrite=overwrite), state)
    assert (decided.action, decided.refusal, decided.todo, decided.keep) == (action, refusal, todo, keep)
    assert decided.discard_staging == (overwrite and state is not None and "other" in case)
    error = decided.error()
    if refusal is None:
        assert error is None and decided.message == ""
        return
    assert type(error) is (CacheMismatchError if refusal in MISMATCHES else CacheError)
    assert str(error) == decided.message and "\n" not in decided.message
    assert (str(PATH) in decided.message) or "parts" in decided.message  # names the file or its staging folder
    never_replaced = {Refusal.UNREADABLE, Refusal.NOT_A_CACHE, Refusal.NEWER, Refusal.OUTPUT_IS_FOLDER}
    assert ("--overwrite" in decided.message) == (refusal not in never_replaced)  # offered only where it works


def test_resplit_restamps_each_kept_set_with_its_new_fingerprint():
    decided = plan(cache(stored(A), stored(B)), CacheRequest.of(PATH, R, [AR]))
    assert decided.restamp == {"resnet18": AR.fingerprint, "vit": BR.fingerprint}
    assert decided.keep == ("resnet18", "vit") and decided.todo == ()


def test_overwrite_notes_say_what_is_dropped():
    rebuilt = plan(cache(stored(A), stored(B)), CacheRequest.of(PATH, OTHER, [spec(OTHER)], overwrite=True))
    assert any("dropping feature sets resnet18, vit" in n for n in rebuilt.notes)
    damaged = plan(unusable(FileKind.DAMAGED), CacheRequest.of(PATH, T, [A], overwrite=True))
    assert any("replacing a damaged cache" in n for n in damaged.notes)
    discarded = plan(MISSING, CacheRequest.of(PATH, T, [A], overwrite=True), staged(A_F32))
    assert discarded.discard_staging and any("discarding the partial extraction" in n for n in discarded.notes)


def test_refusals_for_unusable_files_say_what_to_do():
    foreign = plan(unusable(FileKind.FOREIGN), CacheRequest.of(PATH, T, [A], overwrite=True))
    assert foreign.message.endswith("choose another -o path")
    junk = plan(unusable(FileKind.UNREADABLE), CacheRequest.of(PATH, T, [A], overwrite=True))
    assert "move or delete it if it is yours to lose" in junk.message
