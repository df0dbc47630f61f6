"""`python -m dnn ...`: see `dnn.cli`."""

import signal
import sys

from .cli import main

status = main()
# The command's work is done and its exit status decided: a Ctrl-C during the interpreter's teardown could
# change neither, and raised inside a teardown callback it would only print that callback's traceback.
signal.signal(signal.SIGINT, signal.SIG_IGN)
sys.exit(status)
