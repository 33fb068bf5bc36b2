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
//   x_ref[2][L][P/L][I/8], acc (both slots in one 64-bit word)   reference inputs /
//                       accumulators, same two-slot scheme (`ref_cur`): a job always writes
//                       slot !ref_cur (loaded refs, x_new, y accumulators); DENSE and TEMPORAL
//                       flip on success, TASK leaves the base state untouched and uses the
//                       slot as scratch.
// The accumulator bank is skewed, bank(p, o) = (p + o) mod LANES, so the activation-sparse
// pass (lanes over o, fixed p) and the weight-sparse pass (lanes over p, fixed o) both touch
// LANES distinct banks per cycle; the lanes reach them through barrel rotations, so every
// bank index inside an unrolled loop is the unroll variable (docs/hls.md, "II and
// dependences"; checked by deltamtl.hls.static_checks).
// The activation-sparse pass is a TOKEN_ROWS x LANES MAC array (the scaled engine, issue 18):
// tokens are taken in tiles of T, and one weight read per lane feeds the T tokens of a tile.
#include "dmtl_kernels.h"
#include "dmtl_ram.h"

#include <string.h>

using namespace dmtl;

namespace {

constexpr int L = LANES;
constexpr int T = TOKEN_ROWS;                // token rows of the MAC array
constexpr int OG = ceil_div(MAX_OUT, L);     // output-channel groups (activation pass)
constexpr int PG = ceil_div(MAX_TOKENS, L);  // token groups (weight pass)
constexpr int NT = ceil_div(MAX_TOKENS, T);  // token tiles (activation pass)
constexpr int ACC_DEPTH = MAX_TOKENS * OG;
// Stream beats of B words (docs/hls.md, "Packet layout"). Row blocks (W, XREF, X, XREF_OUT)
// bring word j of B consecutive rows: B divides L and T, so the B rows sit in one aligned
// group of B lanes / token rows and each bank takes the beat word of its own row (a write
// enable, no mux). Row-major beats (YREF, Y, YREF_OUT, BIAS, REQ) bring RB or YB channels of
// one token: distinct skewed accumulator banks while YB <= L (the contract's 8B <= L).
constexpr int B = BEAT_WORDS;
constexpr int LB = L / B;                    // lane groups of B lanes
constexpr int TB = T / B;                    // row blocks of one token tile
constexpr int RB = INT32_PER_WORD * B;       // int32 channels (bias, req, y_ref) of one beat
constexpr int YB = INT8_PER_WORD * B;        // int8 channels of one Y beat
static_assert(L % B == 0, "B > 1 needs LANES a multiple of BEAT_WORDS (aligned lane groups)");
static_assert(T % B == 0, "BEAT_WORDS divides TOKEN_ROWS (contract: powers of two, B <= T)");
static_assert(REQ_PER_WORD == INT32_PER_WORD, "a REQ beat and a BIAS beat carry RB channels");
// RB divides L (every power-of-two build): the RB channels of a beat sit in one aligned group
// of RB lanes, so channel c of the beat goes to lane group*RB + c (a write enable per lane,
// no data mux). Otherwise (any L at B = 1 where 2 does not divide L) the general decode o mod L.
constexpr bool RB_ALIGNED = L % RB == 0;
constexpr int LRB = RB_ALIGNED ? L / RB : 1;  // lane groups of RB lanes
constexpr int QRB = YB / RB;                  // groups of RB mult/shift banks (YB = 4 RB)
// Most beats of one section (LOOP_TRIPCOUNT annotations).
constexpr int MAX_W_BEATS = ceil_div(MAX_OUT, B) * ROW_I8_IN;
constexpr int MAX_DW_BEATS = ceil_div(MAX_NNZ_DW, B);
constexpr int MAX_RB_BEATS = ceil_div(ROW_I32_OUT, B);  // BIAS, REQ; YREF a token
constexpr int MAX_X_BEATS = B_TOKENS / B * ROW_I8_IN;   // XREF, X, XREF_OUT
constexpr int MAX_Y_BEATS = MAX_TOKENS * ceil_div(ROW_I8_OUT, B);

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
constexpr int DW_BITS = DW_COL_BITS + DW_ROW_BITS + WEIGHT_BITS;
typedef ap_uint<DW_BITS> dw_entry;
// Two entries per 72-bit URAM row when they fit (56 bits at 768 x 768): half the rows.
constexpr int DW_PER_ROW = 2 * DW_BITS <= 72 ? 2 : 1;
constexpr int DW_ROWS = ceil_div(MAX_NNZ_DW, DW_PER_ROW);
// A DW beat brings B entries = B / DW_PER_ROW whole rows: row n in bank n mod DW_BANKS at
// n / DW_BANKS, so load_dw writes each bank once per beat (B = 1: one bank, as before).
constexpr int DW_BANKS = B >= DW_PER_ROW ? B / DW_PER_ROW : 1;
constexpr int DW_DEPTH = ceil_div(DW_ROWS, DW_BANKS);
typedef ap_uint<DW_PER_ROW * DW_BITS> dw_row_t;
// Kept deltas of one X word: d is DELTA_BITS (9) wide, so a word is 8 low bytes (bits
// [8b, 8b + 8)) and the 8 ninth bits above them (bit 64 + b): 72 bits, the native width
// of a BRAM36 (512 x 72) or a URAM row. Token p is row r = p mod T of its tile, at
// (p / T) * ceil(MAX_IN/8) + j of way r mod 2 of memory r / 2: two rows share one true
// dual-port memory (the MAC iteration reads every row once, load_x writes one per cycle),
// which halves the URAMs (docs/hls.md, "Pragmas against the ZCU104 budget").
constexpr int DB_DEPTH = NT * ROW_I8_IN;
constexpr int DB_WAYS = T > 1 ? 2 : 1;
constexpr int DB_BANKS = T / DB_WAYS;
typedef ap_uint<INT8_PER_WORD * DELTA_BITS> dword;
static_assert(DELTA_BITS == 9, "dword packs 8 low bytes + 8 ninth bits");
// Union lists U_k: per tile, the input indices with a kept delta in any of its tokens, in
// arrival order; entry u in bank u mod 8 at u / 8 (one X word's <= 8 new indices hit 8
// distinct banks). At most ceil(MAX_TOKENS / T) * MAX_IN entries.
constexpr int U_BANKS = INT8_PER_WORD;
constexpr int U_DEPTH = ceil_div(NT * MAX_IN, U_BANKS);
static_assert(MAX_IN <= 65536, "a union entry is a 16-bit input index");

// Every array that is split into banks has the bank as its FIRST index in the partitioned
// dimension, and every access inside an unrolled loop selects the bank by the unroll
// variable (docs/hls.md, "II and dependences"): a bank chosen at run time would make each
// access a mux over all banks.
//
// int8 rows packed 8 per 64-bit word (the stream's row layout, padding bytes zero): the
// loaders write and the delta encoder reads one word per cycle, and the lanes read one
// word from each of their L banks and select the byte.
uint64_t w_bank[L][2 * W_HALF];
// Token p of slot s in lane p mod L, group p / L: the weight pass reads lane l = token gL + l.
uint64_t x_ref[2][L][PG][ROW_I8_IN];
// Both accumulator slots in one 64-bit word (slot s in bits [32s, 32s + 32)): one memory row
// per (p, o) instead of two. Skewed: (p, o) in bank (p + o) mod L at p * OG + o / L.
uint64_t acc[L][ACC_DEPTH];
dw_row_t dw_buf[DW_BANKS][DW_DEPTH];
dword dbuf[DB_BANKS][DB_WAYS][DB_DEPTH];
uint16_t ulist[U_BANKS][U_DEPTH];
uint32_t tile_end[NT];  // cumulative |U_0| + .. + |U_k| (registers: the act pass's control reads it)
int32_t bias_buf[L][OG];                          // channel o: lane o mod L, group o / L
// Channel o in bank o mod YB at o / YB: out_y requantises the YB channels of one beat.
constexpr int REQ_DEPTH = ceil_div(MAX_OUT, YB);
uint16_t mult_buf[YB][REQ_DEPTH];
uint8_t shift_buf[YB][REQ_DEPTH];

bool w_valid = false;
int w_cur = 0, w_o = 0, w_i = 0;
bool ref_valid = false;
int ref_cur = 0, ref_p = 0, ref_i = 0, ref_o = 0;
#ifndef __SYNTHESIS__
uint32_t act_iterations = 0;  // trip count of the last act_pass (C-simulation introspection)
#endif

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
inline int32_t half_of(uint64_t w, int s) { return int32_t(uint32_t(w >> (32 * s))); }
inline uint64_t with_half(uint64_t w, int s, int32_t v) {
  return (w & ~(uint64_t(0xFFFFFFFF) << (32 * s))) | (uint64_t(uint32_t(v)) << (32 * s));
}
inline int w_addr(int bank, int o, int j, int row_in) { return bank * W_HALF + (o / L) * row_in + j; }
// The lane whose operand sits in bank t when lane 0 sits in bank s (bank = lane + s mod L).
inline int lane_in(int t, int s) { return (t + L - s) % L; }

inline dw_entry dw_pack(uint64_t nz) {
  return dw_entry(bits(nz, NZ_COL_LSB, DW_COL_BITS) | (bits(nz, NZ_ROW_LSB, DW_ROW_BITS) << DW_COL_BITS) |
                  (bits(nz, NZ_VALUE_LSB, WEIGHT_BITS) << (DW_COL_BITS + DW_ROW_BITS)));
}
inline dw_entry dw_get(int k) {
  const int n = k / DW_PER_ROW;
  const dw_row_t r = dw_buf[n % DW_BANKS][n / DW_BANKS];
  return dw_entry(DW_PER_ROW == 2 && k % 2 ? r >> DW_BITS : r);
}
inline int dw_col(dw_entry e) { return int(bits(uint64_t(e), 0, DW_COL_BITS)); }
inline int dw_row(dw_entry e) { return int(bits(uint64_t(e), DW_COL_BITS, DW_ROW_BITS)); }
inline int dw_val(dw_entry e) { return sext(bits(uint64_t(e), DW_COL_BITS + DW_ROW_BITS, WEIGHT_BITS), WEIGHT_BITS); }

// Delta of input byte b of a dbuf word (9-bit two's complement from its low byte and ninth bit).
inline int dsel(const dword& w, int b) {
  return int(uint8_t(w.to_uint64() >> (8 * b))) - (w[INT8_PER_WORD * 8 + b] ? 256 : 0);
}
// int32 two's-complement wrap at every addition (contract), without C++ signed overflow.
inline int32_t wadd(int32_t a, int32_t b) { return int32_t(uint32_t(a) + uint32_t(b)); }

inline int8_t requant(int32_t a, int mult, int shift) {
  const int64_t prod = int64_t(a) * int64_t(mult);
  const int64_t round = shift > 0 ? (int64_t(1) << (shift - 1)) : 0;
  const int64_t r = (prod + round) >> shift;  // arithmetic shift: floor
  return int8_t(r < ACT_MIN ? ACT_MIN : (r > ACT_MAX ? ACT_MAX : r));
}

// Barrel rotation, out[b] = in[(b - s) mod N] for 0 <= s < N, in bits_for(N) stages of 2:1
// muxes: the HLS twin of rtl/dm_rotate.sv (docs/rtl.md). It brings bank-ordered words onto
// the lanes (s' = N - s) and lane-ordered words onto the banks (s); every index is an
// unroll variable and constants, so each stage is wiring plus one mux per element.
template <typename T, int N>
void rotate(const T in[N], int s, T out[N]) {
#pragma HLS INLINE
  T cur[N];
#pragma HLS ARRAY_PARTITION variable = cur type = complete
rot_in:
  for (int b = 0; b < N; b++) {
#pragma HLS UNROLL
    cur[b] = in[b];
  }
rot_stages:
  for (int k = 0; k < bits_for(N); k++) {
#pragma HLS UNROLL
    const bool take = (s >> k) & 1;
    T nxt[N];
#pragma HLS ARRAY_PARTITION variable = nxt type = complete
    for (int b = 0; b < N; b++) {
#pragma HLS UNROLL
      nxt[b] = take ? cur[(b + N - (1 << k) % N) % N] : cur[b];
    }
    for (int b = 0; b < N; b++) {
#pragma HLS UNROLL
      cur[b] = nxt[b];
    }
  }
rot_out:
  for (int b = 0; b < N; b++) {
#pragma HLS UNROLL
    out[b] = cur[b];
  }
}

// Slot `slot` of the N accumulators (p, o0 .. o0 + N - 1), channels >= O read as 0. Bank t
// is read once per round at the address of the channel it holds, then the words are
// rotated into channel order (one round when N <= L).
template <int N>
void acc_read(int p, int o0, int O, int slot, int32_t out[N]) {
#pragma HLS INLINE
  const int s = (p + o0) % L;
acc_read_rounds:
  for (int q = 0; q < ceil_div(N, L); q++) {
#pragma HLS UNROLL
    int32_t ld[L], lanes[L];
#pragma HLS ARRAY_PARTITION variable = ld type = complete
#pragma HLS ARRAY_PARTITION variable = lanes type = complete
    for (int t = 0; t < L; t++) {
#pragma HLS UNROLL
      const int b = q * L + lane_in(t, s), o = o0 + b;
      ld[t] = (b < N && o < O) ? half_of(acc[t][p * OG + o / L], slot) : 0;
    }
    rotate<int32_t, L>(ld, (L - s) % L, lanes);
    for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
      if (q * L + l < N) out[q * L + l] = lanes[l];
    }
  }
}

