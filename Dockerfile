# fewshot-prelabel: one image for the ML backend (`fewshot-prelabel serve`, the default command) and its
# RQ workers (`fewshot-prelabel worker`). docker-compose.yml runs both, plus Redis.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The processes run as this unprivileged user; /app is its home and working directory.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --create-home --shell /usr/sbin/nologin app

# Dependencies first, from pyproject.toml and a stub package, so that a code change does not reinstall them.
WORKDIR /src
COPY pyproject.toml README.md ./
# (build/ and the egg-info go too: setuptools would otherwise keep the stub, which is newer than the real files)
RUN mkdir backend && touch backend/__init__.py \
 && pip install . \
 && pip uninstall -y fewshot-prelabel \
 && rm -rf backend build *.egg-info

# Then the package itself (no source tree is left behind: what runs is what pip installed).
COPY backend ./backend
RUN pip install --no-deps . \
 && cd / && rm -rf /src

# The repository's seed sets, for SEEDS_PATH=/app/seeds/<name> (mount your own over /app/seeds).
COPY --chown=app:app seeds /app/seeds

WORKDIR /app
USER app

# Inside a container the backend must listen on every interface to be reachable at all; who can reach it is
# decided where the port is published (docker-compose.yml publishes it on the host's 127.0.0.1 only).
ENV BACKEND_HOST=0.0.0.0 \
    BACKEND_PORT=9090
EXPOSE 9090

# GET /health answers 200 while Redis is reachable (503 otherwise); basic auth is sent when it is configured.
# No curl in the slim image: Python's urllib does it. A `worker` container needs its own check (compose has one).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import base64, os, urllib.request as u; e = os.environ.get; r = u.Request('http://127.0.0.1:%s/health' % (e('BACKEND_PORT') or '9090')); e('BASIC_AUTH_USER') and r.add_header('Authorization', 'Basic ' + base64.b64encode(('%s:%s' % (e('BASIC_AUTH_USER'), e('BASIC_AUTH_PASS') or '')).encode()).decode()); u.urlopen(r, timeout=5)"]

CMD ["fewshot-prelabel", "serve"]
