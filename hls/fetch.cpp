// fetch: DDR job (descriptor + regions, over m_axi) -> the core's input packet (AXI4-Stream).
//
// ap_ctrl_hs, registers pinned by DMTL_AXILITE_PRAGMAS (gmem 0x10, buf_bytes 0x1C,
// desc_offset 0x28, status 0x34). The descriptor is validated completely (dmtl_desc.h)
// before the first word is streamed; a refused descriptor streams nothing and sets one
// KSTATUS error bit. status always carries KSTATUS_DONE at the end.
// desc_offset may instead name a job chain: one start runs a frame (docs/hls.md, Job chains).
#include "dmtl_chain.h"
#include "dmtl_desc.h"
#include "dmtl_kernels.h"

using namespace dmtl;

namespace {

// Streams `rows` rows of `row_bytes` bytes stored contiguously from the 8-aligned byte
// address `base`; each row becomes ceil(row_bytes/8) words, zero padded (the packet's
// row layout). A 128-bit carry register realigns rows that do not start on a word: at
// most one memory word is read per stream word.
void stream_rows(const mem_word* gmem, uint64_t base, int rows, int row_bytes, bool last_section,
                 axis_stream& out) {
  const int wpr = ceil_div(row_bytes, 8);
  uint64_t waddr = base / 8;
  ap_uint<128> carry = 0;
  int have = 0;  // valid bytes in carry
rows_loop:
  for (int k = 0; k < rows * wpr; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_TOKENS * ROW_I32_OUT
#pragma HLS PIPELINE II = 1
    const int r = k / wpr, j = k % wpr;
    const int need = cmin(8, row_bytes - 8 * j);
    if (have < need) {
      carry |= ap_uint<128>(gmem[waddr++]) << (8 * have);
      have += 8;
    }
    uint64_t word = uint64_t(carry.range(63, 0));
    if (need < 8) word &= (uint64_t(1) << (8 * need)) - 1;
    carry >>= 8 * need;
    have -= need;
    put(out, word, last_section && r == rows - 1 && j == wpr - 1);
  }
}

}  // namespace

// One job (the body of the single-job kernel, unchanged).
void fetch_job(mem_word* gmem, uint64_t buf_bytes, uint64_t desc_offset, uint32_t* status,
               axis_stream& m_axis) {
  Desc d;
  const int err = read_and_validate(gmem, buf_bytes, desc_offset, d);
  if (err) {
    *status = uint32_t(KSTATUS_DONE | err);
    return;
  }
  const Header& h = d.h;
  const int P = h.tokens, I = h.in_dim, O = h.out_dim;
  put(m_axis, d.hdr0, false);
  put(m_axis, d.hdr1, false);
  if (h.flags & FLAG_LOAD_W) stream_rows(gmem, d.off[REGION_W], O, I, false, m_axis);
  if (h.nnz_dw > 0) {
    // Walk CSR in row order: one NZ word (col, row, value) per non-zero.
    WordCache ip = {gmem, 0, 0, false}, ix = {gmem, 0, 0, false}, iv = {gmem, 0, 0, false};
    uint32_t k = 0;
  csr_rows:
    for (int r = 0; r < O; r++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_OUT
      const uint32_t end = ip.get(d.off[REGION_DW_INDPTR] + 4 * uint64_t(r + 1), 4);
    csr_nz:
      for (; k < end; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = MAX_IN
#pragma HLS PIPELINE II = 1
        const uint64_t col = ix.get(d.off[REGION_DW_INDICES] + 2 * uint64_t(k), 2);
        const uint64_t val = iv.get(d.off[REGION_DW_VALUES] + uint64_t(k), 1);
        put(m_axis, (col << NZ_COL_LSB) | (uint64_t(r) << NZ_ROW_LSB) | (val << NZ_VALUE_LSB), false);
      }
    }
  }
  if (h.mode == MODE_DENSE || h.mode == MODE_TASK)
    stream_rows(gmem, d.off[REGION_BIAS], 1, 4 * O, false, m_axis);
  // Requant entries: mult (uint16 region) and shift (uint8 region) merged per channel.
  WordCache cm = {gmem, 0, 0, false}, cs = {gmem, 0, 0, false};
  const int per_word = 64 / REQ_ENTRY_BITS;
req_words:
  for (int j = 0; j < ceil_div(O, per_word); j++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = ROW_I32_OUT
#pragma HLS PIPELINE II = 1
    uint64_t word = 0;
    for (int b = 0; b < per_word; b++) {
#pragma HLS UNROLL
      const int o = j * per_word + b;
      if (o < O) {
        const uint64_t m = cm.get(d.off[REGION_REQ_MULT] + 2 * uint64_t(o), 2);
        const uint64_t s = cs.get(d.off[REGION_REQ_SHIFT] + uint64_t(o), 1);
        const uint64_t e = (m << REQ_MULT_LSB) | (bits(s, 0, REQ_SHIFT_WIDTH) << REQ_SHIFT_LSB);
        word |= e << (REQ_ENTRY_BITS * b);
      }
    }
    put(m_axis, word, false);
  }
  if ((h.mode == MODE_TEMPORAL || h.mode == MODE_TASK) && (h.flags & FLAG_LOAD_REF)) {
    stream_rows(gmem, d.off[REGION_XREF], P, I, false, m_axis);
    stream_rows(gmem, d.off[REGION_YREF], P, 4 * O, false, m_axis);
  }
  stream_rows(gmem, d.off[REGION_X], P, I, true, m_axis);
  *status = uint32_t(KSTATUS_DONE);
}

// The top: `desc_offset` names a job descriptor (one job, as before) or a chain header
// (contract/chain.py), validated whole first; then each job in link order, after waiting
// for the doorbell when its link says so. One call site of fetch_job, so synthesis builds
// the per-job datapath once for both cases.
void fetch(mem_word* gmem, uint64_t buf_bytes, uint64_t desc_offset, uint32_t* status,
           axis_stream& m_axis) {
  DMTL_AXILITE_PRAGMAS
#pragma HLS INTERFACE mode = m_axi port = gmem bundle = gmem offset = slave depth = GMEM_COSIM_DEPTH max_read_burst_length = 64
#pragma HLS INTERFACE mode = axis port = m_axis
  const bool chained = is_chain(gmem, buf_bytes, desc_offset);
  Chain c = {1, 0, 0, 0};
  if (chained) {
    const int err = read_and_validate_chain(gmem, buf_bytes, desc_offset, c);
    if (err) {
      *status = uint32_t(KSTATUS_DONE | err);
      return;
    }
  }
  uint64_t pos = c.first;
  uint32_t job_status = 0;
chain_jobs:
  for (uint32_t k = 0; k < c.n_jobs; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_CHAIN_JOBS
    ChainLink l = {CHAIN_END, desc_offset, 0};
    if (chained) l = read_link(gmem, pos);
    if (l.flags & CHAIN_WAIT) {
    doorbell:
      while (!doorbell_rung(gmem, c, k)) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 1
      }
    }
    fetch_job(gmem, buf_bytes, l.desc, &job_status, m_axis);  // a chained job's status: commit reports it
    pos = l.next;
  }
  *status = chained ? uint32_t(KSTATUS_DONE) : job_status;
}
