"""Keyframe scheduler: which frames run DENSE (keyframes) and why.

Modes (docs/streaming.md):

* ``fixed``    every K-th frame from ``offset`` (the bundle's K and offset unless overridden);
* ``adaptive`` a keyframe when the measured delta density of the frame's first site (the
  patch embedding's int8 input against the reference the accelerator holds) passes
  ``density_limit``: reason ``scene_cut`` when it also jumped to more than ``CUT_JUMP``
  times the previous frame's density, ``density`` otherwise (steady motion too fast for the
  thresholds: a TEMPORAL frame would cost about as much as a DENSE one); optionally at
  least every ``max_interval`` frames;
* ``off``      no keyframe after the first (the no-drift demonstration).

In every mode a keyframe is also forced on the first frame, after dropped frames and after
a fault (the stream resets the executor and re-runs the frame). Each keyframe records its
reason. Thresholds and boundaries come from the bundle's policy; :func:`override_policy`
replaces any of them (the command line's ``--threshold``/``--boundary``/``--interval``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from deltamtl.contract.formats import quantize_activation
from deltamtl.host import float_ops as host_ops
from deltamtl.model.export.quantized_model import QuantizedModel, ReusePolicy
from deltamtl.model.tasks import EMBED

MODES = ("fixed", "adaptive", "off")
REASONS = ("first", "interval", "scene_cut", "density", "dropped_frames", "fault", "max_interval")
# Above half the elements sent, a TEMPORAL job's MACs plus its reference traffic approach a
# DENSE job's; a hard cut measures ~1 on the demo's clips (docs/streaming.md).
DEFAULT_DENSITY_LIMIT = 0.5
CUT_JUMP = 2.0
# The runner emits references only when its policy's K > 1; a stream that chooses its own
# keyframes needs them on every non-keyframe, so its policy carries this K.
UNSCHEDULED_K = 1 << 30


def override_policy(policy: ReusePolicy, interval: int | None = None, offset: int | None = None,
                    thresholds: Mapping[str, list[int]] | None = None,
                    boundaries: Mapping[str, int] | None = None) -> ReusePolicy:
    """The bundle's policy with the given fields replaced (checked by ReusePolicy)."""
    ths = dict(policy.thresholds)
    ths.update({t: [int(v) for v in vals] for t, vals in (thresholds or {}).items()})
    bounds = dict(policy.boundaries)
    bounds.update({t: int(b) for t, b in (boundaries or {}).items()})
    k = policy.keyframe_interval if interval is None else int(interval)
    off = policy.key_offset if offset is None else int(offset)
    if offset is None and off >= k:
        off = 0  # a new K smaller than the bundle's offset: start at 0
    return dataclasses.replace(policy, keyframe_interval=k, key_offset=off, thresholds=ths,
                               boundaries=bounds)


@dataclass
class Decision:
    keyframe: bool
    reason: str | None  # one of REASONS for a keyframe, None otherwise
    predicted_density: float | None = None  # adaptive: the patch embedding's delta density


class KeyframeScheduler:
    """Decides per frame; :meth:`runner_policy` is the policy the runner must use."""

    def __init__(self, qm: QuantizedModel, mode: str = "fixed", policy: ReusePolicy | None = None,
                 density_limit: float = DEFAULT_DENSITY_LIMIT, max_interval: int = 0) -> None:
        if mode not in MODES:
            raise ValueError(f"keyframe mode {mode!r}: choose a K (integer), or one of {', '.join(MODES)}")
        if not 0.0 < density_limit <= 1.0:
            raise ValueError(f"density limit {density_limit!r}: expected a fraction in (0, 1]")
        if max_interval < 0:
            raise ValueError(f"max interval {max_interval!r}: expected >= 0 (0: none)")
        self.qm = qm
        self.mode = mode
        self.policy = policy if policy is not None else qm.policy
        self.density_limit = float(density_limit)
        self.max_interval = int(max_interval)
        self.frame = 0  # stream frame counter (the runner's restarts at a reset)
        self.since_key = 0
        self.last_density: float | None = None  # the previous frame's measured density
        self._embed = qm.site(-1, EMBED)

    def runner_policy(self) -> ReusePolicy:
        """Thresholds and boundaries of ``policy``; K such that the runner keeps references
        whenever a non-keyframe can follow (fixed K = 1 never needs them)."""
        if self.mode == "fixed":
            return self.policy
        return dataclasses.replace(self.policy, keyframe_interval=UNSCHEDULED_K, key_offset=0)

    def embed_density(self, frame: np.ndarray, x_ref: np.ndarray) -> float:
        """Fraction of the patch embedding's int8 input elements that the TEMPORAL job
        would send (|x - x_ref| >= th): the accelerator's own measure, computed on the host
        before the frame runs, so a scene cut is caught on its first frame."""
        qm = self.qm
        base = qm.host[qm.base]
        x_norm = host_ops.normalize_image(frame, base["pixel_mean"], base["pixel_std"])
        x = quantize_activation(host_ops.TaskHostState(base, qm.mcfg, x_norm).embed_input(),
                                self._embed.s_x)
        th = self.policy.threshold(qm.base, -1)
        sent = np.abs(x.astype(np.int16) - x_ref.astype(np.int16)) >= th
        return float(sent.mean())

    def decide(self, frame: np.ndarray, gap: int = 0, fault: bool = False,
               x_ref: np.ndarray | None = None) -> Decision:
        """The decision for the next frame. ``x_ref``: the base's stored patch-embedding
        reference (None after a reset: a keyframe is needed anyway)."""
        i = self.frame
        if i == 0 or x_ref is None:
            return self._key("first" if i == 0 else "fault")
        if fault:
            return self._key("fault")
        if gap > 0:
            return self._key("dropped_frames")
        if self.mode == "fixed":
            if self.policy.is_keyframe(i):
                return self._key("interval")
            return self._skip(None)
        if self.mode == "adaptive":
            density = self.embed_density(frame, x_ref)
            last, self.last_density = self.last_density, density
            if density > self.density_limit:
                cut = last is None or density > CUT_JUMP * last
                return self._key("scene_cut" if cut else "density", density)
            if self.max_interval and self.since_key + 1 >= self.max_interval:
                return self._key("max_interval", density)
            return self._skip(density)
        return self._skip(None)

    def fault_retry(self) -> Decision:
        """The frame that just failed, again, as a keyframe (the executor was reset): the
        frame counter does not advance a second time."""
        self.since_key = 0
        self.last_density = None
        return Decision(True, "fault", None)

    def _key(self, reason: str, density: float | None = None) -> Decision:
        self.frame += 1
        self.since_key = 0
        return Decision(True, reason, density)

    def _skip(self, density: float | None) -> Decision:
        self.frame += 1
        self.since_key += 1
        return Decision(False, None, density)
