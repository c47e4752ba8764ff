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

    [tasks]                   # further tasks: for claims that name one (task = "carry") or quantify over them
    carry = "carry.jsonl"

    [[claim]]
    name = "V-composition path"
    kind = "path"
    nodes = ["embed", "L0H0.v", "L0H0", "L1H0.v", "L1H0", "logits"]
    min_effect = 0.5

Every bounded claim takes one bound (``graphs.verdicts``): ``min = X`` (at least X), ``max = X`` (at most X;
signed, so a negative value passes), ``abs_max = X`` (|value| <= X: negligible) or ``abs_min = X`` (|value| >= X);
it passes when its 95% interval lies on the right side, fails when it lies on the wrong side, and is
inconclusive otherwise. ``claim_keys`` says which keys each kind takes and validates them;
``claim_reference.REFERENCE`` describes each kind and ``explain(kind)`` lists its keys (``pathpatch check --explain KIND``).
"""

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pathpatch.claims.claim_keys import CLAIM_KEYS, part_tables, validate_claim
from pathpatch.claims.verdicts import QUANTIFIERS
from pathpatch.errors import InputError, listed
from pathpatch.factories import parse_factory
from pathpatch.files import read_text_limited
from pathpatch.vocabulary import CORRUPTIONS, DEFAULT_CORRUPTION, DEFAULT_DIRECTION, DEFAULT_THRESHOLD, DIRECTIONS, METHODS, METRICS

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
        tasks: Further tasks by name (``[tasks]`` in the file), for claims that name one (``task = "carry"``)
            and for groups over tasks; their specs resolved like ``task``.
    """

    name: str
    model: str
    task: str
    method: dict = field(hash=False)
    claims: tuple[Claim, ...] = ()
    model_config: str | None = None
    tasks: dict = field(default_factory=dict, hash=False)

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
        if not isinstance(self.tasks, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in self.tasks.items()):
            raise InputError(f"Hypothesis {self.name!r}: tasks = {self.tasks!r:.80}; give a [tasks] table of names and task specs, "
                             'e.g. carry = "carry.jsonl".')
        unknown = sorted(named_tasks(self.claims) - set(self.tasks))
        if unknown:
            raise InputError(f"Hypothesis {self.name!r}: claims name tasks {listed(unknown)} that [tasks] does not define "
                             f"(it has {listed(sorted(self.tasks)) or 'none'}); add e.g. {unknown[0]} = \"file.jsonl\" under [tasks].")


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
    unknown = set(data) - {"model", "task", "model_config", "method", "claim", "name", "description", "tasks"}
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
    tasks = data.get("tasks", {})
    if not isinstance(tasks, dict) or not all(isinstance(v, str) and v.strip() for v in tasks.values()):
        raise InputError(f"Hypothesis {name!r}: [tasks] = {tasks!r:.80}; give names and task specs, e.g. carry = \"carry.jsonl\".")
    return Hypothesis(data.get("name", name), resolve_spec(data["model"], base), resolve_spec(data["task"], base), method,
                      tuple(_parse_claim(name, i, c) for i, c in enumerate(claims)), config,
                      {key: resolve_spec(spec, base) for key, spec in tasks.items()})


def _check_method(name: str, method: dict) -> None:
    """Validate the pinned methodology."""
    for key in ("scoring", "direction", "corruption", "granularity", "positions", "aggregation", "task_corruption", "metric"):
        if not isinstance(method[key], str) and not (method[key] is None and METHOD_DEFAULTS[key] is None):
            raise InputError(f"Hypothesis {name!r}: {key} = {method[key]!r}; give a string in quotes, e.g. {key} = \"{METHOD_DEFAULTS[key] or 'values'}\".")
    if method["scoring"] not in METHODS:
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
    heads = params.get("heads") if kind == "head_role" and isinstance(params.get("heads"), list) else None
    subject = params.get("head") or ("+".join(map(str, heads)) if heads else "") or params.get("edge") or params.get("node") or params.get("a") or ""
    label = raw.get("name") or f"{kind} {subject}".strip()
    return Claim(label, kind, params)


def group_parts(claim: "Claim") -> list["Claim"]:
    """The claims of an ``any``/``all`` group, each named ``GROUP / part N`` unless it has a name."""
    return [Claim(str(part.get("name") or f"{claim.name} / part {i + 1}"), part["kind"],
                  {k: v for k, v in part.items() if k not in ("kind", "name")}) for i, part in enumerate(part_tables(claim.params))]


def flat_claims(claims: "tuple[Claim, ...] | list[Claim]") -> list["Claim"]:
    """Every claim in ``claims``, the parts of groups (and of groups within them) in place of the groups."""
    return [part for claim in claims for part in (flat_claims(group_parts(claim)) if claim.kind in QUANTIFIERS else [claim])]


def flat_kinds(claims: "tuple[Claim, ...] | list[Claim]") -> set[str]:
    """Every claim kind in ``claims``, the parts of groups included."""
    return {claim.kind for claim in flat_claims(claims)}


def named_tasks(claims: "tuple[Claim, ...] | list[Claim]") -> set[str]:
    """The task names claims (and the parts of groups) measure on, besides the file's own task."""
    return {claim.params["task"] for claim in flat_claims(claims) if "task" in claim.params}


