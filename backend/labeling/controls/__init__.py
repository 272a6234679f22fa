"""Control tags the labeler can answer, one class per kind (base.Control and a module per kind).

labeling/parser.py lists the kinds and turns a config into them.
"""
