"""Structure in the weights for hypothesis claims: OV rank, QK terms, token geometry and Fourier frequencies.

Every measure reads the weights the model applies (``weights.canonical``: norms folded, weights centred)
and is a number in [0, 1], so claims bound it with ``min``/``max`` and verdicts need no resampling:

- ``ov_rank``: the share of a head's OV circuit (``W_E W_V W_O W_U`` over the vocabulary, or ``W_V W_O``
  in the residual basis) carried by its top ``top`` singular directions: squared singular values over
  their sum (the "variance" a rank-``top`` approximation keeps). Near 1 for ``top = 1``: a rank-1 circuit.
- ``qk_term``: one term of a head's attention score, ``(X_q W_Q)(X_k W_K)^T`` with ``X`` the token
  embedding (``embed``) or the positional embedding (``pos``): a token x token (or position x position)
  matrix. ``pattern = "diagonal"``: the share of rows whose largest score is on the diagonal (a token
  attends to itself); ``pairs = [[q, k], ...]``: the share of listed pairs where ``k`` scores highest in
  row ``q``. ``tokens`` limits rows and columns to a subset.
- ``geometry``: the listed tokens' vectors (rows of the embedding, columns of the unembedding, or
  positional rows), centred and projected on their top two principal directions; the value is the
  share of tokens whose two angular neighbours in that plane are the tokens before and after it in the
  list (cyclically): 1 when the tokens lie on a circle in their order, as a modular-arithmetic model's
  answers do.
- ``fourier``: the share of the squared norm of the embedding (or unembedding) over tokens ``0..p-1``
  carried by the listed key frequencies of the discrete Fourier basis on ``p`` points (frequency ``k``
  and ``p - k`` are one frequency, cosine and sine; the constant term is left out); without
  ``frequencies`` (report only) the value is the share of the five strongest and the detail lists them,
  so a user can find the key frequencies first and then pin them. ``of = "neurons"`` (an MLP ``layer``, optionally
  some ``neurons``) or ``of = "logits"`` reads instead what the model computes on the task's prompts, which must
  be the full grid of operand pairs ``(a, b)`` at positions ``inputs``: the 2-D spectrum over ``(a, b)`` (its mean
  left out), and the share in components whose frequency on each axis is 0 or a key frequency.
"""

import torch
from torch import Tensor

from pathpatch.errors import InputError, listed
from pathpatch.names import Node, hook_name
from pathpatch.task.task import Task

SOURCES = ("embed", "pos")
VECTORS = ("embed", "unembed", "pos")
GRID = ("neurons", "logits")  # Fourier claims on what the model computes over the (a, b) input grid


def ov_top_share(model: torch.nn.Module, node: Node, top: int, space: str = "vocab") -> tuple[float, str]:
    """Share of the OV circuit's squared singular values in its top ``top`` ones, and the leading shares as text."""
    with torch.no_grad():
        ov = model.W_V[node.layer, node.head] @ model.W_O[node.layer, node.head]  # [d_model d_model]
        if space == "vocab":
            ov = model.W_E[: model.cfg.d_vocab_out] @ ov @ model.W_U
        squares = torch.linalg.svdvals(ov.double()) ** 2
    if not 1 <= top <= len(squares):
        raise InputError(f"top = {top}: {node.name}'s OV circuit has {len(squares)} singular values; give 1..{len(squares)}.")
    shares = squares / squares.sum()
    return float(shares[:top].sum()), "leading shares " + listed([f"{s:.3f}" for s in shares.tolist()], 4)


def qk_scores(model: torch.nn.Module, node: Node, query: str, key: str) -> Tensor:
    """The QK term ``[rows cols]`` of one head between two sources (``embed``: tokens, ``pos``: positions)."""
    inputs = {"embed": model.W_E, "pos": model.W_pos}
    for side, source in (("query", query), ("key", key)):
        if source not in inputs:
            raise InputError(f"{side} = {source!r}; a QK term reads {' or '.join(SOURCES)}.")
    with torch.no_grad():
        q = inputs[query] @ model.W_Q[node.layer, node.head]  # [rows d_head]
        k = inputs[key] @ model.W_K[node.layer, node.head]  # [cols d_head]
        return (q @ k.T).double()


