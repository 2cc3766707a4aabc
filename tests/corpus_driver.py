"""Runs `socgw` sub-commands on many broken files, each in a forked child with a time limit.

    python -m tests.corpus_driver CASES.json RESULTS.json

CASES.json is a list of {"name": ..., "argv": [...]}. The driver imports the command line once, then
forks one child per case (so a case costs milliseconds, not an interpreter start), gives it
`TIME_LIMIT_S` of wall time and an address-space limit, and records its exit status, wall time, peak
resident memory (from wait4) and everything it printed. A child still running at the limit is killed
and recorded as a hang. Results go to RESULTS.json in the order of the cases.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway import cli

TIME_LIMIT_S = 2.0
MEMORY_LIMIT_BYTES = 1 << 30  # far above the 200 MB the test asserts: a runaway child fails, not the machine
POLL_S = 0.005


def run_case(argv: list[str], output: Path) -> dict[str, Any]:
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: one sub-command, its output to a file, never back into the driver's code
        status = 70
        try:
            resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            status = cli.main(argv)
        except SystemExit as leaving:
            status = leaving.code if isinstance(leaving.code, int) else 1
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    hung = False
    while True:
        waited, wait_status, usage = os.wait4(pid, os.WNOHANG)
        if waited == pid:
            break
        if time.monotonic() - started > TIME_LIMIT_S:
            hung = True
            os.kill(pid, signal.SIGKILL)
            _waited, wait_status, usage = os.wait4(pid, 0)
            break
        time.sleep(POLL_S)
    seconds = time.monotonic() - started
    return {
        "exit": os.waitstatus_to_exitcode(wait_status),
        "hung": hung,
        "seconds": seconds,
        "max_rss_bytes": usage.ru_maxrss * 1024,
        "output": output.read_text(errors="replace"),
    }


def main() -> int:
    cases = json.loads(Path(sys.argv[1]).read_text())
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "output.txt"
        for case in cases:
            results.append({"name": case["name"], **run_case(case["argv"], output)})
    Path(sys.argv[2]).write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
