"""What `train` shows while and after it trains: progress lines (with a bar on a terminal) and the cost curve."""

from __future__ import annotations

import sys

from ..outputs import save_figure


class Progress:
    """Epoch progress: a line every tenth of the run (and at its end), above a tqdm bar when tqdm is installed and
    stderr is a terminal; nothing when quiet. The cost is printed to 6 significant digits, never rounded to 0.
    A run resumed from `checkpoint` first says the epoch it resumed from."""

    def __init__(self, epochs: int, quiet: bool, checkpoint: str | None = None):
        self.epochs, self.bar, self.quiet, self.checkpoint, self.started = epochs, None, quiet, checkpoint, False
        self.every = max(1, epochs // 10)
        if not quiet and sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:  # the progress extra is optional: the lines alone
                return
            self.bar = tqdm(total=epochs, unit="epoch", desc="train", file=sys.stderr)

    def __call__(self, net, epoch: int, logs: dict) -> bool:
        if self.quiet:
            return False
        test = logs.get("val_accuracy", float("nan"))
        if not self.started and epoch > 1:  # the first epoch of a run resumed from a checkpoint
            self._print(f"resumed from {self.checkpoint} at epoch {epoch - 1} of {self.epochs}")
            if self.bar is not None:
                self.bar.update(epoch - 1)
        self.started = True
        if self.bar is not None:
            self.bar.set_postfix(cost=f"{logs['cost']:.6g}", test_acc=f"{test:.4f}", refresh=False)
            self.bar.update(1)
        if epoch % self.every == 0 or epoch == self.epochs:
            self._print(
                f"epoch {epoch}/{self.epochs}: cost {logs['cost']:.6g}, train accuracy {logs['accuracy']:.4f}, "
                f"test accuracy {test:.4f}"
            )
        return False

    def _print(self, line: str) -> None:
        if self.bar is None:
            print(line, flush=True)
        else:
            self.bar.write(line, file=sys.stdout)  # above the bar, which stays at the bottom of the terminal

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def plot_costs(history, path: str) -> None:
    """Draw the cost per epoch (training, and the test examples' when scored) into the image file `path`."""
    from matplotlib.figure import Figure  # no pyplot, so no GUI backend is involved

    fig = Figure(figsize=(6, 4), layout="tight")
    ax = fig.add_subplot()
    epochs = range(1, len(history) + 1)
    ax.plot(epochs, history.cost, label="train")
    if history.val_cost:
        ax.plot(epochs, history.val_cost, label="test")
    ax.set(xlabel="epoch", ylabel="cost", title="cost per epoch")
    ax.legend()
    save_figure(fig, path)
