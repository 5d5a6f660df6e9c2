"""Regenerate src/neurometry/data/patch_factual.jsonl: clean/corrupted factual-recall pairs for patching.

Each record: ``clean`` / ``corrupted`` prompts of the same token length (differing only in the
subject), ``correct`` (the clean prompt's one-token answer) and ``wrong`` (the corrupted prompt's),
plus ``clean_ld`` / ``corrupted_ld`` (logit(correct) - logit(wrong) at the last position) measured
with SmolLM2-135M-Instruct. A candidate is kept only when the two prompts tokenise to the same
length, both answers are single tokens, the model's top-1 token on the clean prompt is the correct
answer, correct beats wrong on the clean prompt (clean_ld > 0) and wrong beats correct on the
corrupted prompt (corrupted_ld < 0; ``corrupted_top1`` records the corrupted prompt's top-1 token).

`python scripts/make_patching_set.py` (needs the smollm2-135m zoo model; ~10 s once cached).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parents[1] / "src" / "neurometry" / "data" / "patch_factual.jsonl"
MODEL = "smollm2-135m"

# (template, [(subject, answer), ...]): every pair of subjects of one template is a candidate in
# both directions; the script keeps those that pass the checks above, at most MAX_PER_TEMPLATE.
TEMPLATES: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "The {} is in the city of",
        [
            ("Eiffel Tower", " Paris"),
            ("Colosseum", " Rome"),
            ("Brandenburg Gate", " Berlin"),
            ("Statue of Liberty", " New"),
            ("Big Ben", " London"),
            ("Kremlin", " Moscow"),
        ],
    ),
    (
        "The capital of {} is the city of",
        [
            ("France", " Paris"),
            ("Italy", " Rome"),
            ("Germany", " Berlin"),
            ("England", " London"),
            ("Russia", " Moscow"),
            ("Japan", " Tokyo"),
            ("Spain", " Madrid"),
            ("Egypt", " Cairo"),
        ],
    ),
    (
        "In {}, most people speak the language called",
        [
            ("France", " French"),
            ("Germany", " German"),
            ("Italy", " Italian"),
            ("Spain", " Spanish"),
            ("Russia", " Russian"),
            ("Japan", " Japanese"),
        ],
    ),
]
MAX_PER_TEMPLATE = 6


def main() -> None:
    torch.set_num_threads(2)
    from neurometry.models import load_model
    from neurometry.steer.patching import logit_difference

    model = load_model(MODEL)
    tok = model.tokenizer

    def one_token(text: str) -> int | None:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        return ids[0] if len(ids) == 1 else None

    def run(prompt: str, a: int, b: int) -> tuple[float, int]:
        """logit(a) - logit(b) at the last position, and the top-1 token there."""
        with torch.no_grad():
            logits = model.forward(tok([prompt], return_tensors="pt")).logits[0]
        return float(logit_difference(logits, a, b)), int(logits[-1].argmax())

    kept = []
    for template, subjects in TEMPLATES:
        n_kept = 0
        # cyclic neighbours first (subject i against i+1, then i+2, ...) so every subject appears
        candidates = [
            (subjects[i], subjects[(i + k) % len(subjects)])
            for k in range(1, len(subjects))
            for i in range(len(subjects))
        ]
        for (s1, a1), (s2, a2) in candidates:
            if a1 == a2 or n_kept >= MAX_PER_TEMPLATE:
                continue
            clean, corrupted = template.format(s1), template.format(s2)
            id1, id2 = one_token(a1), one_token(a2)
            if id1 is None or id2 is None:
                print(f"skip (answer not one token): {a1!r} / {a2!r}")
                continue
            n1 = len(tok(clean)["input_ids"])
            n2 = len(tok(corrupted)["input_ids"])
            if n1 != n2:
                print(f"skip (lengths {n1} != {n2}): {clean!r} / {corrupted!r}")
                continue
            (clean_ld, clean_top), (corr_ld, corr_top) = run(clean, id1, id2), run(corrupted, id1, id2)
            ok = clean_ld > 0 > corr_ld and clean_top == id1
            print(
                f"{'keep' if ok else 'drop'} {clean!r} -> {a1!r} ({clean_ld:+.2f}, top {tok.decode([clean_top])!r}) "
                f"| {corrupted!r} -> {a2!r} ({corr_ld:+.2f}, top {tok.decode([corr_top])!r})"
            )
            if ok:
                n_kept += 1
                kept.append(
                    {
                        "id": f"fact{len(kept):02d}",
                        "clean": clean,
                        "corrupted": corrupted,
                        "correct": a1,
                        "wrong": a2,
                        "clean_ld": round(clean_ld, 3),
                        "corrupted_ld": round(corr_ld, 3),
                        "corrupted_top1": tok.decode([corr_top]),
                        "model": MODEL,
                    }
                )
    with OUT.open("w") as f:
        for rec in kept:
            f.write(json.dumps(rec) + "\n")
    print(f"wrote {len(kept)} pairs to {OUT}")


if __name__ == "__main__":
    main()
