// Shared types and helpers of the three kernels (fetch, core, commit).
// Contract constants come only from the generated headers contract.h / params.h.
#pragma once

#include <ap_int.h>
#include <hls_stream.h>  // Xilinx's, or hls4ml's copy of it for g++ C simulation
#include <stdint.h>

// Vitis HLS maps only hls::axis / ap_axiu members onto TLAST (a plain struct {data; last}
// would be packed into TDATA), so the stream word is hls::axis with TLAST as its only side
// channel. hls4ml's headers lack ap_axi_sdata.h: then the project's stand-in is used.
#if __has_include(<ap_axi_sdata.h>)
#include <ap_axi_sdata.h>
#else
#include "compat/ap_axi_sdata.h"
#endif

#include "contract.h"
#include "params.h"

namespace dmtl {

// One AXI4-Stream beat: members `data` and `last`; Vitis HLS names the ports
// <arg>_TDATA/_TVALID/_TREADY/_TLAST. Strict enablement: a channel with a width must be
// enabled and vice versa, so DATA is listed next to LAST (no TKEEP/TSTRB/TUSER/TID/TDEST).
typedef hls::axis<ap_uint<STREAM_DATA_BITS>, 0, 0, 0, AXIS_ENABLE_DATA | AXIS_ENABLE_LAST, true>
    axis_word;
typedef hls::stream<axis_word> axis_stream;
// The core's beat: BEAT_WORDS contract words (TDATA 64*B bits, word r in bits [64r+63 : 64r];
// docs/hls.md, "Packet layout"), the same enablement as axis_word. At B = 1 it IS axis_word,
// so fetch -> core -> commit connect as before; fetch and commit stay one word per beat.
typedef hls::axis<ap_uint<STREAM_DATA_BITS * BEAT_WORDS>, 0, 0, 0,
                  AXIS_ENABLE_DATA | AXIS_ENABLE_LAST, true>
    axis_beat;
typedef hls::stream<axis_beat> beat_stream;

// One m_axi word of the gmem bundle: DDR is read and written in the contract's words
// (STREAM_DATA_BITS wide, WORD_BYTES bytes), the same words the packet rows are made of.
typedef ap_uint<STREAM_DATA_BITS> mem_word;
// m_axi `depth` of gmem, in words: used only by Vitis cosim to size its memory model (the
// kernels bound every access by buf_bytes). 2^18 words = 2 MiB covers the test images.
constexpr int GMEM_COSIM_DEPTH = 1 << 18;

inline uint64_t bits(uint64_t w, int lsb, int width) {
  return width >= 64 ? (w >> lsb) : ((w >> lsb) & ((uint64_t(1) << width) - 1));
}

constexpr int ceil_div(int a, int b) { return (a + b - 1) / b; }
constexpr int cmin(int a, int b) { return a < b ? a : b; }

// Requantiser entries (mult | shift) per stream word.
constexpr int REQ_PER_WORD = STREAM_DATA_BITS / REQ_ENTRY_BITS;

// Largest words of one packet section, for LOOP_TRIPCOUNT annotations.
constexpr int ROW_I8_IN = ceil_div(MAX_IN, INT8_PER_WORD);
constexpr int ROW_I8_OUT = ceil_div(MAX_OUT, INT8_PER_WORD);
constexpr int ROW_I32_OUT = ceil_div(MAX_OUT, INT32_PER_WORD);
constexpr int MAX_PACKET_IN = HEADER_WORDS + MAX_OUT * ROW_I8_IN + MAX_NNZ_DW + 2 * ROW_I32_OUT +
                              MAX_TOKENS * (2 * ROW_I8_IN + ROW_I32_OUT);
constexpr int MAX_PACKET_OUT = MAX_TOKENS * (ROW_I8_OUT + ROW_I8_IN + ROW_I32_OUT) + 1;
// The core's output packet in beats of B words: row blocks pad the tokens to B, rows pad
// each row to whole beats (contract/packets.py); MAX_PACKET_OUT at B = 1.
constexpr int B_TOKENS = ceil_div(MAX_TOKENS, BEAT_WORDS) * BEAT_WORDS;
constexpr int MAX_BEATS_OUT = MAX_TOKENS * (ceil_div(ROW_I8_OUT, BEAT_WORDS) + ceil_div(ROW_I32_OUT, BEAT_WORDS)) +
                              B_TOKENS / BEAT_WORDS * ROW_I8_IN + 1;

// The job header (two stream words), decoded.
struct Header {
  int mode, flags, th, tokens, in_dim, out_dim, tag;
  uint32_t nnz_dw;
};

inline Header parse_header(uint64_t h0, uint64_t h1) {
  const uint64_t w[2] = {h0, h1};
  Header h;
  h.mode = int(bits(w[HDR_MODE_WORD], HDR_MODE_LSB, HDR_MODE_WIDTH));
  h.flags = int(bits(w[HDR_FLAGS_WORD], HDR_FLAGS_LSB, HDR_FLAGS_WIDTH));
  h.th = int(bits(w[HDR_TH_WORD], HDR_TH_LSB, HDR_TH_WIDTH));
  h.tokens = int(bits(w[HDR_TOKENS_WORD], HDR_TOKENS_LSB, HDR_TOKENS_WIDTH));
  h.in_dim = int(bits(w[HDR_IN_DIM_WORD], HDR_IN_DIM_LSB, HDR_IN_DIM_WIDTH));
  h.out_dim = int(bits(w[HDR_OUT_DIM_WORD], HDR_OUT_DIM_LSB, HDR_OUT_DIM_WIDTH));
  h.nnz_dw = uint32_t(bits(w[HDR_NNZ_DW_WORD], HDR_NNZ_DW_LSB, HDR_NNZ_DW_WIDTH));
  h.tag = int(bits(w[HDR_TAG_WORD], HDR_TAG_LSB, HDR_TAG_WIDTH));
  return h;
}

// O*I beyond the weight bank (MAX_WEIGHTS); 64-bit product: both dims may be 16-bit.
inline bool weights_over(const Header& h) {
  return uint64_t(h.out_dim) * uint64_t(h.in_dim) > uint64_t(MAX_WEIGHTS);
}

// Header refusals in golden order (golden_core.check_header): BAD_HEADER, DIMS, NNZ.
inline int check_header(const Header& h) {
  if (h.mode != MODE_DENSE && h.mode != MODE_TEMPORAL && h.mode != MODE_TASK)
    return CORE_STATUS_BAD_HEADER;
  if (h.flags & ~VALID_FLAGS) return CORE_STATUS_BAD_HEADER;
  if (h.th < TH_MIN || h.th > TH_MAX) return CORE_STATUS_BAD_HEADER;
  if (h.tokens < 1 || h.tokens > MAX_TOKENS || h.in_dim < 1 || h.in_dim > MAX_IN ||
      h.out_dim < 1 || h.out_dim > MAX_OUT)
    return CORE_STATUS_DIMS;
  if (weights_over(h)) return CORE_STATUS_DIMS;
  if (h.nnz_dw > uint32_t(MAX_NNZ_DW)) return CORE_STATUS_NNZ;
  return 0;
}

// Section sizes of the core input packet (contract.input_sections) in beats of BEAT_WORDS
// words: W, XREF, X in row blocks of B rows, the others row-major with each row padded to
// whole beats (docs/hls.md, "Packet layout"). B = 1: the words.
struct InLayout {
  int w, dw, bias, req, xref, yref, x;
  int total() const {
    return ceil_div(HEADER_WORDS, BEAT_WORDS) + w + dw + bias + req + xref + yref + x;
  }
};

inline InLayout in_layout(const Header& h) {
  constexpr int B = BEAT_WORDS;
  InLayout s;
  const int row_in = ceil_div(h.in_dim, INT8_PER_WORD);
  const int row_out32 = ceil_div(h.out_dim, INT32_PER_WORD);
  const int blocks = ceil_div(h.tokens, B);
  const bool refs = (h.mode == MODE_TEMPORAL || h.mode == MODE_TASK) && (h.flags & FLAG_LOAD_REF);
  s.w = (h.flags & FLAG_LOAD_W) ? ceil_div(h.out_dim, B) * row_in : 0;
  s.dw = ceil_div(int(h.nnz_dw), B);
  s.bias = (h.mode == MODE_DENSE || h.mode == MODE_TASK) ? ceil_div(row_out32, B) : 0;
  s.req = ceil_div(ceil_div(h.out_dim, REQ_PER_WORD), B);
  s.xref = refs ? blocks * row_in : 0;
  s.yref = refs ? h.tokens * ceil_div(row_out32, B) : 0;
  s.x = blocks * row_in;
  return s;
}

inline uint64_t trailer_word(uint32_t nnz_act, int tag, int status) {
  return (bits(nnz_act, 0, TRL_NNZ_ACT_WIDTH) << TRL_NNZ_ACT_LSB) |
         (bits(uint64_t(tag), 0, TRL_TAG_WIDTH) << TRL_TAG_LSB) |
         (bits(uint64_t(status), 0, TRL_STATUS_WIDTH) << TRL_STATUS_LSB);
}

inline void put(axis_stream& s, uint64_t data, bool last) {
  axis_word w;
  w.data = data;
  w.last = last ? 1 : 0;
  s.write(w);
}

// Word r of a beat, and a beat from its words (unrolled: wiring only).
inline uint64_t beat_word(const axis_beat& b, int r) {
  return uint64_t(b.data(STREAM_DATA_BITS * r + STREAM_DATA_BITS - 1, STREAM_DATA_BITS * r));
}
inline void put_beat(beat_stream& s, const uint64_t words[BEAT_WORDS], bool last) {
  axis_beat b;
  for (int r = 0; r < BEAT_WORDS; r++) {
#pragma HLS UNROLL
    b.data(STREAM_DATA_BITS * r + STREAM_DATA_BITS - 1, STREAM_DATA_BITS * r) = words[r];
  }
  b.last = last ? 1 : 0;
  s.write(b);
}

}  // namespace dmtl
