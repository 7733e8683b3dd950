#!/usr/bin/env bash
# The whole check: set up if needed, then lint, types and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v redis-server >/dev/null 2>&1 && [ -z "${REDIS_URL:-}" ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "redis-server missing: installing it with apt-get" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "redis-server is needed for the tests: sudo apt-get install redis-server (or set REDIS_URL)" >&2
    exit 1
  fi
fi
.venv/bin/ruff check .
.venv/bin/mypy
# Two workers: the suite spends most of its time in subprocesses and sockets.
.venv/bin/pytest -n "${PYTEST_WORKERS:-2}" "$@"
