"""The project's CUDA kernels executed on the CPU, for the tests (no runtime dependency for users).

- `build`: compiles each CUDA source, exactly as NVRTC receives it, with the system C++ compiler under
  `cuda_emulation.h` (the CUDA language subset) and `block_scheduler.h` (one fiber per CUDA thread, barriers).
- `device`: guarded, poisoned device memory and the array type standing in for `cupy.ndarray`.
- `kernels`: `RawModule`/`RawKernel` stand-ins that launch the compiled kernels, checking every argument
  against the kernel's C++ signature and every allocation's guards after each launch.
- `streams`: streams, stream capture and graphs: launches and cuBLAS calls recorded, then replayed.
- `cublas_standin.cpp` and `cublas`: a libcublas applying cuBLAS's argument rules, computing in float64.
- `fake_cupy`: the `cupy` module the CuPy backend imports, and `cpu_cupy_backend()`: the real
  `CupyBackend` built on all of the above.
"""
