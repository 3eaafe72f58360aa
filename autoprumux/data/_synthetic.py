"""Built-in offline tasks: `synthetic-sentiment` and `synthetic-pairs`.

Both are generated from a small grammar, deterministically from a seed, so they need no network
and no files. They are compositional on purpose: a bag of words cannot solve them, a model that
reads the structure can.

`synthetic-sentiment` (labels negative / positive). A clause carries the polarity of its
sentiment word (an adjective after a copula, or a verb such as "loved") and flips it when negated
("was not good", "did not enjoy", "never seemed", "hardly"). Intensifiers ("very") and neutral
fillers change nothing. A sentence is one clause, or two clauses where one decides:
"X, but Y" / "X, yet Y" / "X, however, Y" and "although X, Y" (Y decides), "Y, even though X"
(Y decides, though it comes first), "X and Y" (both agree), or a negated report
"i would not say that X" (flips X, so "i would not say that the food was not good" is positive).

`synthetic-pairs` (labels inconsistent / consistent). The first sentence is a review as above
(with fewer negations and more one-clause forms), the second a verdict about it ("the reviewer
did not like it", "this is a glowing review"); the label is whether the verdict's polarity
matches the review's, so a perfect score needs both sentences. Agreement alone is a parity of
two compositional polarities, which a small from-scratch model does not start to learn in a few
epochs (it stays at chance), so positive reviews come with a consistent verdict a fraction
`PAIR_REVIEW_CUE` (0.7) of the time and negative reviews with an inconsistent one: reading the
review alone gives about 70%, a first step that teaches the polarity words the verdict shares.

A fraction `LABEL_NOISE` of the labels of every split is flipped (the same number in each class,
so the classes stay balanced): a perfect model scores about 1 - LABEL_NOISE, which keeps
multiplexed and pruned models' losses visible instead of hiding them under a 100% ceiling.
"""

from __future__ import annotations

import random

from autoprumux.data._types import TaskData, TextSplit

#: Fraction of labels flipped in every split (a perfect reader scores 1 - LABEL_NOISE).
LABEL_NOISE = 0.08
NEGATION_RATE = 0.3  # of clauses in synthetic-sentiment
PAIR_NEGATION_RATE = 0.15  # of clauses and verdicts in synthetic-pairs
#: P(consistent | positive review) = P(inconsistent | negative review) in synthetic-pairs
PAIR_REVIEW_CUE = 0.7
OTHER_CLAUSE_DISAGREES = 0.7  # how often the non-deciding clause has the opposite polarity
DEFAULT_SIZES = {"train": 8000, "validation": 1000, "test": 1000}

POSITIVE_WORDS = (
    "good", "great", "excellent", "wonderful", "superb", "delightful", "lovely", "brilliant",
    "charming", "pleasant", "enjoyable", "fantastic", "impressive", "solid", "fresh", "clever",
    "memorable", "stunning", "friendly", "gorgeous",
)  # fmt: skip
NEGATIVE_WORDS = (
    "bad", "awful", "terrible", "dull", "boring", "poor", "horrible", "bland", "disappointing",
    "mediocre", "weak", "messy", "tedious", "unpleasant", "clumsy", "stale", "rude", "forgettable",
    "sloppy", "annoying",
)  # fmt: skip
POSITIVE_VERBS = ("loved", "liked", "enjoyed", "adored", "appreciated", "praised")
NEGATIVE_VERBS = ("hated", "disliked", "regretted", "loathed", "resented", "dreaded")
# base form after "did not"
_VERB_BASE = {
    "loved": "love", "liked": "like", "enjoyed": "enjoy", "adored": "adore", "appreciated": "appreciate",
    "praised": "praise", "hated": "hate", "disliked": "dislike", "regretted": "regret",
    "loathed": "loathe", "resented": "resent", "dreaded": "dread",
}  # fmt: skip
NEGATORS = ("not", "never", "hardly")

