"""Write the data-loading benchmark's table: a CSV of m rows x n features + a 0/1 label (default 200,000 x 30, ~59 MB).

    python bench/make_csv.py table.csv [--rows 200000] [--features 30] [--seed 0]

Features are standard normal numbers printed with 6 decimals, the
label is 1 where the features' sum is positive. Written in blocks, so any size fits in memory.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

_BLOCK_ROWS = 50_000


def write_table(path: str, rows: int, features: int, seed: int = 0) -> None:
    """The CSV at `path`: header f0..f{n-1},label, then `rows` data rows drawn with `seed`."""
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as f:
        f.write(",".join([f"f{j}" for j in range(features)] + ["label"]) + "\n")
        for start in range(0, rows, _BLOCK_ROWS):
            X = rng.standard_normal((min(_BLOCK_ROWS, rows - start), features))  # (block, n)
            table = np.column_stack([X, (X.sum(axis=1) > 0)])  # (block, n + 1)
            np.savetxt(f, table, delimiter=",", fmt=["%.6f"] * features + ["%d"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write_table(args.path, args.rows, args.features, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
