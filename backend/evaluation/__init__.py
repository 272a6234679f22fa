"""Evaluation of pre-labels against gold labels: metrics (pure) and the JSON/Markdown/HTML reports."""
