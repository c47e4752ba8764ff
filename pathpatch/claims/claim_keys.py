"""What a claim may say: each kind's keys, their types and ranges, and the checks a claim passes when a file is read.

``CLAIM_KEYS`` maps each kind to its required and optional keys; ``validate_claim`` refuses a claim whose keys,
types, bound or expressions cannot describe a measurement (exit 2 on the command line, naming the file's claim
and the fix); ``value_range`` is the range of each kind's measure, so a bound that every value passes (or none
does) is refused. Groups (``any``/``all``) validate each part as a claim of its own. ``hypotheses`` reads files
into claims; ``claim_reference`` explains these keys; ``checks`` measures the claims.
"""

import math
from typing import Any

from pathpatch.claims.verdicts import BOUNDS, QUANTIFIERS
from pathpatch.errors import InputError
from pathpatch.vocabulary import DIRECTIONS, METRICS

COMMON = {"report", "direction", "task"}  # every kind: report = true (never judged); direction = noise | denoise; task = a [tasks] name
B = set(BOUNDS)  # min, max, abs_min, abs_max: one of them per bounded claim
CLAIM_KEYS: dict[str, tuple[set[str], set[str]]] = {
    # kind: (required keys, optional keys), besides name and kind
    "path": ({"nodes", "min_effect"}, set()),
    "effect": (set(), {"edge", "node"} | B),
    "faithfulness": (set(), B),
    "head_role": ({"role"}, {"head", "heads", "combine", "through", "offset", "token", "to", "from", "where", "among", "positions",
                             "space", "tokens"} | B),
    "composition": ({"src", "dest", "type"}, B),
    "virtual_ov": ({"heads"}, B),
    "ablation": (set(), {"head", "node"} | B),
    "compare": ({"a", "b"}, {"by", "margin"}),
    "rank": ({"nodes", "among"}, {"by", "min"}),
    "neuron": ({"layer", "neuron"}, {"tokens", "correlates_with"} | B),
    "forced_attention": ({"heads"}, {"offset", "positions", "metric"} | B),
    "dla": ({"node"}, B),
    "ov_rank": ({"head"}, {"top", "space"} | B),
    "qk_term": ({"head", "query", "key"}, {"pattern", "pairs", "tokens"} | B),
    "geometry": ({"of", "tokens", "shape"}, B),
    "fourier": ({"modulus"}, {"of", "frequencies", "layer", "neurons", "inputs"} | B),
    "any": (set(), {"claims", "claim", "tasks"}),
    "all": (set(), {"claims", "claim", "tasks"}),
    "metric": (set(), {"run"} | B),
}
BOUNDED = ("effect", "faithfulness", "head_role", "composition", "virtual_ov", "ablation", "neuron", "forced_attention", "dla", "metric",
           "ov_rank", "qk_term", "geometry", "fourier")
BOUND_KEYS = ("min", "max", "abs_min", "abs_max", "min_effect")
STRING_KEYS = {"edge", "node", "head", "src", "dest", "role", "type", "space", "a", "b", "by", "correlates_with", "metric", "direction", "run",
               "combine", "query", "key", "pattern", "of", "shape", "task"}
EXAMPLES = {"edge": "L0H0->L1H0.v", "node": "L1H0", "head": "L1H0", "src": "L0H0", "dest": "L1H0", "role": "previous_token", "type": "v",
            "positions": "all", "space": "vocab", "nodes": '["embed", "L0H0.v", "L0H0", "logits"]', "heads": '["L0H0", "L1H0"]',
            "a": "L0H1", "b": "L0H0", "by": "effect", "correlates_with": "value", "metric": "accuracy", "direction": "denoise",
            "among": '["L0H0", "L0H1"]', "run": "clean", "combine": "sum", "query": "embed", "key": "pos", "pattern": "diagonal",
            "of": "embed", "shape": "circle", "task": "carry"}
ROLES = ("previous_token", "attends_to", "induction", "copying", "negative_copy", "uniform")
ATTENTION_RULES = ("smallest", "largest", "smallest_larger", "largest_smaller", "mismatch", "same_token")
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
    if kind == "ablation" and ("head" in params) == ("node" in params):
        raise InputError(f"{where} (ablation): give exactly one of head = \"L0H1\" or node = \"MLP0.n5\" (a neuron).")
    if kind == "effect" and ("edge" in params) == ("node" in params):
        raise InputError(f"{where} (effect): give exactly one of edge = \"SRC->DEST\" or node = \"L1H0\".")
    if kind == "head_role":
        _check_role(where, params)
    if kind == "metric" and params.get("run", "clean") not in ("clean", "corrupt"):
        raise InputError(f"{where} (metric): run = {params['run']!r}; choose \"clean\" (default) or \"corrupt\".")
    if kind == "dla" and "@" in params["node"]:
        raise InputError(f"{where} (dla): node = {params['node']!r} names a position; DLA is read where the task's metric reads, "
                         "so drop the '@...' (e.g. node = \"L9H1\").")
    if kind in ("ov_rank", "qk_term", "geometry", "fourier"):
        _check_structure(where, kind, params)
    if kind in QUANTIFIERS:
        _check_group(where, kind, params)
    if kind == "compare" and params["a"] == params["b"]:
        raise InputError(f"{where} (compare): a and b are both {params['a']!r}; a claim that a node beats itself says nothing, "
                         "name two different nodes.")


