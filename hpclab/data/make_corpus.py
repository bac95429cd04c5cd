"""Writes tiny_corpus.txt: the text the tiny character-level transformer learns.

The text is generated here from a small hand-written grammar (simple sentences about a
village of computers that learn together), so it is original, free of any copyright
question and needs no download. It is regular enough that a 2-layer model with d=64
visibly learns spelling and word order within a few hundred steps on a CPU.

    python hpclab/data/make_corpus.py        # rewrites hpclab/data/tiny_corpus.txt

The output is deterministic (seeded), so regenerating it changes nothing.
"""

from __future__ import annotations

import random
from pathlib import Path

TARGET_BYTES = 120_000

NAMES = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "John",
         "Katherine", "Leslie", "Margaret", "Niklaus", "Radia", "Seymour", "Tony", "Vint"]
THINGS = ["node", "engine", "lamp", "kettle", "clock", "wagon", "lantern", "loom",
          "bridge", "mill", "boat", "garden", "river", "tower", "market", "library"]
ADJ = ["small", "quiet", "old", "bright", "patient", "busy", "tired", "clever", "warm",
       "green", "slow", "quick", "careful", "brave", "humble", "curious"]
VERBS = ["counted", "carried", "shared", "mended", "painted", "watched", "measured",
         "sorted", "copied", "weighed", "sent", "opened", "followed", "gathered"]
PLACES = ["by the river", "on the hill", "in the valley", "near the mill",
          "under the old bridge", "at the edge of the forest", "in the market square",
          "behind the library", "beside the tower", "along the long road"]
TIMES = ["In the morning", "At noon", "When the sun went down", "Before the rain",
         "After supper", "On the first day", "Late at night", "Every evening",
         "Once upon a time", "The next day"]
FEELINGS = ["happy", "proud", "sleepy", "hungry", "worried", "glad", "calm", "surprised"]
NUMBERS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
           "twelve", "sixteen", "twenty"]
LESSONS = [
    "many small hands finish a big task",
    "a message sent is not a message received",
    "the slowest worker sets the pace of the whole team",
    "it is wise to write down where you stopped",
    "a step too large can carry you past the valley",
    "a step too small may never reach the valley at all",
    "when everyone adds their part, everyone holds the whole",
    "the loudest answer is not always the right one",
    "measure twice and send once",
    "rest is part of the work",
]


def plural(word: str) -> str:
    return word[:-1] + "ies" if word.endswith("y") else word + "s"


def sentence(r: random.Random) -> str:
    n1, n2 = r.sample(NAMES, 2)
    a, t, v, p = r.choice(ADJ), r.choice(THINGS), r.choice(VERBS), r.choice(PLACES)
    k = r.choice(NUMBERS)
    forms = [
        f"{r.choice(TIMES)}, {n1} {v} the {a} {t} {p}.",
        f"{n1} and {n2} {v} {k} {plural(t)} {p}.",
        f"The {a} {t} was {r.choice(FEELINGS)}, so {n1} {v} it again.",
        f"\"Where is the {t}?\" asked {n1}. \"It is {p},\" said {n2}.",
        f"{n1} said to {n2}: \"Remember, {r.choice(LESSONS)}.\"",
        f"There were {k} {a} {plural(t)} {p}, and each one {v} a little more.",
        f"{n1} {v} the numbers, and {n2} {r.choice(VERBS)} them back.",
        f"When the {t} grew {r.choice(ADJ)}, {n1} felt {r.choice(FEELINGS)}.",
        f"{r.choice(TIMES)}, the {plural(t)} {p} sang a {a} song.",
        f"And that is why {r.choice(LESSONS)}.",
    ]
    return r.choice(forms)


def story(r: random.Random, number: int) -> str:
    title = f"Story {number}: The {r.choice(ADJ).title()} {r.choice(THINGS).title()}"
    paragraphs = []
    for _ in range(r.randint(2, 4)):
        paragraphs.append(" ".join(sentence(r) for _ in range(r.randint(3, 6))))
    return title + "\n\n" + "\n\n".join(paragraphs) + "\n"


def make_corpus(seed: int = 1234, target_bytes: int = TARGET_BYTES) -> str:
    r = random.Random(seed)
    stories, size = [], 0
    while size < target_bytes:
        s = story(r, len(stories) + 1)
        stories.append(s)
        size += len(s) + 1
    return "\n".join(stories)


if __name__ == "__main__":
    out = Path(__file__).with_name("tiny_corpus.txt")
    out.write_text(make_corpus(), encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size} bytes)")
