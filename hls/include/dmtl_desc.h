// DDR job descriptor: reading and validation shared by fetch and commit, so both kernels
// reach the same verdict on the same descriptor (a refused descriptor: fetch streams
// nothing, commit expects nothing).
//
// Memory is accessed in whole 64-bit words of the gmem bundle. A region therefore
// occupies the words [off/8, ceil((off + bytes)/8)); the REGION check requires those whole
// words inside the buffer, i.e. off + bytes rounded up to 8 <= buf_bytes (the descriptor
// helper pads every region to whole words, so a well-formed layout always passes).
#pragma once

#include "dmtl_types.h"

namespace dmtl {

struct Desc {
  Header h;
  uint64_t hdr0, hdr1;
  uint64_t off[NUM_REGIONS];
  uint64_t bytes[NUM_REGIONS];
  bool used[NUM_REGIONS];
};

inline uint64_t round8(uint64_t n) { return (n + WORD_BYTES - 1) / WORD_BYTES * WORD_BYTES; }

// contract.region_bytes
inline uint64_t region_bytes(int r, const Header& h) {
  const uint64_t P = h.tokens, I = h.in_dim, O = h.out_dim, N = h.nnz_dw;
  switch (r) {
    case REGION_W: return O * I;
    case REGION_DW_INDPTR: return INDPTR_BYTES * (O + 1);
    case REGION_DW_INDICES: return INDEX_BYTES * N;
    case REGION_DW_VALUES: return N;
    case REGION_BIAS: return INT32_BYTES * O;
    case REGION_REQ_MULT: return REQ_MULT_BYTES * O;
    case REGION_REQ_SHIFT: return O;
    case REGION_XREF: return P * I;
    case REGION_YREF: return INT32_BYTES * P * O;
    case REGION_X: return P * I;
    case REGION_Y_OUT: return P * O;
    case REGION_XREF_OUT: return P * I;
    default: return INT32_BYTES * P * O;  // REGION_YREF_OUT
  }
}

// contract.regions_used
inline bool region_used(int r, const Header& h) {
  const bool refs = (h.mode == MODE_TEMPORAL || h.mode == MODE_TASK) && (h.flags & FLAG_LOAD_REF);
  switch (r) {
    case REGION_REQ_MULT: case REGION_REQ_SHIFT: case REGION_X: case REGION_Y_OUT: return true;
    case REGION_W: return h.flags & FLAG_LOAD_W;
    case REGION_DW_INDPTR: case REGION_DW_INDICES: case REGION_DW_VALUES: return h.nnz_dw > 0;
    case REGION_BIAS: return h.mode == MODE_DENSE || h.mode == MODE_TASK;
    case REGION_XREF: case REGION_YREF: return refs;
    default: return h.flags & FLAG_EMIT_REF;  // XREF_OUT, YREF_OUT
  }
}

inline bool is_output_region(int r) {
  return r == REGION_Y_OUT || r == REGION_XREF_OUT || r == REGION_YREF_OUT;
}

// Whole-word region [off, off + bytes) inside [0, buf_bytes) and aligned (overflow-safe).
inline bool region_ok(uint64_t off, uint64_t bytes, uint64_t buf_bytes) {
  if (off % REGION_ALIGN != 0 || off > buf_bytes) return false;
  return round8(bytes) <= buf_bytes - off;
}

inline bool overlap(uint64_t a, uint64_t an, uint64_t b, uint64_t bn) {
  return a < b + round8(bn) && b < a + round8(an);
}

constexpr int BYTE_BITS = 8;
// The most words of one row region (int32 y_ref rows), for LOOP_TRIPCOUNT.
constexpr int MAX_REGION_WORDS = MAX_TOKENS * ROW_I32_OUT;

// Whole words of a region of `bytes` bytes (regions start on a word: REGION_ALIGN).
inline int region_words(uint64_t bytes) { return int((bytes + WORD_BYTES - 1) / WORD_BYTES); }

// Validation in a fixed order; the first failing check decides the status bit:
// descriptor placement (REGION) -> magic/version/mode/flags (BAD_DESC) -> dims, O*I, nnz (DIMS)
// -> used regions (REGION) -> output overlaps (OVERLAP) -> CSR (CSR).
// Reads only the descriptor until the regions are proven inside the buffer; the CSR check
// then reads the (validated) DW regions. Returns 0 or one KSTATUS_* error bit.
inline int read_and_validate(const mem_word* gmem, uint64_t buf_bytes, uint64_t desc_offset,
                             Desc& d) {
  if (!region_ok(desc_offset, DESC_BYTES, buf_bytes)) return KSTATUS_REGION;
  uint32_t w[DESC_WORDS];
read_desc:
  for (int k = 0; k < DESC_WORDS / 2; k++) {
#pragma HLS LOOP_TRIPCOUNT min = DESC_WORDS / 2 max = DESC_WORDS / 2
#pragma HLS PIPELINE II = 1
    const uint64_t v = uint64_t(gmem[desc_offset / WORD_BYTES + k]);
    w[2 * k] = uint32_t(v);
    w[2 * k + 1] = uint32_t(v >> 32);
  }
  d.hdr0 = uint64_t(w[DESC_WORD_HEADER]) | (uint64_t(w[DESC_WORD_HEADER + 1]) << 32);
  d.hdr1 = uint64_t(w[DESC_WORD_HEADER + 2]) | (uint64_t(w[DESC_WORD_HEADER + 3]) << 32);
  d.h = parse_header(d.hdr0, d.hdr1);
  const Header& h = d.h;
  if (w[DESC_WORD_MAGIC] != uint32_t(DESC_MAGIC) || w[DESC_WORD_VERSION] != uint32_t(CONTRACT_VERSION))
    return KSTATUS_BAD_DESC;
  if (h.mode > MODE_TASK || (h.flags & ~VALID_FLAGS)) return KSTATUS_BAD_DESC;
  if (h.tokens < 1 || h.tokens > MAX_TOKENS || h.in_dim < 1 || h.in_dim > MAX_IN ||
      h.out_dim < 1 || h.out_dim > MAX_OUT || weights_over(h) || h.nnz_dw > uint32_t(MAX_NNZ_DW))
    return KSTATUS_DIMS;
  bool bad_region = false;
regions:
  for (int r = 0; r < NUM_REGIONS; r++) {
#pragma HLS LOOP_TRIPCOUNT min = NUM_REGIONS max = NUM_REGIONS
#pragma HLS PIPELINE II = 1
    d.off[r] = uint64_t(w[DESC_WORD_REGIONS + 2 * r]) |
               (uint64_t(w[DESC_WORD_REGIONS + 2 * r + 1]) << 32);
    d.bytes[r] = region_bytes(r, h);
    d.used[r] = region_used(r, h);
    if (d.used[r] && !region_ok(d.off[r], d.bytes[r], buf_bytes)) bad_region = true;
  }
  if (bad_region) return KSTATUS_REGION;
  bool bad_overlap = false;
overlaps:
  for (int a = 0; a < NUM_REGIONS; a++) {
#pragma HLS LOOP_TRIPCOUNT min = NUM_REGIONS max = NUM_REGIONS
    if (!(d.used[a] && is_output_region(a))) continue;
    if (overlap(d.off[a], d.bytes[a], desc_offset, DESC_BYTES)) bad_overlap = true;
    for (int b = 0; b < NUM_REGIONS; b++) {
#pragma HLS LOOP_TRIPCOUNT min = NUM_REGIONS max = NUM_REGIONS
#pragma HLS PIPELINE II = 1
      if (b != a && d.used[b] && overlap(d.off[a], d.bytes[a], d.off[b], d.bytes[b]))
        bad_overlap = true;
    }
  }
  if (bad_overlap) return KSTATUS_OVERLAP;
  if (h.nnz_dw > 0) {
    // Row pointers start at 0, never decrease and end at nnz; every column < in_dim. Both
    // walks read whole words, one unconditional read per iteration at consecutive
    // addresses (a burst), and check the word's entries in an unrolled loop.
    constexpr int PTR_PER_WORD = WORD_BYTES / INDPTR_BYTES;
    constexpr int COL_PER_WORD = WORD_BYTES / INDEX_BYTES;
    uint32_t prev = 0;
    bool bad = false;
    const uint64_t ip0 = d.off[REGION_DW_INDPTR] / WORD_BYTES;
  csr_indptr:
    for (int k = 0; k < region_words(d.bytes[REGION_DW_INDPTR]); k++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = (MAX_OUT + 1 + PTR_PER_WORD - 1) / PTR_PER_WORD
#pragma HLS PIPELINE II = 1
      const uint64_t w = uint64_t(gmem[ip0 + k]);
      for (int e = 0; e < PTR_PER_WORD; e++) {
#pragma HLS UNROLL
        const int r = k * PTR_PER_WORD + e;
        const uint32_t v = uint32_t(bits(w, BYTE_BITS * INDPTR_BYTES * e, BYTE_BITS * INDPTR_BYTES));
        if (r <= h.out_dim) {
          if ((r == 0 && v != 0) || int32_t(v) < int32_t(prev)) bad = true;
          if (r == h.out_dim && v != h.nnz_dw) bad = true;
          prev = v;
        }
      }
    }
    const uint64_t ix0 = d.off[REGION_DW_INDICES] / WORD_BYTES;
  csr_indices:
    for (int k = 0; k < region_words(d.bytes[REGION_DW_INDICES]); k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = (MAX_NNZ_DW + COL_PER_WORD - 1) / COL_PER_WORD
#pragma HLS PIPELINE II = 1
      const uint64_t w = uint64_t(gmem[ix0 + k]);
      for (int e = 0; e < COL_PER_WORD; e++) {
#pragma HLS UNROLL
        const uint32_t n = uint32_t(k * COL_PER_WORD + e);
        if (n < h.nnz_dw && int(bits(w, BYTE_BITS * INDEX_BYTES * e, BYTE_BITS * INDEX_BYTES)) >= h.in_dim) bad = true;
      }
    }
    if (bad) return KSTATUS_CSR;
  }
  return 0;
}

}  // namespace dmtl
