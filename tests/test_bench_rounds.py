"""The benchmarks' figure: the round with the median ratio, both its figures from that round."""

from __future__ import annotations

import pytest

from bench.rounds import Round, median_round, rounds_note


def test_the_median_round_by_ratio_is_reported_whole() -> None:
    rounds = [Round(414, 576), Round(531, 572), Round(532, 625), Round(520, 715), Round(551, 639)]
    median = median_round(rounds)
    # Ratios 0.72, 0.93, 0.85, 0.73, 0.86: the median is the third round's.
    assert median == Round(532, 625)
    assert median.ratio == pytest.approx(532 / 625)


def test_an_even_number_of_rounds_takes_the_lower_median() -> None:
    assert median_round([Round(9, 10), Round(5, 10), Round(7, 10), Round(8, 10)]) == Round(7, 10)


def test_no_rounds_is_an_error() -> None:
    with pytest.raises(ValueError):
        median_round([])


def test_the_note_gives_the_spread_of_the_rounds_ratios() -> None:
    rounds = [Round(414, 576), Round(531, 572), Round(532, 625)]
    assert rounds_note(rounds) == (
        "median of 3 rounds by ratio; the rounds' ratios from 0.72 to 0.93"
    )
    assert rounds_note(rounds[:1]) == "one round"
