"""The fusion gateway: fan-out to the ensemble members, fusion, verdict, rollout.

Entry points: :func:`wma_fusion.app.create_app` (the HTTP service),
:func:`wma_fusion.pipeline.run_ensemble` (the ensemble path),
:class:`wma_fusion.client.FusionClient` and :class:`wma_fusion.client.ParticipantTracker`
(the SDK for the meeting server), :class:`wma_local.stack.LocalStack` (a local
stack of mock processes). Submodules are imported explicitly, so importing this
package does no work.
"""
