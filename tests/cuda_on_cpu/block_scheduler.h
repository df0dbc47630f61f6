// The launcher of the CPU emulation: runs a kernel's grid block after block, each CUDA thread of a block a
// fiber, and exports the kernels of one compiled source to Python (ctypes) by name and parameter signature.
//
// Included by the generated translation unit after the kernel source (see build.py). A fiber is created once
// (makecontext, one swapcontext) and then switched with _setjmp/_longjmp, which save no signal mask and so
// cost no system call. A block runs in phases: every ready fiber runs, in thread order (or reversed), until
// it finishes or waits at a barrier; a barrier is released once every live thread of its block (or warp) has
// reached it. Threads of a block waiting at different barriers, or some waiting while others have exited,
// are reported as an error (on a GPU: a hang or undefined behaviour), never left to deadlock.
#pragma once

#include <dlfcn.h>
#include <link.h>
#include <setjmp.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdio>
#include <mutex>
#include <new>
#include <string>
#include <utility>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define CUDA_ON_CPU_STACK_BYTES (512 * 1024)
#else
#define CUDA_ON_CPU_STACK_BYTES (64 * 1024)
#endif
//: CUDA's default limit on a block's dynamic shared memory.
#define CUDA_ON_CPU_DYNAMIC_SHARED_BYTES (48 * 1024)

namespace cuda_on_cpu {

uint3 thread_index, block_index;
dim3 block_dim, grid_dim;

enum class State { idle, ready, at_block_barrier, at_warp_barrier, done };

struct Fiber {
    jmp_buf context;
    ucontext_t start;
    unsigned char* stack = nullptr;  // CUDA_ON_CPU_STACK_BYTES above one PROT_NONE page (an overflow faults)
    State state = State::idle;
    bool inside_kernel = false;  // stopped mid-kernel by an error: recreated before its next launch
    int barrier_line = 0;
    unsigned warp_mask = 0;
    uint3 index{0, 0, 0};
};

using Invoke = void (*)(void (*)(), void* const*);

struct Launch {
    Invoke invoke = nullptr;
    void (*kernel)() = nullptr;
    void* const* arguments = nullptr;
};

static std::vector<Fiber> fibers(1024);  // never reallocated: a parked fiber's context stays where it is
static Fiber* running = nullptr;
static jmp_buf scheduler_context;
static ucontext_t creator_context;
static Launch current_launch;
static std::string failure;  // the first error of the launch in progress
static unsigned char exchange_slots[1024][16];  // warp shuffles: each thread's published value
static std::mutex launch_lock;  // one launch at a time per compiled source

// AddressSanitizer is told of every switch between the scheduler's stack and a fiber's (no fake stacks kept).
#if defined(__SANITIZE_ADDRESS__)
static const void* scheduler_stack_bottom = nullptr;
static std::size_t scheduler_stack_size = 0;
static void entering_fiber(const Fiber& f) { __sanitizer_start_switch_fiber(nullptr, f.stack, CUDA_ON_CPU_STACK_BYTES); }
static void leaving_fiber() { __sanitizer_start_switch_fiber(nullptr, scheduler_stack_bottom, scheduler_stack_size); }
static void switched() { __sanitizer_finish_switch_fiber(nullptr, &scheduler_stack_bottom, &scheduler_stack_size); }
static void switched_back() { __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr); }
#else
static void entering_fiber(const Fiber&) {}
static void leaving_fiber() {}
static void switched() {}
static void switched_back() {}
#endif

// Back to the scheduler; returns when the scheduler resumes this fiber.
static __attribute__((noinline)) void yield_to_scheduler() {
    if (_setjmp(running->context) == 0) {
        leaving_fiber();
        _longjmp(scheduler_context, 1);
    }
    switched();
}

static void fiber_main() {
    switched();
    if (_setjmp(running->context) == 0) {  // created: back to the creator, resumed later by _longjmp
        leaving_fiber();
        swapcontext(&running->start, &creator_context);
    }
    switched();
    for (;;) {
        running->inside_kernel = true;
        current_launch.invoke(current_launch.kernel, current_launch.arguments);
        running->inside_kernel = false;
        running->state = State::done;
        yield_to_scheduler();
    }
}

