"""bench/gpu_check.py's exit status says whether it checked everything: 0 only then, 2 when it was skipped."""

import subprocess
import sys
from pathlib import Path

import pytest

from dnn.backends import available_backends

GPU_CHECK = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"


@pytest.mark.skipif(
    any(s.name == "cupy" and s.available for s in available_backends()), reason="a GPU is present: the check would run"
)
def test_without_a_gpu_it_exits_2_and_says_skipped_with_the_reason():
    done = subprocess.run([sys.executable, str(GPU_CHECK)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    reason = {s.name: s for s in available_backends()}["cupy"].reason
    assert done.stdout.strip() == f"gpu_check: skipped: no GPU: the cupy backend cannot run here: {reason}"
    assert done.stderr == ""
