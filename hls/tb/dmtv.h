// Reader of .dmtv test-vector files (format: contract/vectors.py docstring; the
// header layouts come generated from contract/file_layouts.py in vector_files.h).
// Errors name the file, the record and the field, and throw std::runtime_error.
#pragma once

#include <stdint.h>

#include <array>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "vector_files.h"

namespace dmtv {

// The compiled maxima of the file header, in LIMIT_FIELDS order (as params.h's LIMIT_VALUES).
typedef std::array<uint32_t, dmtl_files::NUM_LIMITS> Limits;

struct Record {
  uint32_t class_id;
  std::vector<uint64_t> in;   // empty: reset the core
  std::vector<uint64_t> out;  // expected output packet
};

struct File {
  Limits limits;
  std::vector<Record> records;
};

inline File read(const std::string& path) {
  namespace fl = dmtl_files;
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(path + ": cannot open");
  std::vector<unsigned char> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto fail = [&](const std::string& what) { throw std::runtime_error(path + ": " + what); };
  if (data.size() < fl::DMTV_FILE_HEADER_BYTES)
    fail("shorter than the " + std::to_string(fl::DMTV_FILE_HEADER_BYTES) + "-byte file header");
  const fl::DmtvFileHeader head = fl::load_dmtv_file_header(data.data());
  if (std::string(head.magic, 4) != fl::DMTV_MAGIC) fail(std::string("magic is not ") + fl::DMTV_MAGIC);
  if (head.version != fl::DMTV_VERSION)
    fail("version " + std::to_string(head.version) + ", this reader knows " + std::to_string(fl::DMTV_VERSION));
  File out;
  fl::limits_of(head, out.limits.data());
  size_t pos = fl::DMTV_FILE_HEADER_BYTES;
  auto words = [&](size_t count, std::vector<uint64_t>& dst) {
    dst.resize(count);
    for (size_t k = 0; k < count; k++, pos += fl::PAYLOAD_WORD_BYTES) dst[k] = fl::le64(&data[pos]);
  };
  for (uint32_t r = 0; r < head.n_records; r++) {
    const std::string at = "record " + std::to_string(r) + ": ";
    if (pos + fl::DMTV_RECORD_HEADER_BYTES > data.size()) fail(at + "truncated record header");
    const fl::DmtvRecordHeader rh = fl::load_dmtv_record_header(&data[pos]);
    Record rec;
    rec.class_id = rh.class_id;
    pos += fl::DMTV_RECORD_HEADER_BYTES;
    if (pos + fl::PAYLOAD_WORD_BYTES * (size_t(rh.n_in_words) + rh.n_out_words) > data.size())
      fail(at + "truncated payload (n_in_words=" + std::to_string(rh.n_in_words) +
           ", n_out_words=" + std::to_string(rh.n_out_words) + ")");
    words(rh.n_in_words, rec.in);
    words(rh.n_out_words, rec.out);
    out.records.push_back(std::move(rec));
  }
  if (pos != data.size()) fail(std::to_string(data.size() - pos) + " trailing bytes after the records");
  return out;
}

}  // namespace dmtv
