"""Regenerate src/neurometry/data/steer_*.jsonl: contrastive prompt pairs for steering vectors.

Deterministic (seeded): `python scripts/make_steering_sets.py`. Each row holds a ``positive`` and a
``negative`` prompt that differ only in the concept, plus ``target`` and ``opposite``: one-word
continuations (leading space) that the positive and the negative prompt respectively make likely, for
evaluating a steering vector by the log-probability shift of target versus opposite.

- ``steer_sentiment.jsonl``: positive / negative opinion of a thing ("I loved the film. It was" vs
  "I hated the film. It was"; target " wonderful", opposite " terrible").
- ``steer_formality.jsonl``: the same request in a formal and an informal register ("Dear Sir or
  Madam, I would be grateful if you could send the report. It is" vs "hey, can u send the report?
  it's"; target a formal word, opposite a slang one).
- ``steer_english_french.jsonl``: the same sentence start in English (positive) and French
  (negative) ("Yesterday I saw a dog near the" vs "Hier, j'ai vu un chien près du"; target the
  English noun that could follow, " garden", opposite its French translation, " jardin").
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "neurometry" / "data"
N = 80
SEED = 0

# ---------------------------------------------------------------- sentiment
THINGS = [
    "the film",
    "the book",
    "the meal",
    "the concert",
    "the hotel",
    "the game",
    "the show",
    "the trip",
    "the album",
    "the lecture",
    "the museum",
    "the play",
    "the restaurant",
    "the party",
    "the course",
]
SENTIMENT_VERBS = [("loved", "hated"), ("enjoyed", "disliked"), ("adored", "despised"), ("liked", "loathed")]
SENTIMENT_FRAMES = [
    "I {verb} {thing}. It was",
    "We {verb} {thing}. Honestly, it was",
    "She {verb} {thing}. She said it was",
]
SENTIMENT_WORDS = [
    (" wonderful", " terrible"),
    (" great", " awful"),
    (" amazing", " horrible"),
    (" excellent", " dreadful"),
]

# ---------------------------------------------------------------- formality
TASKS = [
    ("send the report", "send the report"),
    ("review the contract", "look at the contract"),
    ("confirm the appointment", "confirm the appointment"),
    ("forward the invoice", "send over the invoice"),
    ("share the schedule", "share the schedule"),
    ("check the figures", "check the numbers"),
    ("sign the documents", "sign the papers"),
    ("reply by Friday", "reply by friday"),
    ("attend the meeting", "come to the meeting"),
    ("update the budget", "fix the budget"),
    ("approve the request", "ok the request"),
    ("prepare the slides", "make the slides"),
]
FORMAL_OPENINGS = [
    "Dear Sir or Madam,",
    "Dear Professor Smith,",
    "Good afternoon,",
    "To whom it may concern,",
]
INFORMAL_OPENINGS = ["hey,", "yo dude,", "hiya,", "sup guys,"]
FORMAL_FRAMES = [
    "{open} I would be grateful if you could {task}. It is",
    "{open} Would you kindly {task}? It is",
]
INFORMAL_FRAMES = ["{open} can u {task}? it's", "{open} pls {task} lol. it's"]
FORMALITY_WORDS = [
    (" essential", " super"),
    (" imperative", " kinda"),
    (" necessary", " totally"),
    (" important", " gonna"),
]

# ---------------------------------------------------------------- English / French
# (English noun, French noun, French gender)
NOUNS = [
    ("dog", "chien", "m"),
    ("house", "maison", "f"),
    ("car", "voiture", "f"),
    ("book", "livre", "m"),
    ("garden", "jardin", "m"),
    ("city", "ville", "f"),
    ("tree", "arbre", "m"),
    ("bird", "oiseau", "m"),
    ("church", "église", "f"),
    ("window", "fenêtre", "f"),
    ("horse", "cheval", "m"),
    ("bridge", "pont", "m"),
    ("cake", "gâteau", "m"),
    ("shop", "boutique", "f"),
    ("boat", "bateau", "m"),
    ("key", "clé", "f"),
    ("cheese", "fromage", "m"),
    ("road", "route", "f"),
    ("castle", "château", "m"),
    ("chair", "chaise", "f"),
]
# English frame with the first noun; French frame with its article ({indef} for the first noun, the
# article of the second noun given per frame), then the continuation is the second noun.
FRENCH_FRAMES = [
    ("Yesterday I saw a {a} near the", "Hier, j'ai vu {indef} {a} près {de_def}"),
    ("My sister bought a {a} for the", "Ma sœur a acheté {indef} {a} pour {def}"),
    ("In the village there is a {a} behind the", "Dans le village, il y a {indef} {a} derrière {def}"),
    ("We drew a {a} next to the", "Nous avons dessiné {indef} {a} à côté {de_def}"),
]


def _french_article(form: str, gender: str) -> str:
    return {
        ("indef", "m"): "un",
        ("indef", "f"): "une",
        ("def", "m"): "le",
        ("def", "f"): "la",
        ("de_def", "m"): "du",
        ("de_def", "f"): "de la",
    }[(form, gender)]


def sentiment(rng: random.Random) -> list[dict]:
    combos = list(itertools.product(THINGS, SENTIMENT_VERBS, SENTIMENT_FRAMES))
    rows = []
    for thing, (good, bad), frame in rng.sample(combos, N):
        target, opposite = rng.choice(SENTIMENT_WORDS)
        rows.append(
            {
                "positive": frame.format(verb=good, thing=thing),
                "negative": frame.format(verb=bad, thing=thing),
                "target": target,
                "opposite": opposite,
            }
        )
    return rows


def formality(rng: random.Random) -> list[dict]:
    combos = list(itertools.product(TASKS, range(len(FORMAL_OPENINGS)), range(len(FORMAL_FRAMES))))
    rows = []
    for (formal_task, informal_task), opening, frame in rng.sample(combos, N):
        target, opposite = rng.choice(FORMALITY_WORDS)
        rows.append(
            {
                "positive": FORMAL_FRAMES[frame].format(open=FORMAL_OPENINGS[opening], task=formal_task),
                "negative": INFORMAL_FRAMES[frame].format(
                    open=INFORMAL_OPENINGS[opening], task=informal_task
                ),
                "target": target,
                "opposite": opposite,
            }
        )
    return rows


def english_french(rng: random.Random) -> list[dict]:
    # the continuation noun follows a definite article, so it must not elide (l'arbre): consonant-initial
    second = [n for n in NOUNS if n[1][0] not in "aeiouéèê"]
    combos = list(itertools.product(NOUNS, FRENCH_FRAMES))  # distinct prompt pairs (20 x 4 = 80)
    rows = []
    for (a_en, a_fr, a_gender), (en_frame, fr_frame) in rng.sample(combos, N):
        b_en, b_fr, b_gender = rng.choice([n for n in second if n[0] != a_en])
        form = "de_def" if "{de_def}" in fr_frame else "def"
        rows.append(
            {
                "positive": en_frame.format(a=a_en),
                "negative": fr_frame.format(
                    a=a_fr,
                    indef=_french_article("indef", a_gender),
                    **{form: _french_article(form, b_gender)},
                ),
                "target": " " + b_en,
                "opposite": " " + b_fr,
            }
        )
    return rows


def main() -> None:
    for name, make in (
        ("sentiment", sentiment),
        ("formality", formality),
        ("english_french", english_french),
    ):
        rows = make(random.Random(f"{SEED}-{name}"))
        pairs = {(r["positive"], r["negative"]) for r in rows}
        assert len(pairs) == len(rows) == N, name
        for r in rows:
            assert r["target"].startswith(" ") and len(r["target"].split()) == 1, r
            assert r["opposite"].startswith(" ") and len(r["opposite"].split()) == 1, r
        path = OUT / f"steer_{name}.jsonl"
        with open(path, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"wrote {len(rows)} pairs to {path}")


if __name__ == "__main__":
    main()