// Writes slot `slot` of the accumulators (p, o0 .. o0 + N - 1) below O, keeping the other
// slot (read-modify-write of bank t's one word). Distinct (p, o) per call.
template <int N>
void acc_write(int p, int o0, int O, int slot, const int32_t v[N]) {
#pragma HLS INLINE
  const int s = (p + o0) % L;
acc_write_rounds:
  for (int q = 0; q < ceil_div(N, L); q++) {
#pragma HLS UNROLL
    for (int t = 0; t < L; t++) {
#pragma HLS UNROLL
      const int b = q * L + lane_in(t, s), o = o0 + b;
      if (b < N && o < O) {
        int32_t x = 0;
        for (int c = 0; c < N; c++) {
#pragma HLS UNROLL
          if (c == b) x = v[c];
        }
        const uint64_t was = acc[t][p * OG + o / L];
        ram_store(acc[t][p * OG + o / L], with_half(was, slot, x));
      }
    }
  }
}

// W_b += sign * dW over the bank half `wb`, one non-zero per cycle. Two non-zeros in one
// 64-bit word (neighbouring columns, or a repeated entry) are a true read-after-write
// dependence a few iterations apart, so the loop forwards its last FWD_DEPTH stores
// instead of letting Vitis HLS stretch the II (the RTL forwards its last write too).
void patch_bank(int n, int wb, int row_in, int sign) {
#pragma HLS INLINE off
  int fw_bank[FWD_DEPTH], fw_addr[FWD_DEPTH];
  uint64_t fw_word[FWD_DEPTH];
#pragma HLS ARRAY_PARTITION variable = fw_bank type = complete
#pragma HLS ARRAY_PARTITION variable = fw_addr type = complete
#pragma HLS ARRAY_PARTITION variable = fw_word type = complete
patch_fw_init:
  for (int h = 0; h < FWD_DEPTH; h++) {
#pragma HLS UNROLL
    fw_bank[h] = -1;
    fw_addr[h] = 0;
    fw_word[h] = 0;
  }
patch_loop:
  for (int k = 0; k < n; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = MAX_NNZ_DW
#pragma HLS PIPELINE II = 1
#pragma HLS DEPENDENCE variable = w_bank type = inter dependent = false
    const dw_entry e = dw_get(k);
    const int r = dw_row(e), c = dw_col(e);
    const int bank = r % L, addr = w_addr(wb, r, c / INT8_PER_WORD, row_in);
    uint64_t w = w_bank[bank][addr];
    for (int h = FWD_DEPTH - 1; h >= 0; h--) {  // newest (h = 0) last: it wins
#pragma HLS UNROLL
      if (FORWARD && fw_bank[h] == bank && fw_addr[h] == addr) w = fw_word[h];
    }
    const int b = c % INT8_PER_WORD;
    const uint64_t nw = with_byte(w, b, int8_t(uint8_t(byte_of(w, b) + sign * dw_val(e))));
    ram_store(w_bank[bank][addr], nw);
    for (int h = FWD_DEPTH - 1; h > 0; h--) {
#pragma HLS UNROLL
      fw_bank[h] = fw_bank[h - 1];
      fw_addr[h] = fw_addr[h - 1];
      fw_word[h] = fw_word[h - 1];
    }
    fw_bank[0] = bank;
    fw_addr[0] = addr;
    fw_word[0] = nw;
    ram_tick();
  }
  ram_drain();
}

