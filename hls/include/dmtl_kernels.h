// Top-level functions of the three kernels (one per file: hls/fetch.cpp, core.cpp, commit.cpp).
#pragma once

#include "dmtl_types.h"

void fetch(dmtl::mem_word* gmem, uint64_t buf_bytes, uint64_t desc_offset, uint32_t* status,
           dmtl::axis_stream& m_axis);
void core(dmtl::beat_stream& s_axis, dmtl::beat_stream& m_axis);
void commit(dmtl::mem_word* gmem, uint64_t buf_bytes, uint64_t desc_offset, uint32_t* status,
            dmtl::axis_stream& s_axis);

#ifndef __SYNTHESIS__
// C-simulation hooks of the core (testbenches and the emulation library only).
void core_reset_state();
long core_state_io(void* buf, int dir);
long core_act_iterations();
int core_arrays(const char** name, long* memories, long* rows, long* bits, int cap);

namespace dmtl {
// Moves the packets of a word stream into a beat stream (or back): only at B = 1, where
// axis_beat is axis_word, can fetch -> core -> commit be wired directly. At B > 1 the core's
// packet layout (row blocks, padding) is not fetch's, so there is no glue: returns false.
template <typename W, typename V>
bool pass_packets(hls::stream<W>& in, hls::stream<V>& out) {
  return false;
}
template <typename W>
bool pass_packets(hls::stream<W>& in, hls::stream<W>& out) {
  while (!in.empty()) out.write(in.read());
  return true;
}
}  // namespace dmtl
#endif
