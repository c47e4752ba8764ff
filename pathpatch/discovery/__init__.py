"""The discovery engine: exact batched activation, edge and path patching; EAP and EAP-IG.

Data flow: ``Task`` -> ``activation_patch`` / ``patch_edges`` / ``path_patch`` / ``attribute_edges``
-> a pandas table of scores (one row per component or edge) -> pruning and graphs (``pathpatch.graphs``).
"""

from pathpatch import lazy_members

_HOMES = {
    **{name: "pathpatch.discovery.activation" for name in ("ACTS", "ActivationPatchResult", "activation_patch", "block_every")},
    **{name: "pathpatch.discovery.attribution" for name in ("attribute_edges", "verify")},
    **{name: "pathpatch.discovery.lens" for name in ("first_look", "dla_per_prompt")},
    "PatchConfig": "pathpatch.discovery.config",
    **{name: "pathpatch.discovery.edges" for name in ("patch_edges", "path_patch", "run_circuits")},
    **{name: "pathpatch.discovery.graph" for name in ("ComputeGraph", "check_supported")},
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_members(__name__, _HOMES)
