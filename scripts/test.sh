#!/usr/bin/env bash
# The whole suite: lint, type check, and every test against real services
# (Kafka KRaft broker, PostgreSQL, SMTP and HTTP servers on loopback), which the
# pytest harness installs if missing, starts, and stops by PID.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh test
echo "== ruff" >&2
.venv/bin/ruff check .
echo "== mypy" >&2
.venv/bin/mypy
echo "== pytest" >&2
exec .venv/bin/python -m pytest "$@"
