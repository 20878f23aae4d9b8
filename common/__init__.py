"""Shared building blocks of the axiswatch services: settings, message schemas, bus, database."""
