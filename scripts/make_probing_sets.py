"""Regenerate src/neurometry/data/probe_*.jsonl: templated labelled sentences for probing.

Four tasks, 400 sentences each, balanced, deterministic (seeded): `python scripts/make_probing_sets.py`.

- ``probe_sentiment.jsonl``: ``sentiment`` positive / negative (an evaluative phrase about a thing).
- ``probe_tense.jsonl``: ``tense`` past / present (the main verb's form; same subjects and objects).
- ``probe_number.jsonl``: ``number`` singular / plural (the subject's grammatical number, with an
  attractor noun of the opposite number between subject and verb, so the nearest noun does not give it).
- ``probe_magnitude.jsonl``: ``value`` (2 to 999 999, written as English words in the text) and
  ``log10_value``, a continuous target for ridge probes.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "neurometry" / "data"
N = 400

THINGS = [
    "the film",
    "the meal",
    "the hotel",
    "the concert",
    "the book",
    "the game",
    "the lecture",
    "the trip",
    "the new phone",
    "the garden",
    "the museum",
    "the coffee",
    "the play",
    "the software",
    "the party",
]
PEOPLE = [
    "My sister",
    "The critic",
    "Everyone",
    "Our neighbour",
    "The teacher",
    "My friend",
    "The reviewer",
    "He",
    "She",
    "The whole class",
]
POSITIVE = [
    "was wonderful",
    "was delightful",
    "was excellent",
    "was a joy",
    "was brilliant",
    "was lovely",
    "was superb",
    "was fantastic",
]
NEGATIVE = [
    "was awful",
    "was dreadful",
    "was terrible",
    "was a letdown",
    "was boring",
    "was horrible",
    "was dismal",
    "was miserable",
]
SENTIMENT_TEMPLATES = [
    "{person} said that {thing} {phrase}.",
    "{person} thought {thing} {phrase}.",
    "Honestly, {thing} {phrase}.",
    "In the end {thing} {phrase}, {person_lower} admitted.",
]

# (present 3rd person singular, past)
VERBS = [
    ("walks", "walked"),
    ("opens", "opened"),
    ("cleans", "cleaned"),
    ("paints", "painted"),
    ("watches", "watched"),
    ("carries", "carried"),
    ("fixes", "fixed"),
    ("finds", "found"),
    ("takes", "took"),
    ("writes", "wrote"),
    ("sells", "sold"),
    ("builds", "built"),
    ("reads", "read"),
    ("drives", "drove"),
    ("buys", "bought"),
    ("sees", "saw"),
]
SUBJECTS = [
    "The farmer",
    "My uncle",
    "The student",
    "A woman",
    "The old man",
    "Her brother",
    "The pilot",
    "Our driver",
    "The girl",
    "A stranger",
]
OBJECTS = [
    "the red door",
    "a heavy box",
    "the letter",
    "the small boat",
    "an old car",
    "the window",
    "the kitchen",
    "a new house",
    "the map",
    "the bicycle",
]
ADVERBS = ["", " slowly", " carefully", " again", " alone", " quietly"]

# (singular, plural) nouns and verbs
NOUNS = [
    ("dog", "dogs"),
    ("teacher", "teachers"),
    ("car", "cars"),
    ("child", "children"),
    ("bird", "birds"),
    ("doctor", "doctors"),
    ("house", "houses"),
    ("engine", "engines"),
    ("singer", "singers"),
    ("key", "keys"),
    ("farmer", "farmers"),
    ("tree", "trees"),
]
AGREEMENT = [("is", "are"), ("was", "were"), ("remains", "remain"), ("seems", "seem"), ("looks", "look")]
COMPLEMENTS = ["old", "very quiet", "ready", "broken", "happy", "tired", "new", "quite small"]
ATTRACTORS = [
    ("the window", "the windows"),
    ("the cabinet", "the cabinets"),
    ("the hill", "the hills"),
    ("the bridge", "the bridges"),
    ("the painting", "the paintings"),
]

ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
ITEMS = ["people", "books", "cars", "birds", "chairs", "coins", "trees", "tickets", "boxes", "letters"]
MAGNITUDE_TEMPLATES = [
    "There were {words} {items} in the hall.",
    "She counted {words} {items} that morning.",
    "The report listed {words} {items}.",
    "About {words} {items} arrived yesterday.",
]


def number_words(n: int) -> str:
    """English words for 1 <= n < 1,000,000 (British 'and')."""
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else "-" + ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))
    rest = n % 1000
    head = number_words(n // 1000) + " thousand"
    if rest == 0:
        return head
    return head + (" and " if rest < 100 else " ") + number_words(rest)


def add_distinct(rows: list[dict], row: dict) -> None:
    """Append ``row`` unless its text is already there: a text in both training and test folds would
    leak. Labels follow the row count's parity, so a rejected draw is redrawn with the same label."""
    if all(r["text"] != row["text"] for r in rows):
        rows.append(row)


