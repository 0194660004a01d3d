"""The local stack: ``wma up``, ``wma analyze`` and ``wma demo``.

:class:`wma_local.stack.LocalStack` starts mock model-server processes (each
supervised: :mod:`wma_local.children`, :mod:`wma_local.lifecycle`) and writes a
gateway config for them; :class:`wma_local.threaded.GatewayThread` serves a gateway
in-process. It ships the mock calibrator bundle (``mock.json``) and the demo's
frames as package data. Tooling, not serving: neither service imports it.
Submodules are imported explicitly, so importing this package does no work.
"""
