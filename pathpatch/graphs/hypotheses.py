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
    granularity = "edge"      # edge: edges over all positions | position: an edge at each position (L0H0->L1H0.v@END)
    positions = "task"        # the metric reads the task's answer positions
    aggregation = "mean"      # metric averaged over prompts and read positions
    n = 64                    # prompts (default: 64 generated, or every prompt of a file)
    seed = 0                  # data seed (and bootstrap seed)
    bootstrap = 200           # resamples of prompts for confidence intervals
    steps = 10                # eap-ig: interpolation steps
    recheck = 50              # eap, eap-ig: strongest attributed edges re-scored exactly before pruning
    both_directions = false   # the circuit: also keep edges only denoising (or noising) shows (discover's default: true)

    [[claim]]
    name = "V-composition path"
    kind = "path"
    nodes = ["embed", "L0H0.v", "L0H0", "L1H0.v", "L1H0", "logits"]
    min_effect = 0.5

Every bounded claim takes one bound (``graphs.verdicts``): ``min = X`` (at least X), ``max = X`` (at most X;
signed, so a negative value passes), ``abs_max = X`` (|value| <= X: negligible) or ``abs_min = X`` (|value| >= X);
it passes when its 95% interval lies on the right side, fails when it lies on the wrong side, and is
inconclusive otherwise. ``REFERENCE`` describes each kind and ``explain(kind)`` lists its keys
(``pathpatch check --explain KIND``).
"""

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pathpatch.errors import InputError
from pathpatch.factories import parse_factory
from pathpatch.files import read_text_limited
from pathpatch.graphs.verdicts import BOUNDS
from pathpatch.models.tasks import METRICS
from pathpatch.settings import CORRUPTIONS, DEFAULT_CORRUPTION, DEFAULT_DIRECTION, DEFAULT_THRESHOLD, DIRECTIONS

COMMON = {"report", "direction"}  # every kind: report = true (measure, never judge); direction = noise | denoise
B = set(BOUNDS)  # min, max, abs_min, abs_max: one of them per bounded claim
CLAIM_KEYS: dict[str, tuple[set[str], set[str]]] = {
    # kind: (required keys, optional keys), besides name and kind
    "path": ({"nodes", "min_effect"}, set()),
    "effect": (set(), {"edge", "node"} | B),
    "faithfulness": (set(), B),
    "head_role": ({"head", "role"}, {"offset", "token", "to", "among", "positions", "space", "tokens"} | B),
    "composition": ({"src", "dest", "type"}, B),
    "virtual_ov": ({"heads"}, B),
    "ablation": ({"head"}, B),
    "compare": ({"a", "b"}, {"by", "margin"}),
    "rank": ({"nodes", "among"}, {"by"}),
    "neuron": ({"layer", "neuron"}, {"tokens", "correlates_with"} | B),
    "forced_attention": ({"heads"}, {"offset", "positions", "metric"} | B),
    "dla": ({"node"}, B),
    "metric": (set(), {"run"} | B),
}
BOUNDED = ("effect", "faithfulness", "head_role", "composition", "virtual_ov", "ablation", "neuron", "forced_attention", "dla", "metric")
BOUND_KEYS = ("min", "max", "abs_min", "abs_max", "min_effect")
STRING_KEYS = {"edge", "node", "head", "src", "dest", "role", "type", "space", "a", "b", "by", "correlates_with", "metric", "direction", "run"}
EXAMPLES = {"edge": "L0H0->L1H0.v", "node": "L1H0", "head": "L1H0", "src": "L0H0", "dest": "L1H0", "role": "previous_token", "type": "v",
            "positions": "all", "space": "vocab", "nodes": '["embed", "L0H0.v", "L0H0", "logits"]', "heads": '["L0H0", "L1H0"]',
            "a": "L0H1", "b": "L0H0", "by": "effect", "correlates_with": "value", "metric": "accuracy", "direction": "denoise",
            "among": '["L0H0", "L0H1"]'}
ROLES = ("previous_token", "attends_to", "induction", "copying", "negative_copy", "uniform")
ATTENTION_RULES = ("smallest", "largest", "smallest_larger", "largest_smaller", "mismatch", "same_token")

GRANULARITY = {"edge": "component", "component": "component", "position": "position"}  # file value -> DiscoverConfig's
METHOD_DEFAULTS: dict[str, Any] = {
    "scoring": "exact", "direction": DEFAULT_DIRECTION, "corruption": DEFAULT_CORRUPTION, "task_corruption": None,
    "threshold": DEFAULT_THRESHOLD, "relative": True,
    "metric": None, "granularity": "edge", "positions": "task", "aggregation": "mean",
    "n": None, "seed": 0, "bootstrap": 200, "steps": 10, "recheck": 50, "both_directions": False,
}


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

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise InputError(f"Claim name {self.name!r}; give a string.")
        validate_claim(f"Claim {self.name!r}", self.kind, self.params)


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

    def __post_init__(self) -> None:
        if not isinstance(self.method, dict):
            raise InputError(f"Hypothesis {self.name!r}: method = {self.method!r}; give a dict of settings (METHOD_DEFAULTS's keys).")
        method = {**METHOD_DEFAULTS, **self.method}
        unknown = set(method) - set(METHOD_DEFAULTS)
        if unknown:
            raise InputError(f"Hypothesis {self.name!r}: unknown method settings {sorted(unknown)}; known: {', '.join(METHOD_DEFAULTS)}.")
        _check_method(self.name, method)
        object.__setattr__(self, "method", method)  # every setting spelled out, as the report records it
        if not self.claims or not all(isinstance(c, Claim) for c in self.claims):
            raise InputError(f"Hypothesis {self.name!r}: claims = {self.claims!r:.80}; give a non-empty tuple of Claim objects.")


def load_hypothesis(path: "str | Path") -> Hypothesis:
    """Read and validate a hypothesis TOML file.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Malformed TOML, unknown claim kinds or keys, thresholds out of range.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No hypothesis file at {path}; see hypotheses/*.toml for examples.")
    text = read_text_limited(path, "hypothesis")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"{path} is not valid TOML: {err}. Fix the syntax (strings in quotes, [[claim]] tables).") from err
    except RecursionError:
        raise InputError(f"{path} nests tables or arrays deeper than TOML can be read; a hypothesis file is flat (see hypotheses/*.toml).") from None
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
    if not isinstance(data, dict):
        raise InputError(f"Hypothesis {name!r} is a {type(data).__name__}; give the parsed TOML table (a dict).")
    unknown = set(data) - {"model", "task", "model_config", "method", "claim", "name", "description"}
    if unknown:
        raise InputError(f"Hypothesis {name!r}: unknown top-level keys {sorted(unknown)}; expected model, task, [method], [[claim]].")
    for key in ("model", "task"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise InputError(f"Hypothesis {name!r}: '{key}' must be a non-empty string, e.g. {key} = \"permute\" or {key} = \"my_model/\".")
    if "model_config" in data and not isinstance(data["model_config"], str):
        raise InputError(f"Hypothesis {name!r}: 'model_config' must be a string path, e.g. model_config = \"config.json\".")
    for key in ("name", "description"):
        if key in data and not isinstance(data[key], str):
            raise InputError(f"Hypothesis {name!r}: '{key}' = {data[key]!r}; give a string in quotes.")
    if not isinstance(data.get("method", {}), dict):
        raise InputError(f"Hypothesis {name!r}: 'method' = {data['method']!r}; give a [method] table of settings.")
    method = {**METHOD_DEFAULTS, **data.get("method", {})}
    bad = set(method) - set(METHOD_DEFAULTS)
    if bad:
        raise InputError(f"Hypothesis {name!r}: unknown [method] keys {sorted(bad)}; known: {', '.join(METHOD_DEFAULTS)}.")
    _check_method(name, method)
    claims = data.get("claim", [])
    if not isinstance(claims, list):
        raise InputError(f"Hypothesis {name!r}: 'claim' = {claims!r:.60}; write claims as [[claim]] tables.")
    if not claims:
        raise InputError(f"Hypothesis {name!r} has no claims; add at least one [[claim]] table.")
    config = resolve_spec(data["model_config"], base) if "model_config" in data else None
    return Hypothesis(data.get("name", name), resolve_spec(data["model"], base), resolve_spec(data["task"], base), method,
                      tuple(_parse_claim(name, i, c) for i, c in enumerate(claims)), config)


def _check_method(name: str, method: dict) -> None:
    """Validate the pinned methodology."""
    for key in ("scoring", "direction", "corruption", "granularity", "positions", "aggregation", "task_corruption", "metric"):
        if not isinstance(method[key], str) and not (method[key] is None and METHOD_DEFAULTS[key] is None):
            raise InputError(f"Hypothesis {name!r}: {key} = {method[key]!r}; give a string in quotes, e.g. {key} = \"{METHOD_DEFAULTS[key] or 'values'}\".")
    if method["scoring"] not in ("exact", "eap", "eap-ig", "acdc"):
        raise InputError(f"Hypothesis {name!r}: scoring {method['scoring']!r}; choose exact, eap, eap-ig or acdc.")
    if method["corruption"] not in CORRUPTIONS:
        raise InputError(f"Hypothesis {name!r}: corruption {method['corruption']!r}; choose paired, resample, mean or zero.")
    if method["direction"] not in DIRECTIONS:
        raise InputError(f"Hypothesis {name!r}: direction {method['direction']!r}; choose noise or denoise.")
    for key in ("relative", "both_directions"):
        if not isinstance(method[key], bool):
            raise InputError(f"Hypothesis {name!r}: {key} = {method[key]!r}; give true or false (a TOML boolean, no quotes).")
    threshold = method["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise InputError(f"Hypothesis {name!r}: threshold = {threshold!r}; give a finite number, e.g. threshold = 0.05.")
    if not 0 <= float(method["threshold"]) <= 10:
        raise InputError(f"Hypothesis {name!r}: threshold {method['threshold']} is out of range; use a normalized effect in [0, 10].")
    for key, low in (("n", 1), ("bootstrap", 1), ("seed", 0), ("steps", 1), ("recheck", 1)):
        value = method[key]
        if value is None and key == "n":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(f"Hypothesis {name!r}: {key} = {value!r}; give an integer >= {low}.")
    if method["metric"] is not None and method["metric"] not in METRICS:
        raise InputError(f"Hypothesis {name!r}: metric {method['metric']!r}; choose one of {', '.join(METRICS)}.")
    if method["granularity"] not in GRANULARITY:
        raise InputError(f"Hypothesis {name!r}: granularity = {method['granularity']!r}; use \"edge\" (edges over all positions) "
                         "or \"position\" (position-aware edges, e.g. L0H0->L1H0.v@END).")
    fixed = {"positions": "task", "aggregation": "mean"}
    for key, supported in fixed.items():
        if method[key] != supported:
            raise InputError(f"Hypothesis {name!r}: {key} = {method[key]!r} is not supported yet; use {key} = \"{supported}\".")


def _parse_claim(name: str, index: int, raw: Any) -> Claim:
    """Validate one [[claim]] table."""
    where = f"Hypothesis {name!r}, claim {index + 1}"
    if not isinstance(raw, dict) or "kind" not in raw:
        raise InputError(f"{where}: each [[claim]] needs a kind ({', '.join(CLAIM_KEYS)}).")
    if not isinstance(raw.get("name", ""), str):
        raise InputError(f"{where}: name = {raw['name']!r}; give the claim's label as a string in quotes.")
    kind, params = raw["kind"], {k: v for k, v in raw.items() if k not in ("kind", "name")}
    validate_claim(where, kind, params)
    subject = params.get("head") or params.get("edge") or params.get("node") or params.get("a") or ""
    label = raw.get("name") or f"{kind} {subject}".strip()
    return Claim(label, kind, params)


def validate_claim(where: str, kind: object, params: dict) -> None:
    """Check a claim's kind, keys, types, bound and ranges, naming ``where`` it came from."""
    if not isinstance(kind, str) or kind not in CLAIM_KEYS:
        raise InputError(f"{where}: unknown claim kind {kind!r}; choose one of {', '.join(CLAIM_KEYS)}.")
    if not isinstance(params, dict):
        raise InputError(f"{where}: the claim's keys are a {type(params).__name__}; give a dict of keys such as {{'head': 'L1H0', 'min': 0.5}}.")
    required, optional = CLAIM_KEYS[kind]
    optional = optional | COMMON
    missing, extra = required - set(params), set(params) - required - optional
    if missing or extra:
        raise InputError(f"{where} ({kind}): missing keys {sorted(missing)}, unknown keys {sorted(extra)}; "
                         f"a {kind} claim takes {sorted(required)} and optionally {sorted(optional)}.")
    _check_claim_types(where, kind, params)
    _check_new_keys(where, kind, params)
    given = [key for key in BOUNDS if key in params]
    if kind in BOUNDED and len(given) > 1 or (kind in BOUNDED and not given and not params.get("report")):
        raise InputError(f"{where} ({kind}): give exactly one bound of min, max, abs_min, abs_max (got {given or 'none'}); "
                         "or report = true to only record the value.")
    _check_range(where, kind, params)
    if kind == "effect" and ("edge" in params) == ("node" in params):
        raise InputError(f"{where} (effect): give exactly one of edge = \"SRC->DEST\" or node = \"L1H0\".")
    if kind == "head_role":
        _check_role(where, params)
    if kind == "metric" and params.get("run", "clean") not in ("clean", "corrupt"):
        raise InputError(f"{where} (metric): run = {params['run']!r}; choose \"clean\" (default) or \"corrupt\".")
    if kind == "dla" and "@" in params["node"]:
        raise InputError(f"{where} (dla): node = {params['node']!r} names a position; DLA is read where the task's metric reads, "
                         "so drop the '@...' (e.g. node = \"L9H1\").")
    if kind == "compare" and params["a"] == params["b"]:
        raise InputError(f"{where} (compare): a and b are both {params['a']!r}; a claim that a node beats itself says nothing, "
                         "name two different nodes.")


def value_range(kind: str, params: dict) -> tuple[float, float] | None:
    """The values a claim's measure can take, where bounded (attention mass, scores, correlations), else None."""
    role = params.get("role")
    if kind == "head_role":
        return (-1.0, 1.0) if role in ("copying", "negative_copy") else (0.0, 1.0)
    if kind in ("virtual_ov", "composition"):
        return (0.0, 1.0)
    if kind == "neuron" and "correlates_with" in params:
        return (-1.0, 1.0)
    if kind == "forced_attention" and params.get("metric", "accuracy") == "accuracy":
        return (0.0, 1.0)
    return None


def _check_range(where: str, kind: str, params: dict) -> None:
    """Refuse a bound that every possible value passes, or none does: it says nothing about the model."""
    span = value_range(kind, params)
    given = [key for key in BOUNDS if key in params]
    if params.get("role") == "negative_copy" and given and params[given[0]] < 0:
        raise InputError(f"{where}: {given[0]} = {params[given[0]]}; negative_copy measures a strength (the negated copying score), "
                         "so its bound lies in [0, 1] (min = 0.3: copies negatively at least that much); for a head that copies, "
                         "use role = \"copying\".")
    if kind == "faithfulness" and given and not 0 <= params[given[0]] <= 1:
        raise InputError(f"{where}: {given[0]} = {params[given[0]]} is out of range; a faithfulness bound lies in [0, 1] "
                         "(1: the circuit recovers all of clean - corrupt).")
    if span is None or not given:
        return
    key, bound = given[0], float(params[given[0]])
    low, high = span
    magnitude = max(abs(low), abs(high))
    vacuous = {"min": not low < bound <= high, "max": not low <= bound < high,
               "abs_max": not 0 <= bound < magnitude, "abs_min": not 0 < bound <= magnitude}[key]
    if vacuous:
        raise InputError(f"{where} ({kind}): {key} = {bound:g} is out of range: the measure lies in [{low:g}, {high:g}], so the "
                         f"claim would pass or fail whatever the model does; give a bound strictly inside that range.")


def _check_claim_types(where: str, kind: str, params: dict) -> None:
    """Check every claim key's type: strings, finite numbers (never booleans or NaN), integers, node lists."""
    for key in STRING_KEYS & params.keys():
        if not isinstance(params[key], str) or not params[key].strip():
            raise InputError(f"{where} ({kind}): {key} = {params[key]!r}; give a non-empty string in quotes, e.g. {key} = \"{EXAMPLES[key]}\".")
    for key in BOUND_KEYS:
        value = params.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputError(f"{where} ({kind}): {key} must be a finite number, got {value!r}.")
        if key.startswith("abs_") and value < 0:
            raise InputError(f"{where} ({kind}): {key} = {value}; a bound on |value| is >= 0 (e.g. {key} = 0.05).")
    for key, low in (("offset", None), ("token", 0)):
        value = params.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
            raise InputError(f"{where} ({kind}): {key} = {value!r}; give an integer{'' if low is None else f' >= {low}'} (no quotes, no decimal point).")
    for key, fewest in (("nodes", 2 if kind == "path" else 1), ("heads", 1)):
        value = params.get(key, ["x"] * fewest)
        if not isinstance(value, list) or len(value) < fewest or not all(isinstance(v, str) and v.strip() for v in value):
            raise InputError(f"{where} ({kind}): {key} = {value!r:.80}; give a list of at least {fewest} node names in quotes, "
                             f"e.g. {key} = {EXAMPLES[key]}.")
    for key, allowed in (("type", ("q", "k", "v")), ("space", ("vocab", "residual"))):
        if key in params and params[key] not in allowed:
            raise InputError(f"{where} ({kind}): {key} = {params[key]!r}; choose one of {', '.join(allowed)}.")


def _check_new_keys(where: str, kind: str, params: dict) -> None:
    """Check the keys of the richer claims: positions, to/among, tokens, by, direction, report, layer/neuron."""
    placed = kind in ("path", "effect") or (kind in ("compare", "rank") and params.get("by", "effect") == "effect")
    for key in ("head", "heads", "src", "dest", "a", "b", "nodes", "among"):
        names = params.get(key)
        names = names if isinstance(names, list) else [names]
        named = [n for n in names if isinstance(n, str) and "@" in n]
        if named and not placed:
            raise InputError(f"{where} ({kind}): {key} names a position ({named[0]!r}); only path and effect claims (and compare/rank "
                             f"by effect) measure at a position; drop the '@...' here.")
    if "positions" in params and params["positions"] not in ("all", "read") and not _int_list(params["positions"]):
        raise InputError(f"{where} ({kind}): positions = {params['positions']!r}; give \"all\", \"read\" or a list of integers.")
    if "to" in params and params["to"] not in ATTENTION_RULES and not _int_list(params["to"]):
        raise InputError(f"{where} ({kind}): to = {params['to']!r}; give a list of positions or one of {', '.join(ATTENTION_RULES)}.")
    if "among" in params and not (_int_list(params["among"]) if kind == "head_role" else _str_list(params["among"])):
        what = "a list of positions" if kind == "head_role" else "a list of node or edge names"
        raise InputError(f"{where} ({kind}): among = {params['among']!r:.80}; give {what}.")
    if kind == "rank" and not _str_list(params["nodes"]):
        raise InputError(f"{where} (rank): nodes = {params['nodes']!r:.80}; give a list of node or edge names.")
    tokens = params.get("tokens")
    if tokens is not None and not _int_list(tokens) and not (isinstance(tokens, dict) and set(tokens) == {"from", "to"}
                                                               and _int_list([tokens["from"], tokens["to"]]) and tokens["from"] <= tokens["to"]):
        raise InputError(f"{where} ({kind}): tokens = {tokens!r:.80}; give token ids [3, 5, 8] or a range {{from = 28, to = 37}}.")
    checks = {"by": ("effect", "ablation"), "direction": DIRECTIONS, "metric": METRICS}
    for key, allowed in checks.items():
        if key in params and params[key] not in allowed:
            raise InputError(f"{where} ({kind}): {key} = {params[key]!r}; choose one of {', '.join(allowed)}.")
    if "report" in params and not isinstance(params["report"], bool):
        raise InputError(f"{where} ({kind}): report = {params['report']!r}; give true or false (a TOML boolean, no quotes).")
    for key in ("layer", "neuron"):
        if key in params and (isinstance(params[key], bool) or not isinstance(params[key], int) or params[key] < 0):
            raise InputError(f"{where} ({kind}): {key} = {params[key]!r}; give an integer >= 0.")
    if "margin" in params and (isinstance(params["margin"], bool) or not isinstance(params["margin"], (int, float)) or not math.isfinite(params["margin"])):
        raise InputError(f"{where} ({kind}): margin = {params['margin']!r}; give a finite number.")


def _int_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v.strip() for v in value)


def _check_role(where: str, params: dict) -> None:
    """Validate a head_role claim's role and bounds."""
    role = params["role"]
    if role not in ROLES:
        raise InputError(f"{where}: unknown role {role!r}; choose one of {', '.join(ROLES)}.")
    targets = [k for k in ("offset", "token", "to") if k in params]
    if role == "attends_to" and len(targets) != 1:
        raise InputError(f"{where}: role attends_to needs exactly one of offset = K (p attends to p - K), token = ID, "
                         f"or to = [positions] / a rule ({', '.join(ATTENTION_RULES)}); got {targets or 'none'}.")
    if "tokens" in params and role not in ("copying", "negative_copy"):
        raise InputError(f"{where}: tokens = ... limits a copying score; use it with role copying or negative_copy.")
