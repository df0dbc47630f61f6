"""`python -m dnn evaluate` and `predict`: a saved model scored on data, or its predictions written as CSV."""

from __future__ import annotations

import contextlib
import sys

import numpy as np

from .. import sources
from ..outputs import check_output_path, replaced_atomically
from .models import model_and_data, model_and_source, model_classes
from .options import check_outputs_spare_inputs


def evaluate(args) -> int:
    """Print MODEL's cost and accuracy on --data, saying which rows it scored: by default the test rows held
    out in training when --data is the file the model was trained on, else all of them (--split all|test)."""
    if sources.is_source(args.data):
        saved, rows, ids, held_out = model_and_source(args)
        with rows:
            scores = sources.evaluate(saved.network, rows, classes=model_classes(saved))  # streamed, chunk by chunk
    else:
        saved, X, Y, ids, held_out = model_and_data(args, labels=True)
        scores = saved.network.evaluate(X, Y)
    m = len(ids[1])
    scored = (
        f"the {m} held-out test rows of {args.data} (the test split held out in training)"
        if held_out
        else f"all {m} rows of {args.data}"
    )
    print(f"scored {scored}: {m} examples, cost {scores['cost']:.6f}, accuracy {scores['accuracy']:.4f}")
    return 0


def predict(args) -> int:
    """Write one prediction per row of --data, in its order, each with its id (the row number, or --id-column's
    value); with --split test only the test rows held out in training, of the file the model was trained on."""
    if args.out:
        check_output_path(args.out, "--out")
        check_outputs_spare_inputs({"--out": args.out}, {"MODEL": args.model, "--data": args.data})
    if sources.is_source(args.data):
        saved, rows, ids, held_out = model_and_source(args)
        with rows:
            count = _write_predictions(
                saved, (X.T for X in sources.checked_features(rows)), ids, args.out
            )  # (n_x, k) each
    else:
        saved, X, _, ids, held_out = model_and_data(args, labels=False)
        count = _write_predictions(saved, [X], ids, args.out)
    # on stderr, so that predictions written to standard output stay one CSV table
    print(
        f"wrote {count} predictions{f' to {args.out}' if args.out else ''}, one per "
        f"{'held-out test row' if held_out else 'row'} of {args.data}",
        file=sys.stderr,
    )
    return 0


def _write_predictions(saved, inputs, ids, out: str | None) -> int:
    """Write 'ID,prediction,probability' lines for each X (n_x, k) of `inputs` to `out` (atomically) or stdout.

    ids: (column name, (m,) values: an array or a range), one per example of `inputs` in order. prediction: the class as the
    training data named it (`model_classes`);
    probability: the sigmoid output (of class index 1), or the softmax probability of the predicted class.
    Returns the number of lines written after the header.
    """
    net, labels = saved.network, [_cell(label) for label in model_classes(saved)]
    name, values = ids
    count = 0
    with contextlib.ExitStack() as stack:
        target = sys.stdout
        if out:  # written under a temporary name, renamed when complete
            target = stack.enter_context(open(stack.enter_context(replaced_atomically(out, ".tmp")), "w"))
        target.write(f"{_cell(name)},prediction,probability\n")
        for X in inputs:
            A = net.forward(X)  # (n_L, k) on the backend: one forward pass serves both columns
            proba = net.backend.to_numpy(A)  # what `predict_proba` returns
            predicted = (
                net.backend.to_numpy(net.backend.predict_classes(A, net.output)).ravel().astype(int)
            )  # (k,) as `predict`
            confidence = proba[0] if net.output == "sigmoid" else proba[predicted, np.arange(predicted.size)]  # (k,)
            target.writelines(
                f"{_cell(value)},{labels[k]},{p:.6g}\n"
                for value, k, p in zip(values[count : count + predicted.size], predicted, confidence)
            )
            count += predicted.size
    return count


def _cell(value) -> str:
    """A label, id or column name as a CSV cell: a whole float as an integer (a CSV's numbers are read as floats),
    text quoted when it holds a comma, a quote or a line break."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    text = str(value)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n\r') else text
