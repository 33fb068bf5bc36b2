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
#include <string>

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
  // All compiled maxima, beat_words included (LIMIT_FIELDS order in both).
  static_assert(size_t(dmtl::NUM_LIMIT_VALUES) == dmtl_files::NUM_LIMITS, "params.h and vector_files.h disagree");
  for (size_t k = 0; k < dmtl_files::NUM_LIMITS; k++) {
    if (file.limits[k] != uint32_t(dmtl::LIMIT_VALUES[k])) {
      std::string got, want;
      for (size_t j = 0; j < dmtl_files::NUM_LIMITS; j++) {
        got += (j ? ", " : "") + std::to_string(file.limits[j]);
        want += (j ? ", " : "") + std::to_string(dmtl::LIMIT_VALUES[j]);
      }
      fprintf(stderr, "tb_core: %s was generated for limits (%s), this build has (%s) (params.h); "
              "regenerate one or the other\n", argv[1], got.c_str(), want.c_str());
      return 2;
    }
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
    // B words a beat, TLAST on the last beat; TLAST compared per beat
    constexpr size_t B = dmtl::BEAT_WORDS;
    if (rec.in.size() % B || rec.out.size() % B) {
      fprintf(stderr, "tb_core: record %zu is not whole beats of %zu words\n", r, B);
      return 2;
    }
    dmtl::beat_stream s_in, s_out;
    for (size_t k = 0; k < rec.in.size(); k += B) dmtl::put_beat(s_in, &rec.in[k], k + B == rec.in.size());
    core(s_in, s_out);
    bool ok = s_in.empty();
    std::vector<uint64_t> got;
    std::vector<int> lasts;
    while (!s_out.empty()) {
      dmtl::axis_beat w = s_out.read();
      for (size_t j = 0; j < B; j++) got.push_back(dmtl::beat_word(w, int(j)));
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
