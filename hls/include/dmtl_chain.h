// Job chains (contract/chain.py, docs/host.md): the walk shared by fetch and commit, so
// both kernels reach the same verdict on the same chain. A chain is validated whole
// (reading only its header and links) before either kernel streams or writes anything.
#pragma once

#include "dmtl_desc.h"

namespace dmtl {

// contract.chain.CHAIN_END: the `next` of the last link (not generated: above 32 bits).
constexpr uint64_t CHAIN_END = ~uint64_t(0);

struct Chain {
  uint32_t n_jobs;
  uint64_t doorbell, status, first;
};

struct ChainLink {
  uint64_t next, desc;
  uint32_t flags;
};

inline uint64_t word_at(const mem_word* gmem, uint64_t byte) { return uint64_t(gmem[byte / WORD_BYTES]); }

// The word at desc_offset decides: a chain header (CHAIN_MAGIC) or a job descriptor.
inline bool is_chain(const mem_word* gmem, uint64_t buf_bytes, uint64_t off) {
  if (!region_ok(off, CHAIN_HEADER_BYTES, buf_bytes)) return false;
  return uint32_t(word_at(gmem, off)) == uint32_t(CHAIN_MAGIC);
}

inline ChainLink read_link(const mem_word* gmem, uint64_t at) {
  ChainLink l;
  l.next = word_at(gmem, at + 4 * LINK_WORD_NEXT);
  l.desc = word_at(gmem, at + 4 * LINK_WORD_DESC);
  l.flags = uint32_t(word_at(gmem, at + 4 * LINK_WORD_FLAGS));
  return l;
}

inline bool overlap_raw(uint64_t a, uint64_t an, uint64_t b, uint64_t bn) {
  return a < b + bn && b < a + an;
}

// Same order and bits as contract.chain.validate_chain. Returns 0 or one KSTATUS_* bit.
// Links must run strictly forward, so the walk ends after at most MAX_CHAIN_JOBS reads
// whatever the memory holds (a cycle shows as a link that is not after its predecessor).
inline int read_and_validate_chain(const mem_word* gmem, uint64_t buf_bytes, uint64_t off, Chain& c) {
  if (!region_ok(off, CHAIN_HEADER_BYTES, buf_bytes)) return KSTATUS_CHAIN_LINK;
  const uint64_t w0 = word_at(gmem, off), w1 = word_at(gmem, off + 8);
  if (uint32_t(w0) != uint32_t(CHAIN_MAGIC) || uint32_t(w0 >> 32) != uint32_t(CONTRACT_VERSION))
    return KSTATUS_BAD_DESC;
  c.n_jobs = uint32_t(w1);
  c.doorbell = word_at(gmem, off + 4 * CHAIN_WORD_DOORBELL);
  c.status = word_at(gmem, off + 4 * CHAIN_WORD_STATUS);
  c.first = word_at(gmem, off + 4 * CHAIN_WORD_FIRST);
  if (c.n_jobs < 1 || c.n_jobs > uint32_t(MAX_CHAIN_JOBS)) return KSTATUS_CHAIN_LENGTH;
  const uint64_t status_len = uint64_t(CHAIN_STATUS_BYTES) * c.n_jobs;
  if (!region_ok(c.doorbell, CHAIN_DOORBELL_BYTES, buf_bytes) || !region_ok(c.status, status_len, buf_bytes))
    return KSTATUS_CHAIN_LINK;
  if (overlap_raw(c.status, status_len, off, CHAIN_HEADER_BYTES) ||
      overlap_raw(c.status, status_len, c.doorbell, CHAIN_DOORBELL_BYTES))
    return KSTATUS_OVERLAP;
  uint64_t prev_end = off + CHAIN_HEADER_BYTES, pos = c.first;
chain_links:
  for (uint32_t k = 0; k < c.n_jobs; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_CHAIN_JOBS
    if (pos == CHAIN_END) return KSTATUS_CHAIN_LENGTH;
    if (!region_ok(pos, CHAIN_LINK_BYTES, buf_bytes)) return KSTATUS_CHAIN_LINK;
    if (pos < prev_end) return KSTATUS_CHAIN_CYCLE;
    if (overlap_raw(pos, CHAIN_LINK_BYTES, c.status, status_len) ||
        overlap_raw(pos, CHAIN_LINK_BYTES, c.doorbell, CHAIN_DOORBELL_BYTES))
      return KSTATUS_OVERLAP;
    const ChainLink l = read_link(gmem, pos);
    if (l.flags & ~uint32_t(CHAIN_VALID_FLAGS)) return KSTATUS_BAD_DESC;
    prev_end = pos + CHAIN_LINK_BYTES;
    pos = l.next;
  }
  return pos == CHAIN_END ? 0 : KSTATUS_CHAIN_LENGTH;
}

// The doorbell counts the jobs whose inputs the host has flushed to DDR.
inline bool doorbell_rung(const mem_word* gmem, const Chain& c, uint32_t k) {
#ifndef __SYNTHESIS__
  // C simulation: re-read the host's word on every poll (an ap_uint<64> is 8 plain bytes).
  const volatile uint64_t* g = reinterpret_cast<const volatile uint64_t*>(gmem);
  return uint32_t(g[c.doorbell / WORD_BYTES]) >= k + 1;
#else
  // Unverified in Vitis (docs/host.md): each poll must stay a fresh m_axi read.
  return uint32_t(uint64_t(gmem[c.doorbell / WORD_BYTES])) >= k + 1;
#endif
}

// Job k's descriptor tag (the header's), for the status entry.
inline uint32_t desc_tag(const mem_word* gmem, uint64_t buf_bytes, uint64_t desc) {
  if (!region_ok(desc, DESC_BYTES, buf_bytes)) return 0;
  const uint64_t h0 = word_at(gmem, desc + 4 * DESC_WORD_HEADER);
  const uint64_t h1 = word_at(gmem, desc + 4 * DESC_WORD_HEADER + 8);
  return uint32_t(parse_header(h0, h1).tag);
}

inline void write_chain_status(mem_word* gmem, const Chain& c, uint32_t k, uint32_t status, uint32_t tag,
                               uint32_t nnz_act) {
  const uint32_t tag_k = (tag & ((1u << STATUS_TAG_BITS) - 1)) |
                        ((k & ((1u << STATUS_INDEX_BITS) - 1)) << STATUS_INDEX_LSB);
  const uint64_t entry = uint64_t(status) | (uint64_t(tag_k) << 32);
  const uint64_t at = (c.status + uint64_t(CHAIN_STATUS_BYTES) * k) / WORD_BYTES;
  gmem[at + 1] = mem_word(uint64_t(nnz_act));  // before the status word the host polls
  gmem[at] = mem_word(entry);
}

}  // namespace dmtl