def qk_share(scores: Tensor, pattern: str | None, pairs: "list[list[int]] | None", tokens: "list[int] | None") -> float:
    """Share of rows whose top score is on the diagonal, or of ``pairs`` ``[q, k]`` where ``k`` tops row ``q``."""
    index = torch.arange(min(scores.shape)) if tokens is None else torch.tensor(tokens)
    if int(index.max()) >= min(scores.shape) or int(index.min()) < 0:
        raise InputError(f"tokens {listed(index.tolist())}: the QK term has {scores.shape[0]} x {scores.shape[1]} entries; "
                         f"give indices below {min(scores.shape)}.")
    sub = scores[index][:, index]  # rows and columns of the subset
    where = {int(t): i for i, t in enumerate(index.tolist())}
    if pattern == "diagonal":
        return float((sub.argmax(-1) == torch.arange(len(index))).double().mean())
    wanted = []
    for q, k in pairs or []:
        if q not in where or k not in where:
            raise InputError(f"pairs entry [{q}, {k}] is outside the tokens the claim reads; list pairs of those tokens.")
        wanted.append(int(sub[where[q]].argmax()) == where[k])
    return sum(wanted) / len(wanted)


def vectors(model: torch.nn.Module, of: str, tokens: list[int]) -> Tensor:
    """The listed rows ``[token d_model]`` of the embedding, the unembedding (its columns) or the positional embedding."""
    table = {"embed": model.W_E, "unembed": model.W_U.T, "pos": model.W_pos}.get(of)
    if table is None:
        raise InputError(f"of = {of!r}; choose one of {', '.join(VECTORS)}.")
    bad = [t for t in tokens if not 0 <= t < table.shape[0]]
    if bad:
        raise InputError(f"tokens {listed(bad)} lie outside {of}'s rows 0..{table.shape[0] - 1}.")
    return table[torch.tensor(tokens)].detach().double()


def circle_order(points: Tensor) -> tuple[float, str]:
    """Share of points whose angular neighbours, in their top-2 principal plane, are the points before and after
    them in order (cyclically); and the plane's share of the variance as text."""
    n = points.shape[0]
    if n < 4:
        raise InputError(f"a circle claim needs at least 4 tokens (got {n}); three points always lie on a circle.")
    centred = points - points.mean(0)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    plane = centred @ vh[:2].T  # [n 2]
    angle = torch.atan2(plane[:, 1], plane[:, 0])
    order = torch.argsort(angle).tolist()
    rank = {point: i for i, point in enumerate(order)}
    good = 0
    for i in range(n):
        around = {order[(rank[i] - 1) % n], order[(rank[i] + 1) % n]}
        good += around == {(i - 1) % n, (i + 1) % n}
    share = float((s[:2] ** 2).sum() / (s**2).sum())
    return good / n, f"top-2 plane holds {share:.3f} of the variance"


