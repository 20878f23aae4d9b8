"""The database: tables, engines, SQL building blocks, the per-minute rollup (readers), queries, data health."""
