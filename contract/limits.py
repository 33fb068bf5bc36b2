"""Compiled maxima of one core build (tokens, dimensions, delta non-zeros, lanes, weight
bank), generated into the C++ and SV parameters from a model's export manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from deltamtl.contract.formats import MAX_DIM

# ---------------------------------------------------------------------------------------
# Compiled maxima of one core build (generated into hls/generated/params.h and the SV
# parameters from a model's export manifest by deltamtl.contract.codegen)
# ---------------------------------------------------------------------------------------
# Every field of CoreLimits, in the order the manifests, the .dmtv/.dmtd headers, the C++
# params.h and the SV parameter package list them.
LIMIT_FIELDS = ("max_tokens", "max_in", "max_out", "max_nnz_dw", "lanes", "max_weights",
                "token_rows", "beat_words")
MAX_TOKEN_ROWS = 64
# Stream words per beat (docs/hls.md, "Packet layout"): at most 8 x 64 = 512-bit TDATA,
# the widest stream issue 18 plans for.
MAX_BEAT_WORDS = 8
# The board projection's stream width (issue 18: 512-bit streams): BOARD_WIDE_LIMITS uses
# it (both cores move a beat per cycle in simulation); TINY/CI/BOARD_LIMITS keep 1.
BOARD_BEAT_WORDS = 8


@dataclass(frozen=True)
class CoreLimits:
    """Compiled maxima. ``max_weights`` bounds O*I of one site (the weight bank's size),
    which is far below max_out * max_in for a ViT (no site is both 768 wide and 768 tall);
    0 means max_in * max_out. ``token_rows`` (T) is the token dimension of the MAC array:
    lanes x token_rows MACs per cycle, one weight read per lane feeding T tokens
    (docs/rtl.md, "Scaled engine"). ``beat_words`` (B) is the stream width in 64-bit words:
    one beat carries B words, laid out so that they land in distinct banks of the core
    (docs/hls.md, "Packet layout")."""

    max_tokens: int
    max_in: int
    max_out: int
    max_nnz_dw: int
    lanes: int = 32
    max_weights: int = 0
    token_rows: int = 1
    beat_words: int = 1

    def __post_init__(self) -> None:
        if self.max_weights == 0 and isinstance(self.max_in, int) and isinstance(self.max_out, int):
            object.__setattr__(self, "max_weights", self.max_in * self.max_out)
        for name in LIMIT_FIELDS:
            value = getattr(self, name)
            if not (isinstance(value, int) and 1 <= value <= (1 << 24)):
                raise ValueError(f"CoreLimits.{name}={value!r} must be an int in [1, 2^24]")
        for name in ("max_tokens", "max_in", "max_out"):
            if getattr(self, name) > MAX_DIM:
                raise ValueError(f"CoreLimits.{name} above the 16-bit field maximum {MAX_DIM}")
        if not max(self.max_in, self.max_out) <= self.max_weights <= self.max_in * self.max_out:
            raise ValueError(
                f"CoreLimits.max_weights={self.max_weights} must lie in "
                f"[max(max_in, max_out), max_in * max_out] = "
                f"[{max(self.max_in, self.max_out)}, {self.max_in * self.max_out}]"
            )
        if self.token_rows & (self.token_rows - 1) or self.token_rows > MAX_TOKEN_ROWS:
            raise ValueError(f"CoreLimits.token_rows={self.token_rows} must be a power of two "
                             f"<= {MAX_TOKEN_ROWS}")
        b = self.beat_words
        if b & (b - 1) or b > MAX_BEAT_WORDS:
            raise ValueError(f"CoreLimits.beat_words={b} must be a power of two <= {MAX_BEAT_WORDS}")
        if b > self.token_rows:  # an X beat holds one word of B tokens, one per token row
            raise ValueError(f"CoreLimits.beat_words={b} above token_rows={self.token_rows}: a "
                             f"beat of X carries B tokens, each needs its own token row")
        if b > 1 and 8 * b > self.lanes:  # B = 1 as before: the golden runs at any L
            raise ValueError(f"CoreLimits.beat_words={b} needs lanes >= 8 * beat_words = {8 * b} "
                             f"(lanes={self.lanes}): a Y beat requantises 8*B channels of one "
                             f"token, each from its own accumulator bank")


# Maxima large enough for the embedded `tiny` config (64 tokens, width <= 96, MLP x4):
# the largest site is fc1/fc2 with 96 x 384 weights.
TINY_LIMITS = CoreLimits(max_tokens=64, max_in=384, max_out=384, max_nnz_dw=384 * 96, lanes=32,
                         max_weights=384 * 96, token_rows=4)


# Small maxima for the CI build of the SV core (deltamtl.rtl.sim): compiles in about a
# minute on one core and still exercises several output groups, token groups and a
# multi-bank list. max_weights below max_in * max_out, so jobs with every dimension in range
# but O*I too large are refused.
CI_LIMITS = CoreLimits(max_tokens=24, max_in=64, max_out=64, max_nnz_dw=1024, lanes=8,
                       max_weights=64 * 48, token_rows=4)


# Board target (deltamtl.rtl.yosys_synth): ViT-Tiny sites (197 tokens, width 192, MLP 768:
# in/out up to 768, no site above 768x192 weights). A dW list of 64K non-zeros holds 44% of
# the largest delta matrix. One word a beat: fetch and commit are 64-bit, and the core at
# BOARD_BEAT_WORDS needs 112% of the ZCU104's LUTs per yosys (docs/rtl.md); the wide build
# is BOARD_WIDE_LIMITS, simulated in both cores and projected by the bench.
BOARD_LIMITS = CoreLimits(max_tokens=197, max_in=768, max_out=768, max_nnz_dw=65536, lanes=64,
                          max_weights=768 * 192, token_rows=16)
BOARD_WIDE_LIMITS = replace(BOARD_LIMITS, beat_words=BOARD_BEAT_WORDS)
