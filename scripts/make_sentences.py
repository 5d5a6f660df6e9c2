"""Regenerate src/neurometry/data/sentences.jsonl: templated sentences with topic and sentiment labels.

Deterministic (seeded), so the shipped file is reproducible: `python scripts/make_sentences.py`.
"""

import json
import random
from pathlib import Path

TOPICS = {
    "food": ["the soup", "this bakery", "the pasta", "her curry", "the breakfast", "that pizza", "the salad", "his bread"],
    "sport": ["the match", "our team", "the striker", "the final", "this season", "the coach", "the race", "their defence"],
    "weather": ["the storm", "this morning's rain", "the forecast", "the heatwave", "the wind", "today's sky", "the fog", "the snow"],
    "technology": ["the new phone", "this laptop", "the update", "the app", "the battery", "the camera", "the software", "the network"],
    "music": ["the concert", "her new album", "the band", "that song", "the orchestra", "the chorus", "his guitar solo", "the playlist"],
    "travel": ["the flight", "our hotel", "the train journey", "the beach", "the old town", "the tour", "the museum", "the harbour"],
}
POSITIVE = ["was wonderful", "felt delightful", "was a real joy", "turned out excellent", "made everyone happy",
            "was absolutely brilliant", "exceeded every hope", "was lovely"]
NEGATIVE = ["was terrible", "felt miserable", "was a real letdown", "turned out awful", "made everyone angry",
            "was absolutely dreadful", "disappointed everyone", "was horrible"]
OPENERS = ["", "Honestly, ", "Yesterday ", "I think ", "Everyone agreed that ", "To be fair, "]
CLOSERS = [".", " today.", " this week.", ", as expected.", " in the end.", "!"]


def main() -> None:
    rng = random.Random(0)
    rows = []
    for topic, subjects in TOPICS.items():
        for sentiment, phrases in (("positive", POSITIVE), ("negative", NEGATIVE)):
            for _ in range(36):
                opener = rng.choice(OPENERS)
                subject = rng.choice(subjects)
                text = f"{opener}{subject} {rng.choice(phrases)}{rng.choice(CLOSERS)}"
                text = text[0].upper() + text[1:]
                rows.append({"text": text, "topic": topic, "sentiment": sentiment})
    rng.shuffle(rows)
    out = Path(__file__).resolve().parents[1] / "src" / "neurometry" / "data" / "sentences.jsonl"
    with open(out, "w") as handle:
        for i, row in enumerate(rows):
            handle.write(json.dumps({"id": f"s{i:04d}", **row}) + "\n")
    print(f"wrote {len(rows)} sentences to {out}")


if __name__ == "__main__":
    main()
