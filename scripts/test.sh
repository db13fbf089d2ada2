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
# The tests that start no service: they share nothing, so they run on both cores.
fast=(-n 2 -m "not kafka and not postgres and not daemon and not slow and not browser")
bash scripts/bootstrap.sh test
echo "== ruff" >&2
.venv/bin/ruff check .
echo "== mypy" >&2
.venv/bin/mypy
echo "== pytest" >&2
pytest=(.venv/bin/python -m pytest)
if [[ "${1:-}" == "--fast" ]]; then
    shift
    exec "${pytest[@]}" --durations=25 "${fast[@]}" "$@"
fi
if [[ $# -gt 0 ]]; then  # a selection of one's own: as given
    exec "${pytest[@]}" --durations=25 "$@"
fi
# Everything: the fast tests on both cores, then those with services one at a time
# (each service is started once per session). --durations: where the time goes, for
# whoever keeps the suite within its budget.
status=0
"${pytest[@]}" "${fast[@]}" || status=$?
"${pytest[@]}" --durations=25 -m "kafka or postgres or daemon or slow or browser" || status=$?
exit "$status"
