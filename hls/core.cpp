// core: the compute core of one linear site (AXI4-Stream in -> AXI4-Stream out).
//
// One call consumes one input packet (header .. TLAST) and emits one output packet; in the
// exported RTL (ap_ctrl_none) this is the free-running loop. Bit-exact with
// deltamtl.contract.golden_core.GoldenCore.run_packet, including resident state and refusals.
//
// Resident state (file-scope statics, kept between packets):
//   w_bank[L][2 * W_HALF]  two weight banks (halves of each lane's memory), sized by
//                       MAX_WEIGHTS, not MAX_OUT x MAX_IN; `w_cur` is the resident one.
//                       LOAD_W writes the other half and the pointer flips only when the job
//                       succeeds, so a refused packet (LENGTH is known only at TLAST) leaves
//                       W_b intact.
//   x_ref[2][P][I/8], acc (both slots in one 64-bit word)   reference inputs /
//                       accumulators, same two-slot scheme (`ref_cur`): a job always writes
//                       slot !ref_cur (loaded refs, x_new, y accumulators); DENSE and TEMPORAL
//                       flip on success, TASK leaves the base state untouched and uses the
//                       slot as scratch.
// The accumulator bank is skewed, bank(p, o) = (p + o) mod LANES, so the activation-sparse
// pass (lanes over o, fixed p) and the weight-sparse pass (lanes over p, fixed o) both touch
// LANES distinct banks per cycle.
#include "dmtl_kernels.h"

#include <string.h>

using namespace dmtl;

