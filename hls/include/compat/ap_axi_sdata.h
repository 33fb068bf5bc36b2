// Stand-in for AMD's ap_axi_sdata.h, used ONLY when that header is absent (g++ C
// simulation against hls4ml's ap_types, which do not ship it). It declares the part of
// hls::axis the kernels use -- `data` and `last` -- with Vitis HLS's template signature,
// and it enforces the same enablement rules as the real header (docs/hls.md, "stream
// word"), so a stream type that Vitis HLS rejects fails to compile here as well:
// * with StrictEnablement, a channel with a width (DATA: sizeof T > 0; USER/ID/DEST: their
//   width parameter > 0) must be enabled in EnableSignals, and an enabled one must have a
//   width ("Found mismatched enablement for <X> signal");
// * at least one channel must be enabled;
// * a disabled channel has no usable member: reading `last` of a type without
//   AXIS_ENABLE_LAST does not compile (the real header gives it an empty placeholder type).
// The bit values are the ones UG1399 documents for the enablement mask.
#pragma once

#include <ap_int.h>
#include <stddef.h>
#include <stdint.h>

#include <type_traits>

#ifndef AXIS_ENABLE_DATA
#define AXIS_ENABLE_DATA 0x01
#define AXIS_ENABLE_DEST 0x02
#define AXIS_ENABLE_ID 0x04
#define AXIS_ENABLE_KEEP 0x08
#define AXIS_ENABLE_LAST 0x10
#define AXIS_ENABLE_STRB 0x20
#define AXIS_ENABLE_USER 0x40
#define AXIS_ENABLE_ALL 0x7F
#endif

namespace hls {

// A channel that is not enabled: no value, no conversion, so any use is a compile error.
struct axis_channel_off {};

template <typename T, size_t WUser = 0, size_t WId = 0, size_t WDest = 0,
          uint8_t EnableSignals = AXIS_ENABLE_ALL, bool StrictEnablement = false>
struct axis {
  static constexpr bool data_sized = sizeof(T) > 0;
  static constexpr bool data_on = (EnableSignals & AXIS_ENABLE_DATA) != 0;
  static constexpr bool user_on = (EnableSignals & AXIS_ENABLE_USER) != 0;
  static constexpr bool id_on = (EnableSignals & AXIS_ENABLE_ID) != 0;
  static constexpr bool dest_on = (EnableSignals & AXIS_ENABLE_DEST) != 0;
  static constexpr bool last_on = (EnableSignals & AXIS_ENABLE_LAST) != 0;

  static_assert((EnableSignals & AXIS_ENABLE_ALL) != 0, "No axis signals are enabled");
  static_assert(!StrictEnablement || data_sized == data_on,
                "Found mismatched enablement for DATA signal");
  static_assert(!StrictEnablement || (WUser > 0) == user_on,
                "Found mismatched enablement for USER signal");
  static_assert(!StrictEnablement || (WId > 0) == id_on,
                "Found mismatched enablement for ID signal");
  static_assert(!StrictEnablement || (WDest > 0) == dest_on,
                "Found mismatched enablement for DEST signal");

  // Non-strict types keep `data` whatever the mask says (the real header derives it from
  // the width); only the side channel the kernels use is modelled.
  T data;
  typename std::conditional<last_on, ap_uint<1>, axis_channel_off>::type last;
};

}  // namespace hls
