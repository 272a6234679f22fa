"""Fake OpenAI-compatible LLM STAND-IN for tests, benchmarks and demos; it is not a model."""

from backend.devtools.fake_llm.server import KNOBS, FakeLLM, FakeLLMProcess, KnobError, main, spawn_fake_llm

__all__ = ["KNOBS", "FakeLLM", "FakeLLMProcess", "KnobError", "main", "spawn_fake_llm"]
