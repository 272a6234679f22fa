"""Entry point of `python -m backend.devtools.fake_llm`: run the fake LLM stand-in server until SIGTERM/Ctrl-C."""

import sys

from backend.devtools.fake_llm.server import main

if __name__ == "__main__":
    sys.exit(main())
