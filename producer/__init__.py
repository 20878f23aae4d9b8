"""The controller feed: replay a controller export (or a synthetic fleet) into Kafka, one message per row."""
