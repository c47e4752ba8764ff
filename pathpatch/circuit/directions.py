"""Edge scores from both patching directions, and which direction kept each edge of a circuit.

Noising (the clean run with one edge corrupt) measures what an edge is necessary for; denoising (the
corrupt run with one edge clean) what it suffices for. Each alone misses mechanisms: when two inputs
each suffice (an OR), noising one of them changes nothing; when two are both needed (an AND), denoising
one restores nothing. ``discover`` scores both by default and keeps an edge whose effect passes the
threshold in either. The joined table keeps the primary direction's ``score``/``normalized`` (what
claims and older readers use) and adds ``score_noise``, ``score_denoise``, ``normalized_noise`` and
``normalized_denoise`` (NaN for a direction that did not run: mean and zero ablation have no corrupt run
to denoise) and ``kept_by`` (``noise``, ``denoise``, ``both``, or empty for edges not kept).

Scores are shares of the run's own corruption's clean - corrupt gap (``patch_edges`` measures from the run
with every edge corrupt), so a ``resample`` or ``mean`` run is normalised as its faithfulness is.
"""

import numpy as np
import pandas as pd

from pathpatch.vocabulary import ABLATIONS, DIRECTIONS

DIRECTION_COLUMNS = ("score_noise", "score_denoise", "normalized_noise", "normalized_denoise", "kept_by")


def directions_of(direction: str, both: bool, corruption: str) -> tuple[str, ...]:
    """Return the directions a run scores, the primary first; denoising needs a corrupt run (not ``mean``/``zero``).

    Examples:
        >>> directions_of("noise", True, "paired"), directions_of("noise", True, "mean"), directions_of("denoise", False, "paired")
        (('noise', 'denoise'), ('noise',), ('denoise',))
    """
    if not both or corruption in ABLATIONS:
        return (direction,)
    return (direction, *[d for d in DIRECTIONS if d != direction])


def join_directions(tables: dict[str, pd.DataFrame], primary: str) -> pd.DataFrame:
    """Return the primary table (same rows in every table) with each direction's score and normalized
    columns beside it, NaN for directions not in ``tables``, and an empty ``kept_by``."""
    out = tables[primary].copy()
    for direction in DIRECTIONS:
        table = tables.get(direction)
        for column in ("score", "normalized"):
            out[f"{column}_{direction}"] = np.nan if table is None else table[column].to_numpy()
    out["kept_by"] = ""
    out.attrs.update(tables[primary].attrs)
    return out


def stronger(scores: pd.DataFrame) -> pd.DataFrame:
    """Return the rows with an exact score, with ``score`` and ``normalized`` taken from the direction whose
    ``|normalized|`` is larger (the effect pruning reads: an edge passes if it passes in either direction).

    Examples:
        >>> t = pd.DataFrame({"edge": ["a", "b"], "score": [0.1, None], "normalized": [0.1, None], "score_noise": [0.1, None],
        ...                   "score_denoise": [-0.8, None], "normalized_noise": [0.1, None], "normalized_denoise": [-0.8, None]})
        >>> stronger(t)[["edge", "score", "normalized"]].values.tolist()
        [['a', -0.8, -0.8]]
    """
    exact = scores[scores["score"].notna()]
    if "normalized_denoise" not in exact:
        return exact
    noise, denoise = exact["normalized_noise"].abs().fillna(-1.0), exact["normalized_denoise"].abs().fillna(-1.0)
    pick = denoise > noise
    out = exact.copy()
    for column in ("score", "normalized"):
        out[column] = exact[f"{column}_noise"].where(~pick, exact[f"{column}_denoise"])
        out[column] = out[column].fillna(exact[column])
    return out


def kept_by(scores: pd.DataFrame, kept: pd.DataFrame, column: str, cutoff: float | None) -> pd.Series:
    """Return ``kept_by`` for every row of ``scores``: the directions whose ``|column|`` reaches ``cutoff`` among
    the ``kept`` edges (empty for the rest). ``cutoff`` None (a top-k circuit): the smallest kept effect.

    Examples:
        >>> t = pd.DataFrame({"edge": ["a", "b", "c"], "normalized_noise": [0.9, 0.0, 0.5], "normalized_denoise": [0.8, 0.7, None]})
        >>> kept_by(t, t.iloc[:2], "normalized", 0.05).tolist()
        ['both', 'denoise', '']
    """
    if f"{column}_denoise" not in scores:
        return pd.Series("", index=scores.index)
    is_kept = scores["edge"].isin(kept["edge"])
    noise, denoise = scores[f"{column}_noise"].abs(), scores[f"{column}_denoise"].abs()
    if cutoff is None:
        cutoff = float(np.fmax(noise[is_kept], denoise[is_kept]).min()) if is_kept.any() else 0.0
    passes = {d: values.fillna(-1.0) >= cutoff for d, values in (("noise", noise), ("denoise", denoise))}
    labels = np.where(passes["noise"] & passes["denoise"], "both", np.where(passes["noise"], "noise", np.where(passes["denoise"], "denoise", "")))
    return pd.Series(np.where(is_kept, labels, ""), index=scores.index)


def directions_text(method: str, direction: str, directions: tuple[str, ...], corruption: str) -> str:
    """One sentence for reports: which directions scored the edges, and why only one when only one did."""
    if method == "acdc":
        return f"One direction, {direction}: ACDC prunes greedily by removing edges from the full circuit in one direction."
    if len(directions) == 2:
        return (f"Both directions: noise (clean run, one edge corrupt: what the edge is necessary for) and denoise (corrupt run, one "
                f"edge clean: what it suffices for). An edge is kept when it passes in either (kept_by); score and normalized are {direction}'s.")
    if corruption in ABLATIONS:
        return (f"Noise only: denoising patches clean activations into a corrupt run, and {corruption} ablation has none "
                "(use --corruption paired or resample for both directions).")
    return f"One direction, {direction} (both_directions off): an edge that only the other direction shows is missed."