namespace {

constexpr int L = LANES;
constexpr int OG = ceil_div(MAX_OUT, L);     // output-channel groups (activation pass)
constexpr int PG = ceil_div(MAX_TOKENS, L);  // token groups (weight pass)
constexpr int ACC_DEPTH = MAX_TOKENS * OG;
constexpr int MAX_NNZ_ACT = MAX_TOKENS * MAX_IN;
constexpr int REQ_PER_WORD = 64 / REQ_ENTRY_BITS;

// Bits that hold 0 .. n-1 (compile time; Vitis' clang has the builtin as well).
constexpr int bits_for(int n) { return n <= 2 ? 1 : 32 - __builtin_clz(unsigned(n - 1)); }

// Weight bank: row o lives in lane o mod L at word (o / L) * ceil(I/8) + j of the lane's
// half `bank`. With O*I <= MAX_WEIGHTS a half needs ceil(O/L) * ceil(I/8)
// < (O/L + 1) * ceil(I/8) <= (MAX_WEIGHTS + 7 * MAX_OUT) / (8L) + ceil(MAX_IN/8) words.
constexpr int W_HALF = cmin(ceil_div(MAX_WEIGHTS + 7 * MAX_OUT, 8 * L) + ROW_I8_IN, OG * ROW_I8_IN);
// dW non-zeros stored as col | row << DW_COL_BITS | value << (DW_COL_BITS + DW_ROW_BITS):
// the bits the compiled maxima need (28 at 768 x 768), not the 64-bit stream word.
constexpr int DW_COL_BITS = bits_for(MAX_IN);
constexpr int DW_ROW_BITS = bits_for(MAX_OUT);
typedef ap_uint<DW_COL_BITS + DW_ROW_BITS + WEIGHT_BITS> dw_entry;
// Delta non-zeros: token | input << NZ_P_BITS | d (DELTA_BITS) << (NZ_P_BITS + NZ_I_BITS).
// Entries k go to bank k mod 8 (one X word's <= 8 entries hit 8 distinct banks); two
// entries (k, k + 8) share a 64-bit row when they fit in 32 bits, halving the depth.
constexpr int NZ_P_BITS = bits_for(MAX_TOKENS);
constexpr int NZ_I_BITS = bits_for(MAX_IN);
constexpr int NZ_BITS = NZ_P_BITS + NZ_I_BITS + DELTA_BITS;
constexpr int NZ_PAIR = NZ_BITS <= 32 ? 2 : 1;
constexpr int NZ_DEPTH = ceil_div(MAX_NNZ_ACT, 8 * NZ_PAIR);
static_assert(NZ_BITS <= 64, "a delta non-zero must fit one 64-bit row");

// int8 rows packed 8 per 64-bit word (the stream's row layout, padding bytes zero): the
// loaders write and the delta encoder reads one word per cycle, and the lanes read one
// word from each of their L banks and select the byte.
uint64_t w_bank[L][2 * W_HALF];
uint64_t x_ref[2][MAX_TOKENS][ROW_I8_IN];
// Both accumulator slots in one 64-bit word (slot s in bits [32s, 32s + 32)): one memory row
// per (p, o) instead of two. A slot write keeps the other half: read-modify-write, where the
// read is the one the loop does anyway (the passes keep the loaded word in a register).
uint64_t acc[L][ACC_DEPTH];
dw_entry dw_buf[MAX_NNZ_DW];
uint64_t nz_act[8][NZ_DEPTH];
int32_t bias_buf[MAX_OUT];
uint16_t mult_buf[MAX_OUT];
uint8_t shift_buf[MAX_OUT];

bool w_valid = false;
int w_cur = 0, w_o = 0, w_i = 0;
bool ref_valid = false;
int ref_cur = 0, ref_p = 0, ref_i = 0, ref_o = 0;

// Two's-complement value of the low `width` bits of v.
inline int sext(uint64_t v, int width) {
  return int(int64_t(v << (64 - width)) >> (64 - width));
}
inline int8_t byte_of(uint64_t w, int b) { return int8_t(uint8_t(w >> (8 * b))); }
inline uint64_t with_byte(uint64_t w, int b, int8_t v) {
  return (w & ~(uint64_t(0xFF) << (8 * b))) | (uint64_t(uint8_t(v)) << (8 * b));
}
// Zeroes the padding bytes of word j of an int8 row of n elements.
inline uint64_t row_mask(uint64_t w, int j, int n) {
  const int valid = n - j * INT8_PER_WORD;
  return valid >= INT8_PER_WORD ? w : (w & ((uint64_t(1) << (8 * valid)) - 1));
}
inline int bank_of(int p, int o) { return (p + o) % L; }
inline int addr_of(int p, int o) { return p * OG + o / L; }
inline int32_t half_of(uint64_t w, int s) { return int32_t(uint32_t(w >> (32 * s))); }
inline uint64_t with_half(uint64_t w, int s, int32_t v) {
  return (w & ~(uint64_t(0xFFFFFFFF) << (32 * s))) | (uint64_t(uint32_t(v)) << (32 * s));
}
inline int32_t acc_get(int s, int p, int o) { return half_of(acc[bank_of(p, o)][addr_of(p, o)], s); }
inline void acc_set(int s, int p, int o, int32_t v) {
  uint64_t& w = acc[bank_of(p, o)][addr_of(p, o)];
  w = with_half(w, s, v);
}
inline int w_addr(int bank, int o, int j, int row_in) { return bank * W_HALF + (o / L) * row_in + j; }

inline dw_entry dw_pack(uint64_t nz) {
  return dw_entry(bits(nz, NZ_COL_LSB, DW_COL_BITS) | (bits(nz, NZ_ROW_LSB, DW_ROW_BITS) << DW_COL_BITS) |
                  (bits(nz, NZ_VALUE_LSB, WEIGHT_BITS) << (DW_COL_BITS + DW_ROW_BITS)));
}
inline int dw_col(dw_entry e) { return int(bits(uint64_t(e), 0, DW_COL_BITS)); }
inline int dw_row(dw_entry e) { return int(bits(uint64_t(e), DW_COL_BITS, DW_ROW_BITS)); }
inline int dw_val(dw_entry e) { return sext(bits(uint64_t(e), DW_COL_BITS + DW_ROW_BITS, WEIGHT_BITS), WEIGHT_BITS); }

// Entry `pos` of the delta list; `pend[b]` holds the low half last written to bank b, so
// the high half's write carries it along (each bank takes one write per cycle, no RMW).
inline void nz_put(uint32_t pos, uint64_t e, uint64_t pend[8]) {
  const int b = pos % 8, row = pos / (8 * NZ_PAIR), half = (pos / 8) % NZ_PAIR;
  if (half == 0) {
    pend[b] = e;
    nz_act[b][row] = e;
  } else {
    nz_act[b][row] = pend[b] | (e << 32);
  }
}
inline uint64_t nz_get(uint32_t k) {
  const uint64_t w = nz_act[k % 8][k / (8 * NZ_PAIR)];
  return NZ_PAIR == 2 ? bits(w, 32 * ((k / 8) % 2), 32) : w;
}
// int32 two's-complement wrap at every addition (contract), without C++ signed overflow.
inline int32_t wadd(int32_t a, int32_t b) { return int32_t(uint32_t(a) + uint32_t(b)); }

inline int8_t requant(int32_t a, int mult, int shift) {
  const int64_t prod = int64_t(a) * int64_t(mult);
  const int64_t round = shift > 0 ? (int64_t(1) << (shift - 1)) : 0;
  const int64_t r = (prod + round) >> shift;  // arithmetic shift: floor
  return int8_t(r < ACT_MIN ? ACT_MIN : (r > ACT_MAX ? ACT_MAX : r));
}

// Reads the packet's words through TLAST. `remaining` counts the words the header implies;
// TLAST before the last of them, or no TLAST on it, is a LENGTH error.
struct Reader {
  int remaining;
  bool ended, bad_length;
  bool next(axis_stream& s, uint64_t& data) {
    if (ended) return false;
    axis_word w = s.read();
    data = uint64_t(w.data);
    remaining--;
    if (w.last) {
      ended = true;
      if (remaining != 0) bad_length = true;
    }
    return true;
  }
  void drain(axis_stream& s) {
  drain_loop:
    for (int k = 0; k < (1 << 30) && !ended; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 1
#pragma HLS PIPELINE II = 1
      axis_word w = s.read();
      if (w.last) ended = true;
    }
  }
};

void send_trailer(axis_stream& out, uint32_t nnz_act, int tag, int status) {
  put(out, trailer_word(nnz_act, tag, status), true);
}

}  // namespace

