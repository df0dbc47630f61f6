"""Choosing a backend: explicit argument > use_backend > set_backend > DNN_BACKEND > numpy."""

import pytest

import dnn
from dnn.backends import available_backends, backend_names, get_backend, set_backend, use_backend
from dnn.errors import BackendUnavailableError


@pytest.fixture(autouse=True)
def clean_selection(monkeypatch):
    monkeypatch.delenv("DNN_BACKEND", raising=False)
    set_backend(None)
    yield
    set_backend(None)


def test_the_default_backend_is_numpy():
    assert get_backend().name == "numpy"


def test_an_empty_environment_variable_means_unset(monkeypatch):
    monkeypatch.setenv("DNN_BACKEND", "  ")
    assert get_backend().name == "numpy"


def test_the_environment_variable_is_read_on_each_lookup_not_at_import(monkeypatch):
    monkeypatch.setenv("DNN_BACKEND", "numpy")
    assert get_backend().name == "numpy"
    monkeypatch.setenv("DNN_BACKEND", "no-such-backend")
    with pytest.raises(ValueError, match="DNN_BACKEND='no-such-backend'"):
        get_backend()


@pytest.mark.parametrize("bad", ["tensorflow", "NumPy", "", 3])
def test_an_unknown_name_fails_at_once_listing_the_valid_names(bad):
    with pytest.raises(ValueError) as info:
        get_backend(bad) if bad != "" else set_backend(bad)
    message = str(info.value)
    assert repr(bad) in message
    for name in backend_names():
        assert name in message


def test_set_backend_checks_the_name_immediately():
    with pytest.raises(ValueError, match="valid backends"):
        set_backend("torch")


def test_precedence_argument_over_scope_over_set_backend_over_environment(monkeypatch):
    numpy_backend = get_backend("numpy")

    class Marked(type(numpy_backend)):
        name = "marked"

    scoped, process_wide = Marked(), Marked()
    monkeypatch.setenv("DNN_BACKEND", "numpy")
    set_backend(process_wide)
    assert get_backend() is process_wide
    with use_backend(scoped):
        assert get_backend() is scoped
        assert get_backend("numpy") is numpy_backend
    assert get_backend() is process_wide
    set_backend(None)
    assert get_backend() is numpy_backend


def test_use_backend_blocks_nest_and_unwind_on_error():
    numpy_backend = get_backend("numpy")
    inner = type(numpy_backend)()
    with pytest.raises(RuntimeError):
        with use_backend(numpy_backend):
            with use_backend(inner):
                assert get_backend() is inner
                raise RuntimeError
    assert get_backend() is numpy_backend


def test_available_backends_lists_every_name_with_a_reason_when_unavailable():
    statuses = available_backends()
    assert [s.name for s in statuses] == list(backend_names())
    assert {"numpy", "numba", "cupy"} <= set(backend_names())
    for status in statuses:
        assert status.available == (status.reason is None)
    assert statuses[0].available  # numpy always runs


@pytest.mark.parametrize("status", [s for s in available_backends() if not s.available], ids=lambda s: s.name)
def test_an_unavailable_backend_raises_its_own_error_saying_why(status):
    with pytest.raises(BackendUnavailableError, match=status.name) as info:
        get_backend(status.name)
    assert status.reason in str(info.value)


def test_cupy_without_a_gpu_is_reported_not_crashed():
    status = {s.name: s for s in available_backends()}["cupy"]
    if status.available:
        pytest.skip("a CUDA device is present")
    with pytest.raises(BackendUnavailableError, match="cupy"):
        dnn.Network([2, 1], backend="cupy")
