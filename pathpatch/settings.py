"""The choices and the one default of each patching setting, used by the library, the command line,
hypothesis files and every claim kind (a leaf module: the command line reads it without loading torch)."""

CORRUPTIONS: tuple[str, ...] = ("paired", "resample", "mean", "zero")
DIRECTIONS: tuple[str, ...] = ("noise", "denoise")
DEFAULT_DIRECTION = "noise"  # what a component contributes; TransformerLens' patching helpers denoise (pass "denoise")
DEFAULT_CORRUPTION = "paired"
DEFAULT_THRESHOLD = 0.05  # a share of clean - corrupt
