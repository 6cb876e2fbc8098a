"""Run one command and print its wall time, exit code and peak RSS as JSON.

The engine benchmark starts this small launcher instead of the command
itself: a child forked straight from the big benchmark process would inherit
the parent's RSS high-water mark until exec, which pollutes ru_maxrss.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

if __name__ == "__main__":
    t0 = time.perf_counter()
    proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    print(json.dumps({"wall_s": wall, "exit_code": os.waitstatus_to_exitcode(status),
                      "max_rss_bytes": usage.ru_maxrss * 1024}))
