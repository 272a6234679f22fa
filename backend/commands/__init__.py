"""The `fewshot-prelabel` commands, one module per command, and the processes `run` and `demo` start."""
