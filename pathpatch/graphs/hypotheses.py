"""Hypothesis files: declarative claims about a circuit, read from TOML (never executed).

A file names a model, a task, the methodology every number depends on, and a list of claims.
``model`` and ``task`` take every spec that ``--model`` and ``--task`` take (a bundled name, a
checkpoint or Hugging Face folder, a weights file with ``model_config``, a JSONL/CSV/JSON prompt file,
``file.py:function``); relative paths are read from the hypothesis file's folder, so a file and the
model and prompts it names can travel together:

    model = "permute"         # or "my_model/" (a checkpoint folder beside this file)
    task = "permute"          # or "prompts.jsonl"

    [method]                  # pinned: effects change with any of these
    scoring = "exact"         # exact | eap | eap-ig (then confirmed exactly) | acdc
    direction = "noise"       # noise (patch corrupt into clean) | denoise (clean into corrupt)
    corruption = "paired"     # what cut edges carry: paired | resample | mean | zero
    task_corruption = "values"
    metric = "logit_diff"     # default: the task's own (logit_diff | loss | accuracy | kl | mse)
    threshold = 0.05          # circuit: edges with |normalized effect| >= threshold (relative = false: metric units)
    granularity = "edge"      # edges over all positions (the only granularity circuits support so far)
    positions = "task"        # the metric reads the task's answer positions
    aggregation = "mean"      # metric averaged over prompts and read positions
    n = 64                    # prompts (default: 64 generated, or every prompt of a file)
    seed = 0                  # data seed (and bootstrap seed)
    bootstrap = 200           # resamples of prompts for confidence intervals

    [[claim]]
    name = "V-composition path"
    kind = "path"
    nodes = ["embed", "L0H0.v", "L0H0", "L1H0.v", "L1H0", "logits"]
    min_effect = 0.5

Claim kinds and their keys (``min``/``max`` are the thresholds a value must reach):
``path`` (nodes, min_effect), ``effect`` (edge or node, min), ``faithfulness`` (min),
``head_role`` (head, role = previous_token | attends_to | induction | copying | negative_copy, min,
offset or token (attends_to), positions = all | read, space = vocab | residual for copying), ``composition`` (src, dest, type = q | k | v, min), ``virtual_ov``
(heads, min), ``ablation`` (head, min: increase of the task loss when the head is mean-ablated).
"""

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pathpatch.factories import parse_factory

CLAIM_KEYS: dict[str, tuple[set[str], set[str]]] = {
    # kind: (required keys, optional keys), besides name and kind
    "path": ({"nodes", "min_effect"}, set()),
    "effect": ({"min"}, {"edge", "node"}),
    "faithfulness": ({"min"}, set()),
    "head_role": ({"head", "role"}, {"min", "max", "offset", "token", "positions", "space"}),
    "composition": ({"src", "dest", "type", "min"}, set()),
    "virtual_ov": ({"heads", "min"}, set()),
    "ablation": ({"head", "min"}, set()),
}
ROLES = ("previous_token", "attends_to", "induction", "copying", "negative_copy")
METHOD_DEFAULTS: dict[str, Any] = {
    "scoring": "exact", "direction": "noise", "corruption": "paired", "task_corruption": None, "threshold": 0.05, "relative": True,
    "metric": None, "granularity": "edge", "positions": "task", "aggregation": "mean",
    "n": None, "seed": 0, "bootstrap": 200,
}
METRICS = ("logit_diff", "loss", "accuracy", "kl", "mse")


@dataclass(frozen=True)
class Claim:
    """One checkable claim.

    Attributes:
        name: Label in reports (defaults to the kind and its subject).
        kind: One of ``CLAIM_KEYS``.
        params: The claim's keys from the file, validated.
    """

    name: str
    kind: str
    params: dict = field(hash=False)