def value_range(kind: str, params: dict) -> tuple[float, float] | None:
    """The values a claim's measure can take, where bounded (attention mass, scores, correlations), else None."""
    role = params.get("role")
    if kind == "head_role":
        summed = len(params.get("heads", [])) if params.get("combine", "sum") == "sum" else 1
        return (-1.0, 1.0) if role in ("copying", "negative_copy") else (0.0, float(max(1, summed)))
    if kind in ("virtual_ov", "composition", "rank", "ov_rank", "qk_term", "geometry", "fourier"):
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
        if not isinstance(params["to"], str):
            raise InputError(f"{where} ({kind}): to = {params['to']!r:.80}; give a list of positions, one of {', '.join(ATTENTION_RULES)}, "
                             "or an expression such as \"pos == tok[dest]\".")
        _expression(where, kind, params["to"], "to")
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


def part_tables(params: dict) -> list[dict]:
    """A group's parts as claim tables: ``claims``, or ``claim`` once per task of ``tasks`` (named after the task)."""
    if "claims" in params:
        return list(params["claims"])
    return [{**params["claim"], "task": task, "name": f"{params['claim'].get('name') or params['claim']['kind']} on {task}"}
            for task in params["tasks"]]


def _check_group(where: str, kind: str, params: dict) -> None:
    """An ``any``/``all`` group: a list of at least two claims, or one claim over a list of tasks; each part valid, none only reported."""
    if ("claims" in params) == ("claim" in params) or ("claim" in params) != ("tasks" in params):
        raise InputError(f"{where} ({kind}): give claims = [{{...}}, {{...}}] (a claim per part), or claim = {{...}} with tasks = [\"a\", \"b\"] "
                         "(the claim on each task: for some task / for every task).")
    if "tasks" in params and (not _str_list(params["tasks"]) or len(params["tasks"]) < 2 or not isinstance(params["claim"], dict)
                              or "kind" not in params["claim"]):
        raise InputError(f"{where} ({kind}): tasks = {params['tasks']!r:.80} with claim = {params['claim']!r:.80}; give at least two "
                         "task names from [tasks] and one claim as an inline table with its kind.")
    parts = params.get("claims", [])
    if "claims" in params and (not isinstance(parts, list) or len(parts) < 2 or not all(isinstance(p, dict) and "kind" in p for p in parts)):
        raise InputError(f"{where} ({kind}): claims = {parts!r:.80}; give a list of at least two claims as inline tables, "
                         'e.g. claims = [{kind = "effect", node = "MLP0", min = 0.1}, {kind = "effect", node = "MLP1", min = 0.1}].')
    for i, part in enumerate(part_tables(params)):
        inner = f"{where} ({kind}), part {i + 1}"
        if part.get("report"):
            raise InputError(f"{inner}: report = true measures without judging, so it cannot count toward {kind}; drop it.")
        if not isinstance(part.get("name", ""), str):
            raise InputError(f"{inner}: name = {part['name']!r}; give the part's label as a string in quotes.")
        validate_claim(inner, part["kind"], {k: v for k, v in part.items() if k not in ("kind", "name")})


def _check_structure(where: str, kind: str, params: dict) -> None:
    """Validate the keys of the weight-structure claims (``graphs.structure``)."""
    for key in ("top", "modulus"):
        if key in params and (isinstance(params[key], bool) or not isinstance(params[key], int) or params[key] < 1):
            raise InputError(f"{where} ({kind}): {key} = {params[key]!r}; give an integer >= 1.")
    for key in ("frequencies", "tokens", "neurons", "inputs"):
        if key in params and not (_int_list(params[key]) and min(params[key]) >= 0) and not (key == "tokens" and isinstance(params[key], dict)):
            raise InputError(f"{where} ({kind}): {key} = {params[key]!r:.80}; give a list of integers >= 0.")
    allowed = {"query": ("embed", "pos"), "key": ("embed", "pos"), "pattern": ("diagonal",),
               "of": ("embed", "unembed", "pos", "neurons", "logits") if kind == "fourier" else ("embed", "unembed", "pos"),
               "shape": ("circle",)}
    for key, values in allowed.items():
        if key in params and params[key] not in values:
            raise InputError(f"{where} ({kind}): {key} = {params[key]!r}; choose one of {', '.join(values)}.")
    if kind == "qk_term":
        pairs = params.get("pairs")
        if ("pattern" in params) == (pairs is not None):
            raise InputError(f"{where} (qk_term): give exactly one of pattern = \"diagonal\" or pairs = [[q, k], ...] (k should top row q).")
        if pairs is not None and not (isinstance(pairs, list) and pairs and all(_int_list(pair) and len(pair) == 2 for pair in pairs)):
            raise InputError(f"{where} (qk_term): pairs = {pairs!r:.80}; give a list of [query, key] index pairs, e.g. [[3, 4], [4, 5]].")
    if kind == "fourier" and (params.get("of") == "neurons") != ("layer" in params):
        raise InputError(f"{where} (fourier): layer = L goes with of = \"neurons\" (the MLP whose neurons are read), and of = \"neurons\" needs it.")
    if kind == "fourier" and ("neurons" in params or "inputs" in params) and params.get("of") not in ("neurons", "logits"):
        raise InputError(f"{where} (fourier): neurons and inputs read the input grid; use them with of = \"neurons\" or \"logits\".")
    if "inputs" in params and len(params["inputs"]) != 2:
        raise InputError(f"{where} (fourier): inputs = {params['inputs']}; give the two positions of the operands, e.g. inputs = [0, 1].")
    if kind == "fourier" and "frequencies" not in params and not params.get("report"):
        raise InputError(f"{where} (fourier): name the key frequencies (frequencies = [14, 35]) to judge them, or set report = true "
                         "to list the strongest ones first.")


