"""Untrusted files: pickles with a payload are refused, metadata is JSON only, manifests resolve paths safely."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from pathlib import Path

import h5py
import pytest
import torch

from tests.reliability.conftest import EXTRACT_OPTS, REPO, TALLY, assert_one_line_error, invoke, samples


class _Payload:
    """Unpickling this runs `Path(marker).touch()`: proof that code executed on load."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _malicious_state_dict(path: Path, marker: Path) -> Path:
    """A file that looks like a state dict (torch.save zip) but carries a code-running object."""
    torch.save({"conv1.weight": torch.zeros(1), "evil": _Payload(marker)}, path)
    return path


def test_weights_file_with_pickle_payload_is_refused(small_data, tmp_path):
    marker = tmp_path / "pwned"
    weights = _malicious_state_dict(tmp_path / "evil.pth", marker)
    out = tmp_path / "c.h5"
    result = invoke("extract", str(small_data), "-o", str(out), "--weights", str(weights), "--image-size", "32",
                    "--batch-size", "4", "--workers", "0")
    line = assert_one_line_error(result)
    assert "weights_only" in line and str(weights) in line
    assert not marker.exists() and not out.exists()
    TALLY["untrusted pickle"]["--weights PATH refused, payload not run"] += 1


def test_plain_pickle_as_weights_is_refused(small_data, tmp_path):
    """A legacy (non-zip) pickle with a payload: the same refusal."""
    marker = tmp_path / "pwned"
    weights = tmp_path / "evil.pkl"
    weights.write_bytes(pickle.dumps({"evil": _Payload(marker)}))
    result = invoke("extract", str(small_data), "-o", str(tmp_path / "c.h5"), "--weights", str(weights),
                    "--image-size", "32", "--workers", "0")
    assert_one_line_error(result)
    assert not marker.exists()


def test_finetune_resume_checkpoint_with_payload_is_refused(small_data, tmp_path):
    from headstart.finetune.checkpoint import load_checkpoint
    from headstart.errors import HeadstartError

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "last.pt"
    torch.save({"checkpoint_version": 1, "model": {}, "epoch": 0, "evil": _Payload(marker)}, ckpt)
    with pytest.raises(HeadstartError) as info:
        load_checkpoint(ckpt)
    assert "\n" not in str(info.value) and str(ckpt) in str(info.value)
    assert not marker.exists()
    TALLY["untrusted pickle"]["finetune checkpoint refused, payload not run"] += 1


@pytest.mark.slow
def test_finetune_resume_cli_with_payload_checkpoint(small_data, tmp_path):
    """Through the CLI: the run folder `--resume` would read holds a checkpoint with a payload."""
    opts = ["-b", "resnet18", "--weights", "random", "--epochs", "1", "--batch-size", "16", "--image-size", "32",
            "--workers", "0", "--patience", "0", "--no-augment"]
    assert invoke("finetune", str(small_data), "-o", str(tmp_path), *opts).exit_code == 0
    (last,) = tmp_path.glob("*/checkpoints/last.pt")
    marker = tmp_path / "pwned"
    torch.save({"checkpoint_version": 1, "evil": _Payload(marker)}, last)
    result = invoke("finetune", str(small_data), "-o", str(tmp_path), *opts, "--epochs", "2", "--resume")
    assert_one_line_error(result)
    assert not marker.exists()


def test_no_unsafe_deserialisation_in_the_package():
    """Metadata is JSON: no pickle.load(s), eval/exec, yaml.load or torch.load without weights_only=True."""
    # builtin eval/exec only: `model.eval()` (a method) is fine
    unsafe = re.compile(r"pickle\.loads?\(|(?<![.\w])eval\(|(?<![.\w])exec\(|yaml\.load\(|allow_pickle=True|"
                        r"weights_only=False")
    offenders = []
    for file in sorted((REPO / "headstart").rglob("*.py")):
        text = file.read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), 1):
            if unsafe.search(line):
                offenders.append(f"{file.relative_to(REPO)}:{number}: {line.strip()}")
        for call in re.finditer(r"torch\.load\(([^()]|\([^()]*\))*\)", text):
            if "weights_only=True" not in call.group(0):
                offenders.append(f"{file.relative_to(REPO)}: {call.group(0)}")
    assert not offenders, offenders


