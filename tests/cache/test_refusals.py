"""`headstart extract -o FILE` where FILE is not a headstart cache: refused with one line, with or without
--overwrite, and the file keeps every byte. --overwrite replaces only files that are recognisably ours."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from headstart.cli import cli
from tests.cache.synthetic import extract, make_spec, make_table, sha256_file

BASE = ["-b", "resnet18", "--weights", "random", "--image-size", "32", "--batch-size", "8", "--workers", "0"]


def _foreign(path):
    with h5py.File(path, "w") as f:  # another tool's results: a plain HDF5 file without format="headstart-cache"
        f["predictions"] = np.arange(10.0)
        f.attrs["tool"] = "someone else's"


def _junk(path):
    path.write_text("my thesis, chapter 3\n")


def _truncated(path):
    table = make_table()
    extract(path, table, [make_spec(table)])
    path.write_bytes(path.read_bytes()[:2000])


CASES = {
    "foreign-hdf5": (_foreign, "is an HDF5 file but not a headstart cache", "choose another -o path"),
    "junk": (_junk, "is not an HDF5 file", "move or delete it if it is yours to lose"),
    "truncated": (_truncated, "is truncated or damaged and cannot be opened as HDF5",
                  "move or delete it if it is yours to lose"),
}


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
@pytest.mark.parametrize("case", list(CASES))
def test_extract_refuses_a_file_that_is_not_a_headstart_cache(case, overwrite, phantom_dir, tmp_path):
    make, found, advice = CASES[case]
    out = tmp_path / "results.h5"
    make(out)
    before = sha256_file(out)
    args = ["extract", str(phantom_dir), "-o", str(out), *BASE, *(["--overwrite"] if overwrite else [])]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert str(out) in errors[0] and found in errors[0] and advice in errors[0], errors[0]
    assert "--overwrite" not in errors[0]  # never suggest a flag that would not (and must not) replace it
    assert sha256_file(out) == before
    assert not list(tmp_path.glob("results.h5.*")) and not list(tmp_path.glob(".results.h5*"))  # no lock, no parts
