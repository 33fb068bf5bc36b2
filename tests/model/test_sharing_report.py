"""Unit tests of the sharing report's helpers (no training)."""

from __future__ import annotations

import copy

import pytest
from deltamtl.model.config import load_config
from deltamtl.model.sharing.report import relative_gap, report_split_config

pytestmark = pytest.mark.sharing  # make test-sharing


def test_report_clips_override_val_and_test_without_touching_cfg() -> None:
    cfg = load_config("configs/tiny.yaml", ["sharing.report_val_clips=5",
                                            "sharing.report_test_clips=7"])
    before = copy.deepcopy(cfg)
    split = report_split_config(cfg)
    assert (split["data"]["val_clips"], split["data"]["test_clips"]) == (5, 7)
    assert split["data"]["train_clips"] == cfg["data"]["train_clips"]
    assert cfg == before


def test_report_clips_null_keeps_the_data_section() -> None:
    cfg = load_config("configs/tiny.yaml", ["sharing.report_val_clips=null",
                                            "sharing.report_test_clips=null"])
    assert report_split_config(cfg) is cfg


@pytest.mark.parametrize("key", ["report_val_clips", "report_test_clips"])
@pytest.mark.parametrize("bad", ["0", "-3", "2.5", "true", "many"])
def test_report_clips_bad_value_is_named(key: str, bad: str) -> None:
    # refused when the config is loaded (the schema), before the report reads it
    with pytest.raises(ValueError, match=f"sharing.{key}"):
        load_config("configs/tiny.yaml", [f"sharing.{key}={bad}"])
    cfg = load_config("configs/tiny.yaml")
    cfg["sharing"][key] = bad  # a config changed in code is still checked by the report
    with pytest.raises(ValueError, match=f"sharing.{key}"):
        report_split_config(cfg)


def test_relative_gap_sign_follows_the_metric_direction() -> None:
    assert relative_gap("depth", 110.0, 100.0) == pytest.approx(0.10)    # lower is better
    assert relative_gap("depth", 90.0, 100.0) == pytest.approx(-0.10)
    assert relative_gap("edges", 0.76, 0.80) == pytest.approx(0.05)      # higher is better
    assert relative_gap("semseg", 0.5, 0.4) == pytest.approx(-0.25)