void core(axis_stream& s_axis, axis_stream& m_axis) {
#pragma HLS INTERFACE mode = axis port = s_axis
#pragma HLS INTERFACE mode = axis port = m_axis
#pragma HLS INTERFACE mode = ap_ctrl_none port = return
#pragma HLS ARRAY_PARTITION variable = w_bank type = complete dim = 1
#pragma HLS ARRAY_PARTITION variable = x_ref type = cyclic factor = LANES dim = 2
#pragma HLS ARRAY_PARTITION variable = acc type = complete dim = 1
#pragma HLS BIND_STORAGE variable = w_bank type = ram_2p impl = bram
#pragma HLS BIND_STORAGE variable = x_ref type = ram_2p impl = bram
#pragma HLS ARRAY_PARTITION variable = bias_buf type = cyclic factor = LANES dim = 1
#pragma HLS ARRAY_PARTITION variable = mult_buf type = cyclic factor = 8 dim = 1
#pragma HLS ARRAY_PARTITION variable = shift_buf type = cyclic factor = 8 dim = 1
#pragma HLS BIND_STORAGE variable = acc type = ram_2p impl = uram
#pragma HLS BIND_STORAGE variable = dw_buf type = ram_2p impl = bram
#pragma HLS BIND_STORAGE variable = nz_act type = ram_2p impl = uram
#pragma HLS ARRAY_PARTITION variable = nz_act type = complete dim = 1

  // ---- header ------------------------------------------------------------------------
  axis_word w0 = s_axis.read();
  if (w0.last) {  // shorter than a header: golden answers LENGTH with tag 0
    send_trailer(m_axis, 0, 0, CORE_STATUS_LENGTH);
    return;
  }
  axis_word w1 = s_axis.read();
  const Header h = parse_header(uint64_t(w0.data), uint64_t(w1.data));
  Reader rd = {0, bool(w1.last), false};
  int status = check_header(h);
  if (status) {
    rd.drain(s_axis);
    send_trailer(m_axis, 0, h.tag, status);
    return;
  }
  const InLayout lay = in_layout(h);
  rd.remaining = lay.total() - HEADER_WORDS;
  if (rd.ended) rd.bad_length = true;  // every valid packet has REQ and X words

  const int P = h.tokens, I = h.in_dim, O = h.out_dim;
  const int row_in = ceil_div(I, INT8_PER_WORD);
  const int row_out32 = ceil_div(O, INT32_PER_WORD);
  const bool load_w = h.flags & FLAG_LOAD_W;
  const bool load_ref = h.flags & FLAG_LOAD_REF;
  const bool emit_ref = h.flags & FLAG_EMIT_REF;
  const int wb = load_w ? 1 - w_cur : w_cur;  // bank this job computes with
  const int ys = 1 - ref_cur;                   // slot this job writes
  const int src = lay.xref ? ys : ref_cur;      // slot holding the job's references
  uint64_t d;

  // ---- W_b rows (into the non-resident bank) -----------------------------------------
load_w_rows:
  for (int k = 0; k < lay.w; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = MAX_OUT * ROW_I8_IN
#pragma HLS PIPELINE II = 1
    if (!rd.next(s_axis, d)) break;
    const int o = k / row_in, j = k % row_in;
    w_bank[o % L][w_addr(wb, o, j, row_in)] = row_mask(d, j, I);
  }
  // ---- dW non-zeros --------------------------------------------------------------------
  bool bad_index = false;
load_dw:
  for (int k = 0; k < lay.dw; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = MAX_NNZ_DW
#pragma HLS PIPELINE II = 1
    if (!rd.next(s_axis, d)) break;
    dw_buf[k] = dw_pack(d);  // truncated fields only matter when INDEX refuses anyway
    if (int(bits(d, NZ_ROW_LSB, NZ_ROW_WIDTH)) >= O || int(bits(d, NZ_COL_LSB, NZ_COL_WIDTH)) >= I)
      bad_index = true;
  }
  // ---- bias, requant parameters ------------------------------------------------------
load_bias:
  for (int k = 0; k < lay.bias; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = ROW_I32_OUT
#pragma HLS PIPELINE II = 1
    if (!rd.next(s_axis, d)) break;
    for (int b = 0; b < INT32_PER_WORD; b++) {
#pragma HLS UNROLL
      const int o = k * INT32_PER_WORD + b;
      if (o < O) bias_buf[o] = int32_t(uint32_t(bits(d, 32 * b, 32)));
    }
  }
load_req:
  for (int k = 0; k < lay.req; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = ROW_I32_OUT
#pragma HLS PIPELINE II = 1
    if (!rd.next(s_axis, d)) break;
    for (int b = 0; b < REQ_PER_WORD; b++) {
#pragma HLS UNROLL
      const int o = k * REQ_PER_WORD + b;
      const uint64_t e = bits(d, REQ_ENTRY_BITS * b, REQ_ENTRY_BITS);
      if (o < O) {
        mult_buf[o] = uint16_t(bits(e, REQ_MULT_LSB, REQ_MULT_WIDTH));
        shift_buf[o] = uint8_t(bits(e, REQ_SHIFT_LSB, REQ_SHIFT_WIDTH));
      }
    }
  }
  // ---- references (LOAD_REF) into the scratch slot; TASK adds its bias delta on the fly --
  const bool add_bias = h.mode == MODE_TASK;
load_xref:
  for (int k = 0; k < lay.xref; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = MAX_TOKENS * ROW_I8_IN
#pragma HLS PIPELINE II = 1
    if (!rd.next(s_axis, d)) break;
    const int p = k / row_in, j = k % row_in;
    x_ref[ys][p][j] = row_mask(d, j, I);
  }
load_yref:
  for (int k = 0; k < lay.yref; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = MAX_TOKENS * ROW_I32_OUT
#pragma HLS PIPELINE II = 1
    if (!rd.next(s_axis, d)) break;
    const int p = k / row_out32, j = k % row_out32;
    for (int b = 0; b < INT32_PER_WORD; b++) {
#pragma HLS UNROLL
      const int o = j * INT32_PER_WORD + b;
      if (o < O) {
        const int32_t v = int32_t(uint32_t(bits(d, 32 * b, 32)));
        acc_set(ys, p, o, add_bias ? wadd(v, bias_buf[o]) : v);
      }
    }
  }
  // ---- X rows: delta encoding on the fly into the non-zero list ------------------------
  // DENSE: every non-zero x is a "delta" against zero (the all-nonzero case of the engine).
  const bool dense = h.mode == MODE_DENSE;
  uint32_t nnz_act = 0;
  uint64_t pend[8];
#pragma HLS ARRAY_PARTITION variable = pend type = complete
load_x:
  for (int k = 0; k < lay.x; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_TOKENS * ROW_I8_IN
#pragma HLS PIPELINE II = 1
    if (!rd.next(s_axis, d)) break;
    const int p = k / row_in, j = k % row_in;
    const uint64_t ref = dense ? 0 : x_ref[src][p][j];
    uint64_t x_new = 0;
    for (int b = 0; b < INT8_PER_WORD; b++) {
#pragma HLS UNROLL
      const int i = j * INT8_PER_WORD + b;
      if (i < I) {
        const int x = byte_of(d, b);
        const int r = byte_of(ref, b);
        const int dv = x - r;
        const bool keep = dense ? dv != 0 : (dv >= h.th || dv <= -h.th);
        x_new = with_byte(x_new, b, int8_t(keep ? x : r));  // x_ref + d: "the last value sent"
        if (keep) {
          nz_put(nnz_act, uint64_t(p) | (uint64_t(i) << NZ_P_BITS) |
                              (bits(uint64_t(int64_t(dv)), 0, DELTA_BITS) << (NZ_P_BITS + NZ_I_BITS)),
                 pend);
          nnz_act++;
        }
      }
    }
    x_ref[ys][p][j] = x_new;
  }
  if (!rd.ended) {  // all words read but no TLAST on the last: drain the excess
    rd.bad_length = true;
    rd.drain(s_axis);
  }

  // ---- refusals after the payload, golden order: LENGTH, INDEX, NO_STATE --------------
  if (rd.bad_length)
    status = CORE_STATUS_LENGTH;
  else if (bad_index)
    status = CORE_STATUS_INDEX;
  else if (!load_w && !(w_valid && w_o == O && w_i == I))
    status = CORE_STATUS_NO_STATE;
  else if (h.mode != MODE_DENSE && !load_ref &&
           !(ref_valid && ref_p == P && ref_i == I && ref_o == O))
    status = CORE_STATUS_NO_STATE;
  if (status) {
    send_trailer(m_axis, 0, h.tag, status);
    return;
  }

  // ---- accumulator init: DENSE bias; resident references copied (+ TASK bias) ----------
  const bool init_from_bias = dense;
  const bool init_from_resident = !dense && !lay.yref;
init_acc:
  for (int k = 0; k < P * OG; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_TOKENS * OG
#pragma HLS PIPELINE II = 1
    if (!(init_from_bias || init_from_resident)) break;
    const int p = k / OG, g = k % OG;
    for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
      const int o = g * L + l;
      if (o < O) {
        uint64_t& word = acc[bank_of(p, o)][addr_of(p, o)];  // both slots: one read, one write
        const uint64_t was = word;
        int32_t v = init_from_bias ? bias_buf[o] : half_of(was, ref_cur);
        if (!init_from_bias && add_bias) v = wadd(v, bias_buf[o]);
        word = with_half(was, ys, v);
      }
    }
  }

  // ---- DENSE/TEMPORAL with dW: patch the bank W_b += dW (undone below) ----------------
  const bool patch = h.mode != MODE_TASK && lay.dw > 0;
