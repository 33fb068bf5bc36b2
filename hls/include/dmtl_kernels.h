// Top-level functions of the three kernels (one per file: hls/fetch.cpp, core.cpp, commit.cpp).
#pragma once

#include "dmtl_types.h"

void fetch(dmtl::mem_word* gmem, uint64_t buf_bytes, uint64_t desc_offset, uint32_t* status,
           dmtl::axis_stream& m_axis);
void core(dmtl::axis_stream& s_axis, dmtl::axis_stream& m_axis);
void commit(dmtl::mem_word* gmem, uint64_t buf_bytes, uint64_t desc_offset, uint32_t* status,
            dmtl::axis_stream& s_axis);

#ifndef __SYNTHESIS__
// C-simulation hooks of the core (testbenches and the emulation library only).
void core_reset_state();
long core_state_io(void* buf, int dir);
long core_act_iterations();
int core_arrays(const char** name, long* memories, long* rows, long* bits, int cap);
#endif
