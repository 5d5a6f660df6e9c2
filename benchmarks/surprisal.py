"""Word surprisal of a whole corpus: ours (neurometry.language.surprisal.word_surprisal) against minicons.

What is measured: the surprisal in bits of every word of the shipped Natural Stories (5 stories, 5,201 words,
6,178 SmolLM2 tokens; the issue's 10,000-word corpus is ten stories, of which five ship here) with SmolLM2-135M,
the beginning-of-word correction on, each story read whole after the BOS token: the same words and context
windows on both sides, the same model object in float32.

* **ours**: ``word_surprisal(model, words)``: stories batched by a token budget, the unembedding applied in
  chunks of 256 positions after the forward pass stops at its input, one float64 pass over the vocabulary per
  position for the token log-probability, the word-start mass and the entropy; words summed by character
  offsets.
* **theirs**: minicons 0.3.39 ``IncrementalLMScorer.token_score([story], surprisal=True, base_two=True,
  bow_correction=True, bos_token=True)``, one call per story (a batch of all five would pad to the longest
  and hold five vocabulary-wide log-softmax copies), its token surprisals then summed per corpus word by the
  tokens' character offsets (``numpy.bincount``). Its ``word_score`` is ``token_score`` plus a regex word
  splitter, but it passes no ``bos_token`` to ``token_score`` (so it cannot read a story after BOS) and its
  regex words are not the corpus' words; the summing here costs milliseconds. The agreement of the numbers is
  tested apart (tests/language/test_minicons_agreement.py).

Timed runs alternate (the order flips each repetition) with ``gc.collect()`` before each; torch runs on
``--threads`` threads. The figure is the median over repetitions of theirs / ours. Target (issue 20): >= 3x.

Run::

    python benchmarks/surprisal.py                 # 3 repetitions, 2 threads
    python benchmarks/surprisal.py --repeats 1     # a smoke run
    python benchmarks/surprisal.py --device cuda   # on a GPU (not yet run: no GPU session had it)
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from neurometry.datasets import shared_data_dir  # noqa: E402
from neurometry.language.surprisal import word_surprisal  # noqa: E402
from neurometry.language.words import build_texts, read_words, token_words  # noqa: E402
from neurometry.models import load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="where both run the model (cuda on a GPU machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    from minicons import scorer

    model = load_model("smollm2-135m", device=args.device)
    words = read_words(shared_data_dir() / "naturalstories" / "all_stories.tok")
    texts = build_texts(words)
    reference = scorer.IncrementalLMScorer(model.module, tokenizer=model.tokenizer, device=args.device)

    def ours() -> int:
        return len(word_surprisal(model, words, progress=False).words)

    owners = [token_words(text, np.asarray(model.tokenizer(text.string, add_special_tokens=False,
                                                             return_offsets_mapping=True)["offset_mapping"]))
              for text in texts]

    def theirs() -> int:
        counted = 0
        for text, owner in zip(texts, owners, strict=True):
            scores = reference.token_score([text.string], surprisal=True, base_two=True, bow_correction=True,
                                           bos_token=True)[0]
            counted += len(np.bincount(owner, weights=[score for _, score in scores[1:]], minlength=len(text)))
        return counted

    ours()  # warm both (first-call allocations, tokenizer caches)
    theirs()
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    for repeat in range(args.repeats):
        order = [("ours", ours), ("theirs", theirs)]
        for name, run in order if repeat % 2 == 0 else order[::-1]:
            gc.collect()
            start = time.perf_counter()
            count = run()
            times[name].append(time.perf_counter() - start)
            print(f"repeat {repeat}: {name} {times[name][-1]:.2f} s ({count} words)", flush=True)
    ratios = [t / o for t, o in zip(times["theirs"], times["ours"], strict=True)]
    print(f"ours median {statistics.median(times['ours']):.2f} s, minicons median "
          f"{statistics.median(times['theirs']):.2f} s, theirs / ours median {statistics.median(ratios):.2f}x "
          f"({args.threads} threads, {len(words)} words)")


if __name__ == "__main__":
    main()
