"""consumer_alerts: streaming detectors over the joint currents, and the alert lifecycle around them.

Readings come in, :class:`~consumer_alerts.engine.DetectorEngine` runs the detectors of every robot and
axis, and the alert events it returns go out on the alerts topic. The service (``service.py``) and the
offline twin (``replay`` / ``score`` in ``offline.py``) share that one engine.
"""
