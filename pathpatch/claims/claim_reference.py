"""What each claim kind measures and what each key means: the one reference behind the README's claim table
and ``pathpatch check --explain [KIND]`` (a test keeps the README in step with it)."""

from pathpatch.claims.claim_keys import BOUNDED, CLAIM_KEYS, COMMON, ROLES
from pathpatch.claims.expressions import NAMES as EXPRESSION_NAMES
from pathpatch.errors import InputError

# One row per claim kind: what it measures and an example line; the README's table and `check --explain`.
REFERENCE: tuple[tuple[str, str, str], ...] = (
    ("path", "weakest normalized effect of the path's hops; each hop must be in the circuit",
     'kind = "path", nodes = ["embed", "L0H0.v", "L0H0", "L1H0.v", "L1H0", "logits"], min_effect = 0.5'),
    ("effect", "normalized effect of one edge or of all of a node's outputs (abs_max: 'negligible')",
     'kind = "effect", edge = "embed->logits", abs_max = 0.05'),
    ("faithfulness", "share of clean - corrupt the circuit alone recovers (direction = \"denoise\"), or loses when only it is "
     "corrupted (\"noise\"); default: [method]'s direction",
     'kind = "faithfulness", direction = "denoise", min = 0.9'),
    ("head_role previous_token / attends_to", "attention mass from the claim's positions to p - offset, a token, a set, or a data rule",
     'kind = "head_role", head = "L0H0", role = "attends_to", to = "smallest_larger", among = [0, 1, 2], min = 0.5'),
    ("head_role attends_to, an expression", "attention mass on the positions an expression over tok, pos, dest, answer and the task's "
     "features picks; from picks destinations, where keeps prompts",
     'kind = "head_role", head = "L1H0", role = "attends_to", to = "pos == tok[dest]", where = "answer > 2", min = 0.8'),
    ("head_role several heads, virtual attention", "attention of several heads summed (combine = \"mean\": averaged), or read "
     "through earlier heads: the product of their patterns",
     'kind = "head_role", heads = ["L1H0", "L1H1"], through = "L0H0", role = "attends_to", offset = 2, min = 0.8'),
    ("head_role uniform", "total-variation distance of attention rows from uniform",
     'kind = "head_role", head = "L0H1", role = "uniform", max = 0.2'),
    ("head_role induction", "attention to the token after the earlier copy, on repeated random tokens",
     'kind = "head_role", head = "L1H0", role = "induction", min = 0.5'),
    ("head_role copying / negative_copy", "eigenvalue copying score of the OV circuit (on a token subset with tokens); "
     "negative_copy reports its negation, a strength",
     'kind = "head_role", head = "L0H0", role = "copying", tokens = {from = 28, to = 37}, min = 0.7'),
    ("composition", "Q/K/V composition score between two heads (weights)",
     'kind = "composition", src = "L0H0", dest = "L1H0", type = "v", min = 0.3'),
    ("virtual_ov", "diagonal top-1 accuracy of the heads' chained OV circuit (weights)",
     'kind = "virtual_ov", heads = ["L0H0", "L1H0"], min = 0.95'),
    ("ablation", "increase of the task loss when a head, or a neuron (node = \"MLP0.n5\"), is mean-ablated",
     'kind = "ablation", head = "L0H1", min = 1.0'),
    ("compare", "measure(a) - measure(b) by effect or ablation, above margin",
     'kind = "compare", a = "L0H1", b = "L0H0", by = "ablation", margin = 0.0'),
    ("rank", "the named nodes are the strongest of among: the share of them in the top, at least min (default 1: all of them)",
     'kind = "rank", nodes = ["L0H1", "L0H0"], among = ["L0H0", "L0H1", "L1H0"], by = "ablation", min = 0.5'),
    ("neuron", "a neuron's direct effect on the logit difference (or tokens), or its correlation with a task feature",
     'kind = "neuron", layer = 0, neuron = 5, correlates_with = "value", min = 0.5'),
    ("forced_attention", "task metric (default accuracy) with the heads' attention forced to p - offset: a simplified model",
     'kind = "forced_attention", heads = ["L0H0"], offset = 1, min = 0.75'),
    ("dla", "mean direct logit attribution (logit-difference units) of embed, a head, ATTN9 (a whole attention layer), MLP9 or bias",
     'kind = "dla", node = "L10H7", max = 0'),
    ('ov_rank', "share of a head's OV circuit in its top singular directions (squared singular values; weights)",
     'kind = "ov_rank", head = "L0H0", top = 1, min = 0.9'),
    ('qk_term', 'one QK term (embed or pos on each side): share of rows whose top score is on the diagonal, or of pairs [q, k] where k tops row q',
     'kind = "qk_term", head = "L0H0", query = "pos", key = "pos", pairs = [[2, 1], [3, 2]], min = 0.9'),
    ('geometry', "listed tokens' vectors in their top-2 principal plane: share whose angular neighbours are the tokens before and after them (a circle in order)",
     'kind = "geometry", of = "embed", tokens = [0, 1, 2, 3, 4, 5, 6], shape = "circle", min = 0.9'),
    ('fourier', 'share of the (un)embedding\'s squared norm over tokens 0..modulus-1 at the key frequencies, or of neuron activations / logits over the (a, b) input grid (of = "neurons" / "logits"); report = true lists the strongest',
     'kind = "fourier", modulus = 113, frequencies = [14, 35, 41, 42, 52], min = 0.8'),
    ('any / all', 'a group of claims: any passes when one part passes and fails when all fail; all passes when every part passes and fails when one fails; value: the share that pass',
     'kind = "any", claims = [{kind = "effect", node = "MLP0", min = 0.1}, {kind = "effect", node = "MLP1", min = 0.1}]'),
    ("metric", "the task's metric (e.g. the logit difference) on the clean (default) or corrupt prompts, unpatched",
     'kind = "metric", run = "clean", min = 1.0'),
)

