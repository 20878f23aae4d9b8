"""The embedded demo: the four services composed in one process on the in-process bus and SQLite.

It has a home of its own because it is the one place that imports every service; the services import
``common`` only.
"""