static void create_fiber(Fiber& f) {
    if (f.stack == nullptr) {
        long page = sysconf(_SC_PAGESIZE);
        void* memory = mmap(nullptr, CUDA_ON_CPU_STACK_BYTES + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (memory == MAP_FAILED) throw std::bad_alloc();
        mprotect(memory, page, PROT_NONE);
        f.stack = static_cast<unsigned char*>(memory) + page;
    }
    getcontext(&f.start);
    f.start.uc_stack.ss_sp = f.stack;
    f.start.uc_stack.ss_size = CUDA_ON_CPU_STACK_BYTES;
    f.start.uc_link = nullptr;
    makecontext(&f.start, fiber_main, 0);
    running = &f;
    entering_fiber(f);
    swapcontext(&creator_context, &f.start);
    switched_back();
    f.inside_kernel = false;
    f.state = State::idle;
}

static __attribute__((noinline)) void resume(Fiber& f) {
    running = &f;
    thread_index = f.index;
    if (_setjmp(scheduler_context) == 0) {
        entering_fiber(f);
        _longjmp(f.context, 1);
    }
    switched_back();
}

static void fail(const std::string& message) {
    if (failure.empty()) failure = message;
}

void block_barrier(int line) {
    running->state = State::at_block_barrier;
    running->barrier_line = line;
    yield_to_scheduler();
}

void warp_barrier(unsigned mask, int line) {
    running->state = State::at_warp_barrier;
    running->barrier_line = line;
    running->warp_mask = mask;
    yield_to_scheduler();
}

void warp_exchange(unsigned mask, const void* value, void* result, int source_lane, std::size_t size, int line) {
    std::size_t self = running - fibers.data();
    std::size_t warp_start = self / 32 * 32;
    std::memcpy(exchange_slots[self], value, size);
    warp_barrier(mask, line);  // every lane has published its value
    std::size_t source = warp_start + static_cast<std::size_t>(source_lane);
    std::memcpy(result, exchange_slots[source < block_dim.x * block_dim.y * block_dim.z ? source : self], size);
    warp_barrier(mask, line);  // every lane has read before any publishes again
}

static std::string describe(const char* what, int line_a, int line_b) {
    return std::string(what) + " (source lines " + std::to_string(line_a) + " and " + std::to_string(line_b) + ")";
}

// Releases the warps whose live lanes all wait at one warp barrier; false (with `failure` set) when a warp
// waits for lanes that have exited or that wait elsewhere.
static bool release_warps(std::size_t threads) {
    for (std::size_t start = 0; start < threads; start += 32) {
        std::size_t end = start + 32 < threads ? start + 32 : threads;
        std::size_t done = 0, waiting = 0;
        int line = 0;
        for (std::size_t t = start; t < end; ++t) {
            const Fiber& f = fibers[t];
            done += f.state == State::done;
            if (f.state != State::at_warp_barrier) continue;
            if (f.warp_mask != 0xffffffffu) {
                fail("a warp operation with a partial mask (" + std::to_string(f.warp_mask) + ") is not emulated");
                return false;
            }
            if (waiting++ == 0) line = f.barrier_line;
            else if (f.barrier_line != line) {
                fail(describe("lanes of one warp wait at different __syncwarp or shuffle calls", line, f.barrier_line));
                return false;
            }
        }
        if (waiting == 0) continue;
        if (done > 0 || waiting != end - start) {
            fail(done > 0 ? "a warp shuffle or __syncwarp waits for lanes that have exited"
                          : "lanes of one warp wait at a warp shuffle while others wait at __syncthreads");
            return false;
        }
        for (std::size_t t = start; t < end; ++t) fibers[t].state = State::ready;
    }
    return true;
}

// Runs one block to completion; false (with `failure` set) on a barrier error.
static bool run_block(std::size_t threads, bool reverse) {
    for (std::size_t t = 0; t < threads; ++t) {
        Fiber& f = fibers[t];
        f.state = State::ready;
        f.index = {static_cast<unsigned>(t % block_dim.x), static_cast<unsigned>(t / block_dim.x % block_dim.y),
                   static_cast<unsigned>(t / (block_dim.x * block_dim.y))};
    }
    for (;;) {
        for (std::size_t k = 0; k < threads; ++k) {
            Fiber& f = fibers[reverse ? threads - 1 - k : k];
            if (f.state == State::ready) resume(f);
        }
        std::size_t done = 0, at_block = 0, at_warp = 0;
        int line = 0;
        for (std::size_t t = 0; t < threads; ++t) {
            const Fiber& f = fibers[t];
            if (f.state == State::done) ++done;
            if (f.state == State::at_warp_barrier) ++at_warp;
            if (f.state != State::at_block_barrier) continue;
            if (at_block++ == 0) line = f.barrier_line;
            else if (f.barrier_line != line) {
                fail(describe("threads of one block wait at different __syncthreads", line, f.barrier_line));
                return false;
            }
        }
        if (done == threads) return true;
        if (at_warp > 0) {
            if (release_warps(threads)) continue;
            return false;
        }
        if (done > 0) {
            fail(std::to_string(at_block) + " threads wait at __syncthreads (source line " + std::to_string(line) + ") while " +
                 std::to_string(done) + " threads of their block have exited");
            return false;
        }
        for (std::size_t t = 0; t < threads; ++t) fibers[t].state = State::ready;
    }
}

// This shared object's thread-local storage on the calling thread: the block's shared memory.
static thread_local unsigned char shared_anchor;

struct Span {
    unsigned char* start;
    std::size_t size;
};

static int find_tls_size(struct dl_phdr_info* info, std::size_t, void* data) {
    auto* wanted = static_cast<std::pair<ElfW(Addr), std::size_t>*>(data);
    if (info->dlpi_addr != wanted->first) return 0;
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        if (info->dlpi_phdr[i].p_type == PT_TLS) wanted->second = info->dlpi_phdr[i].p_memsz;
    }
    return 1;
}