patch_w:
  for (int k = 0; k < lay.dw; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = MAX_NNZ_DW
#pragma HLS PIPELINE II = 1
    if (!patch) break;
    const dw_entry e = dw_buf[k];
    const int r = dw_row(e), c = dw_col(e);
    uint64_t& w = w_bank[r % L][w_addr(wb, r, c / INT8_PER_WORD, row_in)];
    const int b = c % INT8_PER_WORD;
    w = with_byte(w, b, int8_t(uint8_t(byte_of(w, b) + dw_val(e))));
  }

  // ---- activation-sparse pass: one broadcast (p, i, d) per cycle, lanes over outputs ----
  // For each group of L output channels, walk the non-zero list (token-major by
  // construction); the L partial sums of the current token stay in registers and are
  // loaded/stored once per token run, so the accumulator RAM has no read-after-write
  // hazard inside the II=1 loop.
  // `held` is the accumulator word as loaded: the store writes the other slot's half back
  // unchanged, so a run costs one read and one write per lane.
  const int og = ceil_div(O, L);
act_groups:
  for (int g = 0; g < og; g++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = OG
    int32_t reg[L];
    uint64_t held[L];
#pragma HLS ARRAY_PARTITION variable = reg type = complete
#pragma HLS ARRAY_PARTITION variable = held type = complete
    const int w_base = w_addr(wb, g * L, 0, row_in);  // lane l holds row g*L + l there
    int cur_p = -1;
  act_pass:
    for (uint32_t k = 0; k < nnz_act; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = MAX_NNZ_ACT
#pragma HLS PIPELINE II = 1
      const uint64_t e = nz_get(k);
      const int p = int(bits(e, 0, NZ_P_BITS)), i = int(bits(e, NZ_P_BITS, NZ_I_BITS));
      const int dv = sext(bits(e, NZ_P_BITS + NZ_I_BITS, DELTA_BITS), DELTA_BITS);
      if (p != cur_p) {
        for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
          const int o = g * L + l;
          if (cur_p >= 0 && o < O) acc[bank_of(cur_p, o)][addr_of(cur_p, o)] = with_half(held[l], ys, reg[l]);
          held[l] = o < O ? acc[bank_of(p, o)][addr_of(p, o)] : 0;
          reg[l] = half_of(held[l], ys);
        }
        cur_p = p;
      }
      for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
        const int o = g * L + l;
        if (o < O)
          reg[l] = wadd(reg[l], dv * int(byte_of(w_bank[l][w_base + i / INT8_PER_WORD], i % INT8_PER_WORD)));
      }
    }
    for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
      const int o = g * L + l;
      if (cur_p >= 0 && o < O) acc[bank_of(cur_p, o)][addr_of(cur_p, o)] = with_half(held[l], ys, reg[l]);
    }
  }

