"""Stage 6, report: what a run leaves for people and for other tools. Markdown and self-contained HTML reports,
heatmaps and attention plots, Graphviz diagrams, and peers' circuit formats (EAP-IG, auto-circuit, MIB).
"""
