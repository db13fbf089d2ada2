#!/usr/bin/env bash
# Create or reuse .venv in the repo root and install mma into it (editable).
# Usage: scripts/bootstrap.sh [EXTRA]   e.g. "test" installs the test extras too.
# Re-installs only when pyproject.toml changes (a stamp file remembers its hash).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
extra="${1:-}"

python=""
for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        python="$candidate"; break
    fi
done
if [ -z "$python" ]; then
    echo "bootstrap: Python >= 3.11 is required" >&2; exit 1
fi
if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv with $python" >&2
    "$python" -m venv .venv
fi
stamp=".venv/.mma-installed${extra:+-$extra}"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "bootstrap: installing mma${extra:+[$extra]} into .venv (first time: about a minute)" >&2
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".${extra:+[$extra]}"
    echo "$want" > "$stamp"
fi