unpatch_w:
  for (int k = 0; k < lay.dw; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = MAX_NNZ_DW
#pragma HLS PIPELINE II = 1
    if (!patch) break;
    const dw_entry e = dw_buf[k];
    const int r = dw_row(e), c = dw_col(e);
    uint64_t& w = w_bank[r % L][w_addr(wb, r, c / INT8_PER_WORD, row_in)];
    const int b = c % INT8_PER_WORD;
    w = with_byte(w, b, int8_t(uint8_t(byte_of(w, b) - dw_val(e))));
  }

  // ---- TASK weight-sparse pass: acc += x_k dW^T, one dW non-zero per cycle, lanes over tokens
  // Same register scheme, per run of equal output row (fetch emits CSR in row order; an
  // unordered packet is still computed exactly, it only costs more register loads/stores).
  const int pg = ceil_div(P, L);
wgt_groups:
  for (int g = 0; g < (h.mode == MODE_TASK ? pg : 0); g++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = PG
    int32_t reg[L];
    uint64_t held[L];
#pragma HLS ARRAY_PARTITION variable = reg type = complete
#pragma HLS ARRAY_PARTITION variable = held type = complete
    int cur_r = -1;
  wgt_pass:
    for (int k = 0; k < lay.dw; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = MAX_NNZ_DW
#pragma HLS PIPELINE II = 1
      const dw_entry e = dw_buf[k];
      const int r = dw_row(e), c = dw_col(e);
      const int v = dw_val(e);
      if (r != cur_r) {
        for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
          const int p = g * L + l;
          if (cur_r >= 0 && p < P) acc[bank_of(p, cur_r)][addr_of(p, cur_r)] = with_half(held[l], ys, reg[l]);
          held[l] = p < P ? acc[bank_of(p, r)][addr_of(p, r)] : 0;
          reg[l] = half_of(held[l], ys);
        }
        cur_r = r;
      }
      for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
        const int p = g * L + l;
        if (p < P)
          reg[l] = wadd(reg[l], int(byte_of(x_ref[ys][p][c / INT8_PER_WORD], c % INT8_PER_WORD)) * v);
      }
    }
    for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
      const int p = g * L + l;
      if (cur_r >= 0 && p < P) acc[bank_of(p, cur_r)][addr_of(p, cur_r)] = with_half(held[l], ys, reg[l]);
    }
  }

  // ---- requantise and stream out Y, then the references (EMIT_REF), then the trailer ----
  const int row_out8 = ceil_div(O, INT8_PER_WORD);
