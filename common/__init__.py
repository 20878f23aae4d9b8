"""Shared building blocks of the axiswatch services: settings, shared defaults, service runner and errors at
the top; messaging in ``wire``, CSV parsing in ``csvio``, the database in ``store``."""
