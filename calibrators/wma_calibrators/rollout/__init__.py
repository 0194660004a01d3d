"""The offline rollout report (``wma rollout report``): agreement, latency, errors
and gates from the gateway's comparison records. Tooling: the gateway writes the
records (:mod:`wma_fusion.rollout.records`) and never imports this package."""
