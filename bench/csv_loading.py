"""Time and peak memory of loading a CSV: today's `dnn.data.load_csv`, plain `numpy.loadtxt`, and the
loader of an older commit (read from git history), each in a fresh subprocess.

    python bench/make_csv.py /tmp/table.csv            # the 200,000 x 30 (+ label) table, ~59 MB
    python bench/csv_loading.py /tmp/table.csv [--old-ref 51242db] [--repeat 3]

Peak memory is the subprocess's ru_maxrss (which, unlike tracemalloc, sees native allocations); the
"above interpreter" column subtracts the same process's maxrss measured just before the load, after its
imports. Prints a markdown table with the best time and the largest peak of the repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

_MEASURE = """
import json, resource, sys, time
sys.path.insert(0, {path!r})
import numpy as np
{setup}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
shape = {call}
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(dict(seconds=seconds, before_kib=before, peak_kib=peak, shape=list(shape))))
"""

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def loaders(csv_path: str, old_module_dir: str | None) -> dict:
    """name -> (sys.path entry, setup code, expression returning the loaded X's shape)."""
    table = {
        "numpy.loadtxt": (_REPO, "", f"np.loadtxt({csv_path!r}, delimiter=',', skiprows=1, comments=None).shape"),
        "dnn.data.load_csv (this tree)": (_REPO, "from dnn import data", f"data.load_csv({csv_path!r}).X.shape"),
    }
    if old_module_dir is not None:
        table["dnn.data.load_csv (old)"] = (
            old_module_dir,
            "from dnn import data",
            f"data.load_csv({csv_path!r}).X.shape",
        )
    return table


def old_tree(ref: str, into: str) -> str | None:
    """A copy of the dnn package as of git `ref` under `into` (None when git cannot provide it)."""
    try:
        archive = subprocess.run(["git", "-C", _REPO, "archive", ref], check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"no old loader: git archive {ref} failed ({exc})", file=sys.stderr)
        return None
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    # the package maps backends/ and kernels/ into dnn (pyproject's package-dir): link them the same way
    for sub in ("backends", "kernels"):
        os.symlink(os.path.join(into, sub), os.path.join(into, "dnn", sub))
    return into


def measure(path_entry: str, setup: str, call: str) -> dict:
    code = _MEASURE.format(path=path_entry, setup=setup, call=call)
    done = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=tempfile.gettempdir()
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument(
        "--old-ref", default="51242db", help="git commit whose load_csv is 'old' (default: before issue 15)"
    )
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    size_mb = os.path.getsize(args.csv) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for name, (entry, setup, call) in loaders(args.csv, old_tree(args.old_ref, tmp)).items():
            runs = [measure(entry, setup, call) for _ in range(args.repeat)]
            shape = runs[0]["shape"]
            array_mb = shape[0] * shape[1] * 8 / 1e6  # the array this loader returns (loadtxt's holds the labels too)
            peak = max(r["peak_kib"] for r in runs) * 1024 / 1e6
            above = max(r["peak_kib"] - r["before_kib"] for r in runs) * 1024 / 1e6
            rows.append(
                (name, min(r["seconds"] for r in runs), max(r["seconds"] for r in runs), peak, above, above / array_mb)
            )
    print(f"\n{args.csv}: {size_mb:.0f} MB; best and worst of {args.repeat} fresh processes\n")
    print("| loader | time (s) | peak RSS (MB) | above the interpreter (MB) | that / float64 array |")
    print("|---|---|---|---|---|")
    for name, best, worst, peak, above, ratio in rows:
        print(f"| {name} | {best:.2f}–{worst:.2f} | {peak:.0f} | {above:.0f} | {ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
