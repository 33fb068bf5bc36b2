// Stand-in for Xilinx's ap_axi_sdata.h, used ONLY when that header is absent (g++ C
// simulation against hls4ml's ap_types, which do not ship it). It declares the subset of
// hls::axis the kernels use -- the `data` and `last` members -- with Vitis HLS's template
// signature, so the same kernel source compiles under both. The AXIS_ENABLE_* value here is
// this file's own; under Vitis the real header's definitions are used.
#pragma once

#include <ap_int.h>
#include <stddef.h>
#include <stdint.h>

#ifndef AXIS_ENABLE_LAST
#define AXIS_ENABLE_LAST 0x10
#endif

namespace hls {

template <typename T, size_t WUser = 0, size_t WId = 0, size_t WDest = 0,
          uint8_t EnableSignals = AXIS_ENABLE_LAST, bool StrictEnablement = false>
struct axis {
  T data;
  ap_uint<1> last;
};

}  // namespace hls
