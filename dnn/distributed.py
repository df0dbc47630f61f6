"""Data-parallel training over MPI: every rank holds the whole model and trains on its share of each batch.

`fit(net, X, Y, ..., comm=MPI.COMM_WORLD)` (or `net.fit(..., comm=...)`) takes one step per *global*
mini-batch of `batch_size` examples, exactly as one process would:

- the epoch's permutation comes from the shared seed, so every rank knows every batch without a message;
- rank r of R takes positions [⌊m_b·r/R⌋, ⌊m_b·(r+1)/R⌋) of a global batch of m_b examples (`share`); a
  batch with fewer examples than ranks leaves some ranks with none, and they contribute zero;
- after backward, the rank's gradient *summed* over its examples and the step's cost, correct count and
  example count are summed over the ranks (`MPIReducer`); the step then divides by the global count and adds
  L2 once (`dnn.step`), so every rank applies the single-process update and the optimizer states agree;
- dropout masks are the global batch's masks: every rank draws the (n_l, m_b) uniforms of the whole batch
  from the shared generator and keeps its own columns (`GlobalColumns`), so R ranks equal one process;
- before the first step one small collective compares architecture, dtype, backend, data shape, every
  setting, start epoch, a checksum of the initial parameters and the data's fingerprint -- a hash of the
  data each rank read and how it was prepared (`dnn.training.data_fingerprint`; the command line's covers
  the file, the standardisation, split and label column) -- (`Ranks.check_agreement`); at each epoch end one more
  compares a checksum of the parameters and merges the callbacks' stop requests (`Ranks.end_epoch`).
  A difference raises `RanksDisagreeError` on every rank; none waits in a collective the others never join.
- an error raised on one rank only inside `fit` prints that rank's message and calls `comm.Abort()`
  (`Ranks.abort_on_failure`), so the others do not hang; `python -m dnn` does the same on its `error:` path.

Importing this module imports no MPI: mpi4py is imported by `launch_world` (the command line, when a
launcher started it) or by the caller who builds `comm`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import zlib

import numpy as np

from .backends.base import STEP_COST, STEP_EXAMPLES
from .errors import DivergenceError, DnnError, install_hint

#: What `pip install` brings MPI with; named in the error when a launcher started dnn without mpi4py.
MPI_EXTRA = install_hint("mpi")
#: Environment variables in which launchers announce the job's size: MPICH's Hydra and Slurm's PMI-2
#: (PMI_SIZE), Open MPI (OMPI_COMM_WORLD_SIZE), MVAPICH (MV2_COMM_WORLD_SIZE).
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
#: Variables that already set a thread count; `limit_threads` leaves a thread pool alone when one is set.
BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


class RanksDisagreeError(DnnError, ValueError):
    """The ranks of a data-parallel run do not describe the same training run; raised on every rank at once."""


class RanksRefusedError(DnnError, ValueError):
    """A check every rank ran (`checked_together`) failed on at least one; raised on every rank at once."""


#: Errors every rank raises together (from the same collective data), so no rank needs to abort the job.
COLLECTIVE_ERRORS = (RanksDisagreeError, RanksRefusedError, DivergenceError)


def checked_together(comm, check, *args):
    """`check(*args)` on every rank of `comm` (None: in this process alone), failing on every rank if it fails on any.

    A user's mistake (a bad option, a missing file, bad data) usually fails on every rank at once. Raised as
    one RanksRefusedError on all of them, it is reported once, and no rank is left waiting in a collective.
    The message is the problem when every rank met the same one, else each rank's problem.
    """
    if comm is None or comm.Get_size() == 1:
        return check(*args)
    try:
        result, problem = check(*args), None
    except (DnnError, ValueError, OSError, MemoryError) as exc:
        result, problem = None, " ".join(str(exc).splitlines())
    problems = comm.allgather(problem)  # (size,) one message or None per rank
    if not any(problems):
        return result
    if all(problem == problems[0] for problem in problems):
        raise RanksRefusedError(problems[0])
    raise RanksRefusedError("; ".join(f"rank {rank}: {problem}" for rank, problem in enumerate(problems) if problem))


# ---------------------------------------------------------------------------------------------- launching
def launched_ranks(environ=None) -> int:
    """The number of processes an MPI launcher (mpiexec, mpirun, srun) started this job with; 1 when none did."""
    environ = os.environ if environ is None else environ
    for name in SIZE_VARIABLES:
        value = environ.get(name, "")
        if value.isdigit():
            return int(value)
    if "PMIX_RANK" in environ and environ.get("SLURM_NTASKS", "").isdigit():  # srun --mpi=pmix
        return int(environ["SLURM_NTASKS"])
    return 1


def launch_world(environ=None):
    """MPI.COMM_WORLD when a launcher started several processes, else None (then mpi4py is not imported).

    Also limits each rank's threads (`limit_threads`). Raises DnnError naming the extra when the job was
    launched with several processes but mpi4py is not installed: each process would otherwise train a
    model of its own and write the same files.
    """
    ranks = launched_ranks(environ)
    if ranks < 2:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        raise DnnError(
            f"started by an MPI launcher with {ranks} processes, but mpi4py is not installed: "
            f"{MPI_EXTRA}, or run without mpiexec"
        ) from None
    limit_threads(MPI.COMM_WORLD, environ)
    return MPI.COMM_WORLD


def limit_threads(comm, environ=None) -> int:
    """Give each rank cores // (ranks on its node) BLAS and numba threads, unless the user chose a count.

    NUMBA_NUM_THREADS set or OMP_/OPENBLAS_/MKL_/BLIS_NUM_THREADS set keep their counts. Returns the count.
    """
    from mpi4py import MPI

    environ = os.environ if environ is None else environ
    on_node = comm.Split_type(MPI.COMM_TYPE_SHARED).Get_size()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // on_node)
    if "NUMBA_NUM_THREADS" not in environ:
        environ["NUMBA_NUM_THREADS"] = str(threads)  # read when numba is first imported (the numba backend)
        if "numba" in sys.modules:
            import numba

            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if not any(name in environ for name in BLAS_THREAD_VARIABLES):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # part of the mpi extra; without it the BLAS keeps its own count
            return threads
        threadpool_limits(threads, user_api="blas")  # numpy's BLAS is loaded already: limit it at run time
    return threads


# ---------------------------------------------------------------------------------------------- sharding
def share(m_b: int, rank: int, ranks: int) -> tuple[int, int]:
    """(lo, hi): the positions of a global batch of m_b examples that `rank` of `ranks` trains on.

    Contiguous and balanced to within one example; empty for some ranks when m_b < ranks. Applied to a
    batch's index vector, it is also what a reader of data on disk reads on this rank (`docs/distributed.md`).
    """
    return m_b * rank // ranks, m_b * (rank + 1) // ranks


class GlobalColumns:
    """A dropout generator for this rank's columns [lo, hi) of a global batch of m_b examples.

    `Backend.dropout_mask` asks `random((n_l, hi - lo), dtype)`; this draws the whole batch's (n_l, m_b)
    uniforms from the generator every rank shares and returns this rank's columns, so each example gets the
    mask a single process would give it, whatever the number of ranks.
    """

    def __init__(self, rng, lo: int, hi: int, m_b: int):
        self.rng, self.lo, self.hi, self.m_b = rng, lo, hi, m_b

    def random(self, shape, dtype):
        if tuple(shape[1:]) != (self.hi - self.lo,):
            raise ValueError(f"a dropout mask of shape {tuple(shape)} for a share of {self.hi - self.lo} examples")
        uniforms = self.rng.random((shape[0], self.m_b), dtype=dtype)  # (n_l, m_b): the global batch's draw
        return uniforms[:, self.lo : self.hi]  # (n_l, hi - lo)

    def skip(self, layer_dims, rates, dtype) -> None:
        """Draw and drop the batch's uniforms, for a rank with no examples in it: it stays in step with the others.

        The order is forward propagation's: one (n_l, m_b) draw per hidden layer with a non-zero rate.
        """
        for l, rate in enumerate(rates or (), start=1):
            if rate:
                self.rng.random((layer_dims[l], self.m_b), dtype=dtype)


# ---------------------------------------------------------------------------------------------- reducing
class MPIReducer:
    """The gradient reducer of `dnn.step.TrainStep` over an MPI communicator of host (NumPy) buffers.

    `reducer(grad, state)` sums the (P,) gradient and the step slots state[STEP_COST:STEP_EXAMPLES+1] over
    the ranks, in place, through the buffer protocol (no pickle, no per-layer message): reduced to rank 0,
    then broadcast. The MPI standard asks that every rank of an Allreduce receive the same result, but
    implementations have shipped algorithms that add in rank-dependent orders (MPICH's recursive-exchange
    allreduce, fixed in 2023); a broadcast copies rank 0's bytes, so the ranks' parameters cannot drift apart
    whatever the MPI. The price is measured by `bench/scaling.py` against a plain Allreduce.

    A GPU reducer is a second class with this call signature on device buffers (NCCL's reduce + broadcast, or
    a CUDA-aware MPI); see docs/distributed.md.
    """

    def __init__(self, comm, root: int = 0):
        from mpi4py import MPI

        self.comm, self.root, self._mpi = comm, root, MPI
        self.is_root = comm.Get_rank() == root

    def __call__(self, grad, state) -> None:
        slots = state[STEP_COST : STEP_EXAMPLES + 1]  # (3,) float64: this step's cost sum, correct, examples
        self.sum_to_all(grad, slots)

    def sum_to_all(self, *buffers) -> None:
        """Each buffer ← its sum over the ranks, the same bytes on every rank (the requests overlap)."""
        MPI, comm = self._mpi, self.comm
        if self.is_root:
            reduces = [comm.Ireduce(MPI.IN_PLACE, buffer, op=MPI.SUM, root=self.root) for buffer in buffers]
        else:
            reduces = [comm.Ireduce(buffer, None, op=MPI.SUM, root=self.root) for buffer in buffers]
        MPI.Request.Waitall(reduces)
        MPI.Request.Waitall([comm.Ibcast(buffer, root=self.root) for buffer in buffers])


# ---------------------------------------------------------------------------------------------- the ranks
class Ranks:
    """The ranks of one data-parallel `fit`: sharding, the reducer and the run's checks, over `comm`."""

    def __init__(self, comm):
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.reducer = MPIReducer(comm)

    @property
    def is_root(self) -> bool:
        """Rank 0 owns the outside world: files, checkpoints, plots, printing."""
        return self.rank == 0

    def share(self, m_b: int) -> tuple[int, int]:
        """This rank's positions [lo, hi) of a global batch of m_b examples (see `share`)."""
        return share(m_b, self.rank, self.size)

    def check_agreement(self, fields: dict) -> None:
        """Raise RanksDisagreeError on every rank unless every rank passed the same `fields` (JSON values).

        One Allgather of one 64-bit digest per field; only when they differ, a second exchange gathers the
        values themselves so the message can name them.
        """
        names = sorted(fields)
        texts = [json.dumps(fields[name], sort_keys=True, default=str) for name in names]
        digests = np.array([_digest(text) for text in texts], dtype=np.uint64)  # (K,)
        table = np.empty((self.size, len(names)), dtype=np.uint64)  # (ranks, K)
        self.comm.Allgather(digests, table)
        differing = [k for k in range(len(names)) if (table[:, k] != table[0, k]).any()]
        if not differing:
            return
        values = self._gather_texts([texts[k] for k in differing])  # [rank][field] text
        parts = []
        for j, k in enumerate(differing):
            held = {}
            for rank, texts_of_rank in enumerate(values):
                held.setdefault(texts_of_rank[j], []).append(rank)
            shown = "; ".join(
                f"rank{'s' if len(r) > 1 else ''} {','.join(map(str, r))}: {_shorten(t)}" for t, r in held.items()
            )
            parts.append(f"{names[k]} ({shown})")
        raise RanksDisagreeError(
            f"the {self.size} MPI ranks do not describe the same training run: {' | '.join(parts)}; "
            "give every rank the same network, data and settings"
        )

    def _gather_texts(self, texts: list) -> list:
        """Every rank's `texts` (same count on every rank), gathered to every rank as bytes (no pickle)."""
        data = np.frombuffer("\0".join(texts).encode(), dtype=np.uint8)
        counts = np.empty(self.size, dtype=np.int64)
        self.comm.Allgather(np.array([data.size], dtype=np.int64), counts)
        gathered = np.empty(int(counts.sum()), dtype=np.uint8)
        self.comm.Allgatherv(data, [gathered, counts])
        bounds = np.concatenate([[0], np.cumsum(counts)])
        return [gathered[bounds[r] : bounds[r + 1]].tobytes().decode().split("\0") for r in range(self.size)]

    def end_epoch(self, backend, theta, stop: bool, epoch: int) -> bool:
        """Compare a checksum of the parameters across the ranks and merge their stop requests (one Allgather).

        Returns True when any rank asked to stop; raises RanksDisagreeError on every rank when the
        parameters differ (a reduction that did not give every rank the same bytes, or a rank that ran
        something else).
        """
        mine = np.array([checksum(backend.to_numpy(theta)), int(bool(stop))], dtype=np.int64)
        table = np.empty((self.size, 2), dtype=np.int64)  # (ranks, [checksum, stop])
        self.comm.Allgather(mine, table)
        drifted = np.flatnonzero(table[:, 0] != table[0, 0])
        if drifted.size:
            raise RanksDisagreeError(
                f"after epoch {epoch} the parameters of rank(s) {', '.join(map(str, drifted))} differ "
                "from rank 0's; every rank must apply the same update"
            )
        return bool(table[:, 1].any())

    @contextlib.contextmanager
    def abort_on_failure(self):
        """Run a block; an error this rank raises alone prints its message and aborts every rank (comm.Abort).

        Errors every rank raises together (COLLECTIVE_ERRORS) propagate as usual.
        """
        try:
            yield
        except COLLECTIVE_ERRORS:
            raise
        except BaseException as exc:
            abort(self.comm, str(exc) if isinstance(exc, DnnError) else f"{type(exc).__name__}: {exc}")


def abort(comm, message: str, status: int = 1) -> None:
    """Print `message` as this rank's error line and abort every rank of `comm` (it does not return)."""
    sys.stdout.flush()
    message = " ".join(message.splitlines())
    print(
        f"error: rank {comm.Get_rank()} of {comm.Get_size()}: {message}; aborting all ranks",
        file=sys.stderr,
        flush=True,
    )
    comm.Abort(status)


def checksum(array) -> int:
    """CRC-32 of a host array's bytes: cheap (one pass), and it differs when a single bit of the values does."""
    return zlib.crc32(np.ascontiguousarray(array).view(np.uint8))


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
