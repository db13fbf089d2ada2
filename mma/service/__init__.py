"""The long-running service, ``mma run``, split by concern.

:mod:`~mma.service.daemon` composes the parts and runs the main loop;
:mod:`~mma.service.consume` and :mod:`~mma.service.sources` are the Kafka side,
:mod:`~mma.service.intake` hands messages to :mod:`mma.ingest`,
:mod:`~mma.service.jobs` the scheduler, :mod:`~mma.service.heartbeat` what
``mma status`` reads, :mod:`~mma.service.health` ``/healthz`` and ``/metrics``,
:mod:`~mma.service.systemd` and :mod:`~mma.service.liveness` what systemd sees.
"""
