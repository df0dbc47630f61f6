"""Run Python code in a fresh process under a real memory limit: a memory cgroup when root may create one, else
RLIMIT_AS. Used by tests/test_convert.py and bench/train_larger_than_memory.py.

A cgroup (v2 ``memory.max`` where the unified hierarchy has the memory controller, else v1
``memory.limit_in_bytes``) limits what is resident, page cache the process faults in included (reclaimable);
RLIMIT_AS limits the address space, so a mapping of a whole large file fails under it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import NamedTuple

_V2 = "/sys/fs/cgroup"


class LimitedRun(NamedTuple):
    done: subprocess.CompletedProcess  # stdout and stderr as text
    how: str  # "cgroup memory.max", "cgroup memory.limit_in_bytes" or "RLIMIT_AS"
    peak: int | None  # the cgroup's peak memory in bytes (None under RLIMIT_AS)


def cgroup_dir():
    """(writable memory cgroup parent, its limit file): v2's (memory in cgroup.controllers) or v1's; None without root."""
    for root, limit_file in ((_V2, "memory.max"), (f"{_V2}/memory", "memory.limit_in_bytes")):
        controllers = os.path.join(root, "cgroup.controllers")
        if root == _V2 and not (os.path.exists(controllers) and "memory" in open(controllers).read().split()):
            continue
        if os.path.isdir(root) and os.access(root, os.W_OK) and os.path.exists(os.path.join(root, "cgroup.procs")):
            return root, limit_file
    return None


def run_limited(code: str, limit: int, timeout: float | None = None) -> LimitedRun:
    """Run `code` with `python -c` under a memory limit of `limit` bytes (one BLAS and numba thread)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    command = [sys.executable, "-c", code]
    cgroup = cgroup_dir()
    if cgroup is None:
        import resource

        def limit_address_space():
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        done = subprocess.run(
            command, env=env, capture_output=True, text=True, preexec_fn=limit_address_space, timeout=timeout
        )
        return LimitedRun(done, "RLIMIT_AS", None)
    root, limit_file = cgroup
    group = os.path.join(root, f"dnn-limit-{os.getpid()}")
    os.mkdir(group)
    try:
        with open(os.path.join(group, limit_file), "w") as f:
            f.write(str(limit))

        def join_group():
            with open(os.path.join(group, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

        done = subprocess.run(command, env=env, capture_output=True, text=True, preexec_fn=join_group, timeout=timeout)
        peak_file = os.path.join(group, "memory.peak" if limit_file == "memory.max" else "memory.max_usage_in_bytes")
        peak = int(open(peak_file).read()) if os.path.exists(peak_file) else None
        return LimitedRun(done, f"cgroup {limit_file}", peak)
    finally:
        os.rmdir(group)
