"""Properties that hold for every input hypothesis draws (the settings profile is in conftest.py: 300 fixed examples each).

(a) gradients agree with NumPy float64 within dnn/tolerances.py for any architecture, activation, dtype,
    batch size and memory layout, on every backend; (b) finite inputs whose pre-activations stay within
    ±1e4 never give a NaN or infinite cost or gradient; (c) no random, truncated or damaged byte string loads
    as a different model, and none crashes the loader; (d) no command line, however malformed, ends in a
    traceback.
"""

import contextlib
import functools
import io
import os
import tempfile

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import dnn
import dnn.benchmark
import dnn.cli
from dnn import checkpoint
from dnn.backends import available_backends
from dnn.activations import ACTIVATIONS
from dnn.functional import linear_activation_forward
from dnn.gradcheck import float64_reference, kinked_pre_activations
from dnn.optimizers import Adam
from dnn.perf import KINK_MARGIN
from dnn.step import TrainStep
from dnn.tolerances import gradient_rtol, relative_difference
from dnn.training import History

BACKENDS = [status.name for status in available_backends() if status.available]
DTYPES = ("float32", "float64")
LAYOUTS = ("C", "Fortran", "strided")


# ---------------------------------------------------------------------------------------------- networks and data
@st.composite
def networks(draw, max_width=8, max_hidden=3):
    """(layer_dims, hidden activations, output) of a small network."""
    hidden = draw(st.lists(st.integers(1, max_width), max_size=max_hidden))
    output = draw(st.sampled_from(["sigmoid", "softmax"]))
    n_out = draw(st.integers(2, 4)) if output == "softmax" else draw(st.sampled_from([1, 1, 2, 3]))
    activations = draw(st.lists(st.sampled_from(ACTIVATIONS), min_size=len(hidden), max_size=len(hidden)))
    return [draw(st.integers(1, max_width)), *hidden, n_out], activations, output


def labels(rng, output: str, n_out: int, m: int):
    """Random labels: {0, 1} of shape (n_out, m) for sigmoid, class indices (m,) or one-hot (n_out, m) for softmax."""
    if output == "sigmoid":
        return rng.integers(0, 2, (n_out, m)).astype(np.float64)
    classes = rng.integers(0, n_out, m)
    return classes if rng.random() < 0.5 else np.eye(n_out)[:, classes]


def laid_out(X, layout: str):
    """The same values as X in C order, Fortran order, or as a strided view into a larger array."""
    if layout == "C":
        return np.ascontiguousarray(X)
    if layout == "Fortran":
        return np.asfortranarray(X)
    big = np.full((2 * X.shape[0], 3 * X.shape[1]), np.nan, dtype=X.dtype)  # NaN where the view does not look
    big[::2, 1::3] = X
    return big[::2, 1::3]


# ---------------------------------------------------------------------------------------------- (a) gradients
@pytest.mark.parametrize("backend", BACKENDS)
@given(
    network=networks(),
    dtype=st.sampled_from(DTYPES),
    m=st.integers(1, 12),
    layout=st.sampled_from(LAYOUTS),
    l2=st.sampled_from([0.0, 0.0, 0.5]),
    seed=st.integers(0, 2**32 - 1),
)
def test_gradients_agree_with_numpy_float64_for_any_network_dtype_batch_and_layout(
    backend, network, dtype, m, layout, l2, seed
):
    dims, activations, output = network
    rng = np.random.default_rng(seed)
    net = dnn.Network(dims, activations, output, dtype=dtype, backend=backend, seed=seed)
    X = rng.standard_normal((dims[0], m)).astype(dtype)  # the values both networks see
    Y = labels(rng, output, dims[-1], m)
    reference = float64_reference(net)
    X64 = X.astype(np.float64)
    # across a ReLU kink float32 and float64 may take different branches, which no tolerance judges (exact
    # zeros, from a dead layer below, are exact in every dtype)
    for Z in kinked_pre_activations(reference, X64).values():
        assume(not ((np.abs(Z) < KINK_MARGIN) & (Z != 0)).any())

    cost, grads = net.backward(laid_out(X, layout), Y, l2=l2)
    ref_cost, ref_grads = reference.backward(X64, Y, l2=l2)

    # the network keeps its gradients in one vector; judged as that vector, a gradient that cancels to
    # nearly zero (a bias over balanced labels) is measured on the scale of the others, not its own
    got = np.concatenate([np.asarray(net.backend.to_numpy(grads[key]), np.float64).ravel() for key in ref_grads])
    expected = np.concatenate([ref_grads[key].ravel() for key in ref_grads])
    assert relative_difference(got, expected) <= gradient_rtol(dtype)
    assert relative_difference(cost, ref_cost) <= gradient_rtol(dtype)


