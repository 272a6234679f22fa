"""Logging set-up shared by every entry point; secrets are never formatted into records."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backend.settings import Settings

FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr, format=FORMAT, force=True)
    # httpx logs every request URL at INFO; the OpenAI and Label Studio URLs carry no secrets, but the noise
    # buries what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpx2").setLevel(logging.WARNING)
