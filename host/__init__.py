"""Host side: the whole-video runner and its site executors, the host's float ops between
site jobs, video input, and the checks that compare the integer pipeline with the model.

Imports ``deltamtl.contract``, ``deltamtl.model`` (the bundle it runs), ``deltamtl.hls`` and
``deltamtl.rtl`` (their executors); nothing imports it but the command line.
"""