# ---------------------------------------------------------------------------------------------- (b) no NaN
def scaled_to_pre_activations(params, activations, X, targets):
    """Parameters scaled layer by layer so that max|Z[l]| of X's pre-activations is targets[l-1] (float64)."""
    params = {key: value.copy() for key, value in params.items()}
    A = X
    with dnn.use_backend("numpy"):
        for l, target in enumerate(targets, start=1):
            W, b = params[f"W{l}"], params[f"b{l}"]
            activation = activations[l - 1] if l <= len(activations) else "linear"
            _, (_, Z) = linear_activation_forward(A, W, b, activation)
            largest = float(np.max(np.abs(Z)))
            if largest > 0:
                W *= target / largest
                b *= target / largest
            A, _ = linear_activation_forward(A, W, b, activation)
    return params


@given(
    network=networks(max_width=6),
    m=st.integers(1, 8),
    seed=st.integers(0, 2**32 - 1),
    x_scale=st.sampled_from([0.1, 1.0, 100.0]),
    targets=st.lists(
        st.one_of(st.sampled_from([1e4, 9999.0, 1e3, 710.0, 89.0, 88.0, 30.0]), st.floats(1.0, 1e4)),
        min_size=4,
        max_size=4,
    ),
)
def test_finite_inputs_with_bounded_pre_activations_never_give_nan(network, m, seed, x_scale, targets):
    dims, activations, output = network
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((dims[0], m)) * x_scale
    Y = labels(rng, output, dims[-1], m)
    start = dnn.Network(dims, activations, output, dtype="float64", backend="numpy", seed=seed).get_parameters()
    # |Z| ≤ 1e4 (1e4 itself included), also in float32 after rounding the scaled parameters
    params = scaled_to_pre_activations(start, activations, X, [t * (1 - 1e-6) for t in targets[: len(dims) - 1]])
    # a layer whose inputs nearly cancel needs weights float32 cannot hold (set_parameters refuses them)
    with np.errstate(over="ignore"):  # the overflow is what this asks about
        assume(all(np.isfinite(value.astype(np.float32)).all() for value in params.values()))
    for backend in BACKENDS:
        for dtype in DTYPES:
            net = dnn.Network(dims, activations, output, dtype=dtype, backend=backend)
            net.set_parameters(params)
            cost, grads = net.backward(X, Y)
            assert np.isfinite(cost), (backend, dtype)
            assert all(np.isfinite(net.backend.to_numpy(g)).all() for g in grads.values()), (backend, dtype)
            # the update inside the products too (its finiteness proof); numba's compiled step, specialised per
            # depth, activation and output, would compile anew for most draws: tests/test_step_strategies.py has it
            strategy = "fused-update" if backend == "numba" and net.backend.cblas is not None else "phases"
            step = TrainStep(net, m, strategy=strategy)
            step(net.batch(X, Y), 1e-6)
            assert np.isfinite(step.read().cost), (backend, dtype)


# ---------------------------------------------------------------------------------------------- (c) model files
@functools.lru_cache(maxsize=None)
def model_bytes() -> bytes:
    """A real model file with optimizer state, training state, extras and feature names, as bytes."""
    rng = np.random.default_rng(0)
    net = dnn.Network([3, 4, 3], activations="tanh", dtype="float64", backend="numpy", seed=2)
    adam = Adam()
    net.fit(rng.standard_normal((3, 20)), rng.integers(0, 3, 20), epochs=2, batch_size=10, optimizer=adam, lr=0.01)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "m.npz")
        checkpoint.save(
            net,
            path,
            optimizer=adam,
            training={"epoch": 2},
            extras={"input_mean": np.ones((3, 1))},
            feature_names=("a", "b", "c"),
        )
        with open(path, "rb") as f:
            return f.read()


def content(saved) -> tuple:
    """Everything a loaded model file gives back, comparable with ==."""
    arrays = {
        **saved.network.get_parameters(),
        **saved.optimizer.state_dict(saved.network),
        **{f"extra/{k}": v for k, v in saved.extras.items() if isinstance(v, np.ndarray)},
    }
    return (
        saved.network.layer_dims,
        saved.network.activations,
        saved.network.output,
        saved.network.dtype.name,
        saved.feature_names,
        saved.training,
        saved.optimizer.config(),
        {k: v for k, v in saved.extras.items() if not isinstance(v, np.ndarray)},
        {key: value.tobytes() for key, value in arrays.items()},
    )


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("model-files")


def loads_as(path):
    """The loaded content, or None when the loader refused the file with ModelFileError (any other error fails)."""
    try:
        return content(checkpoint.load_checkpoint(path, network_class=dnn.Network))
    except dnn.ModelFileError:
        return None


@given(raw=st.one_of(st.binary(max_size=3000), st.binary(max_size=3000).map(lambda b: b"PK\x03\x04" + b)))
def test_random_bytes_never_load(scratch, raw):
    path = scratch / "random.npz"
    path.write_bytes(raw)
    assert loads_as(path) is None


