"""CSV parsing of the controller export: the row parser, the header and the time columns."""