// Reads the packet's beats through TLAST. `remaining` counts the beats the header implies;
// TLAST before the last of them, or no TLAST on it, is a LENGTH error.
struct Reader {
  int remaining;
  bool ended, bad_length;
  bool next(beat_stream& s, uint64_t data[B]) {
    if (ended) return false;
    axis_beat w = s.read();
    for (int r = 0; r < B; r++) {
#pragma HLS UNROLL
      data[r] = beat_word(w, r);
    }
    remaining--;
    if (w.last) {
      ended = true;
      if (remaining != 0) bad_length = true;
    }
    return true;
  }
  void drain(beat_stream& s) {
  drain_loop:
    for (int k = 0; k < (1 << 30) && !ended; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 1
#pragma HLS PIPELINE II = 1
      axis_beat w = s.read();
      if (w.last) ended = true;
    }
  }
};

// The trailer beat: the trailer word first, zero padding after it.
void send_trailer(beat_stream& out, uint32_t nnz_act, int tag, int status) {
  uint64_t tw[B];
#pragma HLS ARRAY_PARTITION variable = tw type = complete
  for (int r = 0; r < B; r++) {
#pragma HLS UNROLL
    tw[r] = r == 0 ? trailer_word(nnz_act, tag, status) : 0;
  }
  put_beat(out, tw, true);
}

}  // namespace

