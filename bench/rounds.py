"""How a benchmark turns its rounds into one figure: the median round, by its ratio.

Each round measures the system and its baseline back to back (taking turns to go first), so a
round's ratio compares the two under the same conditions. On a shared machine any run can be
disturbed, on either side. The round whose ratio is the median of all rounds' is reported,
both its figures with it, so the printed ratio is exactly measured/baseline of one round.
(Taking the best of each side pairs figures from different rounds: one lucky baseline round
moved the ratio by a tenth.) With an even number of rounds the lower median is taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Round:
    measured: float  # the system's figure (higher is better)
    baseline: float  # the baseline's, in the same unit, from the same round

    @property
    def ratio(self) -> float:
        return self.measured / self.baseline


def median_round(rounds: Sequence[Round]) -> Round:
    if not rounds:
        raise ValueError("no rounds to report")
    ordered = sorted(rounds, key=lambda round_: round_.ratio)
    return ordered[(len(ordered) - 1) // 2]


def rounds_note(rounds: Sequence[Round]) -> str:
    """How the figure was chosen, and the spread of the rounds' ratios it was chosen from:
    on a noisy machine the spread says how far one figure can be trusted."""
    if len(rounds) < 2:
        return "one round"
    ratios = sorted(round_.ratio for round_ in rounds)
    return (
        f"median of {len(rounds)} rounds by ratio; "
        f"the rounds' ratios from {ratios[0]:.2f} to {ratios[-1]:.2f}"
    )