KEY_MEANINGS = {
    "min": "at least (signed)", "max": "at most (signed: any negative value passes max = 0.05)", "abs_max": "|value| at most: negligible",
    "abs_min": "|value| at least: matters with either sign", "min_effect": "weakest hop's normalized effect at least",
    "report": "true: measure and record, never judge", "direction": "noise | denoise (default: [method]'s)",
    "edge": "SRC->DEST, optionally @POSITION", "node": "a node name (L1H0, MLP0, embed); a neuron MLP0.n5 in effect, ablation, compare, rank", "head": "a head (L1H0)",
    "heads": "a list of heads (head_role: their attention combined)", "nodes": "a list of node names", "role": " | ".join(ROLES),
    "offset": "attends_to/previous_token: p attends to p - offset", "token": "attends_to: a token id",
    "to": "attends_to: a list of positions, a rule, or an expression (see below)",
    "from": "destinations picked per prompt by an expression (instead of positions)", "where": "an expression keeping prompts (answer > 2)",
    "combine": "with heads: sum (default) | mean", "through": "an earlier head, or a list latest first: virtual attention", "among": "positions a rule may pick (head_role); candidates (rank)",
    "positions": "destinations: all | read | a list", "space": "copying: vocab | residual", "tokens": "ids [3, 5] or {from, to}: copying's subset; qk_term's rows and columns; geometry's points",
    "src": "the earlier head", "dest": "the later head", "type": "q | k | v", "a": "the node claimed stronger", "b": "the weaker node",
    "by": "effect | ablation", "margin": "measure(a) - measure(b) at least this", "layer": "the neuron's layer (fourier: the MLP read)", "neuron": "its index",
    "correlates_with": "a per-prompt feature of the task file", "top": "ov_rank: how many singular directions (default 1)",
    "query": "qk_term: embed | pos", "key": "qk_term: embed | pos", "pattern": "qk_term: diagonal", "pairs": "qk_term: [[q, k], ...]",
    "of": "embed | unembed | pos (fourier: default embed; also neurons | logits over the input grid)",
    "inputs": "fourier on neurons/logits: positions of the operands a, b (default [0, 1])", "neurons": "fourier: some neurons of the layer", "shape": "geometry: circle", "modulus": "fourier: tokens 0..modulus-1",
    "frequencies": "fourier: the key frequencies 1..modulus/2", "claims": "any/all: a list of claims as inline tables {kind = ..., ...}",
    "task": "a name from [tasks]: measure the claim on that task", "claim": "any/all over tasks: one claim as an inline table, measured on each of tasks", "tasks": "any/all: task names from [tasks]", "metric": "logit_diff | loss | accuracy | kl | mse", "run": "clean | corrupt",
}
ATTENTION_RULE_MEANINGS = {
    "smallest": "the position holding the smallest token (among 'among')", "largest": "the position holding the largest token",
    "smallest_larger": "the smallest token larger than the destination's", "largest_smaller": "the largest token smaller than the destination's",
    "mismatch": "positions where the clean and corrupt prompt differ", "same_token": "earlier positions holding the destination's token",
}


