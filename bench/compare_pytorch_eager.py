"""The same training step in PyTorch CPU eager mode, for comparison with `python -m dnn bench`.

Relu hidden layers, a sigmoid output with binary cross-entropy from the logits, autograd backward and an SGD
update at the course's learning rate, course convention (X is (n_x, m)); cases from dnn.perf. PyTorch is
not a dependency of dnn: run this in an environment that has it (and dnn, for the cases), right before or
after `python -m dnn bench` with the same cases, and compare the ratios to that run's GEMM floor.

    python bench/compare_pytorch_eager.py A,B,C,D [threads]
"""

import statistics
import sys
import time

import torch

from dnn.perf import CASES, LEARNING_RATE


def torch_step(layer_dims, m: int, dtype=torch.float32):
    """A function taking one eager training step of a fresh network of `layer_dims` on random data."""
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(layer_dims[0], m, dtype=dtype, generator=gen)  # (n_x, m)
    Y = (torch.rand(1, m, generator=gen) < 0.5).to(dtype)  # (1, m)
    Ws = [
        torch.randn(n, n_prev, dtype=dtype, generator=gen) / n_prev**0.5
        for n_prev, n in zip(layer_dims, layer_dims[1:])
    ]
    bs = [torch.zeros(n, 1, dtype=dtype) for n in layer_dims[1:]]
    params = Ws + bs
    for p in params:
        p.requires_grad_(True)

    def step():
        A = X
        for W, b in zip(Ws[:-1], bs[:-1]):
            A = torch.relu(W @ A + b)  # (n_l, m)
        Z = Ws[-1] @ A + bs[-1]  # (1, m) logits
        cost = torch.nn.functional.binary_cross_entropy_with_logits(Z, Y)
        for p in params:
            p.grad = None
        cost.backward()
        with torch.no_grad():
            for p in params:
                p -= LEARNING_RATE * p.grad

    return step


def main(cases: str, threads: int):
    torch.set_num_threads(threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, median ms per step")
    for name in cases.split(","):
        case = CASES[name]
        step = torch_step(case.layer_dims, case.m)
        for _ in range(5):
            step()
        times = []
        for _ in range(5 if name in ("C", "E") else 30):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        print(f"{name}: {statistics.median(times) * 1e3:.3f} ms")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "A,B,C,D", int(sys.argv[2]) if len(sys.argv) > 2 else 2)
