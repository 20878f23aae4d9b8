"""docker-compose.cluster.yml, the 3-node Kafka layout, checked statically and merged by docker compose."""

import re
import subprocess

import pytest
import yaml

from tests.unit.test_compose import APP_SETTINGS, REPO, compose_command, settings_class

CLUSTER = yaml.safe_load((REPO / "docker-compose.cluster.yml").read_text())
NODES = ("kafka", "kafka-2", "kafka-3")


def node_env(name: str) -> dict:
    return CLUSTER["services"][name]["environment"]


def test_three_nodes_form_one_quorum():
    envs = [node_env(name) for name in NODES]
    assert sorted(env["KAFKA_NODE_ID"] for env in envs) == [1, 2, 3]
    assert len({env["CLUSTER_ID"] for env in envs}) == 1
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", envs[0]["CLUSTER_ID"]), "a cluster id is 16 bytes in base64url"
    for name, env in zip(NODES, envs, strict=True):
        voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
        assert f"{env['KAFKA_NODE_ID']}@{name}:9093" in voters and len(voters) == 3
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"


@pytest.mark.parametrize("name", NODES)
def test_every_topic_has_three_copies_and_two_in_sync(name):
    env = node_env(name)
    assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == 3
    assert env["KAFKA_MIN_INSYNC_REPLICAS"] == env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == 2
    assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"


@pytest.mark.parametrize("service", sorted(APP_SETTINGS))
def test_services_bootstrap_from_every_node_and_create_replicated_topics(service):
    env = CLUSTER["services"][service]["environment"]
    assert env["KAFKA_BOOTSTRAP_SERVERS"].split(",") == [f"{name}:9092" for name in NODES]
    assert (env["TOPIC_REPLICATION_FACTOR"], env["TOPIC_MIN_INSYNC_REPLICAS"]) == (3, 2)
    fields = set(settings_class(service).model_fields)
    assert {variable.lower() for variable in env} <= fields
    depends = CLUSTER["services"][service]["depends_on"]
    assert all(depends[name]["condition"] == "service_healthy" for name in (*NODES, "postgres"))


def test_docker_compose_merges_the_override():
    command = compose_command()
    if command is None:
        pytest.skip(
            "neither the docker compose plugin nor docker-compose is installed (.ci/run installs docker-compose)"
        )
    files = ["-f", str(REPO / "docker-compose.yml"), "-f", str(REPO / "docker-compose.cluster.yml")]
    result = subprocess.run(
        [*command, *files, "config"],
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin:/bin:/usr/local/bin",
            **dict.fromkeys(("POSTGRES_PASSWORD", "POSTGRES_OWNER_PASSWORD", "POSTGRES_APP_PASSWORD"), "x"),
        },
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    merged = yaml.safe_load(result.stdout)["services"]
    assert set(NODES) <= set(merged)
    for service in APP_SETTINGS:  # the override adds to each service's environment, it does not replace it
        env = merged[service]["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092,kafka-2:9092,kafka-3:9092"
        assert env["DATABASE_URL"].startswith("postgresql+psycopg2://axiswatch_app:")
    assert merged["kafka"]["volumes"] and merged["kafka"]["healthcheck"]
