"""Regenerate src/neurometry/data/probe_agreement.jsonl and probe_negation.jsonl: probing sets whose answer
needs the context, not one word (the sets of make_probing_sets.py are decodable from the first block on).

Two tasks, 400 sentences each, balanced, deterministic (seeded): `python scripts/make_hard_probing_sets.py`.
Each sentence belongs to a minimal pair (column ``pair``): two sentences with opposite labels that differ
in one word or one word's place. Keep a pair on one side of every split (``groups=``), or a probe that
recognises the pair's shared words predicts the wrong label for the held-out half.

- ``probe_agreement.jsonl``: ``agreement`` grammatical / ungrammatical: "The key(s) near the cabinet(s)
  is/are old." The subject's number, the attractor's number and the verb's number are each balanced and
  independent of each other; the label is whether the verb agrees with the subject, across the attractor.
  No single word tells it (nor does the last noun), and a bag of words cannot either (an XOR).
- ``probe_negation.jsonl``: ``sentiment`` positive / negative of the main clause: "The film that Anna had
  not seen was good." vs "The film that Anna had seen was not good." Every sentence holds exactly one
  "not", either in the relative clause (out of scope: the sentence keeps its adjective's sentiment) or
  on the main predicate (in scope: it flips it). The two sentences of a pair have the same words, so
  only the place of "not" decides.
"""

from __future__ import annotations

import random

from make_probing_sets import write_set  # scripts/ is on sys.path when this runs as a script

N = 400

HEADS = [  # (singular, plural): inanimate, so that every complement fits
    ("key", "keys"), ("label", "labels"), ("picture", "pictures"), ("bottle", "bottles"), ("door", "doors"),
    ("letter", "letters"), ("lamp", "lamps"), ("chair", "chairs"), ("painting", "paintings"), ("map", "maps"),
    ("cup", "cups"), ("sign", "signs"), ("drawer", "drawers"), ("mirror", "mirrors"), ("clock", "clocks"),
    ("basket", "baskets"),
]
PREPOSITIONS = ["near", "behind", "beside", "next to", "above", "below", "under", "by"]
ATTRACTORS = [
    ("cabinet", "cabinets"), ("window", "windows"), ("shelf", "shelves"), ("box", "boxes"), ("desk", "desks"),
    ("sofa", "sofas"), ("bed", "beds"), ("wall", "walls"), ("stair", "stairs"), ("table", "tables"),
]
VERBS = [("is", "are"), ("was", "were"), ("seems", "seem"), ("looks", "look"), ("remains", "remain")]
COMPLEMENTS = ["old", "broken", "clean", "dusty", "new", "small", "heavy", "cheap", "crooked", "wet"]
NUMBERS = ["singular", "plural"]

THINGS = [
    "film", "meal", "hotel", "book", "concert", "play", "game", "trip", "lecture", "museum", "coffee",
    "restaurant", "show", "album", "course",
]
PEOPLE = [
    "Anna", "Ben", "my sister", "the critic", "our neighbour", "the teacher", "my friend", "Tom", "Maria",
    "the reviewer",
]
PARTICIPLES = ["seen", "chosen", "mentioned", "picked", "described", "found"]
POSITIVE = ["good", "great", "wonderful", "excellent", "lovely", "pleasant"]
NEGATIVE = ["bad", "awful", "terrible", "dull", "poor", "boring"]


def agreement(rng: random.Random) -> list[dict]:
    """200 minimal pairs (the verb's number flipped); the four (subject, attractor) number combinations
    50 pairs each, so every one of the eight (subject, attractor, verb) cells holds 50 sentences."""
    rows: list[dict] = []
    frames: set[tuple] = set()
    while len(frames) < N // 2:
        cell = len(frames) % 4
        subject, attractor = cell // 2, cell % 2  # 0 singular, 1 plural
        head, prep, place, verb, complement = (
            rng.choice(HEADS), rng.choice(PREPOSITIONS), rng.choice(ATTRACTORS), rng.choice(VERBS),
            rng.choice(COMPLEMENTS),
        )
        frame = (head, prep, place, verb, complement, subject, attractor)
        if frame in frames:
            continue
        frames.add(frame)
        pair = f"agr-pair{len(frames) - 1:03d}"
        for number in (0, 1):
            text = f"The {head[subject]} {prep} the {place[attractor]} {verb[number]} {complement}."
            rows.append({
                "text": text, "agreement": "grammatical" if number == subject else "ungrammatical",
                "subject": NUMBERS[subject], "attractor": NUMBERS[attractor], "verb": NUMBERS[number],
                "pair": pair,
            })
    return rows


def negation(rng: random.Random) -> list[dict]:
    """200 minimal pairs ("not" in the relative clause or on the main predicate), 100 with a positive and
    100 with a negative adjective, so every (adjective, place of "not") cell holds 100 sentences."""
    rows: list[dict] = []
    frames: set[tuple] = set()
    while len(frames) < N // 2:
        polarity = len(frames) % 2  # 0 positive adjective, 1 negative
        thing, person, participle = rng.choice(THINGS), rng.choice(PEOPLE), rng.choice(PARTICIPLES)
        adjective = rng.choice(NEGATIVE if polarity else POSITIVE)
        frame = (thing, person, participle, adjective)
        if frame in frames:
            continue
        frames.add(frame)
        pair = f"neg-pair{len(frames) - 1:03d}"
        for scope in ("relative", "main"):
            relative_not, main_not = (" not", "") if scope == "relative" else ("", " not")
            text = f"The {thing} that {person} had{relative_not} {participle} was{main_not} {adjective}."
            flipped = polarity ^ (scope == "main")
            rows.append({
                "text": text, "sentiment": "negative" if flipped else "positive",
                "adjective": "negative" if polarity else "positive", "negation": scope, "pair": pair,
            })
    return rows


def main() -> None:
    for name, build in (("agreement", agreement), ("negation", negation)):
        write_set(name, build)


if __name__ == "__main__":
    main()
