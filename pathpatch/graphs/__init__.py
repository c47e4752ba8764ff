"""Circuits as networkx graphs and what reads them: faithfulness, hypothesis checks, reports and export."""