def claim_heads(params: dict) -> list[str]:
    """The head names a head_role claim measures: ``head``, or the list ``heads``."""
    return [params["head"]] if "head" in params else list(params["heads"])


def _expression(where: str, kind: str, text: object, key: str) -> frozenset[str]:
    """Parse an expression key now, so a malformed one is refused before any model runs; return the names it reads."""
    from pathpatch.claims.expressions import parse

    try:
        return parse(text, key).names
    except InputError as err:
        raise InputError(f"{where} ({kind}): {err}") from None


def _check_attention_keys(where: str, params: dict) -> None:
    """Validate who a head_role claim measures (head or heads, combine, through) and its from/where expressions."""
    role = params["role"]
    if ("head" in params) == ("heads" in params):
        raise InputError(f"{where}: give exactly one of head = \"L1H0\" or heads = [\"L1H0\", \"L1H1\"] (their attention summed).")
    several = ("heads" in params and len(params["heads"]) > 1) or "through" in params
    if several and role not in ("attends_to", "previous_token"):
        raise InputError(f"{where}: heads = [...] and through = ... combine attention patterns; use them with role attends_to or "
                         f"previous_token, not {role}.")
    if "combine" in params and (params["combine"] not in ("sum", "mean") or "heads" not in params):
        raise InputError(f"{where}: combine = {params['combine']!r}; with heads = [...] choose \"sum\" (default: the heads' attention "
                         "added up) or \"mean\".")
    through = params.get("through")
    if through is not None and not (isinstance(through, str) and through.strip()) and not _str_list(through):
        raise InputError(f"{where}: through = {through!r:.80}; give an earlier head (\"L0H0\") or a list of earlier heads, latest first.")
    if "from" in params:
        if role not in ("attends_to", "previous_token"):
            raise InputError(f"{where}: from = ... picks the destinations whose attention targets count; use it with role attends_to or "
                             f"previous_token, not {role} (which takes positions = [...]).")
        if "positions" in params:
            raise InputError(f"{where}: give one of positions = [...] or from = \"EXPRESSION\" for the destinations, not both.")
        _expression(where, "head_role", params["from"], "from")
    if "where" in params:
        if role in ("induction", "copying", "negative_copy"):
            raise InputError(f"{where}: where = ... keeps prompts of the task; role {role} does not read the task's prompts "
                             "(induction runs repeated random tokens, copying reads the weights), so drop it.")
        reads = _expression(where, "head_role", params["where"], "where") & {"pos", "dest", "tok", "corrupt_tok"}
        if reads:
            raise InputError(f"{where}: where = {params['where']!r} reads {', '.join(sorted(reads))}; a where filter keeps or drops a "
                             "whole prompt, so it may read answer, n, features and tokens at fixed positions (tok[0]), not pos, dest or tok.")


def _check_role(where: str, params: dict) -> None:
    """Validate a head_role claim's role and bounds."""
    role = params["role"]
    if role not in ROLES:
        raise InputError(f"{where}: unknown role {role!r}; choose one of {', '.join(ROLES)}.")
    _check_attention_keys(where, params)
    targets = [k for k in ("offset", "token", "to") if k in params]
    if role == "attends_to" and len(targets) != 1:
        raise InputError(f"{where}: role attends_to needs exactly one of offset = K (p attends to p - K), token = ID, "
                         f"or to = [positions] / a rule ({', '.join(ATTENTION_RULES)}); got {targets or 'none'}.")
    if "tokens" in params and role not in ("copying", "negative_copy"):
        raise InputError(f"{where}: tokens = ... limits a copying score; use it with role copying or negative_copy.")
