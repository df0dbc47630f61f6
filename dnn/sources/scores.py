"""A network's cost and accuracy over a source, streamed chunk by chunk."""

from __future__ import annotations

from ..errors import DataError
from ..labels import LabelMap
from .base import Source
from .scanning import check_rows


def outputs_and_classes(net, source: Source) -> tuple[int, int]:
    """(output units, classes) of `net` after checking that `source`'s rows fit its input layer."""
    if source.n_features != net.layer_dims[0]:
        raise DataError(
            f"{source.path} has {source.n_features} features a row, but the network's input layer has {net.layer_dims[0]} units"
        )
    n_outputs = net.layer_dims[-1]
    return n_outputs, 2 if n_outputs == 1 else n_outputs


def label_map(source: Source, classes=None) -> LabelMap | None:
    """How `source`'s labels become class indices: with `classes` when given (a model's), else with the classes
    its `scan` found, else (never scanned) None: the labels are class indices already."""
    if classes is None and source.checked is not None and source.checked.classes:
        classes = source.checked.classes
    return None if classes is None else LabelMap(classes)


def evaluate(net, source: Source, rows: int | None = None, classes=None) -> dict:
    """{'cost', 'accuracy'} of `net` over every example of `source`, one chunk at a time, each chunk checked.

    What `Network.evaluate` gives on the whole set (the mean cost and the fraction classified correctly),
    with the sums kept per chunk, so that no more than a chunk (`Source.chunks`) is ever in memory. Labels
    are mapped as `label_map(source, classes)` says (pass a model's classes). A NaN/inf feature or a label
    outside the network's classes raises DataError naming the file and row.
    """
    n_outputs, n_classes = outputs_and_classes(net, source)
    mapping = label_map(source, classes)
    cost = correct = 0.0
    for start, X, y in source.chunks(rows):  # X (k, n_x), y (k,)
        check_rows(source, start, X, y, n_classes, mapping)
        if mapping is not None:
            mapping.indices(y, out=y)  # (k,) class indices, in the chunk's own buffer
        scores = net.evaluate(X.T, y if n_outputs > 1 else y.reshape(1, -1))  # (n_x, k), class indices or (1, k)
        cost, correct = cost + scores["cost"] * len(y), correct + scores["accuracy"] * len(y)
    if source.m == 0:
        raise DataError(f"{source.path} holds no examples")
    return {"cost": cost / source.m, "accuracy": correct / source.m}