static Span shared_memory() {
    *static_cast<volatile unsigned char*>(&shared_anchor) = 0xff;  // makes the loader allocate this thread's block
    Dl_info info;
    if (dladdr(reinterpret_cast<void*>(&shared_memory), &info) == 0) return {nullptr, 0};
    void* handle = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
    void* start = nullptr;
    if (handle == nullptr || dlinfo(handle, RTLD_DI_TLS_DATA, &start) != 0) start = nullptr;
    if (handle != nullptr) dlclose(handle);
    std::pair<ElfW(Addr), std::size_t> wanted{reinterpret_cast<ElfW(Addr)>(info.dli_fbase), 0};
    dl_iterate_phdr(find_tls_size, &wanted);
    return {static_cast<unsigned char*>(start), wanted.second};
}

static bool launch_fits(const unsigned* grid, const unsigned* block, std::size_t shared_bytes) {
    unsigned long long threads = 1ull * block[0] * block[1] * block[2];
    bool fits = grid[0] >= 1 && grid[1] >= 1 && grid[2] >= 1 && grid[0] <= 0x7fffffffu && grid[1] <= 65535 && grid[2] <= 65535 &&
                block[0] >= 1 && block[1] >= 1 && block[2] >= 1 && block[0] <= 1024 && block[1] <= 1024 && block[2] <= 64 &&
                threads <= 1024 && shared_bytes <= CUDA_ON_CPU_DYNAMIC_SHARED_BYTES;
    if (!fits) {
        char text[256];
        std::snprintf(text, sizeof text, "invalid launch configuration (cudaErrorInvalidConfiguration): grid (%u, %u, %u), block (%u, %u, %u), %zu bytes of dynamic shared memory",
                      grid[0], grid[1], grid[2], block[0], block[1], block[2], shared_bytes);
        fail(text);
    }
    return fits;
}

// Runs the grid; returns "" or the error.
static std::string launch(Launch kernel, const unsigned* grid, const unsigned* block, std::size_t shared_bytes, bool reverse) {
    std::lock_guard<std::mutex> guard(launch_lock);
    failure.clear();
    if (!launch_fits(grid, block, shared_bytes)) return failure;
    std::size_t threads = static_cast<std::size_t>(block[0]) * block[1] * block[2];
    for (std::size_t t = 0; t < threads; ++t) {
        if (fibers[t].stack == nullptr || fibers[t].inside_kernel) create_fiber(fibers[t]);
    }
    Span shared = shared_memory();
    if (shared.start == nullptr) return "cannot locate this shared object's thread-local storage (the blocks' shared memory)";
    current_launch = kernel;
    grid_dim = {grid[0], grid[1], grid[2]};
    block_dim = {block[0], block[1], block[2]};
    for (unsigned z = 0; z < grid[2]; ++z) {
        for (unsigned y = 0; y < grid[1]; ++y) {
            for (unsigned x = 0; x < grid[0]; ++x) {
                block_index = {x, y, z};
                std::memset(shared.start, 0xff, shared.size);  // NaN in every float and double slot
                if (!run_block(threads, reverse)) {
                    return failure + " in block (" + std::to_string(x) + ", " + std::to_string(y) + ", " + std::to_string(z) + ")";
                }
            }
        }
    }
    return "";
}

