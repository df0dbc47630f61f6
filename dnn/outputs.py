"""Output files: checked before any work starts, then written whole or not at all.

The checks serve `python -m dnn` and `python -m dnn bench`: each raises ValueError with a message naming
the option and the user's own path (never a temporary file), which the command line prints as one
``error: ...`` line. The writers put a temporary file beside the target and rename it into place, so a
crash mid-write leaves the previous file as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

#: What to install for --plot (the `data` extra of the quick start includes it too).
PLOT_EXTRA = "pip install 'dnn-engine[plot]'"


def check_output_path(path: str, option: str) -> None:
    """Make sure a file can be written at `path` (its directory exists and takes new files, and it is no directory).

    Checked by creating and removing a probe file, since permission bits do not tell (root ignores them,
    read-only file systems do not show in them).
    """
    if not path:
        raise ValueError(f"{option} needs a file name, got an empty one")
    if os.path.isdir(path):
        raise ValueError(f"{option} {path}: is a directory; give a file name inside it")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        what = "is not a directory" if os.path.exists(directory) else "does not exist"
        raise ValueError(f"{option} {path}: the directory {os.path.dirname(path) or directory} {what}")
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise ValueError(f"{option} {path}: cannot write in {os.path.dirname(path) or directory}: {exc.strerror}") from None


def check_plot_path(path: str, option: str) -> str:
    """Check that `path` can be written and matplotlib can draw its format; returns the format (its extension).

    matplotlib is imported here, so a missing one is reported before training or benchmarking starts.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ValueError(f"{option} needs matplotlib, which is not installed: {PLOT_EXTRA}") from None
    check_output_path(path, option)
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    formats = Figure().canvas.get_supported_filetypes()
    if extension not in formats:
        shown = f"format {extension!r}" if extension else "no extension"
        raise ValueError(f"{option} {path}: {shown}; matplotlib writes {', '.join(sorted(formats))} (name the file with one of these extensions)")
    return extension


@contextlib.contextmanager
def replaced_atomically(path: str, suffix: str):
    """Yield a temporary path beside `path`; when the block succeeds it is renamed to `path`, else removed.

    The file gets the permissions open() would give it (mkstemp creates it 0600).
    """
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=suffix,
                                         dir=os.path.dirname(os.path.abspath(path)))
    os.close(handle)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_figure(fig, path: str) -> None:
    """Write a matplotlib figure to `path` atomically, in the format its extension names."""
    extension = os.path.splitext(path)[1]
    with replaced_atomically(path, extension) as temporary:
        fig.savefig(temporary, format=extension.lstrip(".").lower())
