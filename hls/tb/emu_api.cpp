// C ABI of the emulation library (deltamtl.hls.emulator loads it with ctypes).
// One translation unit holding the three kernels as they are synthesised, plus the glue
// that the block design provides in hardware: the AXI4-Stream FIFOs between the kernels.
#include "../core.cpp"
#include "../fetch.cpp"
#include "../commit.cpp"

#include "dmtl_chain.h"

#include <vector>

static_assert(sizeof(dmtl::mem_word) == 8, "ap_uint<64> must be one 8-byte word for zero-copy gmem");

namespace {
// The most words one weight bank half holds for any accepted O x I (O*I <= MAX_WEIGHTS):
// checked against the closed-form W_HALF of core.cpp for every library built.
constexpr int widest_w_half() {
  int most = 0;
  for (int o = 1; o <= dmtl::MAX_OUT; o++) {
    const int i = dmtl::cmin(dmtl::MAX_IN, dmtl::MAX_WEIGHTS / o);
    const int words = dmtl::ceil_div(o, dmtl::LANES) * dmtl::ceil_div(i, dmtl::INT8_PER_WORD);
    most = words > most ? words : most;
  }
  return most;
}
static_assert(widest_w_half() <= W_HALF, "weight bank half too small for some O*I <= MAX_WEIGHTS");
}  // namespace

namespace {
// Moves a stream's words into vectors (the stream must hold whole packets).
int drain_stream(dmtl::axis_stream& s, uint64_t* out, uint8_t* last, long cap) {
  long n = 0;
  while (!s.empty()) {
    dmtl::axis_word w = s.read();
    if (n < cap) {
      out[n] = uint64_t(w.data);
      last[n] = uint8_t(w.last);
    }
    n++;
  }
  return int(n);
}
// The same for the core's beats: B words each, a beat's TLAST on its last word.
int drain_beats(dmtl::beat_stream& s, uint64_t* out, uint8_t* last, long cap) {
  long n = 0;
  while (!s.empty()) {
    dmtl::axis_beat w = s.read();
    for (int r = 0; r < dmtl::BEAT_WORDS; r++, n++) {
      if (n < cap) {
        out[n] = dmtl::beat_word(w, r);
        last[n] = uint8_t(r == dmtl::BEAT_WORDS - 1 && w.last);
      }
    }
  }
  return int(n);
}
}  // namespace

