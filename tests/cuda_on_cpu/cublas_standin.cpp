// A libcublas for the CPU tests: the entry points backends/cublas.py binds, with cuBLAS's argument rules, and
// cublas[SD]gemm_v2 computed in double on column-major operands.
//
// Rules applied (cuBLAS documentation, cublas<t>gemm and the handle calls): a handle must come from
// cublasCreate_v2 (else CUBLAS_STATUS_NOT_INITIALIZED); op codes are N, T or C; m, n, k >= 0; lda >= max(1, m)
// for op N (else max(1, k)), ldb >= max(1, k) for op N (else max(1, n)), ldc >= max(1, m); alpha and beta are
// given; a workspace is 256-byte aligned; cublasSetStream_v2 resets the workspace to the library's own pool.
// Anything else is CUBLAS_STATUS_INVALID_VALUE. A valid call goes to the hook the test runtime installed
// (which records it while the stream captures, checks its memory, and runs it through cublas_standin_run).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <set>

namespace {
enum Status { success = 0, not_initialized = 1, invalid_value = 7 };
enum Operation { op_n = 0, op_t = 1, op_c = 2 };

struct Handle {
    void* stream = nullptr;
    void* workspace = nullptr;  // null: the library's own pool (cuBLAS would allocate from it)
    std::size_t workspace_bytes = 0;
    int pointer_mode = 0;
    int math_mode = 0;
};

std::set<Handle*> handles;
}  // namespace

// One product, as the hook sees it and cublas_standin_run computes it.
struct GemmCall {
    int element_bytes;  // 4: cublasSgemm_v2, 8: cublasDgemm_v2
    int transa, transb, m, n, k;
    double alpha, beta;
    const void* a;
    int lda;
    const void* b;
    int ldb;
    void* c;
    int ldc;
    void* stream;
    void* workspace;
    std::size_t workspace_bytes;
    int math_mode;
};

typedef int (*GemmHook)(const GemmCall*);
static GemmHook hook = nullptr;

// C <- alpha op(A) op(B) + beta C in double, column-major; C is not read when beta == 0 (BLAS's rule).
template <typename T>
static void run(const GemmCall& call) {
    const T* a = static_cast<const T*>(call.a);
    const T* b = static_cast<const T*>(call.b);
    T* c = static_cast<T*>(call.c);
    for (int j = 0; j < call.n; ++j) {
        for (int i = 0; i < call.m; ++i) {
            double sum = 0.0;
            for (int p = 0; p < call.k; ++p) {
                double x = call.transa == op_n ? a[i + static_cast<std::ptrdiff_t>(p) * call.lda] : a[p + static_cast<std::ptrdiff_t>(i) * call.lda];
                double y = call.transb == op_n ? b[p + static_cast<std::ptrdiff_t>(j) * call.ldb] : b[j + static_cast<std::ptrdiff_t>(p) * call.ldb];
                sum += x * y;
            }
            T& out = c[i + static_cast<std::ptrdiff_t>(j) * call.ldc];
            out = static_cast<T>(call.beta == 0.0 ? call.alpha * sum : call.alpha * sum + call.beta * static_cast<double>(out));
        }
    }
}

template <typename T>
static int gemm(Handle* handle, int transa, int transb, int m, int n, int k, const T* alpha, const T* a, int lda, const T* b,
                int ldb, const T* beta, T* c, int ldc) {
    if (handles.count(handle) == 0) return not_initialized;
    auto op = [](int t) { return t == op_n || t == op_t || t == op_c; };
    auto at_least = [](int ld, int rows) { return ld >= (rows > 1 ? rows : 1); };
    if (!op(transa) || !op(transb) || m < 0 || n < 0 || k < 0 || alpha == nullptr || beta == nullptr) return invalid_value;
    if (!at_least(lda, transa == op_n ? m : k) || !at_least(ldb, transb == op_n ? k : n) || !at_least(ldc, m)) return invalid_value;
    if (hook == nullptr) return not_initialized;
    GemmCall call{static_cast<int>(sizeof(T)), transa, transb, m, n, k, static_cast<double>(*alpha), static_cast<double>(*beta),
                  a, lda, b, ldb, c, ldc, handle->stream, handle->workspace, handle->workspace_bytes, handle->math_mode};
    return hook(&call);
}

extern "C" {
void cublas_standin_set_hook(GemmHook h) { hook = h; }

int cublasCreate_v2(Handle** handle) {
    if (handle == nullptr) return invalid_value;
    *handle = new Handle();
    handles.insert(*handle);
    return success;
}
int cublasDestroy_v2(Handle* handle) {
    if (handles.erase(handle) == 0) return not_initialized;
    delete handle;
    return success;
}
int cublasSetStream_v2(Handle* handle, void* stream) {
    if (handles.count(handle) == 0) return not_initialized;
    handle->stream = stream;
    handle->workspace = nullptr;  // "unconditionally resets the cuBLAS library workspace back to the default pool"
    handle->workspace_bytes = 0;
    return success;
}
int cublasSetWorkspace_v2(Handle* handle, void* workspace, std::size_t bytes) {
    if (handles.count(handle) == 0) return not_initialized;
    if ((bytes > 0 && workspace == nullptr) || reinterpret_cast<std::uintptr_t>(workspace) % 256 != 0) return invalid_value;
    handle->workspace = workspace;
    handle->workspace_bytes = bytes;
    return success;
}
int cublasSetPointerMode_v2(Handle* handle, int mode) {
    if (handles.count(handle) == 0) return not_initialized;
    if (mode != 0 && mode != 1) return invalid_value;
    handle->pointer_mode = mode;
    return success;
}
int cublasSetMathMode(Handle* handle, int mode) {
    if (handles.count(handle) == 0) return not_initialized;
    handle->math_mode = mode;
    return success;
}

void cublas_standin_run(const GemmCall* call) {
    if (call->element_bytes == 4) run<float>(*call);
    else run<double>(*call);
}

int cublasSgemm_v2(Handle* handle, int transa, int transb, int m, int n, int k, const float* alpha, const float* a, int lda,
                   const float* b, int ldb, const float* beta, float* c, int ldc) {
    return gemm(handle, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
int cublasDgemm_v2(Handle* handle, int transa, int transb, int m, int n, int k, const double* alpha, const double* a, int lda,
                   const double* b, int ldb, const double* beta, double* c, int ldc) {
    return gemm(handle, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
}
