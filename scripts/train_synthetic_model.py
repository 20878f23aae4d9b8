"""Re-create consumer_alerts/models/synthetic-fleet.json, the residual model docker compose uses for the
synthetic fleet: 8 fault-free hours of 5 robots (seed 42). Run: .venv/bin/python scripts/train_synthetic_model.py"""

from datetime import UTC, datetime
from pathlib import Path

from demo.embedded import train_model
from producer.settings import ProducerSettings

settings = ProducerSettings(_env_file=None, robots=5, seed=42, tick_seconds=2.0)
train_model(settings, Path("consumer_alerts/models/synthetic-fleet.json"), datetime(2026, 1, 1, 8, tzinfo=UTC))
