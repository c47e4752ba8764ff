"""pathpatch: automated circuit discovery on TransformerLens models."""

__version__ = "0.1.0"
