"""Orchestration: string the stages together for a run. ``discover`` (model + task -> edge scores -> pruned
circuit -> faithfulness -> files), ``check`` (a hypothesis file's claims on a circuit), their settings
(``DiscoverConfig``) and results (``DiscoveryResult``, ``CheckReport``), and the doubts a run raises about
itself (``doubts``: faithfulness under other corruptions, a second look when it is low).

This package sits above every stage (task, models, patch, circuit, claims, report) because it strings them
together; nothing below imports it.
"""

from pathpatch import lazy_members

_HOMES = {
    **{name: "pathpatch.pipeline.config" for name in ("DiscoverConfig",)},
    **{name: "pathpatch.pipeline.discovery" for name in ("discover", "model_label", "resolve", "score_edges")},
    **{name: "pathpatch.pipeline.results" for name in ("CheckReport", "DiscoveryResult", "EmptyCircuitError")},
    **{name: "pathpatch.pipeline.checking" for name in ("check",)},
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_members(__name__, _HOMES)
