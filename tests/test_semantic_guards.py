"""The guards that refuse semantic candidates needing another answer, stage by stage."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmcache_tui.cache.semantic.guards import DEFAULT_THRESHOLD, Verdict, judge

PAIRS = Path(__file__).parent / "data" / "semantic_pairs.jsonl"
HIGH = 0.97  # a similarity above every threshold: only the guards can refuse


def refused(a: str, b: str, guard: str, similarity: float = HIGH) -> Verdict:
    """Assert that ``judge`` refuses the pair with ``guard`` and says why."""
    verdict = judge(a, b, similarity, DEFAULT_THRESHOLD)
    assert not verdict.hit, (a, b, verdict)
    assert verdict.guard == guard, (a, b, verdict)
    assert verdict.reason, verdict
    return verdict


def test_below_the_threshold_is_refused_by_the_threshold() -> None:
    verdict = refused(
        "What is the capital of France?", "What's the capital of France?", "threshold", 0.5
    )
    assert "0.500" in verdict.reason
    assert not judge("a", "a", math.nan, 0.8).hit


@pytest.mark.parametrize(
    ("a", "b", "shown"),
    [
        (
            "Write a poem in under 100 words about rain.",
            "Write a poem in under 50 words about rain.",
            "100 vs 50",
        ),
        ("Give me two reasons to learn Rust.", "Give me three reasons to learn Rust.", "2 vs 3"),
        ("What is the 10th Fibonacci number?", "What is the 12th Fibonacci number?", "#10 vs #12"),
        (
            "What is the second largest city in Spain?",
            "What is the third largest city in Spain?",
            "#2 vs #3",
        ),
        ("Explain Python 2 string handling.", "Explain Python 3 string handling.", "2 vs 3"),
        ("Explain IPv4 addressing.", "Explain IPv6 addressing.", "ipv4 vs ipv6"),
        ("What is 1.5 times 2?", "What is 1.50 times 3?", "2 vs 3"),
        ("Convert 5 kilograms to pounds.", "Convert 5 grams to pounds.", "kilogram vs gram"),
        ("What happened in Berlin?", "What happened in 1989 in Berlin?", "none vs 1989"),
    ],
)
def test_another_number_or_unit_is_refused(a: str, b: str, shown: str) -> None:
    assert shown in refused(a, b, "number").reason


def test_the_same_number_written_two_ways_passes() -> None:
    assert judge("Give me 3 tips for sleeping.", "Give me three tips for sleeping.", HIGH, 0.8).hit
    assert judge("How big is 1,000 MB?", "How big is 1000 megabytes?", HIGH, 0.8).hit
    assert judge("What is 2.50 plus 1?", "What is 2.5 plus 1?", HIGH, 0.8).hit


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How do I make curl follow redirects?", "How do I make curl not follow redirects?"),
        ("What can I eat during a fast?", "What can't I eat during a fast?"),
        ("List animals that can fly.", "List animals that cannot fly."),
        (
            "How do I run a container with network access?",
            "How do I run a container without network access?",
        ),
        ("Should I use tabs?", "Should I never use tabs?"),
        ("Give me arguments for nuclear power.", "Give me arguments against nuclear power."),
        ("Is it safe to eat raw eggs?", "Is it unsafe to eat raw eggs?"),
        ("Is it legal to record a call?", "Is it illegal to record a call?"),
        ("How do I enable SSL verification?", "How do I disable SSL verification?"),
        ("How do I include hidden files in ls?", "How do I exclude hidden files in ls?"),
        ("What are the benefits of remote work?", "What are the drawbacks of remote work?"),
    ],
)
def test_a_negation_is_refused(a: str, b: str) -> None:
    refused(a, b, "negation")


def test_negations_on_both_sides_pass() -> None:
    assert judge("Why doesn't my code compile?", "Why does my code not compile?", HIGH, 0.8).hit


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How to compress a folder into a tar.gz", "How to extract a tar.gz into a folder"),
        ("How do I upload a file to S3?", "How do I download a file from S3?"),
        ("How do I mount a USB drive?", "How do I unmount a USB drive?"),
        ("Sort the list in ascending order.", "Sort the list in descending order."),
        ("How do I zoom in on the map?", "How do I zoom out on the map?"),
        ("Convert pounds to kilograms.", "Convert kilograms to pounds."),
        ("Convert 30 degrees Celsius to Fahrenheit.", "Convert 30 degrees Fahrenheit to Celsius."),
        ("Translate this from English to German.", "Translate this from German to English."),
        ("Is Rust faster than Go?", "Is Go faster than Rust?"),
    ],
)
def test_a_reversed_direction_is_refused(a: str, b: str) -> None:
    refused(a, b, "direction")


def test_the_same_direction_said_the_other_way_round_passes() -> None:
    # "from the Earth to the Moon" and "the Moon from the Earth" point the same way.
    assert judge(
        "What is the distance from the Earth to the Moon?",
        "What is the distance of the Moon from the Earth?",
        HIGH,
        0.8,
    ).hit


@pytest.mark.parametrize(
    ("a", "b", "guard"),
    [
        (
            "What was the weather in Paris yesterday?",
            "What was the weather in Paris last year?",
            "time",
        ),
        ("Plan my schedule for tomorrow.", "Plan my schedule for next week.", "time"),
        ("What is the current price of gold?", "What is the price of gold?", "time"),
        (
            "Write an email to my manager asking for a day off.",
            "Write a message to my manager asking for a day off.",
            "format",
        ),
        (
            "Give me the list of planets as JSON.",
            "Give me the list of planets as a table.",
            "format",
        ),
        ("Write a limerick about my cat.", "Write a haiku about my cat.", "format"),
    ],
)
def test_another_time_or_format_is_refused(a: str, b: str, guard: str) -> None:
    refused(a, b, guard)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("What is the capital of Switzerland?", "What is the capital of Sweden?"),
        ("How do I read a CSV file with pandas?", "How do I read a CSV file with Polars?"),
        ("How do I declare a constant in C++?", "How do I declare a constant in C#?"),
        ("How do I sort a list?", "How do I sort a list in Rust?"),
    ],
)
def test_a_name_without_a_close_partner_is_refused_at_any_similarity(a: str, b: str) -> None:
    refused(a, b, "entity", 0.999)


# The model weighs the similarity, so these use the pairs' real all-MiniLM-L6-v2 cosine
# (as the pair file's cos field does) and a threshold low enough for the model to decide.
@pytest.mark.parametrize(
    ("a", "b", "cos", "guard"),
    [
        (
            "Give me a recipe for pancakes.",
            "Give me a vegan recipe for pancakes and waffles.",
            0.7502,
            "constraint",
        ),
        (
            "Write a story about a robot.",
            "Write a funny short story about a robot.",
            0.8695,
            "constraint",
        ),
        ("Give me a recipe.", "Give me a vegan recipe.", 0.7261, "constraint"),
        ("How do I clean a cast iron pan?", "How do I paint a cast iron pan?", 0.7298, "content"),
    ],
)
def test_an_added_constraint_or_another_topic_is_refused(
    a: str, b: str, cos: float, guard: str
) -> None:
    verdict = judge(a, b, cos, 0.7)
    assert not verdict.hit and verdict.guard == guard, verdict
    assert "score" in verdict.reason


def test_the_model_weighs_the_similarity_but_rules_never_relax() -> None:
    # One extra plain word: refused at a middling similarity, served at a very high one.
    a, b = "What is the capital of France?", "What is the capital city of France?"
    assert judge(a, b, 0.85, 0.8).guard == "constraint"
    assert judge(a, b, 0.96, 0.8).hit
    # Never an extra name, number or negation, however similar.
    assert judge("How do I sort a list?", "How do I sort a list in Rust?", 0.999, 0.8).guard == (
        "entity"
    )
    assert judge("How do I sort a list?", "How do I not sort a list?", 0.999, 0.8).guard == (
        "negation"
    )


def test_synonyms_and_inflections_align_through_word_vectors() -> None:
    # No shared content word, yet every word has a close partner.
    assert judge(
        "What are similar sites like Quora?", "What are some similar websites to Quora?", 0.93, 0.8
    ).hit
    assert judge(
        "Where can I purchase cheap clothes?", "Where can I buy cheap attire?", 0.93, 0.8
    ).hit


# The examples the guards exist for: every one must stay refused at any similarity.
MUST_NOT_HIT = [
    ("What is the capital of Switzerland?", "What is the capital of Sweden?"),
    ("How to compress a folder into a tar.gz", "How to extract a tar.gz into a folder"),
    ("How do I make curl follow redirects?", "How do I make curl not follow redirects?"),
    ("Convert pounds to kilograms.", "Convert kilograms to pounds."),
    ("Explain Python 2 string handling.", "Explain Python 3 string handling."),
    ("Write a poem about rain.", "Write a poem in under 100 words about rain."),
    (
        "Write an email to my manager asking for a day off.",
        "Write a LinkedIn message to my manager asking for a day off.",
    ),
    ("What was the weather in Paris yesterday?", "What was the weather in Paris last year?"),
]


@pytest.mark.parametrize(("a", "b"), MUST_NOT_HIT)
@pytest.mark.parametrize("similarity", [0.8, 0.95, 1.0])
def test_the_known_wrong_answers_are_never_served(a: str, b: str, similarity: float) -> None:
    assert not judge(a, b, similarity, 0.8).hit
    assert not judge(b, a, similarity, 0.8).hit


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How do I reverse a list in Python?", "What's the way to reverse a Python list?"),
        ("Write a poem about the ocean.", "Write me a poem about the ocean, please."),
        ("Who painted the Mona Lisa?", "Who was the painter of the Mona Lisa?"),
        ("How do I delete a branch in git?", "How can I remove a git branch?"),
        ("Summarize the plot of Hamlet.", "Give me a summary of the plot of Hamlet."),
        ("Explain the water cycle.", "Describe the water cycle."),
        ("How do I make my website load faster?", "How can I make my website faster to load?"),
        ("Convert pounds to kilograms.", "How do I convert pounds into kilograms?"),
    ],
)
def test_paraphrases_pass(a: str, b: str) -> None:
    verdict = judge(a, b, HIGH, DEFAULT_THRESHOLD)
    assert verdict == Verdict(True, None, verdict.reason), verdict


def load_pairs() -> list[dict[str, object]]:
    with PAIRS.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("held_out", [False, True], ids=["all", "held-out batches"])
@pytest.mark.parametrize("threshold", sorted({DEFAULT_THRESHOLD, 0.8}))
def test_the_pair_file_meets_the_goal(threshold: float, held_out: bool) -> None:
    # Batch 1 tuned the rules and fitted the model; batches 2 and 3 never changed either.
    pairs = [p for p in load_pairs() if not held_out or p["batch"] != 1]
    hits = {True: 0, False: 0}
    totals = {True: 0, False: 0}
    for p in pairs:
        positive = p["label"] == 1
        totals[positive] += 1
        hits[positive] += judge(str(p["b"]), str(p["a"]), float(str(p["cos"])), threshold).hit
    recall, false_hits = hits[True] / totals[True], hits[False] / totals[False]
    assert totals[True] >= 60 and totals[False] >= 90
    assert false_hits <= 0.05, f"false hits {false_hits:.1%} at {threshold}"
    assert recall >= 0.70, f"recall {recall:.1%} at {threshold}"


def test_every_kind_of_difference_is_in_the_pair_file() -> None:
    kinds = {p["kind"] for p in load_pairs() if p["label"] == 0}
    assert kinds == {
        "entity",
        "number",
        "negation",
        "direction",
        "constraint",
        "format",
        "topic",
        "time",
    }


# Words that reach every stage, so random sentences built from them exercise all checks.
VOCABULARY = " ".join(
    (
        "how do I not never without against convert compress extract to into from than",
        "pounds kilograms 5 10 two first 2nd Python IPv6 C++ today last year week email JSON",
        "poem vegan unsafe safe enable disable the a of in what is write please list string",
        "Sweden capital city zoom in out turn on 3.11 1,000 don't can't it's",
    )
).split()
sentences = st.lists(st.sampled_from(VOCABULARY), max_size=14).map(" ".join)
similarities = st.floats(allow_nan=True, allow_infinity=True) | st.floats(0.8, 1.0)


@settings(max_examples=300, deadline=None)
@given(a=st.text(max_size=200) | sentences, b=st.text(max_size=200) | sentences, s=similarities)
def test_judge_never_raises_and_is_symmetric(a: str, b: str, s: float) -> None:
    # Symmetric: swapping the stored and the new prompt gives the same hit and guard.
    forward, backward = judge(a, b, s, 0.8), judge(b, a, s, 0.8)
    assert isinstance(forward, Verdict)
    assert (forward.hit, forward.guard) == (backward.hit, backward.guard)
    assert forward.hit == (forward.guard is None)
    assert forward.reason


@settings(max_examples=100, deadline=None)
@given(a=sentences, s=st.floats(0.99, 1.0))
def test_a_prompt_always_matches_itself(a: str, s: float) -> None:
    # An identical text embeds at cosine 1 (to float rounding).
    assert judge(a, a, s, 0.8).hit


@settings(max_examples=200, deadline=None)
@given(a=sentences, b=sentences, s=st.floats(0.8, 1.0), more=st.floats(0.0, 0.2))
def test_a_higher_similarity_never_turns_a_hit_into_a_miss(
    a: str, b: str, s: float, more: float
) -> None:
    if judge(a, b, s, 0.8).hit:
        assert judge(a, b, min(1.0, s + more), 0.8).hit
