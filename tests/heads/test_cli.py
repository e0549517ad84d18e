"""`headstart heads` at the command line: the summary on success, one clear line and no traceback on bad input."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from headstart.cli import cli
from tests.heads.synthetic_cache import corrupt, make_cache

FAST = ["--sweep", "quick", "--n-boot", "20", "--device", "cpu"]


@pytest.fixture
def cache_path(tmp_path):
    return make_cache(tmp_path / "c.h5", sets=("resnet18", "densenet121"))


def _run(args):
    result = CliRunner().invoke(cli, ["heads", *map(str, args)])
    assert "Traceback" not in result.output
    return result


def test_prints_summary_and_where_records_are(cache_path, tmp_path):
    result = _run([cache_path, "-o", tmp_path / "runs", "-b", "resnet18", "--head", "logreg", "--head", "knn",
                   "--seeds", "2", *FAST])
    assert result.exit_code == 0, result.output
    assert "test AUROC" in result.output and "logreg ×2" in result.output and "±" in result.output
    assert "4 run record(s) in" in result.output
    assert len(list((tmp_path / "runs").glob("*/record.json"))) == 4


@pytest.mark.parametrize("damage, args, needle", [
    (None, ["-b", "vit_b_16"], "feature set 'vit_b_16' is not in"),
    ("incomplete", ["-b", "densenet121"], "is incomplete; rerun `headstart extract`"),
    ("nan", ["-b", "resnet18"], "NaN/Inf"),
])
def test_cache_problems_exit_1_with_one_line(cache_path, tmp_path, damage, args, needle):
    if damage:
        corrupt(cache_path, args[1], nan=damage == "nan", incomplete=damage == "incomplete")
    result = _run([cache_path, "-o", tmp_path / "runs", "--head", "logreg", *args, *FAST])
    assert result.exit_code == 1, result.output
    assert needle in result.output and len(result.output.strip().splitlines()) == 1
    if damage is None:
        assert "available: densenet121, resnet18" in result.output


def test_not_a_cache(tmp_path):
    bogus = tmp_path / "notes.h5"
    bogus.write_text("not hdf5")
    result = _run([bogus, "-o", tmp_path / "runs", *FAST])
    assert result.exit_code == 1 and "not an HDF5 file" in result.output


@pytest.mark.parametrize("args, needle", [
    (["--head", "svm"], "'svm' is not one of"),
    (["--select-metric", "precision"], "'precision' is not one of"),
    (["--precision", "fp16"], "'fp16' is not one of"),
    (["--threshold-rule", "sensitivity:2"], "unknown threshold rule"),
])
def test_usage_errors_exit_2(cache_path, tmp_path, args, needle):
    result = _run([cache_path, "-o", tmp_path / "runs", *args, *FAST])
    assert result.exit_code == 2 and needle in result.output


def test_sweep_and_class_weight_choices_come_from_the_library():
    """The CLI offers the import-free names; they must be exactly the grids and weightings the library runs."""
    from headstart.data.balance import CLASS_WEIGHTS, class_weight_mode
    from headstart.heads import SWEEP_NAMES
    from headstart.heads.sweep import SWEEPS

    assert tuple(SWEEPS) == SWEEP_NAMES
    assert [class_weight_mode(c) for c in CLASS_WEIGHTS] == ["balanced", None]
    help_text = _run(["--help"]).output
    assert f"[{'|'.join(SWEEP_NAMES)}]" in help_text and f"[{'|'.join(CLASS_WEIGHTS)}]" in help_text


def test_help_loads_neither_numpy_nor_torch():
    """`headstart --help` imports every command module for its one-line summary; they must stay light."""
    import subprocess
    import sys

    code = ("import sys; from click.testing import CliRunner; from headstart.cli import cli; "
            "[CliRunner().invoke(cli, args) for args in (['--help'], ['heads', '--help'], ['finetune', '--help'])]; "
            "print(sorted(m for m in ('numpy', 'torch', 'PIL', 'h5py') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