def test_cache_attributes_are_json_or_plain_scalars(reference_cache):
    """Every non-scalar attribute is a JSON string that json.loads parses; none is a pickled object."""
    from headstart.cache.schema import FEATURE_JSON_ATTRS, ROOT_PLAIN_ATTRS

    with h5py.File(reference_cache, "r") as f:
        for key, value in f.attrs.items():
            if key not in ROOT_PLAIN_ATTRS:
                json.loads(value)
            assert isinstance(value, (str, bytes, int)) or getattr(value, "shape", None) == (), (key, value)
        for ds in f["features"].values():
            for key in FEATURE_JSON_ATTRS:
                json.loads(ds.attrs[key])
            for key, value in ds.attrs.items():
                assert not (isinstance(value, bytes) and value.startswith(b"\x80")), key  # no pickle protocol header


def test_cache_metadata_with_code_is_refused_not_run(reference_cache, tmp_path):
    """A JSON attribute replaced by Python source: refused as invalid JSON, never evaluated."""
    path = tmp_path / "c.h5"
    shutil.copyfile(reference_cache, path)
    marker = tmp_path / "pwned"
    with h5py.File(path, "r+") as f:
        f.attrs["classes"] = f"__import__('pathlib').Path({str(marker)!r}).touch() or ['a', 'b']"
    for command in (["cache", "info", str(path)], ["cache", "verify", str(path)]):
        result = invoke(*command)
        assert_one_line_error(result)
        assert "not valid JSON" in result.output  # verify lists it as a `problem:` line, info as the error
    assert not marker.exists()


def _manifest_dataset(root: Path, small_data: Path) -> Path:
    """images/<class>/x.jpeg beside lists/manifest.csv, which names them as ../images/..."""
    shutil.copytree(small_data, root / "images")
    rows = ["path,label,split"]
    for file in sorted((root / "images").rglob("*.jpeg")):
        split, label = file.parent.parent.name, file.parent.name
        rows.append(f"../images/{file.relative_to(root / 'images').as_posix()},{label},{split}")
    (root / "lists").mkdir()
    manifest = root / "lists" / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def test_manifest_paths_resolve_against_the_manifest_folder(small_data, tmp_path, monkeypatch):
    """Relative paths, `../` included, are resolved against the manifest's folder, whatever the CWD.

    `../` is allowed on purpose: a manifest kept beside (not above) its images is common. It is resolved
    relative to the manifest, never to the CWD, and the sample ids keep the path as written.
    """
    manifest = _manifest_dataset(tmp_path / "project", small_data)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "images").mkdir()  # a decoy: CWD-relative resolution would find nothing here
    monkeypatch.chdir(elsewhere)
    out = tmp_path / "c.h5"
    result = invoke("extract", os.path.relpath(manifest, elsewhere), "-o", str(out), *EXTRACT_OPTS)
    assert result.exit_code == 0, result.output
    ids = [i.decode() if isinstance(i, bytes) else i for i in samples(out)["id"]]
    assert len(ids) == 32 and all(i.startswith("../images/") for i in ids), ids[:3]
    TALLY["manifest paths"]["relative and ../ resolved against the manifest folder"] += 1


def test_manifest_missing_file_names_the_manifest_folder(small_data, tmp_path, monkeypatch):
    manifest = _manifest_dataset(tmp_path / "project", small_data)
    manifest.write_text(manifest.read_text() + "../nowhere/x.jpeg,NORMAL,train\n")
    monkeypatch.chdir(tmp_path)
    line = assert_one_line_error(invoke("extract", str(manifest), "-o", str(tmp_path / "c.h5"), *EXTRACT_OPTS))
    assert "../nowhere/x.jpeg" in line and str(manifest.parent) in line
