# syntax=docker/dockerfile:1
# Pulse as a container: the wheel installed into a slim Python, run as a non-root user.
# Build: docker build -t pulse .    Run with Redis and PostgreSQL: docker compose up (compose.yaml)
# docs/operations.md describes the image, its variables and the shutdown.

# -- build: the wheel and the wheels it depends on (no compiler reaches the final image) ------
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml setup.cfg setup.py README.md ./
COPY quart_app ./quart_app
COPY sql ./sql
COPY static ./static
RUN pip wheel --wheel-dir /wheels .

# -- run ----------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOST=0.0.0.0 \
    PORT=8000
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels pulse-dashboard \
    && useradd --system --uid 10001 --create-home --home-dir /home/pulse pulse \
    && mkdir /data && chown pulse /data
# The embedded default keeps its SQLite file here; production sets DATABASE_URL to PostgreSQL.
WORKDIR /data
USER pulse
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=2)"]
# Exec form: `pulse` is PID 1 and receives SIGTERM itself, closes every WebSocket with 1012 and
# ends SSE streams before it exits (docs/operations.md). A shell form would swallow the signal.
STOPSIGNAL SIGTERM
CMD ["pulse", "serve"]
