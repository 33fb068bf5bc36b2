// commit: the core's output packet (AXI4-Stream) -> Y / XREF_OUT / YREF_OUT regions (m_axi).
//
// ap_ctrl_hs, registers pinned by DMTL_AXILITE_PRAGMAS; desc_offset may name a job chain
// (docs/hls.md, Job chains). Rules:
// * The descriptor is validated exactly as fetch does (same function), so both kernels
//   refuse the same descriptors. Refused: nothing is written, status = DONE | error bit,
//   and whatever packet words are already waiting are drained without blocking, up to and
//   including TLAST (fetch streamed nothing for such a descriptor, so normally none are).
// * A packet whose first word carries TLAST is a trailer alone: the core refused the job;
//   nothing is written; KSTATUS_CORE is set (also if, abnormally, its status is 0).
// * Otherwise the words are written as they arrive: Y rows, then (EMIT_REF) XREF_OUT and
//   YREF_OUT rows, then the trailer. TLAST before the trailer, or no TLAST on it, sets
//   KSTATUS_CORE (writing stops at the early TLAST; a late one is drained). A trailer tag
//   other than the descriptor's sets KSTATUS_TAG: the regions were already written with
//   another job's results, which the host must discard.
#include "dmtl_chain.h"
#include "dmtl_desc.h"
#include "dmtl_kernels.h"

using namespace dmtl;

namespace {


// One memory word for the writer: `ok` false marks the end of the packet's payload (TLAST
// came early), after which the realigner pushes nothing more.
struct MemWord {
  uint64_t data;
  bool ok;
};
typedef hls::stream<MemWord> mem_fifo;

struct PacketIn {
  bool ended;
  uint64_t last_data;  // the word that carried TLAST
  bool next(axis_stream& s, uint64_t& data) {
    if (ended) return false;
    axis_word w = s.read();
    data = uint64_t(w.data);
    if (w.last) {
      ended = true;
      last_data = data;
      return false;  // a TLAST word is the trailer, never payload
    }
    return true;
  }
};

// Packs `rows` rows of `row_bytes` bytes (each row ceil(row_bytes / WORD_BYTES) zero-padded
// stream words) back to back into memory words: the full words, then the region's last
// partial word (if any). `first` is a word already read from the packet (Y's first word)
// when has_first. An early TLAST pushes one word with ok = false and stops.
void pack_rows(axis_stream& s, int rows, int row_bytes, bool has_first, uint64_t first,
               mem_fifo& out, bool& ended, uint64_t& last_data) {
  const int n = rows * ceil_div(row_bytes, WORD_BYTES);
  PacketIn in = {false, 0};
  ap_uint<2 * STREAM_DATA_BITS> carry = 0;
  int have = 0;
  int left = row_bytes;  // bytes of the current row not yet packed
pack_loop:
  for (int k = 0; k < n; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_REGION_WORDS
#pragma HLS PIPELINE II = 1
    uint64_t data;
    if (k == 0 && has_first) {
      data = first;
    } else if (!in.next(s, data)) {
      out.write({0, false});
      break;
    }
    const int m = cmin(WORD_BYTES, left);
    if (m < WORD_BYTES) data &= (uint64_t(1) << (BYTE_BITS * m)) - 1;
    carry |= ap_uint<2 * STREAM_DATA_BITS>(data) << (BYTE_BITS * have);
    have += m;
    left = left == m ? row_bytes : left - m;
    if (have >= WORD_BYTES) {
      out.write({uint64_t(carry.range(STREAM_DATA_BITS - 1, 0)), true});
      carry >>= STREAM_DATA_BITS;
      have -= WORD_BYTES;
    }
  }
  if (!in.ended && have > 0) out.write({uint64_t(carry.range(STREAM_DATA_BITS - 1, 0)), true});
  ended = in.ended;
  last_data = in.last_data;
}

// Writes the region's full words, one unconditional write per iteration at consecutive
// addresses (a burst), then read-modify-writes the last partial word outside the loop so
// bytes past the region keep their value.
void write_words(mem_word* gmem, uint64_t waddr, uint64_t bytes, mem_fifo& in) {
  const int full = int(bytes / WORD_BYTES);
  const int tail = int(bytes % WORD_BYTES);
  bool stopped = false;
write_words_loop:
  for (int k = 0; k < full; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = MAX_REGION_WORDS
#pragma HLS PIPELINE II = 1
    const MemWord w = in.read();
    if (!w.ok) {
      stopped = true;
      break;
    }
    gmem[waddr + k] = mem_word(w.data);
  }
  if (!stopped && tail > 0) {
    const MemWord w = in.read();
    if (w.ok) {
      const uint64_t keep_mask = ~((uint64_t(1) << (BYTE_BITS * tail)) - 1);
      const uint64_t old = uint64_t(gmem[waddr + full]);
      gmem[waddr + full] = mem_word((old & keep_mask) | w.data);
    }
  }
}

// One output region: packet words -> memory words (DATAFLOW: the packer and the writer run
// concurrently through the FIFO; canonical body, the caller computes address and size).
void region_dataflow(mem_word* gmem, uint64_t waddr, uint64_t bytes, int rows, int row_bytes,
                     axis_stream& s, bool has_first, uint64_t first, bool& ended,
                     uint64_t& last_data) {
#pragma HLS DATAFLOW
  mem_fifo fifo;
#pragma HLS STREAM variable = fifo depth = 64
  pack_rows(s, rows, row_bytes, has_first, first, fifo, ended, last_data);
  write_words(gmem, waddr, bytes, fifo);
}

// Sets `ended` when the packet ended (TLAST) before all of the rows' words arrived; nothing
// past that point is written then.
void write_region(mem_word* gmem, uint64_t base, int rows, int row_bytes, axis_stream& s,
                  bool has_first, uint64_t first, bool& ended, uint64_t& last_data) {
  region_dataflow(gmem, base / WORD_BYTES, uint64_t(rows) * uint64_t(row_bytes), rows, row_bytes,
                  s, has_first, first, ended, last_data);
}

}  // namespace

