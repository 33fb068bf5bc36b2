"""Site executors by name: the one interface (``run_job``, ``reset``) with several
implementations behind it, chosen by the ``--backend`` option of the host commands.

* ``golden``   the numpy reference core (:class:`deltamtl.contract.golden_core.GoldenCore`)
* ``emulated`` the HLS C++ kernels fetch -> core -> commit through ctypes, over a DDR
  buffer per job (:class:`deltamtl.hls.emulator.HlsSystemExecutor`)

Every backend runs whole frames the same way and returns identical bits; docs/host.md
lists them and what each needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deltamtl.contract.golden_core import GoldenCore
from deltamtl.host.runner import SiteExecutor
from deltamtl.model.export.quantized_model import QuantizedModel

Factory = Callable[..., SiteExecutor]


def _golden(qm: QuantizedModel, **_options: Any) -> SiteExecutor:
    return GoldenCore(qm.core_limits())


def _emulated(qm: QuantizedModel, **_options: Any) -> SiteExecutor:
    from deltamtl.hls.emulator import HlsSystemExecutor  # builds the C++ library on first use

    return HlsSystemExecutor(qm.core_limits())


BACKENDS: dict[str, Factory] = {
    "golden": _golden,
    "emulated": _emulated,
}


def make_executor(name: str, qm: QuantizedModel, **options: Any) -> SiteExecutor:
    """The executor called ``name`` for the bundle ``qm`` (sized by its core limits)."""
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}") from None
    return factory(qm, **options)
