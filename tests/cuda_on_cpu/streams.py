"""CUDA streams, stream capture and graphs on the CPU, as far as the CuPy backend uses them.

Work submitted to a stream runs at once (the CPU has one queue), except while a stream captures: work
submitted to the capturing stream is recorded, with its arguments as they are then, and `end_capture`
returns a `Graph` whose `launch` replays the records in order. What a real capture refuses is refused here:
synchronising any stream, host reads and writes of device memory, allocating (through the allocator, as
CuPy's own operations do) and work on another stream (with global capture mode a legacy-stream launch
invalidates the capture; a launch elsewhere would not be in the graph). Array expressions are refused too:
this stand-in records kernels and cuBLAS calls only.
"""

from __future__ import annotations

import itertools
import weakref

from .device import CAPTURING, CaptureError, pool_allocator, refuse_during_capture

_POINTERS = itertools.count(0x5000, 0x100)
_BY_POINTER: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


class Stream:
    """`cupy.cuda.Stream`: a pointer, a context manager making it current, capture."""

    def __init__(self, null: bool = False, non_blocking: bool = False, ptr: int | None = None):
        self.ptr = 0 if null else next(_POINTERS) if ptr is None else ptr
        self.non_blocking = non_blocking
        self._graph: list | None = None
        _BY_POINTER[self.ptr] = self

    def __enter__(self):
        _CURRENT.append(self)
        return self

    def __exit__(self, *exc):
        _CURRENT.pop()

    def synchronize(self) -> None:
        refuse_during_capture("a stream synchronisation")

    def begin_capture(self, mode=None) -> None:
        if CAPTURING.stream is not None:
            raise CaptureError("begin_capture while another stream is capturing")
        if self.ptr == 0:
            raise CaptureError("the legacy default stream cannot be captured (cudaErrorStreamCaptureUnsupported)")
        self._graph = []
        CAPTURING.stream = self

    def is_capturing(self) -> bool:
        return CAPTURING.stream is self

    def end_capture(self) -> Graph:
        if CAPTURING.stream is not self:
            raise CaptureError("end_capture on a stream that is not capturing")
        graph, self._graph = Graph(self._graph), None
        CAPTURING.stream = None
        return graph

    def record(self, run, description: str) -> None:
        self._graph.append((run, description))


class Graph:
    """A captured sequence of launches and cuBLAS calls; `launch` replays it."""

    def __init__(self, records):
        self.records = tuple(records)

    def launch(self, stream=None) -> None:
        refuse_during_capture("a graph launch")
        for run, _ in self.records:
            run()

    def descriptions(self) -> list[str]:
        """What was recorded, in order (for the tests)."""
        return [description for _, description in self.records]


NULL_STREAM = Stream(null=True)
_CURRENT: list[Stream] = []


def get_current_stream() -> Stream:
    return _CURRENT[-1] if _CURRENT else NULL_STREAM


def stream_at(pointer: int) -> Stream:
    """The live stream with this pointer (0: the legacy default stream); LookupError for an unknown one."""
    try:
        return _BY_POINTER[pointer]
    except KeyError:
        raise LookupError(f"no live stream at {pointer:#x}") from None


def submit(run, stream, description: str) -> None:
    """Run `run()` on `stream` (default: the current one): now, or recorded when that stream captures."""
    stream = get_current_stream() if stream is None else stream
    capturing = CAPTURING.stream
    if capturing is None:
        run()
    elif stream is capturing:
        capturing.record(run, description)
    else:
        raise CaptureError(
            f"{description} submitted to stream {stream.ptr:#x} while stream {capturing.ptr:#x} captures "
            "(the legacy stream invalidates a global-mode capture; another stream is not captured)"
        )


# ---------------------------------------------------------------------------------------------- the allocator
class Allocators:
    current = staticmethod(pool_allocator)


def get_allocator():
    return Allocators.current


def set_allocator(allocator=None) -> None:
    Allocators.current = pool_allocator if allocator is None else allocator
