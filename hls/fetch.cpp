// fetch: DDR job (descriptor + regions, over m_axi) -> the core's input packet (AXI4-Stream).
//
// ap_ctrl_hs, registers pinned by DMTL_AXILITE_PRAGMAS (gmem 0x10, buf_bytes 0x1C,
// desc_offset 0x28, status 0x34). The descriptor is validated completely (dmtl_desc.h)
// before the first word is streamed; a refused descriptor streams nothing and sets one
// KSTATUS error bit. status always carries KSTATUS_DONE at the end.
//
// Every pipelined loop that touches gmem makes exactly one unconditional read per iteration
// (docs/hls.md, "fetch and commit"): the memory side of a region is a plain burst of its
// words, and the rate mismatch with the stream side (rows need not start on a word, the
// CSR walk consumes three regions at different rates) is taken up by FIFOs between a
// reader and a consumer running in a DATAFLOW region.
//
// desc_offset may instead name a job chain: one start runs a frame (docs/hls.md, Job chains).
#include "dmtl_chain.h"
#include "dmtl_desc.h"
#include "dmtl_kernels.h"

using namespace dmtl;

namespace {

typedef hls::stream<uint64_t> word_fifo;

constexpr int PTR_BITS = BYTE_BITS * INDPTR_BYTES, COL_BITS = BYTE_BITS * INDEX_BYTES;
constexpr int MULT_BITS = BYTE_BITS * REQ_MULT_BYTES;
constexpr int PTR_PER_WORD = WORD_BYTES / INDPTR_BYTES;     // uint32 indptr entries per word
constexpr int COL_PER_WORD = WORD_BYTES / INDEX_BYTES;      // uint16 column indices per word
constexpr int VAL_PER_WORD = WORD_BYTES;                    // int8 values per word
constexpr int MULT_PER_WORD = WORD_BYTES / REQ_MULT_BYTES;  // uint16 multipliers per word
constexpr int PTR_WORDS = (MAX_OUT + 1 + PTR_PER_WORD - 1) / PTR_PER_WORD;
constexpr int MAX_NNZ_WORDS = (MAX_NNZ_DW + COL_PER_WORD - 1) / COL_PER_WORD +
                              (MAX_NNZ_DW + VAL_PER_WORD - 1) / VAL_PER_WORD;

// n consecutive memory words from word address waddr: one burst.
void read_words(const mem_word* gmem, uint64_t waddr, int n, word_fifo& out) {
read_words_loop:
  for (int k = 0; k < n; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_REGION_WORDS
#pragma HLS PIPELINE II = 1
    out.write(uint64_t(gmem[waddr + k]));
  }
}

// `rows` rows of `row_bytes` bytes, stored back to back in the words of `in`, become
// ceil(row_bytes / WORD_BYTES) zero-padded stream words each (the packet's row layout).
// A 128-bit carry realigns rows that do not start on a word: it is refilled from the FIFO
// (at most one word per stream word) whenever it holds fewer bytes than the next word needs.
void realign(word_fifo& in, int rows, int row_bytes, bool last_section, axis_stream& out) {
  const int n = rows * ceil_div(row_bytes, WORD_BYTES);
  ap_uint<2 * STREAM_DATA_BITS> carry = 0;
  int have = 0;            // valid bytes in carry
  int left = row_bytes;    // bytes of the current row not yet streamed
realign_loop:
  for (int k = 0; k < n; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_REGION_WORDS
#pragma HLS PIPELINE II = 1
    const int need = cmin(WORD_BYTES, left);
    if (have < need) {
      carry |= ap_uint<2 * STREAM_DATA_BITS>(in.read()) << (BYTE_BITS * have);
      have += WORD_BYTES;
    }
    uint64_t word = uint64_t(carry.range(STREAM_DATA_BITS - 1, 0));
    if (need < WORD_BYTES) word &= (uint64_t(1) << (BYTE_BITS * need)) - 1;
    carry >>= BYTE_BITS * need;
    have -= need;
    left = left == need ? row_bytes : left - need;
    put(out, word, last_section && k == n - 1);
  }
}

// Canonical DATAFLOW body: a FIFO and two calls on plain arguments (the caller computes
// every address and count, so no logic sits between the processes).
void rows_dataflow(const mem_word* gmem, uint64_t waddr, int n_words, int rows, int row_bytes,
                   bool last_section, axis_stream& out) {
#pragma HLS DATAFLOW
  word_fifo fifo;
#pragma HLS STREAM variable = fifo depth = 64
  read_words(gmem, waddr, n_words, fifo);
  realign(fifo, rows, row_bytes, last_section, out);
}

void stream_rows(const mem_word* gmem, uint64_t base, int rows, int row_bytes, bool last_section,
                 axis_stream& out) {
  const uint64_t waddr = base / WORD_BYTES;
  const int n_words = region_words(uint64_t(rows) * uint64_t(row_bytes));
  rows_dataflow(gmem, waddr, n_words, rows, row_bytes, last_section, out);
}

// The index and value words of the CSR walk, interleaved in the order the consumer needs
// them (two index words, then one value word): one read per iteration, its address chosen
// by a counter. The two regions alternate, so this is single-beat reads, not one burst.
void read_nnz(const mem_word* gmem, uint64_t ix0, uint64_t iv0, int n_ix, int n_iv,
              word_fifo& ix, word_fifo& iv) {
  int ki = 0, kv = 0;
read_nnz_loop:
  for (int k = 0; k < n_ix + n_iv; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = MAX_NNZ_WORDS
#pragma HLS PIPELINE II = 1
    const bool take_ix = ki < n_ix && (kv == n_iv || ki < 2 * (kv + 1));
    const uint64_t w = uint64_t(gmem[take_ix ? ix0 + ki : iv0 + kv]);
    if (take_ix) {
      ix.write(w);
      ki++;
    } else {
      iv.write(w);
      kv++;
    }
  }
}

// Walks CSR in row order: O row ends and nnz non-zeros, one event per iteration; a
// non-zero becomes one NZ word (col | row | value). Row ends come from `ptr` (indptr words,
// entry 0 = 0 skipped), columns and values from their FIFOs.
void emit_nnz(word_fifo& ptr, word_fifo& ix, word_fifo& iv, int O, uint32_t nnz, axis_stream& out) {
  uint64_t pw = ptr.read();  // entries 0 and 1
  int e = 1;                 // indptr entry holding the current row's end
  uint32_t end = uint32_t(bits(pw, PTR_BITS, PTR_BITS)), k = 0;
  uint64_t cw = 0, vw = 0;
  int r = 0;
emit_nnz_loop:
  for (int t = 0; t < O + int(nnz); t++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_OUT + MAX_NNZ_DW
#pragma HLS PIPELINE II = 1
    if (k < end) {
      if (k % COL_PER_WORD == 0) cw = ix.read();
      if (k % VAL_PER_WORD == 0) vw = iv.read();
      const uint64_t col = bits(cw, COL_BITS * int(k % COL_PER_WORD), COL_BITS);
      const uint64_t val = bits(vw, BYTE_BITS * int(k % VAL_PER_WORD), BYTE_BITS);
      put(out, (col << NZ_COL_LSB) | (uint64_t(r) << NZ_ROW_LSB) | (val << NZ_VALUE_LSB), false);
      k++;
    } else {
      r++;
      e++;
      if (e <= O) {
        if (e % PTR_PER_WORD == 0) pw = ptr.read();
        end = uint32_t(bits(pw, PTR_BITS * (e % PTR_PER_WORD), PTR_BITS));
      }
    }
  }
}

void nnz_dataflow(const mem_word* gmem, uint64_t ix0, uint64_t iv0, int n_ix, int n_iv,
                  word_fifo& ptr, int O, uint32_t nnz, axis_stream& out) {
#pragma HLS DATAFLOW
  word_fifo ix, iv;
#pragma HLS STREAM variable = ix depth = 8
#pragma HLS STREAM variable = iv depth = 8
  read_nnz(gmem, ix0, iv0, n_ix, n_iv, ix, iv);
  emit_nnz(ptr, ix, iv, O, nnz, out);
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
    // The row pointers first (a burst into a FIFO deep enough for all of them, so the
    // DATAFLOW walk below never waits on them), then the non-zeros in row order.
    word_fifo ptr;
#pragma HLS STREAM variable = ptr depth = PTR_WORDS
    const uint64_t ip0 = d.off[REGION_DW_INDPTR] / WORD_BYTES;
  read_indptr:
    for (int k = 0; k < region_words(d.bytes[REGION_DW_INDPTR]); k++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = PTR_WORDS
#pragma HLS PIPELINE II = 1
      ptr.write(uint64_t(gmem[ip0 + k]));
    }
    nnz_dataflow(gmem, d.off[REGION_DW_INDICES] / WORD_BYTES, d.off[REGION_DW_VALUES] / WORD_BYTES,
                 region_words(d.bytes[REGION_DW_INDICES]), region_words(d.bytes[REGION_DW_VALUES]),
                 ptr, O, h.nnz_dw, m_axis);
  }
  if (h.mode == MODE_DENSE || h.mode == MODE_TASK)
    stream_rows(gmem, d.off[REGION_BIAS], 1, INT32_BYTES * O, false, m_axis);
  // Requant entries: mult (uint16 region) and shift (uint8 region) merged per channel. The
  // two small regions are read by bursts into local words first, then merged.
  uint64_t mult_w[(MAX_OUT + MULT_PER_WORD - 1) / MULT_PER_WORD];
  uint64_t shift_w[(MAX_OUT + WORD_BYTES - 1) / WORD_BYTES];
  const uint64_t im0 = d.off[REGION_REQ_MULT] / WORD_BYTES, is0 = d.off[REGION_REQ_SHIFT] / WORD_BYTES;
read_mult:
  for (int k = 0; k < region_words(d.bytes[REGION_REQ_MULT]); k++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = (MAX_OUT + MULT_PER_WORD - 1) / MULT_PER_WORD
#pragma HLS PIPELINE II = 1
    mult_w[k] = uint64_t(gmem[im0 + k]);
  }
read_shift:
  for (int k = 0; k < region_words(d.bytes[REGION_REQ_SHIFT]); k++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = (MAX_OUT + WORD_BYTES - 1) / WORD_BYTES
#pragma HLS PIPELINE II = 1
    shift_w[k] = uint64_t(gmem[is0 + k]);
  }
req_words:
  for (int j = 0; j < ceil_div(O, REQ_PER_WORD); j++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = ROW_I32_OUT
#pragma HLS PIPELINE II = 1
    uint64_t word = 0;
    for (int b = 0; b < REQ_PER_WORD; b++) {
#pragma HLS UNROLL
      const int o = j * REQ_PER_WORD + b;
      if (o < O) {
        const uint64_t m = bits(mult_w[o / MULT_PER_WORD], MULT_BITS * (o % MULT_PER_WORD), MULT_BITS);
        const uint64_t s = bits(shift_w[o / WORD_BYTES], BYTE_BITS * (o % WORD_BYTES), BYTE_BITS);
        const uint64_t e = (m << REQ_MULT_LSB) | (bits(s, 0, REQ_SHIFT_WIDTH) << REQ_SHIFT_LSB);
        word |= e << (REQ_ENTRY_BITS * b);
      }
    }
    put(m_axis, word, false);
  }
  if ((h.mode == MODE_TEMPORAL || h.mode == MODE_TASK) && (h.flags & FLAG_LOAD_REF)) {
    stream_rows(gmem, d.off[REGION_XREF], P, I, false, m_axis);
    stream_rows(gmem, d.off[REGION_YREF], P, INT32_BYTES * O, false, m_axis);
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
