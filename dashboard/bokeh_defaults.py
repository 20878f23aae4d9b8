"""Bokeh's property defaults, looked up once per model class instead of at every read.

Reading a property that was never set makes Bokeh work out its default again each time: the overrides of
every class in the model's MRO merged, the default copied, validated and transformed. A page reads tens of
thousands of them (building the models, walking the document's graph after each piece, serialising the new
models), and that was about a third of the CPU of building and sending a page (``docs/dashboard.md``). The
answer depends only on the model's class and the property while no theme applies, so it is kept per
(class, property), for immutable defaults only: a mutable one (a list, a dict, a model) stays Bokeh's own
per-instance copy.
"""

from __future__ import annotations

from typing import Any

from bokeh.core.property.descriptors import PropertyDescriptor

_BOKEH_INSTANCE_DEFAULT = PropertyDescriptor.instance_default
_BOKEH_HAS_UNSTABLE_DEFAULT = PropertyDescriptor.has_unstable_default
IMMUTABLE = (type(None), bool, int, float, str)  # str: enum values too
_MISSING = object()


def _immutable(value: Any) -> bool:
    if isinstance(value, tuple):
        return all(_immutable(v) for v in value)
    return isinstance(value, IMMUTABLE)


class ClassDefaults:
    """What the two patched methods remember, per (model class, property name)."""

    def __init__(self) -> None:
        self.unstable: dict[tuple[type, str], bool] = {}
        self.values: dict[tuple[type, str], Any] = {}


CACHE = ClassDefaults()


def _has_unstable_default(self: PropertyDescriptor, obj) -> bool:
    # Depends on the property and on the class's overrides (``__overridden_defaults__``), both fixed once the
    # class exists.
    key = (type(obj), self.name)
    unstable = CACHE.unstable.get(key)
    if unstable is None:
        unstable = CACHE.unstable[key] = _BOKEH_HAS_UNSTABLE_DEFAULT(self, obj)
    return unstable


def _instance_default(self: PropertyDescriptor, obj) -> Any:
    if obj.themed_values() is not None or _has_unstable_default(self, obj):
        return _BOKEH_INSTANCE_DEFAULT(self, obj)
    key = (type(obj), self.name)
    value = CACHE.values.get(key, _MISSING)
    if value is _MISSING:
        value = _BOKEH_INSTANCE_DEFAULT(self, obj)
        if not _immutable(value):
            return value
        CACHE.values[key] = value
    return value


def cache_bokeh_defaults() -> None:
    """Once per process, before pages are built (idempotent)."""
    PropertyDescriptor.instance_default = _instance_default
    PropertyDescriptor.has_unstable_default = _has_unstable_default


def bokeh_defaults() -> None:
    """Bokeh's own lookups again (for tests comparing the two)."""
    PropertyDescriptor.instance_default = _BOKEH_INSTANCE_DEFAULT
    PropertyDescriptor.has_unstable_default = _BOKEH_HAS_UNSTABLE_DEFAULT
