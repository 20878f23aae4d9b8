"""docker-compose.yml checked statically: Docker is not available here, so a broken file would go unnoticed."""

import importlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
APP_SETTINGS = {
    "producer": "producer.settings:ProducerSettings",
    "consumer_db": "consumer_db.settings:ConsumerDbSettings",
    "consumer_alerts": "consumer_alerts.settings:AlertsSettings",
    "dashboard": "dashboard.settings:DashboardSettings",
    "notifier": "notifier.settings:NotifierSettings",
    "api": "api.settings:ApiSettings",
}
# The notifier's secrets are not settings: its channel file names them (docs/notifier.example.yaml's names).
CHANNEL_SECRETS = set(re.findall(r"_env: (\w+)", (REPO / "docs" / "notifier.example.yaml").read_text()))
IMAGE_ENV = {
    "kafka": re.compile(r"KAFKA_[A-Z_]+"),
    "postgres": re.compile(r"POSTGRES_(USER|DB|PASSWORD|OWNER_PASSWORD|APP_PASSWORD)"),
}


def settings_class(service: str):
    module, _, name = APP_SETTINGS[service].partition(":")
    return getattr(importlib.import_module(module), name)


def test_every_service_is_there_with_health_checks_and_ordering():
    services = COMPOSE["services"]
    assert set(services) == {"kafka", "postgres", *APP_SETTINGS}
    assert "healthcheck" in services["kafka"] and "healthcheck" in services["postgres"]
    for name in APP_SETTINGS:
        depends = services[name]["depends_on"]
        assert depends["kafka"]["condition"] == depends["postgres"]["condition"] == "service_healthy"
    assert {services[name].get("image") for name in APP_SETTINGS} == {"axiswatch:latest"}


@pytest.mark.parametrize("service", sorted(APP_SETTINGS))
def test_command_names_a_real_entry_point(service):
    command = COMPOSE["services"][service]["command"]
    assert command[:2] == ["python", "-m"]
    module = command[2]
    assert module == service
    assert (REPO / module / "__main__.py").exists(), f"{module} has no __main__.py"


@pytest.mark.parametrize("service", sorted(APP_SETTINGS))
def test_every_environment_variable_is_a_real_setting(service):
    fields = set(settings_class(service).model_fields)
    for variable in COMPOSE["services"][service]["environment"]:
        if service == "notifier" and variable in CHANNEL_SECRETS:
            continue
        assert variable.lower() in fields, f"{service}: {variable} is not a setting of {APP_SETTINGS[service]}"


@pytest.mark.parametrize("service", sorted(IMAGE_ENV))
def test_infrastructure_images_get_only_their_own_variables(service):
    for variable in COMPOSE["services"][service]["environment"]:
        assert IMAGE_ENV[service].fullmatch(variable), f"{service}: unexpected {variable}"


def test_ports_and_volumes_are_consistent():
    dashboard = COMPOSE["services"]["dashboard"]
    assert dashboard["ports"] == ["5006:5006"]
    assert "5006" in " ".join(dashboard["healthcheck"]["test"])
    named = set(COMPOSE.get("volumes", {}))
    for service in COMPOSE["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(("./", "/")) or source in named, f"volume {source} is not declared"
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{source} does not exist"


def test_files_the_services_are_pointed_at_are_in_the_image():
    """The image copies the packages to /app, so a default path under /app must name a file of the repo."""
    for name in APP_SETTINGS:
        for value in COMPOSE["services"][name]["environment"].values():
            for path in re.findall(r"/app/[\w./-]+", str(value)):
                assert (REPO / path.removeprefix("/app/")).is_file(), f"{name}: {path} is not in the repo"


PASSWORDS = ("POSTGRES_PASSWORD", "POSTGRES_OWNER_PASSWORD", "POSTGRES_APP_PASSWORD")


@pytest.mark.parametrize("password", PASSWORDS)
def test_secrets_are_required_not_defaulted(password):
    text = (REPO / "docker-compose.yml").read_text()
    uses = re.findall(r"\$\{" + password + r"([^}]*)\}", text)
    assert uses and all(use.startswith(":?") for use in uses), uses


def test_the_services_connect_without_superuser_and_only_the_sink_migrates_as_the_owner():
    superuser = COMPOSE["services"]["postgres"]["environment"]["POSTGRES_USER"]
    for name in APP_SETTINGS:
        environment = COMPOSE["services"][name]["environment"]
        assert environment["DATABASE_URL"].startswith("postgresql+psycopg2://axiswatch_app:"), name
        assert f"//{superuser}:" not in environment["DATABASE_URL"]
        owner = environment.get("MIGRATION_DATABASE_URL")
        assert (owner is not None) == (name == "consumer_db"), name
    assert COMPOSE["services"]["consumer_db"]["environment"]["MIGRATION_DATABASE_URL"].startswith(
        "postgresql+psycopg2://axiswatch_owner:"
    )


def compose_command() -> list[str] | None:
    """`docker compose` (the plugin) or Debian's `docker-compose`: both validate a file without an engine."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def run_compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    command = compose_command()
    if command is None:
        pytest.skip(
            "neither the docker compose plugin nor docker-compose is installed (.ci/run installs docker-compose)"
        )
    return subprocess.run(
        [*command, "-f", str(REPO / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", **env},
        cwd=REPO,
    )


def test_docker_compose_config_accepts_the_file():
    result = run_compose_config(dict.fromkeys(PASSWORDS, "x"))
    assert result.returncode == 0, result.stderr


def test_docker_compose_config_refuses_a_missing_password():
    result = run_compose_config({})
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


@pytest.mark.parametrize("service", sorted(APP_SETTINGS))
def test_health_checks_ask_the_service_own_readiness_endpoint(service):
    """The port in the check is the one the service listens on with compose's environment (its default)."""
    fields = settings_class(service).model_fields
    (setting,) = [name for name in fields if name.endswith("metrics_port")] or ["dashboard_port"]
    port = fields[setting].default
    assert port, f"{service}: the endpoint is off by default, the health check would never pass"
    assert f"http://localhost:{port}/readyz" in " ".join(COMPOSE["services"][service]["healthcheck"]["test"])
    assert setting.upper() not in COMPOSE["services"][service]["environment"]
