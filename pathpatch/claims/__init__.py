"""Stage 5, claims: hypothesis files and their verdicts. Parsing and validating claims, the expressions of
attention claims, the measures each claim kind takes (patching effects, attention, neurons, weights, structure)
and the intervals that judge them pass, fail or inconclusive.
"""

from pathpatch import lazy_members

_HOMES = {
    **{name: "pathpatch.claims.hypotheses" for name in ("Hypothesis", "Claim", "load_hypothesis", "parse_hypothesis")},
    **{name: "pathpatch.claims.checks" for name in ("check_claims",)},
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_members(__name__, _HOMES)