def fourier_norms(model: torch.nn.Module, of: str, p: int) -> Tensor:
    """Squared norm ``[p // 2 + 1]`` of the (un)embedding of tokens ``0..p-1`` at each frequency ``0..p // 2``."""
    table = vectors(model, of, list(range(p)))  # [p d_model]
    spectrum = torch.fft.rfft(table, dim=0)  # [p//2+1 d_model]
    power = (spectrum.abs() ** 2).sum(-1)
    power[1 : (p + 1) // 2] *= 2  # k and p - k: the rfft keeps one of each pair
    return power


def fourier_share(model: torch.nn.Module, of: str, p: int, frequencies: "list[int] | None") -> tuple[float, str]:
    """Share of the squared norm at ``frequencies`` (the constant term left out), and the strongest ones as text."""
    if p < 3:
        raise InputError(f"modulus = {p}; a Fourier claim needs at least 3 tokens.")
    power = fourier_norms(model, of, p)[1:]  # frequency 1..p//2; the mean over tokens says nothing about frequencies
    total = float(power.sum())
    if total == 0:
        raise InputError(f"The {of} of tokens 0..{p - 1} is constant; it has no frequencies to measure.")
    keys, detail = _key_frequencies(power, total, frequencies, p)
    return float(power[torch.tensor(keys) - 1].sum()) / total, detail


def _key_frequencies(each: Tensor, total: float, frequencies: "list[int] | None", p: int) -> tuple[list[int], str]:
    """The frequencies a share is taken over, distinct and checked (``frequencies``, else the five strongest by
    ``each`` ``[p // 2]``, the power at frequency ``1..p // 2``), and the strongest ones as text."""
    strongest = (torch.argsort(each, descending=True)[:5] + 1).tolist()
    detail = "strongest frequencies " + listed([f"{k} ({float(each[k - 1]) / total:.2f})" for k in strongest], 5)
    keys = strongest if frequencies is None else sorted(set(frequencies))
    bad = [k for k in keys if not 1 <= k <= p // 2]
    if bad:
        raise InputError(f"frequencies {listed(bad)}: on {p} points the frequencies are 1..{p // 2} (k and {p} - k are one).")
    return keys, detail


def measure_structure(model: torch.nn.Module, kind: str, params: dict, node: "Node | None", tokens: "list[int] | None",
                      task: "Task | None" = None) -> tuple[float, str]:
    """The value and a detail line of one weight-structure claim (``kind`` one of ov_rank, qk_term, geometry, fourier);
    a Fourier claim on neurons or logits runs ``model`` (then the model itself, not its canonical weights) over ``task``."""
    if kind == "ov_rank":
        return ov_top_share(model, node, int(params.get("top", 1)), params.get("space", "vocab"))
    if kind == "qk_term":
        scores = qk_scores(model, node, params["query"], params["key"])
        return qk_share(scores, params.get("pattern"), params.get("pairs"), tokens), f"{params['query']} x {params['key']} term, {tuple(scores.shape)}"
    if kind == "geometry":
        return circle_order(vectors(model, params["of"], tokens or []))
    of, p = params.get("of", "embed"), int(params["modulus"])
    if of in GRID:
        grid = grid_values(model, task, of, params.get("layer"), params.get("inputs", [0, 1]), p)
        if of == "neurons" and "neurons" in params:
            grid = grid[..., torch.tensor(params["neurons"])]
        return grid_fourier_share(grid, params.get("frequencies"))
    return fourier_share(model, of, p, params.get("frequencies"))


def grid_values(model: torch.nn.Module, task: Task, of: str, layer: int | None, inputs: list[int], p: int) -> Tensor:
    """What the model computes over the input grid ``[p p features]``: the MLP ``layer``'s neuron activations, or
    the logits, at the task's first read position, indexed by the tokens at positions ``inputs`` (a, b).

    Raises:
        InputError: The prompts are not the ``p x p`` grid of pairs (each pair exactly once), or a position is out of range.
    """
    tokens = task.clean.cpu()
    if tokens.is_floating_point() or not all(-tokens.shape[1] <= i < tokens.shape[1] for i in inputs):
        raise InputError(f"inputs = {inputs}: give the two positions of the operands a and b in the task's token prompts.")
    a, b = tokens[:, inputs[0]], tokens[:, inputs[1]]
    if bool((a >= p).any() or (b >= p).any()) or len(set(zip(a.tolist(), b.tolist()))) != p * p or len(a) != p * p:
        raise InputError(f"A grid Fourier claim reads the model on every pair (a, b) of 0..{p - 1} once; task '{task.name}' has "
                         f"{len(a)} prompts covering {len(set(zip(a.tolist(), b.tolist())))} of the {p * p} pairs: give the full grid.")
    read = int(task.positions[0])
    name = hook_name("mlp_post", layer) if of == "neurons" else None
    with torch.no_grad():
        if name is None:
            values = model(task.clean.to(next(model.parameters()).device))[:, read]  # [batch d_vocab]
        else:
            _, cache = model.run_with_cache(task.clean.to(next(model.parameters()).device), names_filter=name)
            values = cache[name][:, read]  # [batch d_mlp]
    grid = torch.zeros(p, p, values.shape[-1], dtype=torch.float64)
    grid[a, b] = values.double().cpu()
    return grid


def grid_fourier_share(grid: Tensor, frequencies: "list[int] | None") -> tuple[float, str]:
    """Share of the grid's squared norm (its mean left out) in 2-D Fourier components whose frequencies on both
    axes are 0 or key frequencies; without ``frequencies``, of the five strongest (listed in the detail)."""
    p = grid.shape[0]
    power = (torch.fft.fft2(grid - grid.mean((0, 1)), dim=(0, 1)).abs() ** 2).sum(-1)  # [p p]
    fold = torch.minimum(torch.arange(p), p - torch.arange(p))  # frequency k and p - k are one
    total = float(power.sum())
    if total == 0:
        raise InputError("The values are constant over the grid; they have no frequencies to measure.")
    each = torch.stack([power[(fold[:, None] == f) | (fold[None, :] == f)].sum() for f in range(1, p // 2 + 1)])  # f on either axis
    keys, detail = _key_frequencies(each, total, frequencies, p)
    allowed = torch.isin(fold, torch.tensor([0, *keys]))
    return float(power[allowed[:, None] & allowed[None, :]].sum()) / total, detail