void core(beat_stream& s_axis, beat_stream& m_axis) {
#pragma HLS INTERFACE mode = axis port = s_axis
#pragma HLS INTERFACE mode = axis port = m_axis
#pragma HLS INTERFACE mode = ap_ctrl_none port = return
#pragma HLS ARRAY_PARTITION variable = w_bank type = complete dim = 1
#pragma HLS ARRAY_PARTITION variable = x_ref type = complete dim = 2
#pragma HLS ARRAY_PARTITION variable = acc type = complete dim = 1
#pragma HLS ARRAY_PARTITION variable = dbuf type = complete dim = 1
#pragma HLS ARRAY_PARTITION variable = ulist type = complete dim = 1
#pragma HLS ARRAY_PARTITION variable = tile_end type = complete
#pragma HLS ARRAY_PARTITION variable = bias_buf type = complete dim = 1
#pragma HLS ARRAY_PARTITION variable = dw_buf type = complete dim = 1
#pragma HLS ARRAY_PARTITION variable = mult_buf type = complete dim = 1
#pragma HLS ARRAY_PARTITION variable = shift_buf type = complete dim = 1
// Memory binding for 300 MHz (docs/hls.md, "Pragmas against the ZCU104 budget"): BRAM with
// its output register (latency 2), URAM with the cascade pipelined (latency 3) so chained
// URAMs at the board maxima (acc: 1 per lane at L = 64) still close timing.
#pragma HLS BIND_STORAGE variable = w_bank type = ram_2p impl = bram latency = 2
#pragma HLS BIND_STORAGE variable = x_ref type = ram_2p impl = bram latency = 2
#pragma HLS BIND_STORAGE variable = dw_buf type = ram_2p impl = uram latency = 3
#pragma HLS BIND_STORAGE variable = acc type = ram_2p impl = uram latency = 3
#pragma HLS BIND_STORAGE variable = dbuf type = ram_t2p impl = uram latency = 3
#pragma HLS BIND_STORAGE variable = ulist type = ram_2p impl = bram latency = 2
// No reset walker or write-port mux on the state arrays (run_hls.tcl: config_rtl -reset
// control); only the valid flags are reset, so a reset core answers NO_STATE.
#pragma HLS RESET variable = w_bank off
#pragma HLS RESET variable = x_ref off
#pragma HLS RESET variable = acc off
#pragma HLS RESET variable = dw_buf off
#pragma HLS RESET variable = dbuf off
#pragma HLS RESET variable = ulist off
#pragma HLS RESET variable = tile_end off
#pragma HLS RESET variable = bias_buf off
#pragma HLS RESET variable = mult_buf off
#pragma HLS RESET variable = shift_buf off
#pragma HLS RESET variable = w_valid
#pragma HLS RESET variable = ref_valid

  // ---- header ------------------------------------------------------------------------
  // B >= 2: both header words in the first beat; B = 1: two beats.
  static_assert(HEADER_WORDS == 2, "the header is two words");
  const axis_beat h0 = s_axis.read();
  axis_beat h1 = h0;
  if (B == 1) {
    if (h0.last) {  // shorter than a header: golden answers LENGTH with tag 0
      send_trailer(m_axis, 0, 0, CORE_STATUS_LENGTH);
      return;
    }
    h1 = s_axis.read();
  }
  const Header h = parse_header(beat_word(h0, 0), beat_word(h1, B == 1 ? 0 : 1));
  Reader rd = {0, bool(h1.last), false};
  int status = check_header(h);
  if (status) {
    rd.drain(s_axis);
    send_trailer(m_axis, 0, h.tag, status);
    return;
  }
  const InLayout lay = in_layout(h);
  rd.remaining = lay.total() - ceil_div(HEADER_WORDS, B);
  if (rd.ended) rd.bad_length = true;  // every valid packet has REQ and X words

  const int P = h.tokens, I = h.in_dim, O = h.out_dim;
  const int row_in = ceil_div(I, INT8_PER_WORD);
  const int row_out32 = ceil_div(O, INT32_PER_WORD);
  const int row_out8 = ceil_div(O, INT8_PER_WORD);
  const int beats8 = ceil_div(row_out8, B);     // Y beats of one token
  const int beats32 = ceil_div(row_out32, B);   // YREF / YREF_OUT beats of one token
  const int blocks = ceil_div(P, B);            // row blocks of the X / XREF sections
  const int og = ceil_div(O, L);
  const bool load_w = h.flags & FLAG_LOAD_W;
  const bool load_ref = h.flags & FLAG_LOAD_REF;
  const bool emit_ref = h.flags & FLAG_EMIT_REF;
  const int wb = load_w ? 1 - w_cur : w_cur;  // bank this job computes with
  const int ys = 1 - ref_cur;                   // slot this job writes
  const int src = lay.xref ? ys : ref_cur;      // slot holding the job's references
  uint64_t d[B];  // the beat being read, word r from row / entry r of the beat
#pragma HLS ARRAY_PARTITION variable = d type = complete

  // Row loops walk (row, word) with counters: no run-time division by row_in (docs/hls.md).
  // ---- W_b rows (into the non-resident bank), in row blocks ----------------------------
  // Beat (block wq + wg * LB, word wj): row wg*L + t in lane t of group wq (t / B == wq)
  // takes beat word t mod B; padding rows (>= O) are not written.
  int wj = 0, wq = 0, wg = 0;
load_w_rows:
  for (int k = 0; k < lay.w; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = MAX_W_BEATS
#pragma HLS PIPELINE II = 1
    if (!rd.next(s_axis, d)) break;
    for (int t = 0; t < L; t++) {
#pragma HLS UNROLL
      if (t / B == wq && wg * L + t < O)
        w_bank[t][wb * W_HALF + wg * row_in + wj] = row_mask(d[t % B], wj, I);
    }
    if (++wj == row_in) {
      wj = 0;
      if (++wq == LB) {
        wq = 0;
        wg++;
      }
    }
  }
  // ---- dW non-zeros --------------------------------------------------------------------
  bool bad_index = false;
  dw_entry dw_low = 0;  // B = 1: the even entry of the row being filled, written again with the odd one
load_dw:
  for (int k = 0; k < lay.dw; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = MAX_DW_BEATS
#pragma HLS PIPELINE II = 1
    if (!rd.next(s_axis, d)) break;
    dw_entry e[B];  // truncated fields only matter when INDEX refuses anyway
#pragma HLS ARRAY_PARTITION variable = e type = complete
    for (int r = 0; r < B; r++) {
#pragma HLS UNROLL
      e[r] = dw_pack(d[r]);
      const bool entry = uint32_t(k * B + r) < h.nnz_dw;  // beat padding is no entry
      if (entry && (int(bits(d[r], NZ_ROW_LSB, NZ_ROW_WIDTH)) >= O ||
                    int(bits(d[r], NZ_COL_LSB, NZ_COL_WIDTH)) >= I))
        bad_index = true;
    }
    if (B >= DW_PER_ROW) {  // whole rows: entries q * DW_PER_ROW .. of the beat into bank q
      for (int q = 0; q < DW_BANKS; q++) {
#pragma HLS UNROLL
        dw_row_t row = 0;
        for (int r = 0; r < B; r++) {
#pragma HLS UNROLL
          if (r / DW_PER_ROW == q) row |= dw_row_t(e[r]) << (DW_BITS * (r % DW_PER_ROW));
        }
        dw_buf[q][k] = row;
      }
    } else if (k % 2) {  // B = 1 with two entries a row
      dw_buf[0][k / DW_PER_ROW] = (dw_row_t(e[0]) << DW_BITS) | dw_row_t(dw_low);
    } else {
      dw_buf[0][k / DW_PER_ROW] = dw_row_t(e[0]);
      dw_low = e[0];
    }
  }
  // ---- bias, requant parameters: channel o lands in its bank (an unrolled decode) -----
// A beat brings RB channels (c: word c / 2, half c mod 2); padding channels (>= O) are skipped.
load_bias:
  for (int k = 0; k < lay.bias; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = MAX_RB_BEATS
#pragma HLS PIPELINE II = 1
    if (!rd.next(s_axis, d)) break;
    for (int t = 0; t < L; t++) {
#pragma HLS UNROLL
      for (int c = 0; c < RB; c++) {
#pragma HLS UNROLL
        const int o = k * RB + c;
        const bool lane = RB_ALIGNED ? (c == t % RB && t / RB == k % LRB) : o % L == t;
        if (o < O && lane)
          bias_buf[t][o / L] = int32_t(uint32_t(bits(d[c / INT32_PER_WORD], 32 * (c % INT32_PER_WORD), 32)));
      }
    }
  }
load_req:
  for (int k = 0; k < lay.req; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_RB_BEATS
#pragma HLS PIPELINE II = 1
    if (!rd.next(s_axis, d)) break;
    for (int t = 0; t < YB; t++) {
#pragma HLS UNROLL
      for (int c = 0; c < RB; c++) {
#pragma HLS UNROLL
        const int o = k * RB + c;  // bank o mod YB = (k mod QRB) * RB + c: aligned (RB divides YB)
        const uint64_t e = bits(d[c / REQ_PER_WORD], REQ_ENTRY_BITS * (c % REQ_PER_WORD), REQ_ENTRY_BITS);
        if (o < O && c == t % RB && t / RB == k % QRB) {
          mult_buf[t][o / YB] = uint16_t(bits(e, REQ_MULT_LSB, REQ_MULT_WIDTH));
          shift_buf[t][o / YB] = uint8_t(bits(e, REQ_SHIFT_LSB, REQ_SHIFT_WIDTH));
        }
      }
    }
  }
  // ---- references (LOAD_REF) into the scratch slot; TASK adds its bias delta on the fly --
  const bool add_bias = h.mode == MODE_TASK;
  // Row blocks, as W: token xg*L + t in lane t of group xq; padding tokens (>= P) skipped.
  int xj = 0, xq = 0, xg = 0;
load_xref:
  for (int k = 0; k < lay.xref; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = MAX_X_BEATS
#pragma HLS PIPELINE II = 1
    if (!rd.next(s_axis, d)) break;
    for (int t = 0; t < L; t++) {
#pragma HLS UNROLL
      if (t / B == xq && xg * L + t < P) x_ref[ys][t][xg][xj] = row_mask(d[t % B], xj, I);
    }
    if (++xj == row_in) {
      xj = 0;
      if (++xq == LB) {
        xq = 0;
        xg++;
      }
    }
  }
  // Each (p, o) is written once: no iteration reads what another wrote (DEPENDENCE false).
  int yp = 0, yj = 0;
load_yref:
  for (int k = 0; k < lay.yref; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = MAX_TOKENS * MAX_RB_BEATS
#pragma HLS PIPELINE II = 1
#pragma HLS DEPENDENCE variable = acc type = inter dependent = false
    if (!rd.next(s_axis, d)) break;
    int32_t v[RB], bv[RB];  // channels yj*RB + c of token yp (row-major beats)
#pragma HLS ARRAY_PARTITION variable = v type = complete
#pragma HLS ARRAY_PARTITION variable = bv type = complete
    for (int c = 0; c < RB; c++) {
#pragma HLS UNROLL
      v[c] = int32_t(uint32_t(bits(d[c / INT32_PER_WORD], 32 * (c % INT32_PER_WORD), 32)));
      bv[c] = 0;
    }
    for (int u = 0; u < L; u++) {  // bias of channel o from its lane u = o mod L
#pragma HLS UNROLL
      for (int c = 0; c < RB; c++) {
#pragma HLS UNROLL
        const int o = yj * RB + c;
        const bool lane = RB_ALIGNED ? (c == u % RB && u / RB == yj % LRB) : o % L == u;
        if (o < O && lane) bv[c] = bias_buf[u][o / L];
      }
    }
    for (int c = 0; c < RB; c++) {
#pragma HLS UNROLL
      if (add_bias) v[c] = wadd(v[c], bv[c]);
    }
    acc_write<RB>(yp, yj * RB, O, ys, v);
    ram_tick();
    if (++yj == beats32) {
      yj = 0;
      yp++;
    }
  }
  ram_drain();
  // ---- X rows: delta encoding on the fly into the delta buffer and the union lists -------
  // DENSE: every non-zero x is a "delta" against zero (the all-nonzero case of the engine).
  // A beat is word aj of the B tokens of row block kb (one tile: B divides T), token
  // kb*B + r in lane (kb mod LB)*B + r and token row (kb mod TB)*B + r: B encoders, each
  // bank written by at most one of them. The word of kept deltas goes to dbuf (token p: row
  // p mod T). Inputs kept for the first time in the tile by any of the B tokens ((OR of the
  // keep bits) & ~seen: still <= 8 per beat) are ranked by a prefix sum, compacted and
  // rotated by nu mod 8 onto the 8 union banks; the counts take one add each. Padding tokens
  // (>= P) keep nothing and are not written to x_ref.
  // x_ref: iteration k reads (src, p, j) and writes (ys, p, j), each (p, j) once, so no
  // iteration reads what another wrote: DEPENDENCE false is exact.
  const bool dense = h.mode == MODE_DENSE;
  uint32_t nnz_act = 0, nu = 0;
  uint8_t seen[ROW_I8_IN];  // inputs j*8 .. j*8+7 already in U_k (bit b), cleared per tile
#pragma HLS ARRAY_PARTITION variable = seen type = complete
  int kb = 0, aj = 0;  // row block (tokens kb*B ..), word
load_x:
  for (int k = 0; k < lay.x; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_X_BEATS
#pragma HLS PIPELINE II = 1
#pragma HLS DEPENDENCE variable = x_ref type = inter dependent = false
    if (!rd.next(s_axis, d)) break;
    const int aq = kb % LB, ag = kb / LB;  // lane group, token group (constant divisors)
    const int tile = kb / TB, tq = kb % TB;  // tile, row block within it
    uint64_t ref[B];
#pragma HLS ARRAY_PARTITION variable = ref type = complete
    for (int t = 0; t < L; t++) {  // the B lanes of group aq: a (L/B):1 pick per token
#pragma HLS UNROLL
      const uint64_t v = (!dense && t / B == aq) ? x_ref[src][t][ag][aj] : 0;
      if (t / B == aq) ref[t % B] = v;
    }
    const bool tile_start = aj == 0 && tq == 0;
    const int was = tile_start ? 0 : seen[aj];
    uint64_t x_new[B], d_lo[B];
    int d_hi[B];
#pragma HLS ARRAY_PARTITION variable = x_new type = complete
#pragma HLS ARRAY_PARTITION variable = d_lo type = complete
#pragma HLS ARRAY_PARTITION variable = d_hi type = complete
    int keep_any = 0, cnt = 0;  // OR of the B tokens' keep bits; their popcount
    for (int r = 0; r < B; r++) {
#pragma HLS UNROLL
      const bool token = kb * B + r < P;
      x_new[r] = 0;
      d_lo[r] = 0;
      d_hi[r] = 0;
      for (int b = 0; b < INT8_PER_WORD; b++) {
#pragma HLS UNROLL
        const int i = aj * INT8_PER_WORD + b;
        const int x = byte_of(d[r], b);
        const int rv = byte_of(ref[r], b);
        const int dv = x - rv;
        const bool keep = token && i < I && (dense ? dv != 0 : (dv >= h.th || dv <= -h.th));
        if (i < I) x_new[r] = with_byte(x_new[r], b, int8_t(keep ? x : rv));  // "the last value sent"
        if (keep) {
          d_lo[r] |= uint64_t(uint8_t(dv)) << (8 * b);
          d_hi[r] |= (dv < 0 ? 1 : 0) << b;
        }
        keep_any |= (keep ? 1 : 0) << b;
        cnt += keep ? 1 : 0;
      }
    }
    uint16_t ent[U_BANKS], comp[U_BANKS], banked[U_BANKS];
    bool fresh[U_BANKS];
    int rank[U_BANKS];
#pragma HLS ARRAY_PARTITION variable = ent type = complete
#pragma HLS ARRAY_PARTITION variable = comp type = complete
#pragma HLS ARRAY_PARTITION variable = banked type = complete
#pragma HLS ARRAY_PARTITION variable = fresh type = complete
#pragma HLS ARRAY_PARTITION variable = rank type = complete
    int cnt_new = 0;  // 4-bit prefix sum of the fresh bits
    for (int b = 0; b < INT8_PER_WORD; b++) {
#pragma HLS UNROLL
      fresh[b] = ((keep_any >> b) & 1) && !((was >> b) & 1);
      ent[b] = uint16_t(aj * INT8_PER_WORD + b);
      rank[b] = cnt_new;
      cnt_new += fresh[b] ? 1 : 0;
    }
    for (int q = 0; q < U_BANKS; q++) {  // compaction: comp[q] = the q-th fresh index
#pragma HLS UNROLL
      comp[q] = 0;
      for (int b = 0; b < INT8_PER_WORD; b++) {
#pragma HLS UNROLL
        if (fresh[b] && rank[b] == q) comp[q] = ent[b];
      }
    }
    const int s = int(nu % U_BANKS);
    rotate<uint16_t, U_BANKS>(comp, s, banked);  // entry nu + q lands in bank (s + q) mod 8
    for (int t = 0; t < U_BANKS; t++) {
#pragma HLS UNROLL
      const int q = (t + U_BANKS - s) % U_BANKS;
      if (q < cnt_new) ulist[t][(nu + uint32_t(q)) / U_BANKS] = banked[t];
    }
    nnz_act += uint32_t(cnt);
    nu += uint32_t(cnt_new);
    tile_end[tile] = nu;  // the tile's last beat leaves its final count
    if (tile_start) {
      for (int j = 0; j < ROW_I8_IN; j++) {
#pragma HLS UNROLL
        seen[j] = 0;
      }
    }
    seen[aj] = uint8_t(was | keep_any);
    for (int tr = 0; tr < T; tr++) {  // token rows tq*B .. tq*B + B - 1 of the tile
#pragma HLS UNROLL
      if (tr / B == tq)
        dbuf[tr / DB_WAYS][tr % DB_WAYS][tile * ROW_I8_IN + aj] =
            (dword(d_hi[tr % B]) << 64) | dword(d_lo[tr % B]);
    }
    for (int t = 0; t < L; t++) {
#pragma HLS UNROLL
      if (t / B == aq && ag * L + t < P) x_ref[ys][t][ag][aj] = x_new[t % B];
    }
    if (++aj == row_in) {
      aj = 0;
      kb++;
    }
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

  // ---- DENSE/TEMPORAL with dW: patch the bank W_b += dW (undone below) ----------------
  const int nnz_dw = int(h.nnz_dw);  // entries (lay.dw counts beats)
  const bool patch = h.mode != MODE_TASK && nnz_dw > 0;
  if (patch) patch_bank(nnz_dw, wb, row_in, 1);

  // ---- activation-sparse pass: a T x L array, lanes over outputs, rows over tokens ------
  // One flattened loop over the slots (output group g, tile k), G = ceil(O/L), with a
  // T-iteration prologue and epilogue. A slot lasts max(|U_k|, T) iterations: one MAC
  // iteration per entry i of U_k (lane l reads W[gL + l][i] once and row t multiplies it by
  // the delta of token kT + t at input i, 0 where not kept: integer sums are exact in any
  // order) while one shadow copy of the PE rows, `st`, stores the previous slot into the
  // accumulators underneath (the scheme of rtl/deltamtl_core.sv, docs/rtl.md). Iteration 0 of
  // a slot is the switch: the PE rows go to `st` and restart from zero (then the first MAC
  // adds to them). In iterations j < T, store item j reads the word of token ps = k'T + j,
  // group g' of the previous slot (the address it writes), adds the token's initial value to
  // row 0 of `st` (DENSE: bias; LOAD_REF: the loaded y_ref, TASK bias already added;
  // otherwise the resident accumulator, + TASK bias delta), writes the word back with the
  // sum in slot ys and the other slot's half as read, and `st` shifts up by one: every
  // register index is a constant or an unroll variable. Adding the initial value last gives
  // the int32 that starting from it gives (wrapping adds commute). Why: no load shadow
  // (T x L x 32 FF with its init path), no 2T-row register for the other halves (the word is
  // at hand), one address per iteration. The prologue is idle, kept so that both cores keep
  // one cycle model; the epilogue stores the last slot. Token p's L accumulators sit in L
  // distinct skewed banks (rotated by p mod L), so a store item reads and writes each bank
  // once, at one address. The word it reads still holds the token's value from before the
  // pass: the (token, group) word is read and written only by its own store item, in one
  // iteration; load_yref has drained before the pass and the weight pass starts after it.
  const int nt = ceil_div(P, T);
  uint32_t slot_sum = 0;  // sum_k max(|U_k|, T)
  {
    uint32_t prev = 0;
    for (int k = 0; k < NT; k++) {
#pragma HLS UNROLL
      const uint32_t len = tile_end[k] - prev;
      prev = tile_end[k];
      if (k < nt) slot_sum += len > uint32_t(T) ? len : uint32_t(T);
    }
  }
  const uint32_t n_act = uint32_t(og) * slot_sum + uint32_t(2 * T);
  const bool from_resident = !dense && !lay.yref;
#ifndef __SYNTHESIS__
  act_iterations = n_act;
#endif
  int32_t reg[T][L], st_val[T][L];
#pragma HLS ARRAY_PARTITION variable = reg type = complete dim = 0
#pragma HLS ARRAY_PARTITION variable = st_val type = complete dim = 0
  for (int r = 0; r < T; r++) {
#pragma HLS UNROLL
    for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
      reg[r][l] = 0;
      st_val[r][l] = 0;
    }
  }
  // Slots: (cg, ck) in the PE rows (mac: a real slot, not the prologue / epilogue), (sg, sk)
  // in the store shadow (have_st), (lg, lk) the slot after (cg, ck) (a real one if lg < og).
  int cg = 0, ck = 0, sg = 0, sk = 0, lg = 0, lk = 0;
  bool mac = false, have_st = false;
  int j = 0;                   // iteration of the slot, saturating at T
  int w_base = wb * W_HALF;    // lane l holds row cg L + l from there
  uint32_t u = 0;              // union entry, from 0 in each group
act_pass:
  for (uint32_t n = 0; n < n_act; n++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = OG * NT * (MAX_IN > T ? MAX_IN : T) + 2 * T
#pragma HLS PIPELINE II = 1
#pragma HLS DEPENDENCE variable = acc type = inter dependent = false
    // DEPENDENCE false: iteration j < T of a slot reads and writes one word per bank, that of
    // (token sk T + j, group sg): a read-modify-write inside one iteration. Each (token, group)
    // word is stored by exactly one store item (one slot, one j), so consecutive iterations
    // touch different words and no later iteration reads a word an earlier one wrote: no
    // inter-iteration dependence through acc at any distance.
    const uint32_t end = tile_end[ck];
    if (j == 0) {  // the switch
      for (int r = 0; r < T; r++) {
#pragma HLS UNROLL
        for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
          st_val[r][l] = reg[r][l];
          reg[r][l] = 0;
        }
      }
    }
    if (j < T) {  // store item j of slot (sg, sk): token ps, group sg
      const int ps = sk * T + j;
      const int s_st = ps % L;
      const bool store = have_st && ps < P;
      uint64_t was[L], lw[L], wv[L], sw[L];
#pragma HLS ARRAY_PARTITION variable = was type = complete
#pragma HLS ARRAY_PARTITION variable = lw type = complete
#pragma HLS ARRAY_PARTITION variable = wv type = complete
#pragma HLS ARRAY_PARTITION variable = sw type = complete
      for (int t = 0; t < L; t++) {
#pragma HLS UNROLL
        was[t] = store ? acc[t][ps * OG + sg] : 0;
      }
      rotate<uint64_t, L>(was, (L - s_st) % L, lw);  // banks -> lanes
      for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
        const int32_t bias = bias_buf[l][sg];
        const int32_t from = half_of(lw[l], lay.yref ? ys : ref_cur);
        const int32_t init = dense ? bias : (from_resident && add_bias ? wadd(from, bias) : from);
        wv[l] = with_half(lw[l], ys, wadd(init, st_val[0][l]));  // other slot's half as read
      }
      rotate<uint64_t, L>(wv, s_st, sw);  // lanes -> banks
      for (int t = 0; t < L; t++) {
#pragma HLS UNROLL
        if (store && sg * L + lane_in(t, s_st) < O) ram_store(acc[t][ps * OG + sg], sw[t]);
      }
      for (int r = 0; r + 1 < T; r++) {
#pragma HLS UNROLL
        for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
          st_val[r][l] = st_val[r + 1][l];
        }
      }
    }
    const bool do_mac = mac && u != end;
    if (do_mac) {  // MAC iteration: entry u of U_ck
      const int i = ulist[u % U_BANKS][u / U_BANKS];
      int32_t wl[L];
#pragma HLS ARRAY_PARTITION variable = wl type = complete
      for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
        wl[l] = byte_of(w_bank[l][w_base + i / INT8_PER_WORD], i % INT8_PER_WORD);
      }
      for (int t = 0; t < T; t++) {
#pragma HLS UNROLL
        const dword dw = dbuf[t / DB_WAYS][t % DB_WAYS][ck * ROW_I8_IN + i / INT8_PER_WORD];
        const int dv = ck * T + t < P ? dsel(dw, i % INT8_PER_WORD) : 0;
#ifndef __SYNTHESIS__
        if (dv == 0) continue;  // C simulation speed only: a zero delta adds nothing
#endif
        for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
          reg[t][l] = wadd(reg[t][l], dv * wl[l]);
        }
      }
      u++;
    }
    if (j < T) j++;
    if (j == T && !(mac && u != end)) {  // the slot ends: the slots move on by one
      const bool new_group = mac && ck + 1 == nt;
      sg = cg;
      sk = ck;
      have_st = mac;
      cg = lg;
      ck = lk;
      mac = lg < og;
      if (new_group) {
        u = 0;
        w_base += row_in;
      }
      if (++lk == nt) {
        lk = 0;
        lg++;
      }
      j = 0;
    }
    ram_tick();
  }
  ram_drain();

  if (patch) patch_bank(nnz_dw, wb, row_in, -1);

  // ---- TASK weight-sparse pass: acc += x_k dW^T, one dW non-zero per cycle, lanes over tokens
  // Same register scheme per run of equal output row r; token gL + l sits in bank
  // (l + r) mod L at (gL + l) * OG + r / L. dW may arrive unordered or repeated (a packet
  // is not bound to CSR order), so a row can be loaded again a few iterations after its
  // store: the loop forwards its last FWD_DEPTH iterations' stores (row + L words).
  const int pg = ceil_div(P, L);
