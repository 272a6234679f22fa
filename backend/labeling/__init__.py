"""The pure core: labeling configs, demonstrations, prompts, answer parsing, Label Studio results (no I/O)."""
