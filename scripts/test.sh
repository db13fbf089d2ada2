#!/usr/bin/env bash
# The whole suite: lint, type check, and every test against real services
# (Kafka KRaft broker, PostgreSQL, SMTP and HTTP servers on loopback), which the
# pytest harness installs if missing, starts, and stops by PID.
#
#   bash scripts/test.sh            everything (what CI runs)
#   bash scripts/test.sh --fast     lint, types, and the tests that need neither Kafka,
#                                   PostgreSQL, an mma subprocess, a browser nor much
#                                   time (< 90 s)
# Further arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
select=()
if [[ "${1:-}" == "--fast" ]]; then
    shift
    # Both cores: these tests start no service, so two workers share nothing.
    select=(-n 2 -m "not kafka and not postgres and not daemon and not slow and not browser")
fi
bash scripts/bootstrap.sh test
echo "== ruff" >&2
.venv/bin/ruff check .
echo "== mypy" >&2
.venv/bin/mypy
echo "== pytest" >&2
# --durations: where the time goes, for whoever keeps the suite within its budget.
exec .venv/bin/python -m pytest --durations=25 "${select[@]}" "$@"
