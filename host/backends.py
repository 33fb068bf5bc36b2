"""Site executors by name: the one interface (``run_job``, ``reset``) with several
implementations behind it, chosen by the ``--backend`` option of the host commands.

* ``golden``   the numpy reference core (:class:`deltamtl.contract.golden_core.GoldenCore`)
* ``emulated`` the HLS C++ kernels fetch -> core -> commit through ctypes, over a DDR
  buffer per job (:class:`deltamtl.hls.emulator.HlsSystemExecutor`)
* ``virtual``  the ``pynq`` backend's code on a virtual ZCU104 (a ``pynq.Device`` driving
  the same C++ kernels; :mod:`deltamtl.host.virtual_zcu104`), one chained launch a frame
* ``pynq``     the board: ``pynq.Overlay(bitfile)`` and :class:`deltamtl.host.pynq_driver.PynqExecutor`
* ``rtl``      the SystemVerilog core under Verilator + cocotb, in a subprocess that stays
  up for the video (:class:`deltamtl.host.rtl_backend.RtlExecutor`; slow: a few frames)

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


def _virtual(qm: QuantizedModel, folder: str | None = None, timeout_s: float = 2.0,
             **_options: Any) -> SiteExecutor:
    import shutil
    import tempfile
    import weakref

    from deltamtl.host.pynq_driver import PynqExecutor
    from deltamtl.host.virtual_zcu104 import load_overlay

    # the .hwh/.bit pair PYNQ loads: a scratch folder unless one is given (never the tree)
    where = folder if folder is not None else tempfile.mkdtemp(prefix="deltamtl-virtual-")
    overlay, _device = load_overlay(where, qm.core_limits())
    executor = PynqExecutor(overlay, qm.core_limits(), timeout_s=timeout_s)
    if folder is None:  # the scratch .hwh/.bit go with the executor
        weakref.finalize(executor, shutil.rmtree, where, True)
    return executor


def _pynq(qm: QuantizedModel, bitfile: str | None = None, timeout_s: float = 2.0,
          **_options: Any) -> SiteExecutor:
    if bitfile is None:
        raise ValueError("the pynq backend needs bitfile= (the .bit with its .hwh beside it)")
    import pynq
    from deltamtl.host.pynq_driver import PynqExecutor  # binds the IP drivers by VLNV

    return PynqExecutor(pynq.Overlay(bitfile), qm.core_limits(), timeout_s=timeout_s)


def _rtl(qm: QuantizedModel, **options: Any) -> SiteExecutor:
    from deltamtl.host.rtl_backend import RtlExecutor

    return RtlExecutor(qm.core_limits(), **options)


BACKENDS: dict[str, Factory] = {
    "golden": _golden,
    "emulated": _emulated,
    "virtual": _virtual,
    "pynq": _pynq,
    "rtl": _rtl,
}


def make_executor(name: str, qm: QuantizedModel, **options: Any) -> SiteExecutor:
    """The executor called ``name`` for the bundle ``qm`` (sized by its core limits)."""
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}") from None
    return factory(qm, **options)
