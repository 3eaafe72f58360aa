"""The accuracy-loss budget: parsed once here, imported everywhere else.

A budget is a fraction in [0, 1): `"3%"` and `"0.03"` both mean 0.03. By default it is absolute
(accuracy may fall 3 points below the baseline); with `relative=True` it is a share of the
baseline accuracy (the floor is 97% of the baseline).

>>> parse_budget("3%"), parse_budget("0.03")
(0.03, 0.03)
>>> round(accuracy_floor(0.90, 0.03), 4), round(accuracy_floor(0.90, 0.03, relative=True), 4)
(0.87, 0.873)
"""

from __future__ import annotations

import math

from autoprumux.errors import BudgetError

#: One-sided confidence of the accuracy bound by default. A calibrated 90% bound still lets about
#: one pick in ten fall under the floor (the fastest candidate that clears the bound is the one
#: most likely to be overestimated); 95% keeps violations near 5% on the generated-surface suite.
DEFAULT_CONFIDENCE = 0.95

ACCEPTED = "a percentage like 3% or a fraction like 0.03 in [0, 100%)"


def parse_budget(value: str | float) -> float:
    """Parse an accuracy-loss budget into a fraction in [0, 1).

    Strings ending in `%` are percentages (`"3%"` -> 0.03, `"2.5%"` -> 0.025); other strings and
    numbers are fractions (`"0.03"` -> 0.03). A bare number >= 1 such as `"3"` is rejected rather
    than guessed at. Raises `BudgetError` naming the value and the accepted form.
    """
    text = str(value).strip()
    is_percent = text.endswith("%")
    number_text = text[:-1].strip() if is_percent else text
    try:
        number = float(number_text)
    except ValueError:
        number = math.nan
    if isinstance(value, bool) or not number_text or not math.isfinite(number):
        raise BudgetError(f"budget {str(value)!r} is not a number; expected {ACCEPTED}")
    fraction = number / 100.0 if is_percent else number
    if not 0.0 <= fraction < 1.0:
        hint = f" (did you mean {number_text}%?)" if not is_percent and 1.0 <= number < 100.0 else ""
        raise BudgetError(f"budget {str(value)!r} is out of range{hint}; expected {ACCEPTED}")
    return round(fraction, 12)


def accuracy_floor(baseline_accuracy: float, budget: float, relative: bool = False) -> float:
    """The lowest acceptable accuracy (fraction): `baseline - budget`, or `baseline * (1 - budget)`
    when `relative`. `budget` is a fraction as returned by `parse_budget`."""
    if relative:
        return baseline_accuracy * (1.0 - budget)
    return baseline_accuracy - budget


def format_budget(budget: float, relative: bool = False) -> str:
    """`0.03` -> `"3%"` (absolute, in accuracy points) or `"3% of the baseline"` (relative)."""
    text = f"{budget * 100:.4g}%"
    return f"{text} of the baseline" if relative else f"{text} (absolute)"
