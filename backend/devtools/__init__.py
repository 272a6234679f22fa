"""Development equipment: the FAKE stand-in LLM server and the local Label Studio harness."""
