"""Stage one end to end: CLI contract, one decode per image, resume, refusal of mismatched caches."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from headstart.extract.config import ExtractConfig
from headstart.extract.runner import run_extract
from tests.cli_run import invoke

BASE = ["--weights", "random", "--image-size", "32", "--batch-size", "8", "--workers", "0"]



def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def features(path: Path, name: str) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["features"][name][...]


def test_extract_writes_contract_schema(phantom_dir, tmp_path):
    out = tmp_path / "c.h5"
    r = invoke("extract", str(phantom_dir), "-o", str(out), "-b", "resnet18", *BASE)
    assert r.exit_code == 0, r.output
    with h5py.File(out, "r") as f:
        n = len(f["samples/id"])
        assert f["features/resnet18"].shape == (n, 512)
        assert f["features/resnet18"].dtype == np.float16
        assert set(x.decode() for x in f["samples/split"][...]) == {"train", "val", "test"}
        assert json.loads(f.attrs["classes"]) == ["NORMAL", "PNEUMONIA"]
        assert f.attrs["task"] == "binary" and "labels" not in f["samples"]
        assert bool(f["features/resnet18"].attrs["complete"])
        assert np.isfinite(f["features/resnet18"][...]).all()
    info = invoke("cache", "info", str(out), "--json")
    assert info.exit_code == 0, info.output
    data = json.loads(info.output)
    assert data["n_samples"] == n and data["task"] == "binary" and data["labels"] is None
    assert [s["name"] for s in data["feature_sets"]] == ["resnet18"]
    assert data["feature_sets"][0]["dim"] == 512 and data["feature_sets"][0]["complete"] is True


def test_each_image_decoded_once_for_two_backbones(phantom_dir, tmp_path, monkeypatch):
    from headstart.data import sources

    calls: list[str] = []
    real = sources.load_source

    def counting_load_source(*a, **k):
        src = real(*a, **k)
        for name in ("load", "load_with_meta"):  # extraction decodes through one of them (with metadata), once

            def counted(sample, _orig=getattr(src, name), **kw):
                calls.append(sample.id)
                return _orig(sample, **kw)

            setattr(src, name, counted)
        return src

    monkeypatch.setattr("headstart.data.dataset.load_source", counting_load_source)
    cfg = ExtractConfig(backbones=["resnet18", "densenet121"], weights="random", image_size=32, batch_size=8,
                        workers=0)
    result = run_extract(data=str(phantom_dir), output=str(tmp_path / "c.h5"), config=cfg)
    assert result.extracted == ["resnet18", "densenet121"]
    assert len(calls) == result.n_images == len(set(calls))
    assert features(tmp_path / "c.h5", "densenet121").shape[1] == 1024


def test_interrupted_extraction_resumes_to_identical_features(phantom_dir, tmp_path, monkeypatch):
    cfg = ExtractConfig(backbones=["resnet18"], weights="random", image_size=32, batch_size=8, workers=0)
    ref = tmp_path / "ref.h5"
    run_extract(data=str(phantom_dir), output=str(ref), config=cfg)

    from headstart.cache.stager import Stager

    real_write = Stager.write_batch
    count = {"n": 0}

    def flaky_write(self, *a, **k):
        if count["n"] == 3:
            raise KeyboardInterrupt
        count["n"] += 1
        return real_write(self, *a, **k)

    monkeypatch.setattr(Stager, "write_batch", flaky_write)
    out = tmp_path / "c.h5"
    with pytest.raises(KeyboardInterrupt):
        run_extract(data=str(phantom_dir), output=str(out), config=cfg)
    assert not out.exists()  # nothing published until complete
    monkeypatch.setattr(Stager, "write_batch", real_write)
    result = run_extract(data=str(phantom_dir), output=str(out), config=cfg)
    with h5py.File(ref, "r") as f:
        n = len(f["samples/id"])
    assert result.n_images == n - 3 * 8  # three staged batches were not redone
    np.testing.assert_array_equal(features(out, "resnet18"), features(ref, "resnet18"))
    with h5py.File(out, "r") as got, h5py.File(ref, "r") as want:  # the staged batches' metadata came back too
        assert set(got["samples/meta"]) == set(want["samples/meta"]) and len(want["samples/meta"]) > 0
        for name in want["samples/meta"]:
            np.testing.assert_array_equal(got["samples/meta"][name][()], want["samples/meta"][name][()], err_msg=name)
    assert invoke("cache", "verify", str(out)).exit_code == 0


def test_second_backbone_adds_a_set_and_same_request_is_a_no_op(phantom_dir, tmp_path):
    out = tmp_path / "c.h5"
    assert invoke("extract", str(phantom_dir), "-o", str(out), "-b", "resnet18", *BASE).exit_code == 0
    first = features(out, "resnet18")
    again = invoke("extract", str(phantom_dir), "-o", str(out), "-b", "resnet18", *BASE)
    assert again.exit_code == 0 and "already complete" in again.output
    assert invoke("extract", str(phantom_dir), "-o", str(out), "-b", "efficientnet_b0", *BASE).exit_code == 0
    np.testing.assert_array_equal(features(out, "resnet18"), first)
    with h5py.File(out, "r") as f:
        assert set(f["features"]) == {"resnet18", "efficientnet_b0"}


def test_different_fingerprint_is_refused_and_file_untouched(phantom_dir, tmp_path):
    out = tmp_path / "c.h5"
    assert invoke("extract", str(phantom_dir), "-o", str(out), "-b", "resnet18", *BASE).exit_code == 0
    before = sha256(out)
    args = ["extract", str(phantom_dir), "-o", str(out), "-b", "resnet18", "--weights", "random",
            "--image-size", "48", "--batch-size", "8", "--workers", "0"]
    r = invoke(*args)
    assert r.exit_code == 1
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "--overwrite" in errors[0], r.output
    assert sha256(out) == before
    r = invoke(*args, "--overwrite")
    assert r.exit_code == 0, r.output
    with h5py.File(out, "r") as f:
        assert json.loads(f["features/resnet18"].attrs["preprocessing"])["input_size"] == 48


@pytest.mark.parametrize("first,second,needle", [
    # another seed draws another network: the seed and the state sha256 differ
    (["--seed", "0"], ["--seed", "1"], "weights_seed 0 in the cache, 1 requested"),
    # bf16 autocast moves features by ~1e-3, more than float16 storage rounds them
    (["--precision", "fp32"], ["--precision", "bf16"], "precision fp32 in the cache, bf16 requested"),
])
def test_seed_and_precision_changes_are_refused_naming_what_differs(phantom_dir, tmp_path, first, second, needle):
    out = tmp_path / "c.h5"
    common = ["extract", str(phantom_dir), "-o", str(out), "-b", "resnet18", *BASE, "--engine", "torch"]
    assert invoke(*common, *first).exit_code == 0
    before = sha256(out)
    r = invoke(*common, *second)
    assert r.exit_code == 1, r.output
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("Error:") and "computed differently" in last and needle in last, r.output
    assert sha256(out) == before and not list(tmp_path.glob("c.h5.*"))  # byte for byte, no staging left behind


def test_bad_image_fail_names_file_and_skip_records_it(phantom_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(phantom_dir, data)
    bad = data / "train" / "NORMAL" / "IM-9999-0001.jpeg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "c.h5"
    r = invoke("extract", str(data), "-o", str(out), *BASE)
    assert r.exit_code == 1 and "IM-9999-0001.jpeg" in r.output and "--on-bad-image skip" in r.output
    assert not out.exists()
    r = invoke("extract", str(data), "-o", str(out), *BASE, "--on-bad-image", "skip", "--overwrite")
    assert r.exit_code == 0, r.output
    assert "skipped 1" in r.output
    with h5py.File(out, "r") as f:
        ids = [x.decode() for x in f["samples/id"][...]]
        row = ids.index("train/NORMAL/IM-9999-0001.jpeg")
        assert not f["valid/resnet18"][row]
        assert f["valid/resnet18"][...].sum() == len(ids) - 1
        assert "train/NORMAL/IM-9999-0001.jpeg" in json.loads(f["features/resnet18"].attrs["skipped_ids"])


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["extract", "{missing}", "-o", "{out}", *BASE], 1, "does-not-exist"),
        (["extract", "{data}", "-o", "{tmp}", *BASE], 1, "directory"),
        (["extract", "{data}", "-o", "{out}", "-b", "resnet181", *BASE], 2, "resnet18"),
        (["extract", "{data}", "-o", "{out}", "--weights", "random", "--image-size", "0"], 2, "image-size"),
        (["extract", "{data}", "-o", "{out}", "--image-size", "32"], 1, "--weights random"),
    ],
)
def test_bad_input_one_line_errors(phantom_dir, tmp_path, args, code, needle):
    subst = {"missing": str(tmp_path / "does-not-exist"), "out": str(tmp_path / "c.h5"), "tmp": str(tmp_path),
             "data": str(phantom_dir)}
    r = invoke(*[a.format(**subst) for a in args])
    assert r.exit_code == code, r.output
    assert needle in r.output
    assert not (tmp_path / "c.h5").exists()


def test_resplit_keeps_features_without_re_extracting(tmp_path):
    """Splits are metadata: another --test-fraction re-carves val/test and publishes them; no image is decoded again.
    (Another --seed would too, but with random weights it also draws another network, which is refused.)"""
    from headstart.data.synthetic import make_manifest_csv

    manifest = make_manifest_csv(tmp_path / "data", n=60, image_size=32, with_split=False)
    out = tmp_path / "c.h5"
    args = ["extract", str(manifest), "-o", str(out), "-b", "resnet18", *BASE]
    assert invoke(*args).exit_code == 0
    with h5py.File(out, "r") as f:
        splits0 = f["samples/split"].asstr()[...]
        feats0 = f["features/resnet18"][...]
    r = invoke(*args, "--test-fraction", "0.3")
    assert r.exit_code == 0, r.output
    assert "extracted" not in r.output  # nothing was recomputed
    with h5py.File(out, "r") as f:
        splits1 = f["samples/split"].asstr()[...]
        np.testing.assert_array_equal(f["features/resnet18"][...], feats0)
    assert (splits0 != splits1).any()
    assert invoke("cache", "verify", str(out)).exit_code == 0
    # A different backbone request under the new splits still extracts (and only that set).
    r = invoke(*args[:-len(BASE) - 2], "-b", "efficientnet_b0", *BASE, "--test-fraction", "0.3")
    assert r.exit_code == 0 and "extracted efficientnet_b0" in r.output, r.output