out_y:
  for (int k = 0; k < P * row_out8; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_TOKENS * ROW_I8_OUT
#pragma HLS PIPELINE II = 1
    const int p = k / row_out8, j = k % row_out8;
    uint64_t word = 0;
    for (int b = 0; b < INT8_PER_WORD; b++) {
#pragma HLS UNROLL
      const int o = j * INT8_PER_WORD + b;
      if (o < O)
        word |= uint64_t(uint8_t(requant(acc_get(ys, p, o), mult_buf[o], shift_buf[o]))) << (8 * b);
    }
    put(m_axis, word, false);
  }
out_xref:
  for (int k = 0; k < (emit_ref ? P * row_in : 0); k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = MAX_TOKENS * ROW_I8_IN
#pragma HLS PIPELINE II = 1
    const int p = k / row_in, j = k % row_in;
    put(m_axis, x_ref[ys][p][j], false);
  }
out_yref:
  for (int k = 0; k < (emit_ref ? P * row_out32 : 0); k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = MAX_TOKENS * ROW_I32_OUT
#pragma HLS PIPELINE II = 1
    const int p = k / row_out32, j = k % row_out32;
    uint64_t word = 0;
    for (int b = 0; b < INT32_PER_WORD; b++) {
#pragma HLS UNROLL
      const int o = j * INT32_PER_WORD + b;
      if (o < O) word |= uint64_t(uint32_t(acc_get(ys, p, o))) << (32 * b);
    }
    put(m_axis, word, false);
  }
  send_trailer(m_axis, nnz_act, h.tag, 0);

  // ---- commit resident state (only now: the job has succeeded) ------------------------
  if (load_w) {
    w_cur = wb;
    w_valid = true;
    w_o = O;
    w_i = I;
  }
  if (h.mode != MODE_TASK) {
    ref_cur = ys;
    ref_valid = true;
    ref_p = P;
    ref_i = I;
    ref_o = O;
  }
}

