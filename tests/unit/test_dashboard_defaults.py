"""The dashboard's cache of Bokeh's property defaults (dashboard.bokeh_defaults) answers what Bokeh answers."""

from __future__ import annotations

import pytest
from bokeh.core.property.descriptors import PropertyDescriptor
from bokeh.document import Document
from bokeh.model import Model
from bokeh.models import DataTable, Div, Plot, TableColumn
from bokeh.plotting import figure
from bokeh.themes import Theme

from dashboard.bokeh_defaults import CACHE, bokeh_defaults, cache_bokeh_defaults


@pytest.fixture
def cached():
    cache_bokeh_defaults()
    yield
    bokeh_defaults()


def concrete_models() -> list[type[Model]]:
    import bokeh.models  # noqa: F401 - registers every model class

    return [
        cls for name, cls in sorted(Model.model_class_reverse_map.items()) if not getattr(cls, "__abstract__", False)
    ]


def unset_values(model: Model) -> dict:
    return {name: getattr(model, name) for name in sorted(model.properties()) if name not in model._property_values}


def same(a, b) -> bool:
    if isinstance(a, Model) or isinstance(b, Model):  # a default model: a new one per instance, compare by kind
        return type(a) is type(b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b or (a != a and b != b)  # NaN


def test_every_bokeh_model_gets_the_same_defaults_with_the_cache_as_without(cached):
    classes = concrete_models()
    assert len(classes) > 300
    cached_values = {}
    for cls in classes:
        try:
            cached_values[cls] = unset_values(cls()), unset_values(cls())  # the second from the cache
        except Exception:  # noqa: BLE001 - a model that cannot be made bare is not made by the dashboard
            continue
    assert CACHE.values, "the cache was not used"
    bokeh_defaults()
    differing = []
    for cls, (first, second) in cached_values.items():
        bokeh = unset_values(cls())
        differing += [(cls.__name__, name) for name in bokeh if not (same(first[name], bokeh[name]) and
                                                                       same(second[name], bokeh[name]))]  # fmt: skip
    assert len(cached_values) > 300
    assert differing == []


def test_a_mutable_default_is_still_each_models_own(cached):
    first, second = DataTable(), DataTable()
    first.columns.append(TableColumn(field="x"))
    first.tags.append("mine")
    assert second.columns == [] and second.tags == []
    assert first.view is not second.view  # a default model: one per instance


def test_a_theme_still_applies_to_a_model_whose_class_default_was_cached(cached):
    assert Div().styles == {} and Plot().background_fill_color == "#ffffff"  # now cached
    doc = Document()
    doc.theme = Theme(json={"attrs": {"Plot": {"background_fill_color": "#123456"}}})
    themed = figure()
    doc.add_root(themed)
    assert themed.background_fill_color == "#123456"
    assert Plot().background_fill_color == "#ffffff"


def test_the_patch_is_off_again_for_the_other_tests(cached):
    bokeh_defaults()
    assert PropertyDescriptor.instance_default.__module__.startswith("bokeh")
