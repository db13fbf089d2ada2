"""The peak memory of a command: the resident set of a child process, measured by the OS.

The command runs under a small Python wrapper whose only child it is, so the
wrapper's ``RUSAGE_CHILDREN`` high-water mark is the command's own peak RSS
(``ru_maxrss``, kibibytes on Linux), whatever else the test process started.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_WRAPPER = """
import json, resource, subprocess, sys
proc = subprocess.run(json.loads(sys.argv[1]), stdout=subprocess.DEVNULL,
                      stderr=subprocess.PIPE)
sys.stderr.buffer.write(proc.stderr)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"returncode": proc.returncode, "peak_kib": peak}))
"""


@dataclass(frozen=True)
class Measured:
    """What :func:`measure` saw: exit status, peak RSS [bytes], stderr, wall time [s]."""

    returncode: int
    peak_bytes: int
    stderr: str
    seconds: float


def measure(argv: Sequence[str], *, env: Mapping[str, str] | None = None,
            cwd: str | None = None, timeout: float = 600.0) -> Measured:
    """Run *argv* (stdout discarded) in *cwd* and return its peak resident memory."""
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, json.dumps(list(argv))],
                          env=dict(env) if env is not None else None, capture_output=True,
                          text=True, timeout=timeout, check=False, cwd=cwd)
    seconds = time.monotonic() - start
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    return Measured(doc["returncode"], doc["peak_kib"] * 1024, proc.stderr, seconds)
