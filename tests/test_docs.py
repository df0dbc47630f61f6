"""Every code block in README.md and docs/*.md runs as written.

A newcomer copies a block and runs it, so each block is run the same way: on its own, in a fresh empty
directory, as a new process (`python block.py`, or `bash -euo pipefail block.sh`) with this interpreter first
on PATH. A block must therefore be self-contained.

What a page may say just above a block (on the line before its opening fence):
- `<!-- skip: REASON -->`: not run here, reported as skipped with REASON (it installs packages, needs a GPU, ...);
- `<!-- needs: shared-data ... -->`: it reads `../shared/data`, so it runs from the repository root and is
  skipped when that directory is absent.
`text` blocks are output or diagrams, not code; a block without a language is refused, so none is left unrun
by accident.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHARED_DATA = ROOT.parent / "shared" / "data"
RUNNABLE = {"python": ("python", "block.py"), "bash": ("bash", "block.sh")}
NOT_CODE = {"text"}
#: Seconds one block may take: the slowest (the course's model, 2500 full-batch epochs) takes ~30 s on an idle
#: 2-core machine, and over 300 s on one loaded 3x over (its BLAS threads then wait for cores): a hang still fails.
BLOCK_TIMEOUT = 900

_FENCE = re.compile(r"^(`{3,})(\S*)\s*$")
_MARK = re.compile(r"^<!--\s*(skip|needs):\s*(.*?)\s*-->$")


class Block(NamedTuple):
    page: Path
    line: int  # of the opening fence, counted from 1
    language: str
    code: str
    mark: tuple[str, str] | None  # ("skip", reason) or ("needs", what)

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def code_blocks(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, each with the marker comment on the line above its fence, if any."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == opening.group(1)), None)
        if end is None:
            raise AssertionError(f"{page.relative_to(ROOT)}:{i + 1}: a code block that is never closed")
        above = _MARK.match(lines[i - 1].strip()) if i > 0 else None
        blocks.append(
            Block(
                page, i + 1, opening.group(2), "\n".join(lines[i + 1 : end]) + "\n", above.groups() if above else None
            )
        )
        i = end + 1
    return blocks


BLOCKS = [block for page in PAGES for block in code_blocks(page)]


def test_every_block_says_what_it_is():
    unlabelled = [block.name for block in BLOCKS if block.language not in {*RUNNABLE, *NOT_CODE}]
    assert not unlabelled, f"blocks need a language ({', '.join(sorted({*RUNNABLE, *NOT_CODE}))}): {unlabelled}"


def test_the_readme_is_a_short_tour():
    assert len((ROOT / "README.md").read_bytes()) <= 10_240, "README.md is over 10 KB: move details to docs/"


def test_every_docs_page_the_readme_links_exists():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\((docs/[^)#\s]+)", readme))
    assert linked, "the README links no docs page"
    assert [link for link in sorted(linked) if not (ROOT / link).is_file()] == []


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.language in RUNNABLE], ids=lambda b: b.name)
def test_block_runs_as_written(block, tmp_path):
    cwd = tmp_path
    if block.mark and block.mark[0] == "skip":
        pytest.skip(f"{block.name}: {block.mark[1]}")
    if block.mark and block.mark[0] == "needs":
        if not SHARED_DATA.is_dir():
            pytest.skip(f"{block.name} needs {SHARED_DATA}, which is absent")
        cwd = ROOT  # its paths are relative to the repository, like a reader's in a clone
    interpreter, filename = RUNNABLE[block.language]
    script = tmp_path / filename
    script.write_text(block.code, encoding="utf-8")
    command = [sys.executable, str(script)] if interpreter == "python" else ["bash", "-euo", "pipefail", str(script)]
    env = dict(
        os.environ,
        PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
        PYTHONPATH=str(ROOT),
        MPLBACKEND="Agg",
    )
    with subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as process:  # its own process group: a timeout ends its children too
        try:
            stdout, stderr = process.communicate(timeout=BLOCK_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            pytest.fail(
                f"{block.name} ran over {BLOCK_TIMEOUT} s\n--- stdout (end)\n{stdout[-3000:]}\n--- stderr (end)\n{stderr[-3000:]}"
            )
    assert process.returncode == 0, (
        f"{block.name} ({block.language}) exited with {process.returncode}\n--- code\n{block.code}"
        f"--- stdout (end)\n{stdout[-3000:]}\n--- stderr (end)\n{stderr[-3000:]}"
    )
