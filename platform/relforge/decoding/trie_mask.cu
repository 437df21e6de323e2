// Batched label-Trie masking (RelForge). Compiled at run time by CuPy
// (NVRTC) and, in the tests, by nvcc wherever it exists.
//
// Row r is in Trie state states[r]; its allowed tokens are the tokens of the
// state's CSR edges indptr[s]..indptr[s+1] (sorted by token), an edge being
// dropped when the row's example may not produce any label behind it:
// label_cum is the (examples, labels + 1) prefix sum of the example's label
// mask, edge e leads to labels [edge_lo[e], edge_hi[e]) (edge_lo < 0: always
// allowed), and example = r / rows_per_example.
//
// The fill kernels never read the scores: they write the bit pattern of -inf
// over every disallowed entry and leave allowed entries untouched, so one
// kernel per element size serves float16, bfloat16, float32 and float64 (the
// caller passes the dtype's -inf bits). Traffic is one write per disallowed
// element plus the (cached) edge lists. The mask kernel writes 1/0 bytes.
//
// Grid: x covers the vocabulary in chunks, y strides over rows.

__device__ __forceinline__ int find_edge(const int* __restrict__ edge_token, int e0, int e1, int v) {
    // Binary search for token v among the sorted edges [e0, e1); -1 if absent.
    int lo = e0, hi = e1;
    while (lo < hi) {
        int mid = (lo + hi) >> 1;
        int t = __ldg(edge_token + mid);
        if (t < v) lo = mid + 1; else hi = mid;
    }
    return (lo < e1 && __ldg(edge_token + lo) == v) ? lo : -1;
}

__device__ __forceinline__ bool edge_allowed(int e, int r, const int* __restrict__ edge_lo,
                                             const int* __restrict__ edge_hi,
                                             const int* __restrict__ label_cum, int cum_stride,
                                             int rows_per_example) {
    if (e < 0) return false;
    int lo = __ldg(edge_lo + e);
    if (label_cum == nullptr || lo < 0) return true;
    const int* c = label_cum + (long long)(r / rows_per_example) * cum_stride;
    return __ldg(c + __ldg(edge_hi + e)) - __ldg(c + lo) > 0;
}

template <typename T>
__device__ void trie_fill(T* __restrict__ scores, long long row_stride, T neg_inf, int vocab, int rows,
                          const int* __restrict__ states, const int* __restrict__ indptr,
                          const int* __restrict__ edge_token, const int* __restrict__ edge_lo,
                          const int* __restrict__ edge_hi, const int* __restrict__ label_cum,
                          int cum_stride, int rows_per_example) {
    for (int r = blockIdx.y; r < rows; r += gridDim.y) {
        int s = __ldg(states + r);
        int e0 = __ldg(indptr + s), e1 = __ldg(indptr + s + 1);
        T* row = scores + (long long)r * row_stride;
        for (int v = blockIdx.x * blockDim.x + threadIdx.x; v < vocab; v += gridDim.x * blockDim.x) {
            int e = find_edge(edge_token, e0, e1, v);
            if (!edge_allowed(e, r, edge_lo, edge_hi, label_cum, cum_stride, rows_per_example)) {
                row[v] = neg_inf;
            }
        }
    }
}

#define RELFORGE_FILL_KERNEL(NAME, T)                                                            \
    extern "C" __global__ void NAME(T* scores, long long row_stride, T neg_inf, int vocab,     \
                                    int rows, const int* states, const int* indptr,            \
                                    const int* edge_token, const int* edge_lo,                 \
                                    const int* edge_hi, const int* label_cum, int cum_stride,  \
                                    int rows_per_example) {                                    \
        trie_fill<T>(scores, row_stride, neg_inf, vocab, rows, states, indptr, edge_token,      \
                     edge_lo, edge_hi, label_cum, cum_stride, rows_per_example);                \
    }

RELFORGE_FILL_KERNEL(trie_fill_16, short)
RELFORGE_FILL_KERNEL(trie_fill_32, int)
RELFORGE_FILL_KERNEL(trie_fill_64, long long)

extern "C" __global__ void trie_mask(unsigned char* __restrict__ mask, int vocab, int rows,
                                     const int* __restrict__ states, const int* __restrict__ indptr,
                                     const int* __restrict__ edge_token, const int* __restrict__ edge_lo,
                                     const int* __restrict__ edge_hi, const int* __restrict__ label_cum,
                                     int cum_stride, int rows_per_example) {
    for (int r = blockIdx.y; r < rows; r += gridDim.y) {
        int s = __ldg(states + r);
        int e0 = __ldg(indptr + s), e1 = __ldg(indptr + s + 1);
        unsigned char* row = mask + (long long)r * vocab;
        for (int v = blockIdx.x * blockDim.x + threadIdx.x; v < vocab; v += gridDim.x * blockDim.x) {
            int e = find_edge(edge_token, e0, e1, v);
            row[v] = edge_allowed(e, r, edge_lo, edge_hi, label_cum, cum_stride, rows_per_example) ? 1 : 0;
        }
    }
}
