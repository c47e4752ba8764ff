"""Verdicts: a claim's bound judged against its measured value and 95% interval.

A bounded claim *passes* when its whole interval (and its value) lies on the right side of the bound,
*fails* when the whole interval lies on the wrong side, and is *inconclusive* otherwise: the prompts
measured cannot tell. Intervals are percentile bootstraps over prompts (``bootstrap``); values read
off the weights have no resampling and a zero-width interval, so they pass or fail outright.

Bounds (one per claim):

- ``min = X``: the value is at least X (signed); ``max = X``: at most X (signed, so ``max = 0.05``
  passes any negative value).
- ``abs_max = X``: ``|value| <= X``, "negligible"; ``abs_min = X``: ``|value| >= X``, "matters, either sign".

An inconclusive verdict says roughly how many prompts would settle it: the interval's half-width
shrinks as ``1/sqrt(n)``, so ``n * (half-width / distance to the bound)^2`` prompts would put the
bound outside an interval of the same shape.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from pathpatch.errors import InputError

BOUNDS: dict[str, str] = {"min": ">=", "max": "<=", "abs_min": "|x|>=", "abs_max": "|x|<="}  # key -> op
VERDICTS = ("pass", "fail", "inconclusive", "report")
EXIT_CODES = {"pass": 0, "fail": 1, "inconclusive": 4}  # a run's exit code: the worst verdict among its claims


@dataclass(frozen=True)
class ClaimResult:
    """The verdict on one claim.

    Attributes:
        name, kind: The claim's label and kind.
        value: The measured value over every prompt.
        op: ``>=``, ``<=``, ``|x|>=``, ``|x|<=`` or ``report`` (measured, never judged).
        threshold: The bound (None for ``report``).
        ci_low, ci_high: The 95% bootstrap interval (equal to ``value`` when nothing is resampled).
        verdict: ``pass``, ``fail``, ``inconclusive`` or ``report``.
        detail: What else the verdict rests on (missing hops, the weakest link, prompts that would settle it).
        n: Prompts the value was measured on (0 for values read off the weights).
    """

    name: str
    kind: str
    value: float
    op: str
    threshold: float | None
    ci_low: float
    ci_high: float
    verdict: str
    detail: str = ""
    n: int = 0

    @property
    def passed(self) -> bool:
        return self.verdict in ("pass", "report")


def bootstrap(stat: Callable[[Tensor], float], n: int, resamples: int, seed: int) -> tuple[float, float]:
    """Return the 2.5% and 97.5% percentiles of ``stat(indices)`` over resampled prompt indices.

    A resample whose statistic is undefined (NaN, e.g. a correlation of a resample that happens to be
    constant) makes the interval undefined (NaN, NaN): the verdict is then inconclusive, never a guess.
    """
    generator = torch.Generator().manual_seed(seed)
    values = torch.tensor([stat(torch.randint(0, n, (n,), generator=generator)) for _ in range(resamples)], dtype=torch.float64)
    if not torch.isfinite(values).all():
        return math.nan, math.nan
    return float(values.quantile(0.025)), float(values.quantile(0.975))


def bound_of(params: dict, where: str = "claim") -> tuple[str, float]:
    """Return the claim's ``(op, threshold)`` from its one bound key."""
    given = [key for key in BOUNDS if key in params]
    if len(given) != 1:
        raise InputError(f"{where}: give exactly one bound of {', '.join(BOUNDS)} (got {given or 'none'}).")
    return BOUNDS[given[0]], float(params[given[0]])


def judge(op: str, threshold: float, value: float, low: float, high: float) -> str:
    """``pass``/``fail``/``inconclusive`` for a value and its interval against one bound."""
    if not all(math.isfinite(v) for v in (value, low, high)):
        return "inconclusive"
    low, high = min(low, value), max(high, value)  # the value itself always counts
    if op == ">=":
        return "pass" if low >= threshold else "fail" if high < threshold else "inconclusive"
    if op == "<=":
        return "pass" if high <= threshold else "fail" if low > threshold else "inconclusive"
    if op == "|x|<=":
        return "pass" if -threshold <= low and high <= threshold else "fail" if low > threshold or high < -threshold else "inconclusive"
    if op == "|x|>=":
        return "pass" if low >= threshold or high <= -threshold else "fail" if -threshold < low and high < threshold else "inconclusive"
    raise InputError(f"Unknown bound {op!r}; bounds are {', '.join(BOUNDS)}.")


def prompts_to_settle(op: str, threshold: float, value: float, low: float, high: float, n: int) -> int | None:
    """Roughly how many prompts would make an inconclusive verdict conclusive (None when the value sits on the bound)."""
    if n < 1 or not all(math.isfinite(v) for v in (value, low, high)):
        return None
    edges = (-threshold, threshold) if op.startswith("|x|") else (threshold,)
    distance = min(abs(value - edge) for edge in edges)
    half_width = (high - low) / 2
    if distance <= 1e-12 * max(1.0, abs(threshold)) or half_width <= 0:
        return None
    return max(n + 1, math.ceil(n * (half_width / distance) ** 2))


def verdict_of(name: str, kind: str, params: dict, value: float, low: float, high: float, n: int, detail: str = "") -> ClaimResult:
    """The result of a bounded claim (``report = true``: measured and recorded, never judged)."""
    if params.get("report"):
        return ClaimResult(name, kind, value, "report", None, low, high, "report", detail, n)
    op, threshold = bound_of(params, f"Claim {name!r}")
    verdict = judge(op, threshold, value, low, high)
    if verdict == "inconclusive":
        more = prompts_to_settle(op, threshold, value, low, high, n)
        why = "the interval is undefined" if not all(math.isfinite(v) for v in (low, high)) else "the 95% interval straddles the bound"
        settle = f"; about {more:,} prompts would settle it" if more else ""
        detail = "; ".join(part for part in (f"{why}{settle}", detail) if part)
    return ClaimResult(name, kind, value, op, threshold, low, high, verdict, detail, n)


def overall(verdicts: "list[str]") -> str:
    """The run's verdict: ``fail`` if any claim fails, else ``inconclusive`` if any is, else ``pass``."""
    judged = [v for v in verdicts if v != "report"]
    return "fail" if "fail" in judged else "inconclusive" if "inconclusive" in judged else "pass"


QUANTIFIERS = ("any", "all")  # claim groups: some part holds, every part holds


def group_result(name: str, kind: str, parts: "list[ClaimResult]") -> ClaimResult:
    """The verdict on an ``any`` or ``all`` group from its parts' verdicts; the value is the share of parts that pass.

    ``all`` fails when a part fails and passes when every part passes; ``any`` passes when a part passes and
    fails when every part fails; otherwise the group is inconclusive (a part's interval straddles its bound).
    """
    verdicts = [part.verdict for part in parts]
    if kind == "all":
        verdict = "fail" if "fail" in verdicts else "pass" if set(verdicts) == {"pass"} else "inconclusive"
    else:
        verdict = "pass" if "pass" in verdicts else "fail" if set(verdicts) == {"fail"} else "inconclusive"
    share = verdicts.count("pass") / len(parts)
    detail = "; ".join(f"{part.name}: {part.verdict} ({part.value:.3g})" for part in parts)
    return ClaimResult(name, kind, share, ">=", 1.0 if kind == "all" else 1 / len(parts), share, share, verdict, detail,
                       max(part.n for part in parts))