_NOUNS = (
    "movie", "film", "plot", "acting", "food", "service", "soup", "staff", "hotel", "room", "music",
    "ending", "book", "price", "show", "app", "design", "coffee", "dessert", "view", "trip", "game",
)  # fmt: skip
_MODIFIERS = ("new", "old", "long", "small", "local", "second", "french", "whole", "big", "main")
_PEOPLE = ("i", "we", "my friends", "everyone", "the kids", "my sister", "our group")
_INTENSIFIERS = ("very", "really", "extremely", "quite", "truly", "so", "rather", "incredibly", "pretty")
_VERB_INTENSIFIERS = ("really", "truly", "absolutely")
# (plain, negated forms): every negated form contains one of NEGATORS
_COPULAS = (
    ("was", ("was not", "was never", "was hardly")),
    ("is", ("is not", "is never", "is hardly")),
    ("seemed", ("did not seem", "never seemed", "hardly seemed")),
    ("felt", ("did not feel", "never felt", "hardly felt")),
    ("looked", ("did not look", "never looked", "hardly looked")),
)
_OPENERS = ("honestly,", "frankly,", "to be honest,", "last week", "yesterday", "in my opinion,", "overall,")
_ENDINGS = ("for the price", "this time", "if you ask me", "in the end", "as usual", "this year")
#: prefixes that negate the clause they introduce
REPORT_NEGATIONS = ("i would not say that", "it is not true that", "nobody would claim that", "i can not say that")
#: connectives after which the second clause decides
CONTRASTS = ("but", "yet", "however,")

_REVIEWERS = ("the reviewer", "the writer", "the customer", "the author", "the critic")
_VERDICT_ADJECTIVES = {1: ("positive", "favourable", "glowing", "happy"), -1: ("negative", "critical", "harsh", "angry")}

# form -> weight; "simple" is one clause, the others combine two
_SENTIMENT_FORMS = {"simple": 0.36, "contrast": 0.20, "although": 0.10, "even_though": 0.10, "and": 0.12, "report": 0.12}
_PAIR_FORMS = {"simple": 0.55, "contrast": 0.15, "although": 0.08, "even_though": 0.07, "and": 0.10, "report": 0.05}


def _clause(rng: random.Random, polarity: int, negation_rate: float) -> str:
    """One clause whose meaning has `polarity` (+1 / -1), negated with probability `negation_rate`."""
    negated = rng.random() < negation_rate
    word_polarity = -polarity if negated else polarity
    noun = f"{rng.choice(_MODIFIERS)} {rng.choice(_NOUNS)}" if rng.random() < 0.3 else rng.choice(_NOUNS)
    if rng.random() < 0.3:  # verbal: "i (did not) enjoy(ed) the food"
        intens = f"{rng.choice(_VERB_INTENSIFIERS)} " if rng.random() < 0.3 else ""
        verb = rng.choice(POSITIVE_VERBS if word_polarity > 0 else NEGATIVE_VERBS)
        if negated:
            neg = rng.choice(("did not", "never", "hardly")) + " "
            return f"{rng.choice(_PEOPLE)} {neg}{intens}{_VERB_BASE[verb] if neg == 'did not ' else verb} the {noun}"
        return f"{rng.choice(_PEOPLE)} {intens}{verb} the {noun}"
    plain, negated_forms = rng.choice(_COPULAS)
    copula = rng.choice(negated_forms) if negated else plain
    intens = f"{rng.choice(_INTENSIFIERS)} " if rng.random() < 0.35 else ""
    word = rng.choice(POSITIVE_WORDS if word_polarity > 0 else NEGATIVE_WORDS)
    return f"the {noun} {copula} {intens}{word}"


def _other_polarity(rng: random.Random, polarity: int) -> int:
    # the non-deciding clause usually disagrees, so reading the wrong clause is usually wrong
    return -polarity if rng.random() < OTHER_CLAUSE_DISAGREES else polarity


def _review(rng: random.Random, polarity: int, forms: dict[str, float], negation_rate: float) -> str:
    """A sentence whose overall polarity is `polarity`, in a form drawn with weights `forms`."""
    form = rng.choices(list(forms), weights=list(forms.values()))[0]

    def clause(clause_polarity: int) -> str:
        return _clause(rng, clause_polarity, negation_rate)

    if form == "simple":
        opener = f"{rng.choice(_OPENERS)} " if rng.random() < 0.3 else ""
        ending = f" {rng.choice(_ENDINGS)}" if rng.random() < 0.3 else ""
        return f"{opener}{clause(polarity)}{ending}."
    if form == "and":
        return f"{clause(polarity)} and {clause(polarity)}."
    if form == "report":
        return f"{rng.choice(REPORT_NEGATIONS)} {clause(-polarity)}."
    decider, other = clause(polarity), clause(_other_polarity(rng, polarity))
    if form == "contrast":
        return f"{other}, {rng.choice(CONTRASTS)} {decider}."
    if form == "although":
        return f"{rng.choice(('although', 'though', 'even if'))} {other}, {decider}."
    return f"{decider}, even though {other}."  # even_though: the first clause decides


