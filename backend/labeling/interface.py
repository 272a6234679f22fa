"""The SDK's LabelInterface for a labeling config, parsed once per config and cached."""

from __future__ import annotations

from functools import lru_cache

from label_studio_sdk.label_interface.interface import LabelInterface

from backend.labeling.errors import UnsupportedConfig


@lru_cache(maxsize=256)
def load_interface(config: str) -> LabelInterface:
    """The parsed config; UnsupportedConfig when it is empty or does not parse."""
    if not isinstance(config, str) or not config.strip():
        raise UnsupportedConfig("the labeling config is empty")
    try:
        return LabelInterface(config)
    except Exception as exc:  # the SDK raises assorted XML and key errors
        raise UnsupportedConfig(f"the labeling config does not parse: {exc}") from exc
