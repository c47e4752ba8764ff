"""The scores every patching method returns, as numbers people compare: a share of the clean - corrupt gap
(``normalized``), and the strongest rows of a scores table by ``|score|`` (``strongest``), which both the
exact re-check of attribution and top-k pruning take.
"""

import pandas as pd
from torch import Tensor

from pathpatch.errors import InputError


def normalized(score: Tensor, clean_metric: float, corrupt_metric: float, task_name: str) -> Tensor:
    """Return ``score / (clean - corrupt)``; raise ValueError when the two metrics coincide."""
    gap = clean_metric - corrupt_metric
    if abs(gap) < 1e-6 * max(1.0, abs(clean_metric)):
        raise InputError(
            f"Task '{task_name}': clean and corrupt give the same metric ({clean_metric:.6g}), so normalized scores "
            "(patched - corrupt) / (clean - corrupt) are undefined. Use a corruption that changes the answer, "
            "or pass normalize=False for raw scores."
        )
    return score / gap


def strongest(scores: pd.DataFrame, k: int) -> pd.DataFrame:
    """Return the ``k`` rows with the largest ``|score|``, strongest first; ties keep table order."""
    order = scores["score"].abs().sort_values(ascending=False, kind="stable").index
    return scores.loc[order[:k]]
