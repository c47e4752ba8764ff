"""Circuits as networkx graphs: pruning, faithfulness, hypothesis checks and export (issue 5)."""
