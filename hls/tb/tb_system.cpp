// C-simulation testbench of fetch -> core -> commit over a byte-array "DDR".
//
//   tb_system CASES.dmtd [--verbose]
// Each case (deltamtl.contract.ddr_image.write_ddr_cases) is a memory image, the descriptor's
// place, the expected fetch/commit status and the whole expected image afterwards: golden
// results in the output regions for valid jobs, the image unchanged for refused ones.
// The image is copied into an exactly sized heap block, so g++ -fsanitize=address (or
// Vitis cosim of fetch/commit) also catches an access beyond the declared buffer.
// Prints "RESULT <passed> <total>"; exit 0 iff all pass.
#include <stdio.h>
#include <string.h>

#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "../include/dmtl_kernels.h"
#include "vector_files.h"  // the .dmtd headers, generated from contract/file_layouts.py

namespace {

struct Reader {
  std::vector<unsigned char> data;
  size_t pos = 0;
  std::string path;
  const unsigned char* take(size_t n, const std::string& what) {
    if (pos + n > data.size()) throw std::runtime_error(path + ": truncated " + what);
    const unsigned char* p = &data[pos];
    pos += n;
    return p;
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s CASES.dmtd [--verbose]\n", argv[0]);
    return 2;
  }
  const bool verbose = argc > 2 && strcmp(argv[2], "--verbose") == 0;
  if (dmtl::BEAT_WORDS != 1) {  // fetch and commit move one word per beat (this phase)
    fprintf(stderr, "tb_system: the system path is B = 1; this build has BEAT_WORDS = %d\n",
            dmtl::BEAT_WORDS);
    return 2;
  }
  Reader rd;
  rd.path = argv[1];
  std::ifstream f(argv[1], std::ios::binary);
  if (!f) {
    fprintf(stderr, "tb_system: %s: cannot open\n", argv[1]);
    return 2;
  }
  rd.data.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  long passed = 0, total = 0;
  try {
    namespace fl = dmtl_files;
    const fl::DmtdFileHeader head =
        fl::load_dmtd_file_header(rd.take(fl::DMTD_FILE_HEADER_BYTES, "file header"));
    if (memcmp(head.magic, fl::DMTD_MAGIC, 4) != 0)
      throw std::runtime_error(rd.path + ": magic is not " + fl::DMTD_MAGIC);
    if (head.version != fl::DMTD_VERSION)
      throw std::runtime_error(rd.path + ": version is not " + std::to_string(fl::DMTD_VERSION));
    const uint32_t n = head.n_cases;
    uint32_t lim[fl::NUM_LIMITS];
    fl::limits_of(head, lim);
    static_assert(size_t(dmtl::NUM_LIMIT_VALUES) == fl::NUM_LIMITS, "params.h and vector_files.h disagree");
    const int* want = dmtl::LIMIT_VALUES;
    for (size_t k = 0; k < fl::NUM_LIMITS; k++)
      if (lim[k] != uint32_t(want[k]))
        throw std::runtime_error(rd.path + ": generated for other limits than this build's params.h");
    core_reset_state();
    for (uint32_t c = 0; c < n; c++) {
      const std::string at = "case " + std::to_string(c);
      const fl::DmtdCaseHeader ch = fl::load_dmtd_case_header(rd.take(fl::DMTD_CASE_HEADER_BYTES, at));
      const uint32_t kind = ch.reset, exp_fetch = ch.fetch_status, exp_commit = ch.commit_status;
      const uint64_t buf_bytes = ch.buf_bytes, desc_offset = ch.desc_offset, image = ch.image_bytes;
      const unsigned char* before = rd.take(image, at + " image");
      const unsigned char* after = rd.take(image, at + " expected image");
      if (kind == 1) {
        core_reset_state();
        continue;
      }
      if (image % 8 != 0 || buf_bytes > image) throw std::runtime_error(at + ": bad image size");
      // The kernels get a block of exactly buf_bytes (rounded up to a whole word); the rest
      // of the image stays outside it and must come back unchanged by construction.
      const size_t held = size_t((buf_bytes + 7) / 8 * 8);
#ifdef DMTL_COSIM
      // Vitis cosim copies `depth` words between the array and its memory model
      const size_t words = held / 8 > size_t(dmtl::GMEM_COSIM_DEPTH) ? held / 8 : size_t(dmtl::GMEM_COSIM_DEPTH);
#else
      const size_t words = held / 8 ? held / 8 : 1;
#endif
      std::vector<dmtl::mem_word>* mem = new std::vector<dmtl::mem_word>(words);
      memcpy(mem->data(), before, held);
      dmtl::axis_stream s_in, s_out;
      dmtl::beat_stream c_in, c_out;  // the same type at B = 1, the only width here
      uint32_t fst = 0, cst = 0;
      fetch(mem->data(), buf_bytes, desc_offset, &fst, s_in);
      dmtl::pass_packets(s_in, c_in);
      if (!c_in.empty()) core(c_in, c_out);
      dmtl::pass_packets(c_out, s_out);
      commit(mem->data(), buf_bytes, desc_offset, &cst, s_out);
      const bool ok = fst == exp_fetch && cst == exp_commit && c_in.empty() && s_out.empty() &&
                      memcmp(mem->data(), after, held) == 0 &&
                      memcmp(before + held, after + held, image - held) == 0;
      total++;
      if (ok) {
        passed++;
      } else if (verbose || total - passed <= 5) {
        size_t k = 0;
        const unsigned char* got = reinterpret_cast<const unsigned char*>(mem->data());
        while (k < held && got[k] == after[k]) k++;
        fprintf(stderr, "MISMATCH %s: fetch %u (expected %u), commit %u (expected %u), first "
                "differing byte %zu of %llu\n", at.c_str(), fst, exp_fetch, cst, exp_commit, k,
                (unsigned long long)image);
      }
      while (!c_in.empty()) c_in.read();
      while (!s_out.empty()) s_out.read();
      delete mem;
    }
    if (rd.pos != rd.data.size()) throw std::runtime_error(rd.path + ": trailing bytes");
  } catch (const std::exception& e) {
    fprintf(stderr, "tb_system: %s\n", e.what());
    return 2;
  }
  printf("RESULT %ld %ld\n", passed, total);
  return passed == total ? 0 : 1;
}
