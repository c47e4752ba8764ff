"""The choices of every setting a run takes, and the one default of each: corruptions, directions, metrics and
scoring methods. The library's ``Literal`` types, the command line's ``choices``, hypothesis files and every
claim kind read them here (a leaf module: the command line reads it without loading torch)."""

from typing import Literal, get_args

Corruption = Literal["paired", "resample", "mean", "zero"]
Direction = Literal["noise", "denoise"]
MetricName = Literal["logit_diff", "loss", "accuracy", "kl", "mse"]
Method = Literal["exact", "eap", "eap-ig", "acdc"]
Granularity = Literal["component", "position"]

CORRUPTIONS: tuple[str, ...] = get_args(Corruption)
DIRECTIONS: tuple[str, ...] = get_args(Direction)
METRICS: tuple[str, ...] = get_args(MetricName)
METHODS: tuple[str, ...] = get_args(Method)
GRANULARITIES: tuple[str, ...] = get_args(Granularity)
ATTRIBUTION_METHODS: tuple[str, ...] = ("eap", "eap-ig")  # gradient methods: scores from one backward pass
LOWER_IS_BETTER: tuple[str, ...] = ("loss", "kl", "mse")  # metrics whose clean value is the smaller one
ABLATIONS: tuple[str, ...] = ("mean", "zero")  # corruptions with no corrupt run: they noise only, never denoise
MIXING: tuple[str, ...] = ("mean", "resample")  # corruptions that mix prompts: one batch of one length

DEFAULT_DIRECTION = "noise"  # what a component contributes; TransformerLens' patching helpers denoise (pass "denoise")
DEFAULT_CORRUPTION = "paired"
DEFAULT_METHOD = "exact"
DEFAULT_METRIC = "logit_diff"
DEFAULT_THRESHOLD = 0.05  # a share of clean - corrupt