// One job (the body of the single-job kernel, unchanged).
void commit_job(mem_word* gmem, uint64_t buf_bytes, uint64_t desc_offset, uint32_t* status,
                uint32_t* nnz_act, axis_stream& s_axis) {
  *nnz_act = 0;
  Desc d;
  const int err = read_and_validate(gmem, buf_bytes, desc_offset, d);
  if (err) {
  drain_nb:
    for (int k = 0; k < MAX_PACKET_OUT; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 1
#pragma HLS PIPELINE II = 1
      axis_word w;
      if (!s_axis.read_nb(w) || w.last) break;
    }
    *status = uint32_t(KSTATUS_DONE | err);
    return;
  }
  const Header& h = d.h;
  const int P = h.tokens, I = h.in_dim, O = h.out_dim;
  int st = KSTATUS_DONE;
  PacketIn in = {false, 0};
  uint64_t first;
  bool late = false;  // the trailer position carried no TLAST
  uint64_t trl_late = 0;
  if (in.next(s_axis, first)) {
    bool ended = false;
    write_region(gmem, d.off[REGION_Y_OUT], P, O, s_axis, true, first, ended, in.last_data);
    if (!ended && (h.flags & FLAG_EMIT_REF)) {
      write_region(gmem, d.off[REGION_XREF_OUT], P, I, s_axis, false, 0, ended, in.last_data);
      if (!ended) write_region(gmem, d.off[REGION_YREF_OUT], P, INT32_BYTES * O, s_axis, false, 0,
                                ended, in.last_data);
    }
    in.ended = ended;
    bool complete = !ended;
    uint64_t extra;
    if (complete && in.next(s_axis, extra)) {  // no TLAST where the trailer belongs: drain the rest
      complete = false;
      late = true;
      trl_late = extra;
    drain:
      for (int k = 0; k < MAX_PACKET_OUT; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 1
#pragma HLS PIPELINE II = 1
        if (!in.next(s_axis, extra)) break;
      }
    }
    if (!complete) st |= KSTATUS_CORE;
  } else {
    st |= KSTATUS_CORE;  // trailer alone: the core refused the job
  }
  // The trailer: the word at the trailer position, normally the one carrying TLAST.
  const uint64_t trl = late ? trl_late : in.last_data;
  if (bits(trl, TRL_STATUS_LSB, TRL_STATUS_WIDTH) != 0) st |= KSTATUS_CORE;
  if (int(bits(trl, TRL_TAG_LSB, TRL_TAG_WIDTH)) != h.tag) st |= KSTATUS_TAG;
  if (st == KSTATUS_DONE) *nnz_act = uint32_t(bits(trl, TRL_NNZ_ACT_LSB, TRL_NNZ_ACT_WIDTH));
  *status = uint32_t(st);
}

// The top: a job descriptor (one job, as before) or a chain header (contract/chain.py),
// validated whole first (nothing written when refused); then each job in link order, its
// status and tag landing in the chain's status array. One call site of commit_job.
void commit(mem_word* gmem, uint64_t buf_bytes, uint64_t desc_offset, uint32_t* status,
            axis_stream& s_axis) {
  DMTL_AXILITE_PRAGMAS
#pragma HLS INTERFACE mode = m_axi port = gmem bundle = gmem offset = slave depth = GMEM_COSIM_DEPTH max_write_burst_length = 64
#pragma HLS INTERFACE mode = axis port = s_axis
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
  uint32_t job_status = 0, nnz_act = 0;
chain_jobs:
  for (uint32_t k = 0; k < c.n_jobs; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_CHAIN_JOBS
    ChainLink l = {CHAIN_END, desc_offset, 0};
    if (chained) l = read_link(gmem, pos);
    commit_job(gmem, buf_bytes, l.desc, &job_status, &nnz_act, s_axis);
    if (chained) write_chain_status(gmem, c, k, job_status, desc_tag(gmem, buf_bytes, l.desc), nnz_act);
    pos = l.next;
  }
  *status = chained ? uint32_t(KSTATUS_DONE) : job_status;
}
