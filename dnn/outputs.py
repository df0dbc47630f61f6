"""Output files: checked before any work starts, then written whole or not at all.

The checks serve `python -m dnn` and `python -m dnn bench`: each raises ValueError with a message naming
the option and the user's own path (never a temporary file), which the command line prints as one
``error: ...`` line. The writers put a temporary file beside the target and rename it into place, so a
crash mid-write leaves the previous file as it was. Temporaries are named ``.dnn-tmp-<target>.<host>.<pid>.*``:
SIGINT and SIGTERM remove them on the way out, and one left by a killed process (SIGKILL, a crash) is removed
by the next write to the same target. An error while writing (a full disk) names the target, not the temporary.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import tempfile
import threading

from .errors import install_hint

#: What to install for --plot (the `data` extra of the quick start includes it too).
PLOT_EXTRA = install_hint("plot")


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
        raise ValueError(
            f"{option} {path}: cannot write in {os.path.dirname(path) or directory}: {exc.strerror}"
        ) from None


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
        raise ValueError(
            f"{option} {path}: {shown}; matplotlib writes {', '.join(sorted(formats))} (name the file with one of these extensions)"
        )
    return extension


#: The start of every temporary file's name, so that one left behind is recognisable (and ignored by `git`).
TEMPORARY_PREFIX = ".dnn-tmp-"
#: This machine in temporary names: a process id means something only on the host that ran it.
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


@contextlib.contextmanager
def replaced_atomically(path: str, suffix: str):
    """Yield a temporary path beside `path`; when the block succeeds it is renamed to `path`, else removed.

    The temporary of a killed earlier write to `path` is removed first (`remove_stale_temporaries`); SIGTERM
    removes this one as SIGINT does (`_sigterm_exits`). An OSError of the block or the rename that names no
    other file is raised again naming `path`. The file gets the permissions open() would give it (it is
    created 0600, readable by no one else while it is written).
    """
    remove_stale_temporaries(path)
    name = f"{_temporary_prefix(path)}{os.getpid()}.{secrets.token_hex(4)}{suffix}"  # unique: this process, random
    temporary = os.path.join(os.path.dirname(os.path.abspath(path)), name)
    try:  # named before it exists: an interrupt at any moment after this line leaves nothing behind
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        with _sigterm_exits():
            yield temporary
            os.chmod(temporary, 0o666 & ~_umask())
            os.replace(temporary, path)
    except BaseException as exc:
        if not (isinstance(exc, FileExistsError) and exc.filename == temporary):  # never another's file
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        if isinstance(exc, OSError) and exc.filename in (None, temporary):  # e.g. ENOSPC: the user's file, not ours
            raise OSError(exc.errno, exc.strerror or str(exc), path) from exc
        raise


def _temporary_prefix(path: str) -> str:
    return f"{TEMPORARY_PREFIX}{os.path.basename(path)}.{_HOST}."


def remove_stale_temporaries(path: str) -> list:
    """Remove the temporaries of writes to `path` whose process, on this host, no longer runs; returns their paths.

    Those of running processes (a concurrent write) and of other hosts (a shared file system) are kept.
    """
    directory = os.path.dirname(os.path.abspath(path))
    pattern = re.compile(re.escape(_temporary_prefix(path)) + r"(\d+)\.")
    removed = []
    with contextlib.suppress(OSError):  # an unreadable directory: the write itself will say so
        for name in os.listdir(directory):
            match = pattern.match(name)
            if match and not _running(int(match.group(1))):
                with contextlib.suppress(FileNotFoundError):  # another process cleaned it first
                    os.unlink(os.path.join(directory, name))
                    removed.append(os.path.join(directory, name))
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        pass
    return True


@contextlib.contextmanager
def _sigterm_exits():
    """While the block runs, SIGTERM raises SystemExit(143) (as SIGINT raises KeyboardInterrupt), so that the
    `finally`/`except` clauses around it remove temporaries instead of the process vanishing with them.

    Only where SIGTERM still has its default action and only in the main thread (where Python runs handlers);
    a handler the program installed itself is left alone.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return
    previous = signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_figure(fig, path: str) -> None:
    """Write a matplotlib figure to `path` atomically, in the format its extension names."""
    extension = os.path.splitext(path)[1]
    with replaced_atomically(path, extension) as temporary:
        fig.savefig(temporary, format=extension.lstrip(".").lower())