#ifndef __SYNTHESIS__
// Testbench / emulation hooks (not part of the synthesised kernel).

// Forget all resident state (a .dmtv reset record; GoldenCore.reset()).
void core_reset_state() {
  w_valid = ref_valid = false;
  w_cur = ref_cur = 0;
  w_o = w_i = ref_p = ref_i = ref_o = 0;
}

// Save (dir=0) or restore (dir=1) the resident state, so several emulated cores can share
// one loaded library. Returns the byte size of the state blob (call with buf=NULL first).
long core_state_io(void* buf, int dir) {
  struct Item {
    void* p;
    size_t n;
  };
  const Item items[] = {
      {w_bank, sizeof(w_bank)}, {x_ref, sizeof(x_ref)}, {acc, sizeof(acc)},
      {&w_valid, sizeof(w_valid)}, {&w_cur, sizeof(w_cur)}, {&w_o, sizeof(w_o)},
      {&w_i, sizeof(w_i)}, {&ref_valid, sizeof(ref_valid)}, {&ref_cur, sizeof(ref_cur)},
      {&ref_p, sizeof(ref_p)}, {&ref_i, sizeof(ref_i)}, {&ref_o, sizeof(ref_o)},
  };
  size_t off = 0;
  for (const Item& it : items) {
    if (buf) {
      char* at = static_cast<char*>(buf) + off;
      if (dir == 0)
        memcpy(at, it.p, it.n);
      else
        memcpy(it.p, at, it.n);
    }
    off += it.n;
  }
  return long(off);
}
#endif