// ------------------------------------------------------------------------------------------ signatures
// A parameter's type as Python checks it: f4 f8 i4 u4 i8 u8 b1, a pointer "p" + its element's code, and "c"
// in front of a pointer to const.
template <typename T>
struct TypeCode;
#define CUDA_ON_CPU_CODE(type, code)                      \
    template <>                                           \
    struct TypeCode<type> {                               \
        static std::string get() { return code; }         \
    };
CUDA_ON_CPU_CODE(float, "f4")
CUDA_ON_CPU_CODE(double, "f8")
CUDA_ON_CPU_CODE(int, "i4")
CUDA_ON_CPU_CODE(unsigned int, "u4")
CUDA_ON_CPU_CODE(long, "i8")
CUDA_ON_CPU_CODE(long long, "i8")
CUDA_ON_CPU_CODE(unsigned long, "u8")
CUDA_ON_CPU_CODE(unsigned long long, "u8")
CUDA_ON_CPU_CODE(bool, "b1")
CUDA_ON_CPU_CODE(unsigned char, "u1")
template <typename T>
struct TypeCode<T*> {
    static std::string get() {
        return std::string(std::is_const<T>::value ? "cp" : "p") + TypeCode<typename std::remove_const<T>::type>::get();
    }
};

template <typename... P>
std::string signature_of() {
    std::string codes[] = {TypeCode<P>::get()..., ""};
    std::string joined;
    for (std::size_t i = 0; i < sizeof...(P); ++i) joined += (i ? "," : "") + codes[i];
    return joined;
}

// Each thread gets its own copy of every argument, read through the pointer CUDA's kernelParams would hold.
template <typename... P, std::size_t... I>
void call_kernel(void (*kernel)(P...), void* const* arguments, std::index_sequence<I...>) {
    kernel(*static_cast<typename std::remove_reference<P>::type*>(arguments[I])...);
}

template <typename... P>
void invoke_as(void (*kernel)(), void* const* arguments) {
    call_kernel(reinterpret_cast<void (*)(P...)>(kernel), arguments, std::index_sequence_for<P...>{});
}

struct Entry {
    std::string name, signature;
    Launch launch;
};

template <typename... P>
Entry entry(const char* name, void (*kernel)(P...)) {
    return {name, signature_of<P...>(), {&invoke_as<P...>, reinterpret_cast<void (*)()>(kernel), nullptr}};
}

std::vector<Entry>& entries();
}  // namespace cuda_on_cpu

// ------------------------------------------------------------------------------------------ the C interface
extern "C" {
int cuda_on_cpu_kernel_count() { return static_cast<int>(cuda_on_cpu::entries().size()); }
const char* cuda_on_cpu_kernel_name(int k) { return cuda_on_cpu::entries()[k].name.c_str(); }
const char* cuda_on_cpu_kernel_signature(int k) { return cuda_on_cpu::entries()[k].signature.c_str(); }

// Runs kernel `k` over the grid; 0, or 1 with the error in `error` (at most error_size bytes).
int cuda_on_cpu_launch(int k, const unsigned* grid, const unsigned* block, std::size_t shared_bytes, void* const* arguments,
                       int reverse, char* error, std::size_t error_size) {
    cuda_on_cpu::Launch launch = cuda_on_cpu::entries()[k].launch;
    launch.arguments = arguments;
    std::string message = cuda_on_cpu::launch(launch, grid, block, shared_bytes, reverse != 0);
    std::snprintf(error, error_size, "%s", message.c_str());
    return message.empty() ? 0 : 1;
}

// 1 when this object was built with AddressSanitizer (the slow test checks that it was).
int cuda_on_cpu_sanitized() {
#if defined(__SANITIZE_ADDRESS__)
    return 1;
#else
    return 0;
#endif
}
}
