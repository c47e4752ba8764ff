"""``DiscoverConfig``: every setting of a discovery run, checked once, with the engine and pruning settings
it implies. A hypothesis file's pinned methodology becomes one too (``discover_config_of``).
"""

import math
from dataclasses import dataclass, fields, replace

from pathpatch.circuit.directions import directions_of
from pathpatch.circuit.prune import PruneConfig
from pathpatch.claims.hypotheses import GRANULARITY, Hypothesis
from pathpatch.errors import InputError
from pathpatch.patch.config import PatchConfig
from pathpatch.vocabulary import (ABLATIONS, CORRUPTIONS, DEFAULT_CORRUPTION, DEFAULT_DIRECTION, DEFAULT_METHOD, DIRECTIONS, GRANULARITIES,
                                  METHODS, METRICS, Corruption, Direction, Granularity, Method)

CANDIDATES = 50




@dataclass(frozen=True, kw_only=True)
class DiscoverConfig:
    """Every setting a discovery run depends on (model and task are passed beside it).

    Attributes:
        method: ``exact``, ``eap``, ``eap-ig`` (then confirmed exactly) or ``acdc``.
        corruption: What cut edges carry: ``paired``, ``resample``, ``mean``, ``zero``.
        direction: The primary direction, whose effects fill ``score``/``normalized``: ``noise`` (patch corrupt
            into clean: what an edge is necessary for) or ``denoise`` (clean into corrupt: what it suffices for).
        both_directions: Also score the other direction and keep an edge that passes in either (``kept_by``);
            mean and zero ablation have no corrupt run, so they noise only; ACDC runs the primary direction only.
        cross_check: Measure the circuit under the other corruptions (``doubts``), and when it is suspect,
            rediscover it exactly with each of them where that costs less than the run itself; the circuit
            returned is the same either way.
        threshold: Keep edges with ``|normalized| >= threshold`` (metric units when not ``relative``).
        relative: Read ``threshold`` as a share of clean - corrupt.
        metric: Override the task's metric (``logit_diff``, ``loss``, ``accuracy``, ``kl``, ``mse``).
        top_k: Keep the ``top_k`` strongest edges instead of a threshold.
        steps: EAP-IG interpolation steps.
        n: Prompts to generate or read (None: 64 for generated tasks, every prompt of a file).
        seed: Data, resampling and bootstrap seed.
        task_corruption: Which corruption the task generator makes (e.g. ``values`` for ``permute``).
        device: Torch device for models loaded from a spec.
        granularity: ``component`` (an edge over every position) or ``position`` (an edge at each position
            label, ``L0H0->L1H0.v@END``: position-aware circuits; ``exact``, ``eap`` and ``eap-ig`` only).
        recheck: How many of the strongest attributed edges ``eap``/``eap-ig`` re-score exactly (at least
            ``top_k``); the circuit is pruned among them, on their exact scores.
        max_memory: Activation memory budget in bytes (None: ``schedule.memory_budget``'s default); runs chunk
            prompts, steps and variants to stay within it.
    """

    method: Method = DEFAULT_METHOD
    corruption: Corruption = DEFAULT_CORRUPTION
    direction: Direction = DEFAULT_DIRECTION
    both_directions: bool = True
    cross_check: bool = True
    threshold: float = 0.05
    relative: bool = True
    metric: str | None = None
    top_k: int | None = None
    steps: int = 10
    n: int | None = None
    seed: int = 0
    task_corruption: str | None = None
    device: str = "cpu"
    granularity: Granularity = "component"
    recheck: int = CANDIDATES
    max_memory: float | None = None

    def __post_init__(self) -> None:
        _check_discover_config(self)

    def patch_config(self, progress: bool = False) -> PatchConfig:
        """The engine settings of this run."""
        return PatchConfig(direction=self.direction, corruption=self.corruption, seed=self.seed, progress=progress,
                           max_memory=self.max_memory)


def _check_discover_config(c: DiscoverConfig) -> None:
    """Validate types and ranges once, naming the bad value and the fix."""
    choices = {"method": METHODS, "corruption": CORRUPTIONS, "direction": DIRECTIONS,
               "granularity": GRANULARITIES}
    for key, allowed in choices.items():
        if getattr(c, key) not in allowed:
            raise InputError(f"Unknown {key} {getattr(c, key)!r}; choose one of {', '.join(allowed)}.")
    if c.metric is not None and c.metric not in METRICS:
        raise InputError(f"Unknown metric {c.metric!r}; choose one of {', '.join(METRICS)}.")
    if isinstance(c.threshold, bool) or not isinstance(c.threshold, (int, float)) or not math.isfinite(c.threshold) or c.threshold < 0:
        raise InputError(f"threshold={c.threshold!r}; give a finite number >= 0 (a share of clean - corrupt, e.g. 0.05).")
    for key in ("relative", "both_directions", "cross_check"):
        if not isinstance(getattr(c, key), bool):
            raise InputError(f"{key}={getattr(c, key)!r}; give True or False.")
    for key, low in (("top_k", 1), ("n", 1), ("steps", 1), ("seed", 0), ("recheck", 1)):
        value = getattr(c, key)
        if value is None and key in ("top_k", "n"):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(f"{key}={value!r}; give an integer >= {low}" + (" (or leave it unset for a threshold)." if key == "top_k" else "."))
    if c.granularity == "position" and c.method == "acdc":
        raise InputError("granularity 'position' works with methods exact, eap and eap-ig; ACDC's greedy search runs over "
                         "position-free edges (use --method exact for position-aware circuits).")
    if c.direction == "denoise" and c.corruption in ABLATIONS:
        raise InputError(f"direction 'denoise' patches clean activations into a corrupt run, but corruption {c.corruption!r} "
                         "has no corrupt run; use direction 'noise' for ablations.")
    c.patch_config()  # the engine settings check themselves (max_memory)


def run_directions(config: DiscoverConfig) -> tuple[str, ...]:
    """The directions a run scores edges in, the primary first (ACDC: the primary alone)."""
    return (config.direction,) if config.method == "acdc" else directions_of(config.direction, config.both_directions, config.corruption)


def with_settings(config: DiscoverConfig, settings: dict) -> DiscoverConfig:
    """Return ``config`` with keyword overrides, refusing names that are not settings."""
    known = {f.name for f in fields(DiscoverConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise InputError(f"discover() got unknown settings {unknown}; settings are {', '.join(sorted(known))}.")
    return replace(config, **settings) if settings else config


def prune_config(config: DiscoverConfig) -> PruneConfig:
    if config.top_k is not None:
        return PruneConfig(method="top_k", top_k=config.top_k)
    return PruneConfig(threshold=config.threshold, relative=config.relative)


def discover_config_of(hypothesis: Hypothesis, device: str = "cpu") -> DiscoverConfig:
    """Return the discovery settings a hypothesis file pins."""
    m = hypothesis.method
    return DiscoverConfig(method=m["scoring"], corruption=m["corruption"], direction=m["direction"], threshold=float(m["threshold"]),
                          relative=m["relative"], metric=m["metric"], n=m["n"], seed=m["seed"], device=device,
                          task_corruption=m["task_corruption"], granularity=GRANULARITY[m["granularity"]], steps=m["steps"],
                          recheck=m["recheck"], both_directions=m["both_directions"], cross_check=False)  # check shows no doubts
