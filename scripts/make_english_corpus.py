"""Build an offline English corpus (JSONL, one passage of at most 128 SmolLM2 tokens a line) for SAE training.

The text is already on the machine, nothing is downloaded: the docstrings of neurometry's installed
dependencies and the standard library (``--sources python``) and the English man pages under
/usr/share/man (``--sources man``); see ``neurometry.features.corpus`` for the filtering. Each line is
``{"text", "source", "document", "tokens"}``, ready for ``neurometry record smollm2-135m CORPUS.jsonl``.
Deterministic: the same installation and arguments give the same file.

    python scripts/make_english_corpus.py --out english.jsonl                 # 1.1M tokens, both sources
    python scripts/make_english_corpus.py --out small.jsonl --max-tokens 20000 --sources python
    python scripts/make_english_corpus.py --out all.jsonl --max-tokens 0      # everything found
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from neurometry.errors import NeurometryError
from neurometry.features import corpus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSONL file to write")
    parser.add_argument("--max-tokens", type=int, default=1_100_000,
                        help="stop once the passages reach this many SmolLM2 tokens (0: keep everything)")
    parser.add_argument("--sources", default=",".join(corpus.SOURCES), help="comma list of: python, man")
    parser.add_argument("--packages", default=",".join(corpus.DEFAULT_PACKAGES),
                        help="Python packages whose docstrings are read ('stdlib': the standard library)")
    parser.add_argument("--man-sections", default=",".join(corpus.MAN_SECTIONS), help="man sections to read")
    parser.add_argument("--man-exclude", default=",".join(corpus.MAN_EXCLUDE),
                        help="globs of man page file names to skip ('' to skip none)")
    parser.add_argument("--max-passage-tokens", type=int, default=128)
    parser.add_argument("--min-passage-tokens", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)

    def split(value: str) -> list[str]:
        return [v.strip() for v in value.split(",") if v.strip()]

    start = time.perf_counter()
    try:
        count = corpus.tokenizer_counter(corpus.smollm2_tokenizer())
        passages = corpus.build_corpus(
            count, split(args.sources), args.max_tokens or None,
            packages=split(args.packages), man_sections=split(args.man_sections),
            man_exclude=split(args.man_exclude), max_passage_tokens=args.max_passage_tokens,
            min_passage_tokens=args.min_passage_tokens, seed=args.seed,
        )
        out = corpus.write_jsonl(passages, args.out)
    except NeurometryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'source':24s} {'passages':>9s} {'tokens':>11s}")
    for source, (n, tokens) in corpus.tokens_by_source(passages).items():
        print(f"{source:24s} {n:9,d} {tokens:11,d}")
    total = sum(p.tokens for p in passages)
    print(f"{'total':24s} {len(passages):9,d} {total:11,d}")
    print(f"wrote {out} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
