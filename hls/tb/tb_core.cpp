// C-simulation testbench of `core`: runs every record of a .dmtv file, in order, through
// one core instance and compares the output packet word for word (and TLAST placement).
//
//   tb_core VECTORS.dmtv [--verbose]
// Prints "CLASS <id> <passed> <total>" per class id (deltamtl.hls.build maps ids to the
// class names of deltamtl.contract.vectors) and "RESULT <passed> <total>"; exit 0 iff all pass.
// Vitis HLS csim/cosim run the same file (hls/tcl/run_hls.tcl passes it in argv).
#include <stdio.h>
#include <string.h>

#include <map>

#include "../include/dmtl_kernels.h"
#include "dmtv.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s VECTORS.dmtv [--verbose]\n", argv[0]);
    return 2;
  }
  const bool verbose = argc > 2 && strcmp(argv[2], "--verbose") == 0;
  dmtv::File file;
  try {
    file = dmtv::read(argv[1]);
  } catch (const std::exception& e) {
    fprintf(stderr, "tb_core: %s\n", e.what());
    return 2;
  }
  const dmtv::Limits& l = file.limits;
  if (l.max_tokens != uint32_t(dmtl::MAX_TOKENS) || l.max_in != uint32_t(dmtl::MAX_IN) ||
      l.max_out != uint32_t(dmtl::MAX_OUT) || l.max_nnz_dw != uint32_t(dmtl::MAX_NNZ_DW) ||
      l.lanes != uint32_t(dmtl::LANES) || l.max_weights != uint32_t(dmtl::MAX_WEIGHTS)) {
    fprintf(stderr,
            "tb_core: %s was generated for limits (%u, %u, %u, %u, %u, %u), this build has "
            "(%d, %d, %d, %d, %d, %d) (params.h); regenerate one or the other\n",
            argv[1], l.max_tokens, l.max_in, l.max_out, l.max_nnz_dw, l.lanes, l.max_weights,
            dmtl::MAX_TOKENS, dmtl::MAX_IN, dmtl::MAX_OUT, dmtl::MAX_NNZ_DW, dmtl::LANES,
            dmtl::MAX_WEIGHTS);
    return 2;
  }
  std::map<uint32_t, std::pair<long, long>> per_class;  // id -> (passed, total)
  long passed = 0, total = 0;
  core_reset_state();
  for (size_t r = 0; r < file.records.size(); r++) {
    const dmtv::Record& rec = file.records[r];
    if (rec.in.empty()) {  // reset record
      core_reset_state();
      continue;
    }
    dmtl::axis_stream s_in, s_out;
    for (size_t k = 0; k < rec.in.size(); k++) dmtl::put(s_in, rec.in[k], k + 1 == rec.in.size());
    core(s_in, s_out);
    bool ok = s_in.empty();
    std::vector<uint64_t> got;
    std::vector<int> lasts;
    while (!s_out.empty()) {
      dmtl::axis_word w = s_out.read();
      got.push_back(uint64_t(w.data));
      lasts.push_back(int(w.last));
    }
    while (!s_in.empty()) s_in.read();
    ok = ok && got == rec.out;
    for (size_t k = 0; ok && k < lasts.size(); k++) ok = lasts[k] == (k + 1 == lasts.size());
    auto& c = per_class[rec.class_id];
    c.second++;
    total++;
    if (ok) {
      c.first++;
      passed++;
    } else if (verbose || total - passed <= 5) {
      size_t k = 0;
      while (k < got.size() && k < rec.out.size() && got[k] == rec.out[k]) k++;
      fprintf(stderr, "MISMATCH record %zu class %u: %zu words (expected %zu), first difference at "
              "word %zu\n", r, rec.class_id, got.size(), rec.out.size(), k);
    }
  }
  for (const auto& kv : per_class) printf("CLASS %u %ld %ld\n", kv.first, kv.second.first, kv.second.second);
  printf("RESULT %ld %ld\n", passed, total);
  return passed == total ? 0 : 1;
}