def sentiment(rng: random.Random) -> list[dict]:
    rows = []
    while len(rows) < N:
        i = len(rows)
        label = "positive" if i % 2 == 0 else "negative"
        person = rng.choice(PEOPLE)
        text = rng.choice(SENTIMENT_TEMPLATES).format(
            person=person,
            person_lower=person[0].lower() + person[1:] if person not in ("He", "She") else person.lower(),
            thing=rng.choice(THINGS),
            phrase=rng.choice(POSITIVE if label == "positive" else NEGATIVE),
        )
        add_distinct(rows, {"text": text[0].upper() + text[1:], "sentiment": label})
    return rows


def tense(rng: random.Random) -> list[dict]:
    rows = []
    while len(rows) < N:
        i = len(rows)
        label = "present" if i % 2 == 0 else "past"
        present, past = rng.choice(VERBS)
        verb = present if label == "present" else past
        text = f"{rng.choice(SUBJECTS)} {verb} {rng.choice(OBJECTS)}{rng.choice(ADVERBS)}."
        add_distinct(rows, {"text": text, "tense": label})
    return rows


def number(rng: random.Random) -> list[dict]:
    rows = []
    while len(rows) < N:
        i = len(rows)
        label = "singular" if i % 2 == 0 else "plural"
        k = 0 if label == "singular" else 1
        noun = rng.choice(NOUNS)[k]
        attractor = rng.choice(ATTRACTORS)[1 - k]  # opposite number
        verb = rng.choice(AGREEMENT)[k]
        text = f"The {noun} near {attractor} {verb} {rng.choice(COMPLEMENTS)}."
        add_distinct(rows, {"text": text, "number": label})
    return rows


def magnitude(rng: random.Random) -> list[dict]:
    rows = []
    while len(rows) < N:
        # log-uniform over 2 .. 999,999 (plural nouns), so every order of magnitude is equally represented
        value = min(999_999, max(2, int(round(10 ** rng.uniform(0.3, 6)))))
        text = rng.choice(MAGNITUDE_TEMPLATES).format(words=number_words(value), items=rng.choice(ITEMS))
        text = text[0].upper() + text[1:]
        add_distinct(rows, {"text": text, "value": value, "log10_value": round(math.log10(value), 6)})
    return rows


def write_set(name: str, build) -> None:
    """``build(rng)``'s rows, shuffled by a generator seeded with the set's name, as ``probe_NAME.jsonl``
    with ids ``NAM0000``..."""
    rng = random.Random(f"probe-{name}")
    rows = build(rng)
    rng.shuffle(rows)
    with open(OUT / f"probe_{name}.jsonl", "w") as handle:
        for i, row in enumerate(rows):
            handle.write(json.dumps({"id": f"{name[:3]}{i:04d}", **row}) + "\n")
    print(f"wrote {OUT / f'probe_{name}.jsonl'} ({len(rows)} rows)")


def main() -> None:
    for name, build in (
        ("sentiment", sentiment),
        ("tense", tense),
        ("number", number),
        ("magnitude", magnitude),
    ):
        write_set(name, build)


if __name__ == "__main__":
    main()