def explain(kind: str | None = None) -> str:
    """The claim reference as plain text (``pathpatch check --explain [KIND]``): every kind, or one kind's keys."""
    if kind is not None:
        return _explain_kind(kind)
    width = max(len(k) for k, _, _ in REFERENCE)
    lines = ["Claim kinds ([[claim]] tables; every kind also takes name, report = true, direction = \"noise\"|\"denoise\" and task = a [tasks] name):", ""]
    for k, meaning, example in REFERENCE:
        lines += [f"{k.ljust(width)}  {meaning}", f"{' ' * width}  {example}"]
    lines += ["", "Bounds: min (at least), max (at most; signed), abs_max (|value| at most: negligible), abs_min (|value| at least).",
              "Verdicts: pass when the 95% interval lies on the right side of the bound, fail when it lies on the wrong side,",
              "inconclusive when it straddles the bound (exit code 4 when nothing fails but something is inconclusive).",
              "", "Positions: path and effect claims may name a node or edge at a position label of the task",
              '(nodes = ["embed@a2", "L0H0.v@a2", "L0H0@MID", "L1H0.v@MID", "L1H0@END", "logits@END"], edge = "L0H0->L1H0.v@a1");',
              'granularity = "position" in [method] checks them against a position-aware circuit.',
              "", "pathpatch check --explain KIND lists one kind's keys."]
    return "\n".join(lines)


def _explain_kind(kind: str) -> str:
    """One kind's meaning, example, required and optional keys (and the attention rules for head_role)."""
    if kind not in CLAIM_KEYS:
        raise InputError(f"--explain {kind!r}: unknown claim kind; choose one of {', '.join(CLAIM_KEYS)}.")
    required, optional = CLAIM_KEYS[kind]
    lines = [f"{kind}:"]
    lines += [f"  {meaning}\n    {example}" for k, meaning, example in REFERENCE if kind in k.replace(",", " ").split()]
    for title, keys in (("required", sorted(required)), ("optional", sorted(optional | COMMON))):
        lines += ["", f"  {title} keys:"] + [f"    {key}: {KEY_MEANINGS.get(key, '')}" for key in keys]
    if kind in BOUNDED:
        lines += ["", "  one bound of min, max, abs_min, abs_max (or report = true)"]
    if kind == "head_role":
        lines += ["", "  attention rules for to = \"RULE\":"] + [f"    {rule}: {text}" for rule, text in ATTENTION_RULE_MEANINGS.items()]
        lines += ["", "  expressions for to, from and where (evaluated per prompt, never by Python's eval):"]
        lines += [f"    {name}: {text}" for name, text in EXPRESSION_NAMES.items()]
        lines += ["    a task feature by its name (or features.NAME)",
                  "    + - * // %, comparisons, and or not, abs() min() max() where(c, a, b) cumsum(x) (running sum over positions)",
                  "    a number means the position it names: to = \"tok[dest]\" is to = \"pos == tok[dest]\""]
    return "\n".join(lines)
