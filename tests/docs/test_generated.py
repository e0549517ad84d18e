"""The benchmark pages, the README's headline figures and its picture are generated, and in step with their sources."""

import importlib.util
import json
import sys

import pytest
from PIL import Image

from tests.docs.markdown import ROOT


def load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = load(ROOT / "benchmarks" / "render_docs.py")
result = load(ROOT / "benchmarks" / "result.py")
figure = load(ROOT / "tools" / "make_readme_figure.py")
PAGES = render.load_pages()
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(PAGES))
def test_benchmark_page_is_rendered_from_its_json(name):
    page = ROOT / "docs" / "benchmarks" / f"{name}.md"
    assert page.read_text() == render.render_page(name, PAGES[name]), "run `make bench-docs`"
    for table in PAGES[name]["tables"]:
        assert all(table.get(key) for key in ("command", "date", "machine", "load")), table["caption"]


def test_overview_and_readme_headlines_are_rendered():
    assert (ROOT / "docs" / "benchmarks" / "index.md").read_text() == render.render_index(PAGES)
    assert render.headline_block(PAGES) in README, "run `make bench-docs`"
    assert render.headline_block(PAGES).count("](docs/benchmarks/") == 3


def test_readme_is_short_and_its_picture_small():
    assert len(README.splitlines()) <= 150
    picture = ROOT / "docs" / "images" / "cost-accuracy.png"
    assert "docs/images/cost-accuracy.png" in README and picture.stat().st_size < 100_000


def test_a_table_row_of_the_wrong_width_is_refused():
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        render.markdown_table(["a", "b", "c"], [["1", "2"]])


def test_json_option_records_output_command_and_machine(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run.json"
    monkeypatch.setattr(sys, "argv", ["benchmarks/x.py", "--repeats", "2", "--json", str(out)])

    def main():
        assert sys.argv[1:] == ["--repeats", "2"]  # the script's own parser never sees --json
        print("rate 12.5 img/s")
        return 0

    assert result.run(main) == 0
    document = json.loads(out.read_text())
    assert document["output"] == "rate 12.5 img/s\n" and "--repeats 2" in document["command"]
    assert "--json" not in document["command"] and "UTC" in document["date"] and "at the end" in document["load"]
    assert "core" in document["machine"]
    assert capsys.readouterr().out == "rate 12.5 img/s\n"  # still printed


def test_readme_figure_is_a_small_copy_of_the_report_plot(tmp_path):
    plots = tmp_path / "report" / "plots"
    plots.mkdir(parents=True)
    Image.new("RGB", (1600, 1000), "white").save(plots / "cost_accuracy.png")
    target = figure.make_figure(tmp_path / "report", tmp_path / "out.png")
    with Image.open(target) as image:
        assert image.size == (800, 500) and target.stat().st_size < 100_000
