"""Stage 4, circuit: from a table of edge scores to a ``networkx.DiGraph``. Pruning (top-k, threshold, ACDC),
the circuit itself with its provenance and JSON file, the noise/denoise directions of a score, and
faithfulness (the circuit run on the model, and MIB's CPR/CMD curves).
"""

from pathpatch import lazy_members

_HOMES = {
    **{name: "pathpatch.circuit.circuit" for name in ("Circuit", "from_json")},
    **{name: "pathpatch.circuit.prune" for name in ("PruneConfig", "acdc")},
    "mib_curves": "pathpatch.circuit.faithfulness",
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_members(__name__, _HOMES)
