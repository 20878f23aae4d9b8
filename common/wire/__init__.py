"""Messaging: the message schemas, the bus interfaces and the in-process bus, the Kafka bus."""
