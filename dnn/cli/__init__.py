"""`python -m dnn train | evaluate | predict | backends | bench`: the command line.

A user's mistake (a missing file, a bad option value, a model that does not fit the data) prints one line,
``error: ...``, on stderr and exits with status 1 (2 for a malformed command line); no traceback. Every
option and output path is checked before data is loaded and before training or benchmarking starts.

Under an MPI launcher (``mpiexec -n 2 python -m dnn train ...``, srun) `train` trains one model data-parallel
(`dnn.distributed`): rank 0 alone prints, writes files and plots, and a rank that fails calls ``Abort`` after
its ``error:`` line, so the other ranks never wait for it in a collective.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from .. import convert, distributed
from ..errors import DnnError
from . import inference, machine, train
from .models import DATA_EXTENSIONS
from .options import CHECKPOINT_EVERY, DEFAULT_LAYERS, QUICK_START_DIMS, SPLIT_SEED, TEST_FRACTION, comma_list
from .parser import Parser, build_parser, one_line

__all__ = [
    "CHECKPOINT_EVERY",
    "DATA_EXTENSIONS",
    "DEFAULT_LAYERS",
    "QUICK_START_DIMS",
    "SPLIT_SEED",
    "TEST_FRACTION",
    "build_parser",
    "comma_list",
    "main",
]


def main(argv=None) -> int:
    """Run the command line; returns the exit status."""
    hook = sys.unraisablehook
    sys.unraisablehook = interrupts_delivered_again(hook)
    try:
        return _run(list(sys.argv[1:] if argv is None else argv))
    finally:
        sys.unraisablehook = hook


def _run(argv: list) -> int:
    comm = None  # the MPI communicator of a data-parallel `train`, else None
    try:
        bench = argv[:1] == ["bench"]
        if bench:
            from .. import benchmark  # written separately; imported only for this command

            parser, argv = Parser(prog="python -m dnn bench", description="Run the benchmarks."), argv[1:]
            benchmark.configure_parser(parser)
        else:
            parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, or a malformed command line already reported in one line
            return exc.code
        if bench:
            return benchmark.run(args)
        if args.command is None:
            parser.print_help()
            return 2
        if args.command == "train":
            comm = distributed.launch_world()  # before any backend starts its threads
            return train.run(args, comm)
        commands = {
            "evaluate": inference.evaluate,
            "predict": inference.predict,
            "backends": machine.list_backends,
            "warmup": machine.warmup,
            "convert": convert.run,
        }
        return commands[args.command](args)
    except BrokenPipeError:  # the reader went away (`python -m dnn predict ... | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the final flush at exit is silent too
        return 141  # 128 + SIGPIPE, as a shell reports a command a closed pipe ended
    except (
        DnnError,
        ValueError,
        OSError,
        MemoryError,
    ) as exc:  # OSError covers FileNotFoundError and unwritable outputs
        _report_error(comm, exc, f"not enough memory: {exc}" if isinstance(exc, MemoryError) else str(exc))
        return 1
    except KeyboardInterrupt as exc:
        _report_error(comm, exc, "interrupted")
        return 130
    except Exception as exc:  # a bug: under MPI the other ranks must not wait for this one
        if comm is not None:
            distributed.abort(comm, f"{type(exc).__name__}: {exc}")
        raise


def interrupts_delivered_again(hook):
    """An unraisable-exception hook that sends an interrupt lost inside a weakref callback or ``__del__`` again.

    Python runs a signal's handler wherever the interpreter happens to be, garbage collection included; the
    KeyboardInterrupt of SIGINT, or the SystemExit that SIGTERM raises while an output is written
    (`dnn.outputs`), raised inside such a callback cannot propagate: Python prints "Exception ignored in ..."
    with a traceback and goes on, so the command would finish as if never interrupted. Here the same signal is
    sent again, from a helper thread 10 ms later so that it arrives after this hook has returned (a signal
    raised here would run its handler inside the hook, as lost), and stops the command as it should. Other
    unraisable exceptions go to `hook`.
    """

    def deliver_again(unraisable):
        exc = unraisable.exc_value
        if isinstance(exc, KeyboardInterrupt):
            signum = signal.SIGINT
        elif isinstance(exc, SystemExit) and exc.code == 128 + signal.SIGTERM:
            signum = signal.SIGTERM
        else:
            hook(unraisable)
            return
        later = threading.Timer(0.01, os.kill, (os.getpid(), signum))  # 10 ms: long after this hook returns
        later.daemon = True
        later.start()

    return deliver_again


def _report_error(comm, exc: BaseException, message: str) -> None:
    """One `error:` line for a failure. Under MPI, an error every rank raised together (COLLECTIVE_ERRORS: found
    by a collective) is printed by rank 0 alone; one this rank may have met alone is printed by it, and every
    rank is aborted (`distributed.abort`), so none waits for it."""
    if comm is None:
        print(f"error: {one_line(message)}", file=sys.stderr)
    elif isinstance(exc, distributed.COLLECTIVE_ERRORS):
        if train.is_root(comm):
            print(f"error: {one_line(message)}", file=sys.stderr)
    else:
        distributed.abort(comm, message)
