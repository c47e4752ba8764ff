"""Stage 3, patch: the engine. Which edges a model has, the hooks that patch them, the batched forward runner
with its memory budget, exact activation, edge and path patching, EAP and EAP-IG, direct logit attribution
and the logit lens.

Data flow: ``Task`` -> ``activation_patch`` / ``patch_edges`` / ``path_patch`` / ``attribute_edges``
-> a pandas table of scores (one row per component or edge) -> ``pathpatch.circuit``.
"""

from pathpatch import lazy_members

_HOMES = {
    **{name: "pathpatch.patch.activation" for name in ("ACTS", "ActivationPatchResult", "activation_patch", "block_every")},
    **{name: "pathpatch.patch.attribution" for name in ("attribute_edges", "verify")},
    **{name: "pathpatch.patch.lens" for name in ("first_look", "dla_per_prompt")},
    "PatchConfig": "pathpatch.patch.config",
    **{name: "pathpatch.patch.edges" for name in ("patch_edges", "path_patch")},
    "run_circuits": "pathpatch.patch.circuits",
    **{name: "pathpatch.patch.graph" for name in ("ComputeGraph", "check_supported")},
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_members(__name__, _HOMES)
