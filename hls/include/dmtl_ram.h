// Stores into the core's on-chip RAMs inside pipelined loops, and a g++ shim that delays them.
//
// In a loop pipelined at II = 1 a store of iteration k reaches the RAM a few cycles after a
// load of iteration k + 1 has already been issued (BRAM/URAM read latency plus the write
// stage). Where the loop carries a `DEPENDENCE inter false` pragma, Vitis HLS does not wait
// for it, so such a loop is correct only if (a) no later iteration can load an address that
// an earlier one stored (proven by construction, docs/hls.md "II and dependences"), or
// (b) the loop forwards its last FWD_DEPTH iterations' stores to its loads (registers).
//
// The shim makes that testable with g++: built with -DDMTL_STORE_DELAY=n, ram_store() only
// queues the store and ram_tick() (the end of one loop iteration) makes it visible n
// iterations after it was issued, as a pipeline with a RAW distance of n would. A loop that
// relies on (a) stays bit-exact for any n; a loop that relies on (b) stays exact for
// n <= FWD_DEPTH + 1, and breaks when its forwarding is compiled out (-DDMTL_NO_FORWARD).
// Without DMTL_STORE_DELAY (every real build, Vitis included) these are plain stores.
#pragma once

#include <stdint.h>

namespace dmtl {

// Iterations of stores a forwarding loop keeps in registers. Covers a URAM read latency of 3
// plus the write stage (BIND_STORAGE latency in core.cpp); csynth's schedule must confirm it.
constexpr int FWD_DEPTH = 4;

#if defined(DMTL_NO_FORWARD) && !defined(__SYNTHESIS__)
constexpr bool FORWARD = false;  // test builds only: shows which loops need forwarding
#else
constexpr bool FORWARD = true;
#endif

#if defined(DMTL_STORE_DELAY) && !defined(__SYNTHESIS__)
}  // namespace dmtl
#include <deque>
namespace dmtl {
namespace shim {
struct Pending {
  uint64_t* at;
  uint64_t value;
  long due;
};
inline std::deque<Pending>& queue() {
  static std::deque<Pending> q;
  return q;
}
inline long& now() {
  static long t = 0;
  return t;
}
}  // namespace shim
inline void ram_store(uint64_t& at, uint64_t value) {
  shim::queue().push_back({&at, value, shim::now() + DMTL_STORE_DELAY});
}
inline void ram_tick() {
  shim::now()++;
  while (!shim::queue().empty() && shim::queue().front().due <= shim::now()) {
    *shim::queue().front().at = shim::queue().front().value;
    shim::queue().pop_front();
  }
}
inline void ram_drain() {  // the loop has ended: its pipeline empties before the next one
  while (!shim::queue().empty()) ram_tick();
}
#else
inline void ram_store(uint64_t& at, uint64_t value) { at = value; }
inline void ram_tick() {}
inline void ram_drain() {}
#endif

}  // namespace dmtl
