"""consumer_db: the database sink (Kafka -> PostgreSQL/SQLite), bulk CSV ingest, phrase queries and exports."""
