"""What the command-line tests share: running `python -m dnn` in this process, and reading its one error line."""

from dnn.cli import main


def run_cli(capsys, *argv):
    """(exit status, stdout, stderr) of `python -m dnn ARGV` run in this process; arguments may be paths."""
    status = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return status, out, err


def one_error_line(err, *fragments):
    """Whether stderr is exactly one `error: ...` line holding every fragment."""
    return err.startswith("error: ") and err.count("\n") == 1 and all(fragment in err for fragment in fragments)
