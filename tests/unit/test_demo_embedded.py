"""What the demo prepares before it streams: the alert service's engine, warm on the same robots' earlier feed."""

from datetime import UTC, datetime

from demo import embedded
from demo.cli import build_parser


def test_each_synthetic_robot_starts_with_a_model_of_its_own(tmp_path, monkeypatch):
    monkeypatch.delenv("CSV", raising=False)
    monkeypatch.setattr(embedded, "TRAINING_HOURS", 1)
    options = embedded.demo_options(build_parser().parse_args(["--work-dir", str(tmp_path)]))
    producer, _, alerts, _ = embedded.service_settings(options)
    alerts = alerts.model_copy(update={"model_learn_readings": 300})  # 1 h holds 500-700 active rows a robot

    engine = embedded.prepared_engine(producer, alerts, datetime(2026, 1, 5, 8, tzinfo=UTC))

    models = {robot_id: robot.learner.model for robot_id, robot in engine.robots.items()}
    assert set(models) == {"robot-001", "robot-002"}
    assert all(model is not None and model.robot_id == robot_id for robot_id, model in models.items())
    # learned on each robot's own current, not pooled over both
    assert models["robot-001"].axes[2].median != models["robot-002"].axes[2].median