def _verdict(rng: random.Random, polarity: int, negation_rate: float) -> str:
    """A short claim about a review, with `polarity`, negated with probability `negation_rate`."""
    negated = rng.random() < negation_rate
    stated = -polarity if negated else polarity
    kind = rng.randrange(3)
    if kind == 0:
        verb = rng.choice(POSITIVE_VERBS if stated > 0 else NEGATIVE_VERBS)
        if negated:
            return f"{rng.choice(_REVIEWERS)} did not {_VERB_BASE[verb]} it."
        return f"{rng.choice(_REVIEWERS)} {verb} it."
    if kind == 1:
        adjective = rng.choice(_VERDICT_ADJECTIVES[stated])
        return f"this is {'not ' if negated else ''}a {adjective} review."
    word = rng.choice(POSITIVE_WORDS if stated > 0 else NEGATIVE_WORDS)
    return f"overall it was {'not ' if negated else ''}{word}."


def _balanced_labels(rng: random.Random, size: int) -> list[int]:
    labels = [i % 2 for i in range(size)]
    rng.shuffle(labels)
    return labels


def _flip_some(rng: random.Random, labels: list[int], noise: float) -> list[int]:
    """Flip `noise` of the labels, the same number in each class (binary labels)."""
    flipped = list(labels)
    per_class = round(noise * len(labels) / 2)
    for cls in (0, 1):
        rows = [i for i, y in enumerate(labels) if y == cls]
        for i in rng.sample(rows, min(per_class, len(rows))):
            flipped[i] = 1 - cls
    return flipped


def generate_sentiment(size: int, seed: int, split: str, *, label_noise: float = LABEL_NOISE) -> TextSplit:
    """`size` synthetic reviews with balanced labels (1 = positive); same (seed, split), same split."""
    rng = random.Random(f"synthetic-sentiment/{seed}/{split}")
    clean = _balanced_labels(rng, size)
    texts = tuple(_review(rng, 1 if y else -1, _SENTIMENT_FORMS, NEGATION_RATE) for y in clean)
    return TextSplit(texts=texts, text_pairs=None, labels=tuple(_flip_some(rng, clean, label_noise)))


def generate_pairs(size: int, seed: int, split: str, *, label_noise: float = LABEL_NOISE) -> TextSplit:
    """`size` (review, verdict) pairs with balanced labels (1 = the verdict matches the review)."""
    rng = random.Random(f"synthetic-pairs/{seed}/{split}")
    clean = _balanced_labels(rng, size)
    texts, pairs = [], []
    for y in clean:
        positive = rng.random() < (PAIR_REVIEW_CUE if y else 1 - PAIR_REVIEW_CUE)
        review_polarity = 1 if positive else -1
        texts.append(_review(rng, review_polarity, _PAIR_FORMS, PAIR_NEGATION_RATE))
        pairs.append(_verdict(rng, review_polarity if y else -review_polarity, PAIR_NEGATION_RATE))
    return TextSplit(texts=tuple(texts), text_pairs=tuple(pairs), labels=tuple(_flip_some(rng, clean, label_noise)))


def _sizes(train_size: int | None, eval_size: int | None) -> dict[str, int]:
    sizes = dict(DEFAULT_SIZES)
    if train_size is not None:
        sizes["train"] = train_size
    if eval_size is not None:
        sizes["validation"] = sizes["test"] = eval_size
    return sizes


def load_synthetic_sentiment(*, seed: int = 0, train_size: int | None = None, eval_size: int | None = None) -> TaskData:
    """The `synthetic-sentiment` task; `eval_size` sets both validation and test sizes."""
    sizes = _sizes(train_size, eval_size)
    splits = {name: generate_sentiment(n, seed, name) for name, n in sizes.items()}
    return TaskData(name="synthetic-sentiment", num_labels=2, label_names=("negative", "positive"),
                    is_pair=False, **splits)  # fmt: skip


def load_synthetic_pairs(*, seed: int = 0, train_size: int | None = None, eval_size: int | None = None) -> TaskData:
    """The `synthetic-pairs` task; `eval_size` sets both validation and test sizes."""
    sizes = _sizes(train_size, eval_size)
    splits = {name: generate_pairs(n, seed, name) for name, n in sizes.items()}
    return TaskData(name="synthetic-pairs", num_labels=2, label_names=("inconsistent", "consistent"),
                    is_pair=True, **splits)  # fmt: skip
