"""fewshot-prelabel: pre-label Label Studio tasks with an LLM from few-shot demonstrations."""

__version__ = "0.1.0"
