"""Talking to the model: the OpenAI-compatible client, the labeler, embeddings, rate and spend limits,
per-project options."""