extern "C" {

// Compiled maxima of this build, in LIMIT_FIELDS order (contract/limits.py).
void dmtl_limits(int* out) {
  for (int k = 0; k < dmtl::NUM_LIMIT_VALUES; k++) out[k] = dmtl::LIMIT_VALUES[k];
}

// The most words of one core output packet (beats of B words).
long dmtl_max_packet_out() { return long(dmtl::MAX_BEATS_OUT) * dmtl::BEAT_WORDS; }

void dmtl_core_reset() { core_reset_state(); }

long dmtl_core_act_iterations() { return core_act_iterations(); }

int dmtl_core_arrays(const char** name, long* memories, long* rows, long* bits, int cap) {
  return core_arrays(name, memories, rows, bits, cap);
}

long dmtl_core_state_io(void* buf, int dir) { return core_state_io(buf, dir); }

// One input packet (n_in >= 1 words, whole beats of BEAT_WORDS; TLAST on the last beat, as
// on the wire) through core. Returns the number of output words (written up to `cap`; a
// beat's TLAST on its last word), -1 if core left input beats unread (it must consume
// exactly one packet), -2 if n_in is not whole beats.
int dmtl_core_run(const uint64_t* in, long n_in, uint64_t* out, uint8_t* out_last, long cap) {
  constexpr long B = dmtl::BEAT_WORDS;
  if (n_in % B) return -2;
  dmtl::beat_stream s_in, s_out;
  for (long k = 0; k < n_in; k += B) dmtl::put_beat(s_in, in + k, k + B == n_in);
  core(s_in, s_out);
  if (!s_in.empty()) {
    while (!s_in.empty()) s_in.read();
    drain_beats(s_out, out, out_last, 0);
    return -1;
  }
  return drain_beats(s_out, out, out_last, cap);
}

// 1 when fetch -> core -> commit can run in this build: the system path is B = 1 (fetch
// and commit move one word per beat); the Python side refuses a B > 1 library for it.
int dmtl_has_system() { return dmtl::BEAT_WORDS == 1; }

// fetch -> core -> commit over one DDR buffer (zero copy: gmem is `buf`). The core's
// output packet is copied out on its way to commit (the trailer is the host's view of
// the core status); trailer_out[0] = trailer word, trailer_out[1] = 1 if a packet passed.
// B = 1 only (dmtl_has_system): at B > 1 nothing runs.
void dmtl_system_run(uint8_t* buf, uint64_t buf_bytes, uint64_t desc_offset,
                     uint32_t* fetch_status, uint32_t* commit_status, uint64_t* trailer_out) {
  dmtl::mem_word* gmem = reinterpret_cast<dmtl::mem_word*>(buf);
  dmtl::axis_stream s_in, s_out;
  dmtl::beat_stream c_in, s_mid;
  *fetch_status = 0;
  *commit_status = 0;
  trailer_out[0] = 0;
  trailer_out[1] = 0;
  if (!dmtl_has_system()) return;
  fetch(gmem, buf_bytes, desc_offset, fetch_status, s_in);
  dmtl::pass_packets(s_in, c_in);
  // A chain whose doorbells are all rung streams one packet per accepted job.
  while (!c_in.empty()) core(c_in, s_mid);
  {
    std::vector<dmtl::axis_beat> words;
    while (!s_mid.empty()) words.push_back(s_mid.read());
    if (!words.empty()) {
      trailer_out[0] = dmtl::beat_word(words.back(), 0);
      trailer_out[1] = 1;
    }
    for (const auto& w : words) s_mid.write(w);
  }
  dmtl::pass_packets(s_mid, s_out);
  commit(gmem, buf_bytes, desc_offset, commit_status, s_out);
}

// fetch alone: the packet it streams (words, TLAST flags; up to `cap`); returns its length.
int dmtl_fetch_run(uint8_t* buf, uint64_t buf_bytes, uint64_t desc_offset, uint32_t* status,
                   uint64_t* out, uint8_t* out_last, long cap) {
  dmtl::axis_stream s;
  *status = 0;
  fetch(reinterpret_cast<dmtl::mem_word*>(buf), buf_bytes, desc_offset, status, s);
  return drain_stream(s, out, out_last, cap);
}

// commit alone, fed the given words (TLAST flags as given, so malformed packets can be
// sent); returns how many of them commit left unread.
int dmtl_commit_run(uint8_t* buf, uint64_t buf_bytes, uint64_t desc_offset, uint32_t* status,
                    const uint64_t* in, const uint8_t* in_last, long n_in) {
  dmtl::axis_stream s;
  for (long k = 0; k < n_in; k++) dmtl::put(s, in[k], in_last[k] != 0);
  *status = 0;
  commit(reinterpret_cast<dmtl::mem_word*>(buf), buf_bytes, desc_offset, status, s);
  int left = 0;
  while (!s.empty()) {
    s.read();
    left++;
  }
  return left;
}

// Job chains, stepped job by job (the virtual ZCU104 does this: the host's doorbell
// writes and the kernels' work interleave without threads; docs/host.md). The steps use
// the same helpers as the chain walks of fetch.cpp and commit.cpp.
// Validation of the chain (both kernels run it first): 0 or one KSTATUS bit.
uint32_t dmtl_chain_check(uint8_t* buf, uint64_t buf_bytes, uint64_t chain_offset, uint32_t* n_jobs,
                          uint64_t* first_link) {
  dmtl::Chain c = {0, 0, 0, 0};
  const int err = dmtl::read_and_validate_chain(reinterpret_cast<dmtl::mem_word*>(buf), buf_bytes,
                                                chain_offset, c);
  *n_jobs = c.n_jobs;
  *first_link = c.first;
  return uint32_t(err);
}

// Job k of a validated chain whose link is at *link: returns 1 (nothing done) while its
// doorbell is not rung; else runs fetch -> core -> commit on it, writes its status entry,
// advances *link and returns 0.
int dmtl_chain_step(uint8_t* buf, uint64_t buf_bytes, uint64_t chain_offset, uint32_t k,
                    uint64_t* link, uint32_t* fetch_status, uint32_t* commit_status,
                    uint64_t* trailer_out) {
  dmtl::mem_word* gmem = reinterpret_cast<dmtl::mem_word*>(buf);
  dmtl::Chain c = {0, 0, 0, 0};
  if (dmtl::read_and_validate_chain(gmem, buf_bytes, chain_offset, c) != 0 || k >= c.n_jobs) return -1;
  const dmtl::ChainLink l = dmtl::read_link(gmem, *link);
  if ((l.flags & dmtl::CHAIN_WAIT) && !dmtl::doorbell_rung(gmem, c, k)) return 1;
  if (!dmtl_has_system()) return -1;
  dmtl::axis_stream s_in, s_out;
  dmtl::beat_stream c_in, s_mid;
  *fetch_status = 0;
  *commit_status = 0;
  trailer_out[0] = 0;
  trailer_out[1] = 0;
  fetch_job(gmem, buf_bytes, l.desc, fetch_status, s_in);
  dmtl::pass_packets(s_in, c_in);
  if (!c_in.empty()) core(c_in, s_mid);
  std::vector<dmtl::axis_beat> words;
  while (!s_mid.empty()) words.push_back(s_mid.read());
  if (!words.empty()) {
    trailer_out[0] = dmtl::beat_word(words.back(), 0);
    trailer_out[1] = 1;
  }
  for (const auto& w : words) s_mid.write(w);
  dmtl::pass_packets(s_mid, s_out);
  uint32_t nnz_act = 0;
  commit_job(gmem, buf_bytes, l.desc, commit_status, &nnz_act, s_out);
  dmtl::write_chain_status(gmem, c, k, *commit_status, dmtl::desc_tag(gmem, buf_bytes, l.desc), nnz_act);
  *link = l.next;
  return 0;
}

}  // extern "C"
