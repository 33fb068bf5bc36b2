// Reader of .dmtv test-vector files (format: deltamtl/model/vectors.py docstring).
// Errors name the file, the record and the field, and throw std::runtime_error.
#pragma once

#include <stdint.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace dmtv {

struct Limits {
  uint32_t max_tokens, max_in, max_out, max_nnz_dw, lanes, max_weights;
};

struct Record {
  uint32_t class_id;
  std::vector<uint64_t> in;   // empty: reset the core
  std::vector<uint64_t> out;  // expected output packet
};

struct File {
  Limits limits;
  std::vector<Record> records;
};

inline uint32_t le32(const unsigned char* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}

inline File read(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(path + ": cannot open");
  std::vector<unsigned char> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto fail = [&](const std::string& what) { throw std::runtime_error(path + ": " + what); };
  // version 2: 10 x uint32 (magic, version, n_records, 6 limits, reserved)
  constexpr size_t kHeader = 40;
  if (data.size() < kHeader) fail("shorter than the 40-byte file header");
  if (std::string(data.begin(), data.begin() + 4) != "DMTV") fail("magic is not DMTV");
  if (le32(&data[4]) != 2) fail("version " + std::to_string(le32(&data[4])) + ", this reader knows 2");
  File out;
  const uint32_t n = le32(&data[8]);
  out.limits = {le32(&data[12]), le32(&data[16]), le32(&data[20]),
                le32(&data[24]), le32(&data[28]), le32(&data[32])};
  size_t pos = kHeader;
  auto words = [&](size_t count, std::vector<uint64_t>& dst) {
    dst.resize(count);
    for (size_t k = 0; k < count; k++, pos += 8)
      dst[k] = uint64_t(le32(&data[pos])) | (uint64_t(le32(&data[pos + 4])) << 32);
  };
  for (uint32_t r = 0; r < n; r++) {
    const std::string at = "record " + std::to_string(r) + ": ";
    if (pos + 16 > data.size()) fail(at + "truncated record header");
    Record rec;
    rec.class_id = le32(&data[pos]);
    const uint32_t n_in = le32(&data[pos + 4]), n_out = le32(&data[pos + 8]);
    pos += 16;
    if (pos + 8 * (size_t(n_in) + n_out) > data.size())
      fail(at + "truncated payload (n_in_words=" + std::to_string(n_in) +
           ", n_out_words=" + std::to_string(n_out) + ")");
    words(n_in, rec.in);
    words(n_out, rec.out);
    out.records.push_back(std::move(rec));
  }
  if (pos != data.size()) fail(std::to_string(data.size() - pos) + " trailing bytes after the records");
  return out;
}

}  // namespace dmtv
