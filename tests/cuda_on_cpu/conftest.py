"""Registers the `slow` marker of tests/test_cuda_on_cpu_asan.py (deselect with -m "not slow")."""


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a long test (the AddressSanitizer run of the CUDA kernels on the CPU)")