wgt_groups:
  for (int g = 0; g < (h.mode == MODE_TASK ? pg : 0); g++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = PG
    int32_t reg[L];
    uint64_t held[L], wv[L], st[L], ld[L];
    int fw_row[FWD_DEPTH];
    uint64_t fw_word[FWD_DEPTH][L];
#pragma HLS ARRAY_PARTITION variable = reg type = complete
#pragma HLS ARRAY_PARTITION variable = held type = complete
#pragma HLS ARRAY_PARTITION variable = wv type = complete
#pragma HLS ARRAY_PARTITION variable = st type = complete
#pragma HLS ARRAY_PARTITION variable = ld type = complete
#pragma HLS ARRAY_PARTITION variable = fw_row type = complete
#pragma HLS ARRAY_PARTITION variable = fw_word type = complete dim = 0
    for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
      reg[l] = 0;
      held[l] = 0;
    }
    for (int hh = 0; hh < FWD_DEPTH; hh++) {
#pragma HLS UNROLL
      fw_row[hh] = -1;
      for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
        fw_word[hh][l] = 0;
      }
    }
    int cur_r = -1, cur_s = 0;
  wgt_pass:
    for (int k = 0; k < nnz_dw; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = MAX_NNZ_DW
#pragma HLS PIPELINE II = 1
#pragma HLS DEPENDENCE variable = acc type = inter dependent = false
      const dw_entry e = dw_get(k);
      const int r = dw_row(e), c = dw_col(e);
      const int v = dw_val(e);
      int st_row = -1;  // the row this iteration stores, for the forwarding line
      if (r != cur_r) {
        for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
          wv[l] = with_half(held[l], ys, reg[l]);
        }
        rotate<uint64_t, L>(wv, cur_s, st);
        const int s = r % L;
        for (int t = 0; t < L; t++) {
#pragma HLS UNROLL
          const int ps = g * L + lane_in(t, cur_s), pl = g * L + lane_in(t, s);
          if (cur_r >= 0 && ps < P) ram_store(acc[t][ps * OG + cur_r / L], st[t]);
          ld[t] = pl < P ? acc[t][pl * OG + r / L] : 0;
        }
        rotate<uint64_t, L>(ld, (L - s) % L, held);
        for (int hh = FWD_DEPTH - 1; hh >= 0; hh--) {  // newest (hh = 0) last: it wins
#pragma HLS UNROLL
          if (FORWARD && fw_row[hh] == r) {
            for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
              held[l] = fw_word[hh][l];
            }
          }
        }
        for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
          reg[l] = half_of(held[l], ys);
        }
        st_row = cur_r;
        cur_r = r;
        cur_s = s;
      }
      for (int hh = FWD_DEPTH - 1; hh > 0; hh--) {  // one entry per iteration: a delay line
#pragma HLS UNROLL
        fw_row[hh] = fw_row[hh - 1];
        for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
          fw_word[hh][l] = fw_word[hh - 1][l];
        }
      }
      fw_row[0] = st_row;
      for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
        fw_word[0][l] = wv[l];
      }
      for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
        if (g * L + l < P)
          reg[l] = wadd(reg[l], int(byte_of(x_ref[ys][l][g][c / INT8_PER_WORD], c % INT8_PER_WORD)) * v);
      }
      ram_tick();
    }
    for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
      wv[l] = with_half(held[l], ys, reg[l]);
    }
    rotate<uint64_t, L>(wv, cur_s, st);
    for (int t = 0; t < L; t++) {
#pragma HLS UNROLL
      const int ps = g * L + lane_in(t, cur_s);
      if (cur_r >= 0 && ps < P) ram_store(acc[t][ps * OG + cur_r / L], st[t]);
    }
    ram_drain();
  }

  // ---- requantise and stream out Y, then the references (EMIT_REF), then the trailer ----
  // Y beat (op, oj): channels oj*YB + c of token op from YB distinct skewed accumulator
  // banks, requantised in parallel with mult/shift bank c; padding words are zero.
  int op = 0, oj = 0;