@given(data=st.data())
def test_a_truncated_model_file_never_loads(scratch, data):
    raw = model_bytes()
    path = scratch / "truncated.npz"
    path.write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1))])
    assert loads_as(path) is None


@given(data=st.data())
def test_a_bit_flipped_model_file_never_loads_as_a_different_model(scratch, data):
    # Every byte of stored arrays is covered by the zip's CRC-32, which catches any single-bit error; a flip
    # in what no CRC covers (a timestamp, an unused header field) may leave a file that loads, but then it
    # must load as exactly the model that was saved.
    raw = bytearray(model_bytes())
    path = scratch / "original.npz"
    path.write_bytes(raw)
    original = loads_as(path)
    bit = data.draw(st.integers(0, 8 * len(raw) - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    path = scratch / "flipped.npz"
    path.write_bytes(bytes(raw))
    assert loads_as(path) in (None, original)


# ---------------------------------------------------------------------------------------------- (d) the command line
OPTIONS = [
    "--data",
    "--test",
    "--layers",
    "--activation",
    "--optimizer",
    "--batch-size",
    "--epochs",
    "--lr",
    "--lr-decay",
    "--l2",
    "--dropout",
    "--dtype",
    "--seed",
    "--no-standardize",
    "--save",
    "--checkpoint",
    "--checkpoint-every",
    "--resume",
    "--plot",
    "--quiet",
    "--label-column",
    "--backend",
    "--out",
    "--cases",
    "--backends",
    "--repeat",
    "--json",
    "--help",
    "-h",
    "--nope",
    "-x",
    "--",
]
VALUES = [
    "",
    "0",
    "1",
    "-1",
    "3",
    "2.5",
    "1e3",
    "nan",
    "inf",
    "-inf",
    "4294967296",
    "10,,5",
    "4,3",
    "4,",
    ",",
    " ",
    "relu",
    "swish",
    "tanh",
    "sgd",
    "adam",
    "float32",
    "float16",
    "numpy",
    "numba",
    "cupy",
    "tpu",
    "D",
    "D,,A",
    "iris",
    "digits",
    "breast_cancer",
    "target",
    "a",
    "{dir}",
    "{dir}/data.csv",
    "{dir}/model.npz",
    "{dir}/bad.npz",
    "{dir}/out.png",
    "{dir}/out.xyz",
    "{dir}/missing/x.npz",
    "{dir}/data.csv/x.png",
    "{dir}/run.npz",
    "-",
    "é",
]
COMMANDS = ["train", "evaluate", "predict", "backends", "bench", "", "frobnicate", "--help"]


@pytest.fixture(scope="module")
def command_line_world(tmp_path_factory):
    """A directory with a CSV, a model trained on it, a damaged model; training and benchmarking stubbed out."""
    directory = tmp_path_factory.mktemp("cli")
    (directory / "data.csv").write_text(
        "a,b,target\n" + "\n".join(f"{i % 7 - 3},{i % 5},{i % 2}" for i in range(30)) + "\n"
    )
    dnn.Network([2, 3, 1], backend="numpy").save(directory / "model.npz")
    (directory / "bad.npz").write_bytes(b"PK\x03\x04 not really")
    patches = pytest.MonkeyPatch()
    patches.setattr(
        dnn.cli.train, "fit", lambda net, X, *args, **kwargs: History(cost=[0.7, 0.6], val_cost=[0.7, 0.65])
    )
    patches.setattr(dnn.benchmark, "measure", lambda *args, **kwargs: ([], []))
    yield directory
    patches.undo()


#: Pieces of a command line: an option with a value (most of them, so that many lines get past parsing), or one token
#: of any characters a command line can carry (text that survives UTF-8, as argv does).
PIECES = st.one_of(
    st.tuples(st.sampled_from(OPTIONS), st.sampled_from(VALUES)),
    st.tuples(st.sampled_from(OPTIONS)),
    st.tuples(st.sampled_from(VALUES)),
    st.tuples(st.text(st.characters(codec="utf-8", include_characters=" "), max_size=6)),
)


@given(command=st.sampled_from(COMMANDS), pieces=st.lists(PIECES, max_size=5))
def test_no_command_line_ends_in_a_traceback(command_line_world, command, pieces):
    tokens = [command, *(token for piece in pieces for token in piece)]
    argv = [token.replace("{dir}", str(command_line_world)) for token in tokens if command or len(tokens) > 1]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = dnn.cli.main(argv)  # any exception escaping here fails the property
    lines = err.getvalue().splitlines()
    assert isinstance(status, int) and "Traceback" not in err.getvalue()
    if status != 0:  # a mistake ends in one error line; only no command at all prints the usage instead
        assert (lines and lines[-1].startswith("error: ")) or (not argv and out.getvalue().startswith("usage:")), (
            argv,
            err.getvalue(),
        )
