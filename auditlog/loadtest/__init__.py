"""The load generator behind ``auditlog loadtest`` (docs/loadtest.md).

:mod:`~auditlog.loadtest.events` makes realistic events (shared with the benchmarks);
:mod:`~auditlog.loadtest.pacing` plans when each request is due; :mod:`~auditlog.loadtest.engine`
sends them (open or closed loop) and :mod:`~auditlog.loadtest.tally` records what happened,
latency from the due time in a :mod:`~auditlog.loadtest.histogram`; the scenarios' operations
are in :mod:`~auditlog.loadtest.writes` and :mod:`~auditlog.loadtest.reads`, the logged → sealed
sampler in :mod:`~auditlog.loadtest.sealing`; :mod:`~auditlog.loadtest.runner` runs what
:mod:`~auditlog.loadtest.options` asks into :mod:`~auditlog.loadtest.results`, which
:mod:`~auditlog.loadtest.report` (with :mod:`~auditlog.loadtest.plots`) and
:mod:`~auditlog.loadtest.thresholds` turn into reports and an exit code.
"""