out_y:
  for (int k = 0; k < P * beats8; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_Y_BEATS
#pragma HLS PIPELINE II = 1
    int32_t a[YB];
    uint64_t word[B];
#pragma HLS ARRAY_PARTITION variable = a type = complete
#pragma HLS ARRAY_PARTITION variable = word type = complete
    acc_read<YB>(op, oj * YB, O, ys, a);
    for (int r = 0; r < B; r++) {
#pragma HLS UNROLL
      word[r] = 0;
    }
    for (int c = 0; c < YB; c++) {
#pragma HLS UNROLL
      if (oj * YB + c < O)
        word[c / INT8_PER_WORD] |= uint64_t(uint8_t(requant(a[c], mult_buf[c][oj], shift_buf[c][oj])))
                                   << (8 * (c % INT8_PER_WORD));
    }
    put_beat(m_axis, word, false);
    if (++oj == beats8) {
      oj = 0;
      op++;
    }
  }
  // XREF_OUT in row blocks: beat (block rq + rg * LB, word rj) from the B lanes of group rq;
  // padding tokens (>= P) are zero words.
  int rj = 0, rq = 0, rg = 0;
out_xref:
  for (int k = 0; k < (emit_ref ? blocks * row_in : 0); k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = MAX_X_BEATS
#pragma HLS PIPELINE II = 1
    uint64_t word[B];
#pragma HLS ARRAY_PARTITION variable = word type = complete
    for (int t = 0; t < L; t++) {
#pragma HLS UNROLL
      const bool mine = t / B == rq;
      const uint64_t v = mine && rg * L + t < P ? x_ref[ys][t][rg][rj] : 0;
      if (mine) word[t % B] = v;
    }
    put_beat(m_axis, word, false);
    if (++rj == row_in) {
      rj = 0;
      if (++rq == LB) {
        rq = 0;
        rg++;
      }
    }
  }
  int yq = 0, yk = 0;
