"""The model side, in data-flow order: ``data`` (synthetic video, data sets), ``training``
(the ViT, losses, metrics, the one training entry point), ``sharing`` (delta weights,
thresholds, accounting, the three-step chain), ``quant`` (int8 quantisation and QAT) and
``export`` (the quantised model the bundle holds, the bundle files, ONNX).

``tasks``, ``config`` and ``checkpoint`` are shared by every stage. Imports only
``deltamtl.contract``.
"""
