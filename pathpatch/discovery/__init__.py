"""The discovery engine: exact batched activation, edge and path patching; EAP and EAP-IG.

Data flow: ``Task`` -> ``activation_patch`` / ``patch_edges`` / ``path_patch`` / ``attribute_edges``
-> a pandas table of scores (one row per component or edge) -> pruning and graphs (``pathpatch.graphs``).
"""

from pathpatch.discovery.activation import ACTS, ActivationPatchResult, activation_patch, block_every
from pathpatch.discovery.attribution import attribute_edges, verify
from pathpatch.discovery.config import PatchConfig
from pathpatch.discovery.edges import patch_edges, path_patch, run_circuits
from pathpatch.discovery.graph import ComputeGraph, check_supported

__all__ = [
    "ACTS",
    "ActivationPatchResult",
    "ComputeGraph",
    "PatchConfig",
    "activation_patch",
    "block_every",
    "attribute_edges",
    "check_supported",
    "patch_edges",
    "path_patch",
    "run_circuits",
    "verify",
]
