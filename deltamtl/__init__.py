"""deltamtl: delta-sparse multi-task vision transformer and its ZCU104 accelerator.

Subpackages follow the data flow: ``deltamtl.model`` (data, ViT, training, quantisation,
golden model, export), ``deltamtl.hls`` (HLS kernels' Python side), ``deltamtl.rtl``
(SystemVerilog twin's Python side), ``deltamtl.host`` (PYNQ driver and video pipeline).
``deltamtl.contract`` is the single definition of the integer and interface contract.
"""

__version__ = "0.1.0"