@dataclass(frozen=True)
class Hypothesis:
    """A hypothesis file: model, task, pinned methodology, claims.

    Attributes:
        name: The file's ``name`` (default: its stem).
        model: Model spec, relative paths already resolved against the file's folder.
        task: Task spec, resolved the same way.
        method: The pinned methodology (``METHOD_DEFAULTS`` filled in).
        claims: The claims, in file order.
        model_config: Config file of a bare weights ``model``, or None.
    """

    name: str
    model: str
    task: str
    method: dict = field(hash=False)
    claims: tuple[Claim, ...] = ()
    model_config: str | None = None


def load_hypothesis(path: "str | Path") -> Hypothesis:
    """Read and validate a hypothesis TOML file.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Malformed TOML, unknown claim kinds or keys, thresholds out of range.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No hypothesis file at {path}; see hypotheses/*.toml for examples.")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path} is not valid TOML: {err}. Fix the syntax (strings in quotes, [[claim]] tables).") from err
    return parse_hypothesis(data, path.stem, path.resolve().parent)


def resolve_spec(spec: str, base: Path | None) -> str:
    """Return ``spec`` with a relative path (or a factory's ``.py`` file) read from ``base``.

    Bundled names and ``package.module:function`` stay as they are; so does a relative path that
    exists nowhere under ``base`` (the loader then names what is missing).
    """
    if base is None:
        return spec
    factory = parse_factory(spec)
    if factory is not None and factory[0].endswith(".py"):
        file = Path(factory[0]).expanduser()
        return spec if file.is_absolute() else f"{base / file}:{factory[1]}"
    path = Path(spec).expanduser()
    if path.is_absolute() or not (base / path).exists():
        return spec
    return str(base / path)


def parse_hypothesis(data: dict, name: str, base: Path | None = None) -> Hypothesis:
    """Validate parsed TOML and return the Hypothesis; relative specs resolve against ``base``."""
    unknown = set(data) - {"model", "task", "model_config", "method", "claim", "name", "description"}
    if unknown:
        raise ValueError(f"Hypothesis {name!r}: unknown top-level keys {sorted(unknown)}; expected model, task, [method], [[claim]].")
    for key in ("model", "task"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise ValueError(f"Hypothesis {name!r}: '{key}' must be a non-empty string, e.g. {key} = \"permute\" or {key} = \"my_model/\".")
    if "model_config" in data and not isinstance(data["model_config"], str):
        raise ValueError(f"Hypothesis {name!r}: 'model_config' must be a string path, e.g. model_config = \"config.json\".")
    method = {**METHOD_DEFAULTS, **data.get("method", {})}
    bad = set(method) - set(METHOD_DEFAULTS)
    if bad:
        raise ValueError(f"Hypothesis {name!r}: unknown [method] keys {sorted(bad)}; known: {', '.join(METHOD_DEFAULTS)}.")
    _check_method(name, method)
    claims = data.get("claim", [])
    if not isinstance(claims, list) or not claims:
        raise ValueError(f"Hypothesis {name!r} has no claims; add at least one [[claim]] table.")
    config = resolve_spec(data["model_config"], base) if "model_config" in data else None
    return Hypothesis(data.get("name", name), resolve_spec(data["model"], base), resolve_spec(data["task"], base), method,
                      tuple(_parse_claim(name, i, c) for i, c in enumerate(claims)), config)


def _check_method(name: str, method: dict) -> None:
    """Validate the pinned methodology."""
    if method["scoring"] not in ("exact", "eap", "eap-ig", "acdc"):
        raise ValueError(f"Hypothesis {name!r}: scoring {method['scoring']!r}; choose exact, eap, eap-ig or acdc.")
    if method["corruption"] not in ("paired", "resample", "mean", "zero"):
        raise ValueError(f"Hypothesis {name!r}: corruption {method['corruption']!r}; choose paired, resample, mean or zero.")
    if method["direction"] not in ("noise", "denoise"):
        raise ValueError(f"Hypothesis {name!r}: direction {method['direction']!r}; choose noise or denoise.")
    if not isinstance(method["relative"], bool):
        raise ValueError(f"Hypothesis {name!r}: relative = {method['relative']!r}; give true or false (a TOML boolean, no quotes).")
    threshold = method["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise ValueError(f"Hypothesis {name!r}: threshold = {threshold!r}; give a finite number, e.g. threshold = 0.05.")
    if not 0 <= float(method["threshold"]) <= 10:
        raise ValueError(f"Hypothesis {name!r}: threshold {method['threshold']} is out of range; use a normalized effect in [0, 10].")
    for key, low in (("n", 1), ("bootstrap", 1), ("seed", 0)):
        value = method[key]
        if value is None and key == "n":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"Hypothesis {name!r}: {key} = {value!r}; give an integer >= {low}.")
    if method["metric"] is not None and method["metric"] not in METRICS:
        raise ValueError(f"Hypothesis {name!r}: metric {method['metric']!r}; choose one of {', '.join(METRICS)}.")
    fixed = {"granularity": "edge", "positions": "task", "aggregation": "mean"}
    for key, supported in fixed.items():
        if method[key] != supported:
            raise ValueError(f"Hypothesis {name!r}: {key} = {method[key]!r} is not supported yet; use {key} = \"{supported}\".")


def _parse_claim(name: str, index: int, raw: Any) -> Claim:
    """Validate one [[claim]] table."""
    where = f"Hypothesis {name!r}, claim {index + 1}"
    if not isinstance(raw, dict) or "kind" not in raw:
        raise ValueError(f"{where}: each [[claim]] needs a kind ({', '.join(CLAIM_KEYS)}).")
    kind = raw["kind"]
    if kind not in CLAIM_KEYS:
        raise ValueError(f"{where}: unknown claim kind {kind!r}; choose one of {', '.join(CLAIM_KEYS)}.")
    required, optional = CLAIM_KEYS[kind]
    params = {k: v for k, v in raw.items() if k not in ("kind", "name")}
    missing, extra = required - set(params), set(params) - required - optional
    if missing or extra:
        raise ValueError(f"{where} ({kind}): missing keys {sorted(missing)}, unknown keys {sorted(extra)}; "
                         f"a {kind} claim takes {sorted(required)} and optionally {sorted(optional)}.")
    if kind == "effect" and ("edge" in params) == ("node" in params):
        raise ValueError(f"{where} (effect): give exactly one of edge = \"SRC->DEST\" or node = \"L1H0\".")
    if kind == "head_role":
        _check_role(where, params)
    for key in ("min", "max", "min_effect"):
        value = params.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{where}: {key} must be a finite number, got {value!r}.")
    if kind in ("faithfulness", "virtual_ov") and not 0 <= params["min"] <= 1:
        raise ValueError(f"{where}: min = {params['min']} is out of range; a {kind} threshold lies in [0, 1].")
    label = raw.get("name") or f"{kind} {params.get('head') or params.get('edge') or params.get('node') or ''}".strip()
    return Claim(label, kind, params)


def _check_role(where: str, params: dict) -> None:
    """Validate a head_role claim's role and bounds."""
    role = params["role"]
    if role not in ROLES:
        raise ValueError(f"{where}: unknown role {role!r}; choose one of {', '.join(ROLES)}.")
    if ("min" in params) == ("max" in params):
        raise ValueError(f"{where}: give exactly one of min or max for role {role!r}.")
    bound = params.get("min", params.get("max"))
    low = -1 if role in ("copying", "negative_copy") else 0
    if not low <= bound <= 1:
        raise ValueError(f"{where}: bound {bound} is out of range [{low}, 1] for role {role!r}.")
    if role == "attends_to" and ("offset" in params) == ("token" in params):
        raise ValueError(f"{where}: role attends_to needs exactly one of offset = K (p attends to p - K) or token = ID.")
    if params.get("positions", "all") not in ("all", "read"):
        raise ValueError(f"{where}: positions must be 'all' or 'read'.")
