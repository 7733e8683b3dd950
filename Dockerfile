# syntax=docker/dockerfile:1
# deepseek-slack: `docker build -t deepseek-slack .` then
# `docker run --env-file .env -p 3000:3000 deepseek-slack` (or `docker compose up`).

# --- build: wheels for the project and every runtime dependency ------------------------------
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# Only what the package build reads: tests, bench and docs stay out of the image.
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY tools ./tools
RUN pip wheel --wheel-dir /wheels .

# --- runtime -------------------------------------------------------------------------------
FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    LOG_FORMAT=json \
    HOST=0.0.0.0 \
    PORT=3000
RUN groupadd --system --gid 10001 bot \
    && useradd --system --uid 10001 --gid bot --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin bot \
    && mkdir /app && chown bot:bot /app
# Install from the build stage's wheels without copying them into a layer of this image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/*.whl
WORKDIR /app
USER bot:bot
EXPOSE 3000
# /healthz answers 200 when Redis (or the embedded store) answers, 503 otherwise; it is served
# in Socket Mode too. Python's urllib, because the slim image has no curl. An HTTP error (503)
# raises, so the check fails.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${PORT}/healthz', timeout=4)" || exit 1
# Exec form: the bot is PID 1 and gets SIGTERM itself; it stops taking events and lets answers
# in flight finish for up to 30 s, so give `docker stop` more than that (`-t 40`).
STOPSIGNAL SIGTERM
CMD ["python", "-m", "bot"]
