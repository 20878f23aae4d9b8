"""The dashboard's tables: every one is read-only, and every column of a page shares one editor and one
plain-text formatter.

A ``TableColumn`` made bare gets a ``StringEditor`` and a ``StringFormatter`` of its own, two models per column
that the server builds, sends and discards with every page (the tables are not editable, and plain text
looks the same in every column). A model belongs to one document, hence one set per page."""

from __future__ import annotations

from bokeh.models import ColumnDataSource, DataTable, StringEditor, StringFormatter, TableColumn


class PageColumns:
    def __init__(self) -> None:
        self.editor, self.text = StringEditor(), StringFormatter()

    def __call__(self, field: str, title: str, formatter=None, **kw) -> TableColumn:
        return TableColumn(field=field, title=title, formatter=formatter or self.text, editor=self.editor, **kw)


def read_only_table(source: ColumnDataSource, columns: list[TableColumn], name: str, **layout) -> DataTable:
    """A table to read: no row-number column, columns that stay where they are. ``layout``: its size
    (``height``, ``width``, ``sizing_mode``) and style."""
    return DataTable(source=source, columns=columns, name=name, index_position=None, reorderable=False, **layout)
