"""`neurometry report`: one self-contained HTML file with every result kind of a store, drawn and tabled."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from neurometry.cli import main
from neurometry.store import open_store
from neurometry.store.results import COMPARE, MEASURE, SAE_EVAL, SAE_FEATURES
from tests.conftest import TENSE_WORDS, write_tense_sentences

TINY = "neurometry.models.tiny:tiny_llama"


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


@pytest.fixture(scope="module")
def store_with_results(tmp_path_factory):
    from neurometry.record import record

    folder = tmp_path_factory.mktemp("report")
    data = write_tense_sentences(folder / "d.jsonl")
    store = folder / "s.nmstore"
    record(TINY, data, ["embed", "resid.0", "resid.1"], out=store, reduce="tokens", progress=False)
    mean_store = folder / "m.nmstore"
    record(TINY, data, ["embed", "resid.0", "resid.1"], out=mean_store, reduce="mean", progress=False)
    for args in (
        ("measure", str(store), "--measures", "effective_rank,anisotropy", "--json"),
        ("compare", str(mean_store), "--metric", "cka", "--json"),
        ("probe", str(mean_store), "--label", "tense", "--json"),
        ("sae", "train", str(store), "--point", "resid.1", "--latents", "32", "--k", "4", "--batch-size", "64",
         "--out", str(folder / "sae"), "--json"),
        ("sae", "eval", str(folder / "sae"), str(store), "--json"),
        ("sae", "features", str(folder / "sae"), str(store), "--top", "5", "--json"),
    ):
        assert main(list(args)) == 0, args
    return store, mean_store


def images_and_links(page: str) -> tuple[list[bytes], list[str]]:
    parser = Tags()
    parser.feed(page)
    images = []
    external = []
    for tag, attrs in parser.tags:
        for key in ("src", "href"):
            value = attrs.get(key)
            if value and not value.startswith(("data:", "#")):
                external.append(value)
        if tag == "img":
            prefix = "data:image/png;base64,"
            assert attrs["src"].startswith(prefix)
            images.append(base64.b64decode(attrs["src"][len(prefix) :]))
    assert not any(tag in ("script", "link") for tag, _ in parser.tags)
    return images, external


def test_report_holds_every_result_kind_self_contained(store_with_results, tmp_path, capsys):
    store, mean_store = store_with_results
    out = tmp_path / "report.html"
    code, text, err = run(capsys, "report", str(store), "-o", str(out))
    assert code == 0, err
    page = out.read_text()
    images, external = images_and_links(page)
    assert external == []  # opens offline
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 2000 for png in images)
    for heading in ("Geometry by depth", "Sparse autoencoders: evaluation", "Sparse autoencoders: features"):
        assert heading in page
    # 1 measure profile + 1 frequency histogram
    assert len(images) == 2
    s = open_store(store)
    rank = MEASURE.load(s).query("name == 'effective_rank' and point == 'resid.1'")["value"].iloc[0]
    assert f"{rank:.4g}" in page
    fvu = SAE_EVAL.load(s)["extra"].iloc[0]["fvu"]
    assert f"{fvu:.4g}" in page
    # the most frequent latent's best example, its token highlighted with its activation as the title
    features = SAE_FEATURES.load(s).sort_values("value", ascending=False)
    best = features["extra"].iloc[0]["top"][0]
    assert re.search(rf'title="{best["activation"]:.3g}">', page)

    out2 = tmp_path / "mean.html"
    code, _, err = run(capsys, "report", str(mean_store), "-o", str(out2))
    assert code == 0, err
    page2 = out2.read_text()
    images2, external2 = images_and_links(page2)
    assert external2 == [] and len(images2) == 2  # the CKA layer x layer heatmap and the probe curve
    assert "Similarity" in page2 and "Probes" in page2
    cka = COMPARE.load(open_store(mean_store))
    assert len(cka) == 9 and f"{cka['value'].iloc[1]:.4g}" in page2


def test_empty_store_and_user_errors(tmp_path, capsys):
    from neurometry.store import import_array

    store = open_store(tmp_path / "e.nmstore", create=True)
    import numpy as np

    import_array(store, "r", "p", [np.zeros((4, 2), np.float32)], 4)
    code, _, err = run(capsys, "report", str(tmp_path / "e.nmstore"), "-o", str(tmp_path / "e.html"))
    assert code == 0, err
    assert "No results yet" in (tmp_path / "e.html").read_text()
    for args in (
        ("report", str(tmp_path / "missing.nmstore")),
        ("report", str(tmp_path / "e.nmstore"), "-o", str(tmp_path)),
        ("report", str(tmp_path / "e.nmstore"), "-o", str(tmp_path / "no" / "dir" / "r.html")),
    ):
        code, _, err = run(capsys, *args)
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, args


def test_points_appear_in_depth_order_not_by_name(tmp_path, capsys):
    from neurometry.record import record

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": f"sentence {i} about things"}) + "\n" for i in range(12)))
    store = tmp_path / "s.nmstore"
    # depth order: mlp_act.0 (layer 0) before attn_out.1 (layer 1); by name it is the other way round
    record(TINY, data, ["attn_out.1", "mlp_act.0"], out=store, reduce="mean", progress=False)
    assert [p.point for p in open_store(store).points()] == ["mlp_act.0", "attn_out.1"]
    assert main(["measure", str(store), "--measures", "effective_rank", "--json"]) == 0
    capsys.readouterr()
    assert main(["report", str(store), "-o", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert page.index(">mlp_act.0<") < page.index(">attn_out.1<")


def test_steer_sweep_section_from_a_store_without_runs(tmp_path, capsys):
    from neurometry.steer import SweepRow, save_sweep

    store = open_store(tmp_path / "s.nmstore", create=True)  # steering results only: no recorded run
    rows = [SweepRow(-2.0, -0.8125, 0.04321, 30.75), SweepRow(0.0, 0.0, 0.0, 29.5), SweepRow(4.0, 1.6875, 0.3579, 41.25)]
    texts = [{"prompt": "My day was", "unsteered": " fine, I guess", "steered": " wonderful & bright"}]
    meta = {"method": "mean_diff", "model": "m", "point": "resid.10", "train_pairs": 53}
    save_sweep(store, rows, "m", "resid.10", "sentiment", pairs="sentiment", n_pairs=20, vector_metadata=meta,
               generations=texts, generation_alpha=4.0)
    save_sweep(store, rows[:2], "m", "resid.2", "sentiment", pairs="sentiment", n_pairs=20, vector_metadata=meta)
    assert main(["report", str(tmp_path / "s.nmstore"), "-o", str(tmp_path / "r.html")]) == 0
    capsys.readouterr()
    page = (tmp_path / "r.html").read_text()
    images, external = images_and_links(page)
    assert external == [] and len(images) == 2  # one sweep figure per vector and point
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000 for png in images)
    assert "Steering vectors" in page and "kinds without a section" not in page
    # points that are not recorded points sort by the numbers in their names: resid.2 before resid.10
    assert page.index("m resid.2 sentiment (mean_diff): 20 held-out pairs of sentiment") < page.index("m resid.10 ")
    for value in ("-0.8125", "0.04321", "30.75", "1.688", "0.3579", "41.25"):
        assert f">{value}<" in page, value
    assert "wonderful &amp; bright" in page and "alpha 4" in page and page.count(" fine, I guess") == 1


def test_encode_section(tmp_path, capsys):
    from neurometry.record import record

    words = TENSE_WORDS
    rows = [{"text": f"the {a} cat saw a {b} dog", "len_a": len(a), "len_b": len(b)} for a in words for b in words[:5]]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = tmp_path / "m.nmstore"
    record(TINY, data, ["embed", "resid.0", "resid.1"], out=store, reduce="mean", progress=False)
    code, text, err = run(capsys, "encode", str(store), "--target-columns", "len_a", "len_b", "--json")
    assert code == 0, err
    document = json.loads(text)
    assert main(["report", str(store), "-o", str(tmp_path / "r.html")]) == 0
    capsys.readouterr()
    page = (tmp_path / "r.html").read_text()
    images, external = images_and_links(page)
    assert external == [] and len(images) == 1
    assert images[0].startswith(b"\x89PNG\r\n\x1a\n") and len(images[0]) > 5000
    assert "Encoding models" in page and "encoding 2 targets (len_a, len_b)" in page
    for r in document["results"]:  # mean, median and max r of each point, in depth order
        cells = [r["point"], f"{r['score']:.4g}", f"{r['median_r']:.4g}", f"{max(r['target_scores']):.4g}"]
        assert re.search(">" + "</td><td[^>]*>".join(re.escape(c) for c in cells) + "<", page), cells
    best = [document["best_points"].count(r["point"]) for r in document["results"]]
    assert sum(best) == 2
    for r, n in zip(document["results"], best, strict=True):
        assert re.search(rf">{re.escape(r['point'])}</td>(<td[^>]*>[^<]*</td>){{3}}<td[^>]*>{n}</td>", page)


def test_patch_and_diff_sections_from_a_store_without_runs(tmp_path, capsys):
    import io

    import numpy as np
    from PIL import Image

    from neurometry.steer import DiffResult, PatchResult, save_diff, save_patching

    store = open_store(tmp_path / "s.nmstore", create=True)  # saved results only: no recorded run
    patched = PatchResult(
        points=["resid.0", "resid.1", "resid.2"],
        tokens=["[CLS]", "the", "cat", "sat"],
        corrupted_tokens=["[CLS]", "the", "dog", "sat"],
        positions=[0, 1, 2, 3],
        scores=np.array([[0.0, 0.0, 0.9375, 0.0625], [0.0, 0.0, 0.40625, 0.59375], [0.0, 0.0, 0.0, 1.0]]),
        clean_ld=2.5,
        corrupted_ld=-1.25,
        head_scores=np.array([[0.125, -0.25], [0.75, 0.03125]]),
        head_layers=["attn_out.0", "attn_out.1"],
        clean="the cat sat",
        corrupted="the dog sat",
        correct=" on",
        wrong=" in",
    )
    save_patching(store, patched, "m")
    diffed = DiffResult(
        {"resid.1": np.array([3.0, 4.0]), "resid.2": np.array([0.0, 0.0])}, first_k=5, n_positions=97,
        skip_first=1, lens={"resid.1": [(" zorblat", 0.984375), ("or", 0.0078125)]},
    )
    texts = [{"prompt": "In the morning", "unsteered": " I eat eggs", "steered": " I pick purple <fruit>"}]
    save_diff(store, diffed, "m", "/cache/fine.safetensors", generations=texts, generation_point="resid.1",
              generation_alpha=2.0)
    assert main(["report", str(tmp_path / "s.nmstore"), "-o", str(tmp_path / "r.html")]) == 0
    capsys.readouterr()
    page = (tmp_path / "r.html").read_text()
    images, external = images_and_links(page)
    assert external == [] and len(images) == 1  # the patching heatmap (diffing has no figure)
    heatmap = Image.open(io.BytesIO(images[0]))
    heatmap.load()  # decodes the whole image
    assert heatmap.format == "PNG" and heatmap.size[0] > 500 and heatmap.size[1] > 300
    assert "Activation patching" in page and "Model diffing" in page and "kinds without a section" not in page
    assert page.index("Activation patching") < page.index("Model diffing")
    # patching: per point the best score, its position and token (the differing one shows both prompts')
    for point, best, position, token in (("resid.0", "0.9375", 2, "&#x27;cat&#x27; / &#x27;dog&#x27;"),
                                         ("resid.1", "0.5938", 3, "&#x27;sat&#x27;"),
                                         ("resid.2", "1", 3, "&#x27;sat&#x27;")):
        assert re.search(rf">{point}</td><td[^>]*>{best}</td><td[^>]*>{position}</td><td[^>]*>{token}<", page), point
    assert "clean +2.500, corrupted -1.250" in page and "m: &#x27;the cat sat&#x27; -&gt; &#x27; on&#x27;" in page
    # diffing: norm 5 and the lens tokens at resid.1, norm 0 and no lens at resid.2, and the generations
    assert re.search(r">resid.1</td><td[^>]*>5</td><td[^>]*>&#x27; zorblat&#x27; 0.98, &#x27;or&#x27; 0.01<", page)
    assert re.search(r">resid.2</td><td[^>]*>0</td><td[^>]*><", page)
    assert "m against /cache/fine.safetensors: token positions 1-4 of the built-in neutral sentences (97 averaged)" in page
    assert "steered with the difference at resid.1, alpha 2" in page
    assert " I pick purple &lt;fruit&gt;" in page and " I eat eggs" in page


def test_comparison_figures_draw_incomplete_grids_as_gaps():
    """Records of several producers or an undefined value: the heatmap leaves the cell empty (NaN) and the
    profile a gap, instead of a KeyError."""
    from neurometry.plots import plot_comparison

    def record(a: str, b: str, value: float | None) -> dict:
        return {"point_a": a, "point_b": b, "metric": "cka", "value": value,
                "params": {"kernel": "linear", "estimator": "biased"}}

    points = [f"p{i}" for i in range(6)]
    grid = [record(a, b, 0.5) for a in points for b in points if (a, b) != ("p1", "p2")]
    image = np.ma.filled(plot_comparison({"results": grid}, "grid").axes[0].images[0].get_array(), np.nan)
    assert np.isnan(image[1, 2]) and np.count_nonzero(np.isnan(image)) == 1
    profile = [record(a, "IT", 0.1 * i) for i, a in enumerate(points)] + [record("p0", "V4", 0.3)]
    lines = plot_comparison({"results": profile}, "profile").axes[0].get_lines()
    v4 = next(line for line in lines if line.get_label() == "V4").get_ydata()
    assert v4[0] == 0.3 and np.isnan(v4[1:]).all()
