"""The report's "Over training" section: per series its steps, training metrics with the saved phases shaded,
a step x depth heatmap per saved measure, similarity with the reference step and a lab's findings; the
checkpoints of a series no longer repeat one by one in the per-run sections."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from neurometry.cli import main
from neurometry.report import build_report
from neurometry.store import import_array, open_store
from neurometry.store.results import LAB, MEASURE, PHASES, Result, set_name
from neurometry.workflows.series import compare_series, measure_series, series_phases
from tests.conftest import train_series

FINDINGS = {"final_test_accuracy": 0.96875, "grok_step": 7, "key_frequencies": [3, 11], "note": "toy <b>run</b>"}




def build_series_store(folder: Path) -> Path:
    """Series ``toy`` (10 checkpoints: metrics, two phases results, two measures, CKA with step 9, a lab's
    findings, and a probe of its last step), series ``other`` (4 checkpoints, metrics only) and a plain
    run ``plain`` with a measure."""
    store = folder / "s.nmstore"
    train_series(store, "toy", 10, seed=0)
    train_series(store, "other", 4, seed=1)
    opened = open_store(store)
    rows = np.random.default_rng(0).standard_normal((40, 6)).astype(np.float32)
    import_array(opened, "plain", "p", [rows], 40)
    series_phases(opened, "toy", "train_loss", method="binseg", n_changes=2)
    measure_series(opened, "toy", measures=["effective_rank", "anisotropy"], progress=False)
    series_phases(opened, "toy", "effective_rank", point="hidden.1", method="binseg", n_changes=1)
    compare_series(opened, "toy", "cka", progress=False)
    LAB.save(opened, "toy-step9", [Result("", "toy", None, params={"lab": "toy", "size": "test", "seed": 0},
                                          extra={"findings": FINDINGS, "seconds": 1.5}, result_set=set_name(lab="toy"))])
    opened.close()
    for args in (("measure", str(store), "--run", "plain", "--measures", "effective_rank", "--json"),
                 ("probe", str(store), "--run", "toy-step9", "--label", "label", "--json")):
        assert main(list(args)) == 0, args
    return store


@pytest.fixture(scope="module")
def series_store(tmp_path_factory) -> Path:
    return build_series_store(tmp_path_factory.mktemp("series"))


@pytest.fixture(scope="module")
def page(series_store, tmp_path_factory) -> str:
    return build_report(series_store, tmp_path_factory.mktemp("out") / "report.html").read_text()


class Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: list[bytes] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            prefix = "data:image/png;base64,"
            assert attrs["src"].startswith(prefix)
            self.images.append(base64.b64decode(attrs["src"][len(prefix):]))


def pngs(fragment: str) -> list[bytes]:
    parser = Images()
    parser.feed(fragment)
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 2000 for png in parser.images)
    return parser.images


def section(page: str, anchor: str) -> str:
    """The HTML of the section whose <h2> has id ``anchor``, up to the next <h2>."""
    start = page.index(f'<h2 id="{anchor}">')
    end = page.find("<h2 ", start + 1)
    return page[start:end if end > 0 else len(page)]


def series_part(training: str, name: str) -> str:
    start = training.index(f'<h3 id="series-{name}">')
    end = training.find("<h3 ", start + 1)
    return training[start:end if end > 0 else len(training)]


def test_section_names_each_series_and_its_steps(page, series_store):
    assert '<a href="#s-training">Over training</a>' in page
    training = section(page, "s-training")
    store = open_store(series_store)
    assert store.series_names() == ["other", "toy"]
    for name in store.series_names():
        part = series_part(training, name)
        steps = re.search(r'<span class="steps">([^<]*)</span>', part).group(1)
        assert steps == ", ".join(str(s.step) for s in store.series(name))
    # `other` holds training metrics only: one loss figure, no phases, no measures
    other = series_part(training, "other")
    assert len(pngs(other)) == 1 and "phases of" not in other and "series-measure" not in other


def test_phase_boundaries_shown_equal_the_saved_ones(page, series_store):
    toy = series_part(section(page, "s-training"), "toy")
    saved = PHASES.load(open_store(series_store))
    assert len(saved) == 2
    for row in saved.itertuples():
        where = f" at {row.params['point']}" if row.params["point"] else ""
        heading = f"<h4>phases of {row.params['curve']}{where}</h4>"
        assert heading in toy
        block = toy[toy.index(heading):]
        boundaries = re.search(r'<p class="note boundaries">boundar(?:y at step|ies at steps) ([^<]*)</p>', block)
        assert [float(b) for b in boundaries.group(1).split(", ")] == row.extra["boundaries"]
        for phase in row.extra["phases"]:  # each phase's step range in its table
            assert f"{phase['start_step']:g}..{phase['end_step']:g}" in block
    # the loss figure (shaded with train_loss's phases), the effective_rank curve with its own phases,
    # two measure heatmaps, one similarity figure
    assert len(pngs(toy)) == 5


def test_a_heatmap_for_each_measure_saved(page, series_store):
    toy = series_part(section(page, "s-training"), "toy")
    saved = MEASURE.load(open_store(series_store))
    runs = {s.run_id for s in open_store(series_store).series("toy")}
    names = sorted(set(saved[saved["run_id"].isin(runs)]["name"]))
    assert names == ["anisotropy", "effective_rank"]
    blocks = re.findall(r'<div class="series-measure"><p><b>([^<]*)</b></p>(<img [^>]*>)</div>', toy)
    assert sorted(name for name, _ in blocks) == names
    assert all(len(pngs(img)) == 1 for _, img in blocks)
    assert "cka of each step with step 9" in toy


def test_lab_findings_table(page):
    toy = series_part(section(page, "s-training"), "toy")
    assert "<h4>lab toy: findings</h4>" in toy
    table = toy[toy.index("<h4>lab toy: findings</h4>"):]
    for key, shown in (("final_test_accuracy", "0.9688"), ("grok_step", "7"), ("key_frequencies", "3, 11"),
                       ("note", "toy &lt;b&gt;run&lt;/b&gt;")):
        assert re.search(rf'<td class="l">{key}</td><td class="l">{re.escape(shown)}</td>', table), key


def test_series_runs_leave_the_per_run_sections(page, series_store):
    store = open_store(series_store)
    series_runs = [s.run_id for name in store.series_names() for s in store.series(name)]
    geometry = section(page, "s-measure")
    assert "<h3>run plain</h3>" in geometry
    assert not any(run in geometry for run in series_runs)
    assert len(pngs(geometry)) == 1
    assert 'id="s-compare"' not in page  # the only comparisons are the series' steps with step 9
    # a result the Over training section does not draw stays in its own section
    assert "probe label: run toy-step9" in section(page, "s-probe")
    # the overview lists a series as one row, not run by run
    overview = page[:page.index("<h2 ")]
    assert "series toy: 10 runs, steps 0..9" in overview and "series other: 4 runs, steps 0..3" in overview
    assert not any(f">{run}<" in overview for run in series_runs)
    assert "without a section" not in page  # training, phases and lab rows are all drawn


def test_store_without_series_has_no_over_training_section(tmp_path):
    store = open_store(tmp_path / "plain.nmstore", create=True)
    import_array(store, "r", "p", [np.random.default_rng(0).standard_normal((30, 5)).astype(np.float32)], 30)
    store.close()
    assert main(["measure", str(tmp_path / "plain.nmstore"), "--measures", "effective_rank", "--json"]) == 0
    page = build_report(tmp_path / "plain.nmstore", tmp_path / "r.html").read_text()
    assert "Over training" not in page and 's-training' not in page
    assert "<h3>run r</h3>" in section(page, "s-measure")