out_yref:
  for (int k = 0; k < (emit_ref ? P * beats32 : 0); k++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = MAX_TOKENS * MAX_RB_BEATS
#pragma HLS PIPELINE II = 1
    int32_t a[RB];
    uint64_t word[B];
#pragma HLS ARRAY_PARTITION variable = a type = complete
#pragma HLS ARRAY_PARTITION variable = word type = complete
    acc_read<RB>(yq, yk * RB, O, ys, a);
    for (int r = 0; r < B; r++) {
#pragma HLS UNROLL
      word[r] = 0;
    }
    for (int c = 0; c < RB; c++) {
#pragma HLS UNROLL
      if (yk * RB + c < O)
        word[c / INT32_PER_WORD] |= uint64_t(uint32_t(a[c])) << (32 * (c % INT32_PER_WORD));
    }
    put_beat(m_axis, word, false);
    if (++yk == beats32) {
      yk = 0;
      yq++;
    }
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

// Iterations of the last accepted packet's act_pass: og * sum_k max(|U_k|, T) + 2T.
long core_act_iterations() { return long(act_iterations); }

// The core's memories for the resource estimate (deltamtl.hls.resources): name, memories
// (partitions), rows per memory and bits per row, from the same constants as the
// declarations above (the static_asserts tie the two together). Returns the count.
int core_arrays(const char** name, long* memories, long* rows, long* bits, int cap) {
  struct Shape {
    const char* name;
    long memories, rows, bits, elements;
  };
  const Shape shapes[] = {
      {"w_bank", L, 2 * W_HALF, 64, sizeof(w_bank) / sizeof(w_bank[0][0])},
      {"x_ref", L, 2 * PG * ROW_I8_IN, 64, sizeof(x_ref) / sizeof(x_ref[0][0][0][0])},
      {"acc", L, ACC_DEPTH, 64, sizeof(acc) / sizeof(acc[0][0])},
      {"dw_buf", DW_BANKS, DW_DEPTH, DW_PER_ROW * DW_BITS, sizeof(dw_buf) / sizeof(dw_buf[0][0])},
      {"dbuf", DB_BANKS, DB_WAYS * DB_DEPTH, INT8_PER_WORD * DELTA_BITS,
       sizeof(dbuf) / sizeof(dbuf[0][0][0])},
      {"ulist", U_BANKS, U_DEPTH, 16, sizeof(ulist) / sizeof(ulist[0][0])},
      {"tile_end", NT, 1, 32, sizeof(tile_end) / sizeof(tile_end[0])},
      {"bias_buf", L, OG, 32, sizeof(bias_buf) / sizeof(bias_buf[0][0])},
      {"mult_buf", YB, REQ_DEPTH, 16, sizeof(mult_buf) / sizeof(mult_buf[0][0])},
      {"shift_buf", YB, REQ_DEPTH, 8, sizeof(shift_buf) / sizeof(shift_buf[0][0])},
  };
  int n = 0;
  for (const Shape& a : shapes) {
    if (a.memories * a.rows != a.elements) return -1;  // a declaration and its row drifted
    if (n < cap) {
      name[n] = a.name;
      memories[n] = a.memories;
      rows[n] = a.rows;
      bits[n] = a.bits;
    }
    n++;
  }
  return n;
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
