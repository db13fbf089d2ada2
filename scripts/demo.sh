#!/usr/bin/env bash
# The main job on embedded defaults: replay the bundled sample (SQLite, no credentials)
# and print ranked coincidences (JSON Lines on stdout, a summary table on stderr).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
exec "$root/.venv/bin/mma" demo "$@"
