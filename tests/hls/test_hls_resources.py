"""The analytic resource estimate (deltamtl.hls.resources): block arithmetic, the shapes the
C++ reports, and the board build against the ZCU104 with the 15 % headroom target."""

from __future__ import annotations

from dataclasses import replace

import pytest
from deltamtl.contract.limits import BOARD_LIMITS, CoreLimits
from deltamtl.contract.platform import PART_RESOURCES
from deltamtl.hls import resources
from deltamtl.hls.build import parse_limits


@pytest.mark.parametrize(("rows", "bits", "t2p", "want"), [
    (512, 72, False, 1), (513, 72, False, 2), (790, 64, False, 2), (768, 64, False, 2),
    (1248, 16, False, 1), (200, 16, False, 0.5), (512, 72, True, 2), (32768, 1, False, 1),
])
def test_bram_blocks(rows, bits, t2p, want):
    assert resources.bram36(rows, bits, t2p) == want


def test_uram_blocks():
    assert [resources.uram(r, b) for r, b in ((2364, 64), (4096, 72), (4097, 72), (100, 73))] == [1, 1, 2, 2]


def test_shapes_follow_the_limits():
    """dbuf: T/2 true dual-port memories of 2 ways x ceil(P/T) x ceil(I/8) words (one memory
    of one way at T = 1); the union lists hold ceil(P/T) * I entries over 8 banks."""
    for t in (1, 4):
        lim = CoreLimits(max_tokens=21, max_in=50, max_out=36, max_nnz_dw=400, lanes=8,
                         max_weights=50 * 36, token_rows=t)
        shapes = {name: (m, r, b) for name, m, r, b in resources.core_arrays(lim)}
        tiles = -(-21 // t)
        ways = 2 if t > 1 else 1
        assert shapes["dbuf"] == (t // ways, ways * tiles * 7, 72)
        assert shapes["ulist"] == (8, -(-tiles * 50 // 8), 16)
        assert shapes["tile_end"] == (tiles, 1, 32)
        assert shapes["acc"] == (8, 21 * 5, 64)


def test_board_build_fits_the_zcu104_with_headroom():
    mems, _items, total = resources.estimate(BOARD_LIMITS)
    by_name = {m.name: m for m in mems}
    assert (by_name["acc"].kind, by_name["acc"].uram) == ("uram", 64)  # one URAM per lane
    assert (by_name["dbuf"].t2p, by_name["dbuf"].uram) == (True, 8)
    assert by_name["w_bank"].bram36 == by_name["x_ref"].bram36 == 128
    t, lanes = BOARD_LIMITS.token_rows, BOARD_LIMITS.lanes
    assert total["DSP48E2"] == t * lanes + lanes + 16
    for key, have in PART_RESOURCES.items():
        assert total[key] <= (1 - resources.HEADROOM_TARGET) * have, key


def test_board_build_with_512_bit_beats_keeps_the_headroom():
    """B = 8 (issue 18's 512-bit streams): 8B mult/shift banks, B/2 dW banks, 16 DSPs per 8
    requantised channels, and still >= 15 % of every resource left."""
    lim = replace(BOARD_LIMITS, beat_words=8)
    mems, _items, total = resources.estimate(lim)
    by_name = {m.name: m for m in mems}
    assert (by_name["mult_buf"].memories, by_name["mult_buf"].rows) == (64, 12)
    assert (by_name["dw_buf"].memories, by_name["dw_buf"].rows, by_name["dw_buf"].uram) == (4, 8192, 8)
    t, lanes = lim.token_rows, lim.lanes
    assert total["DSP48E2"] == t * lanes + lanes + 16 * 8
    for key, have in PART_RESOURCES.items():
        assert total[key] <= (1 - resources.HEADROOM_TARGET) * have, key


def test_limits_take_all_eight_fields_and_a_beat_override(capsys):
    assert parse_limits("197 768 768 65536 64 147456 16 8".split()) == CoreLimits(
        197, 768, 768, 65536, 64, 147456, 16, 8)
    with pytest.raises(SystemExit):
        parse_limits("1 2 3 4 5 6 7 8 9".split())
    with pytest.raises(SystemExit, match="beat_words"):
        resources.main(["--limits", "ci", "--beat-words", "2"])  # 8B > lanes = 8
