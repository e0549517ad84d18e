"""`ExtractConfig.validate`: every invalid value is refused with one line naming the option, before any work."""

from __future__ import annotations

import pytest

from headstart.errors import ConfigError
from headstart.extract.config import ExtractConfig
from headstart.extract.runner import run_extract


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"backbones": []}, "no backbone given; pass -b NAME"),
    ({"backbones": ["resnet18", "resnet18"]}, "backbone names repeat"),
    ({"batch_size": 0}, "--batch-size 0 is invalid"),
    ({"image_size": 0}, "--image-size 0 is invalid"),
    ({"precision": "fp8"}, "--precision 'fp8' is invalid; expected one of auto, fp32, bf16, fp16"),
    ({"workers": -1}, "--workers -1 is invalid"),
    ({"feature_dtype": "float64"}, "--feature-dtype 'float64' is invalid; expected float16 or float32"),
    ({"on_bad_image": "ignore"}, "--on-bad-image 'ignore' is invalid; expected fail or skip"),
    ({"decode": "gpu"}, "--decode 'gpu' is invalid; expected cpu or device"),
])
def test_invalid_values_are_refused_in_one_line(overrides, expected):
    config = ExtractConfig(**overrides)
    with pytest.raises(ConfigError) as info:
        config.validate()
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)


CHOICE_FIELDS = ("precision", "decode", "feature_dtype", "on_bad_image", "engine")  # option = ExtractConfig field


def test_every_documented_choice_is_accepted_and_nothing_else():
    """The CLI's choices (what --help documents) and the library's checks are one contract: each choice of each
    option validates, and a value outside the choices is refused naming that option."""
    import click

    from headstart.cli.extract import extract

    assert ExtractConfig().validate() is None
    choices = {p.name: list(p.type.choices) for p in extract.params
               if isinstance(p, click.Option) and isinstance(p.type, click.Choice) and p.name in CHOICE_FIELDS}
    assert set(choices) == set(CHOICE_FIELDS)
    for option, values in choices.items():
        for value in values:
            assert ExtractConfig(**{option: value}).validate() is None, (option, value)
        with pytest.raises(ConfigError, match=f"--{option.replace('_', '-')} 'nonsense' is invalid"):
            ExtractConfig(**{option: "nonsense"}).validate()


def test_run_extract_validates_before_it_reads_anything(tmp_path):
    with pytest.raises(ConfigError, match="--batch-size 0"):
        run_extract(data=str(tmp_path / "missing"), output=str(tmp_path / "c.h5"), config=ExtractConfig(batch_size=0))
    assert list(tmp_path.iterdir()) == []
