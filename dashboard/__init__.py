"""The Bokeh dashboard: a live view fed by one shared Kafka consumer, and a history view from the database."""
