"""`MetricsLog`: a `fit` callback that writes each epoch's numbers to a CSV file as the epoch ends.

One row per epoch: ``epoch,cost,accuracy,lr`` and, when `fit` scores validation data, ``val_cost,val_accuracy``.
Each row is written with one call and flushed, so another program can follow the file during training and a
run that stops early leaves every finished epoch's row whole. A resumed run (``fit(..., resume=True)``) keeps
the rows of the epochs before the one it continues from and appends the rest, so the file ends as an
uninterrupted run's would.
"""

from __future__ import annotations

import csv
import io
import os

from .outputs import replaced_atomically

#: The columns every row has, then the validation columns of a run that scores validation data.
COLUMNS = ("epoch", "cost", "accuracy", "lr")
VALIDATION_COLUMNS = ("val_cost", "val_accuracy")


class MetricsLog:
    """Write `fit`'s per-epoch logs to the CSV file `path` (a callback: ``fit(..., callbacks=[MetricsLog(p)])``).

    resume: keep the rows already in `path` for the epochs before the first one this run logs (the run
    continues from a checkpoint); otherwise the file is replaced. Never asks training to stop.
    """

    def __init__(self, path: str, resume: bool = False):
        self.path = os.fspath(path)
        self.resume = resume
        self._file = None

    def __call__(self, net, epoch: int, logs: dict) -> bool:
        if self._file is None:
            self._open(epoch, VALIDATION_COLUMNS[0] in logs)
        row = [epoch, *(logs[name] for name in self._columns[1:])]
        self._file.write(_csv_line(row))  # one write per row: a reader never sees half of one
        self._file.flush()
        return False

    def close(self) -> None:
        """Close the file (rows are flushed as written; closing only releases it)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self, first_epoch: int, validated: bool) -> None:
        self._columns = COLUMNS + (VALIDATION_COLUMNS if validated else ())
        kept = self._rows_before(first_epoch) if self.resume else []
        with replaced_atomically(self.path, ".csv") as temporary:  # the header and kept rows, whole or not at all
            with open(temporary, "w", newline="") as out:
                out.write(_csv_line(self._columns) + "".join(kept))
        self._file = open(self.path, "a", newline="")

    def _rows_before(self, epoch: int) -> list[str]:
        """The lines of the existing log for epochs before `epoch`, when its header matches this run's."""
        try:
            with open(self.path, newline="") as existing:
                lines = existing.readlines()
        except FileNotFoundError:
            return []
        if not lines or lines[0] != _csv_line(self._columns):
            raise ValueError(
                f"{self.path}: its columns are not this run's ({','.join(self._columns)}); "
                "resume with the validation data the run started with, or log to a new file"
            )
        kept = []
        for number, line in enumerate(lines[1:], start=2):
            if not line.endswith("\n"):
                break  # the last row of a killed run, cut short: the resumed run writes it again
            epoch_field = line.split(",", 1)[0]
            if not epoch_field.isdigit():
                raise ValueError(f"{self.path}, line {number}: {epoch_field!r} is not an epoch number")
            if int(epoch_field) < epoch:
                kept.append(line)
        return kept

    def __del__(self):
        self.close()


def _csv_line(values) -> str:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerow(values)
    return text.getvalue()
