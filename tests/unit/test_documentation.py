"""The README and the service docs tell the truth: every setting and every command-line option is in them."""

import argparse
import importlib
import re
from pathlib import Path

import pytest

from common.settings import CommonSettings

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
SERVICES = {
    "producer": "producer.settings:ProducerSettings",
    "consumer_db": "consumer_db.settings:ConsumerDbSettings",
    "consumer_alerts": "consumer_alerts.settings:AlertsSettings",
    "dashboard": "dashboard.settings:DashboardSettings",
    "notifier": "notifier.settings:NotifierSettings",
    "api": "api.settings:ApiSettings",
}


def load(path: str):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def options_of(parser: argparse.ArgumentParser) -> set[str]:
    found = {o for action in parser._actions for o in action.option_strings if o.startswith("--") and o != "--help"}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= options_of(sub)
    return found


@pytest.mark.parametrize("service", sorted(SERVICES) + ["common"])
def test_readme_documents_every_setting(service):
    settings = CommonSettings if service == "common" else load(SERVICES[service])
    missing = [name.upper() for name in settings.model_fields if f"`{name.upper()}`" not in README]
    assert not missing, f"README.md does not document {service} settings {missing}"


def service_doc(service: str) -> str:
    return (REPO / "docs" / f"{service}.md").read_text()


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_the_service_doc_documents_every_setting_of_the_service(service):
    """The service's own settings in its doc; the shared ones (CommonSettings) are in the README."""
    own = set(load(SERVICES[service]).model_fields) - set(CommonSettings.model_fields)
    missing = sorted(name.upper() for name in own if f"`{name.upper()}`" not in service_doc(service))
    assert not missing, f"docs/{service}.md does not document the settings {missing}"


@pytest.mark.parametrize("service", [*sorted(SERVICES), "demo"])
def test_the_service_doc_documents_every_command_line_option(service):
    parser = importlib.import_module(f"{service}.cli").build_parser()
    doc = service_doc(service)
    missing = sorted(o for o in options_of(parser) if not re.search(re.escape(o) + r"(?![\w-])", doc))
    assert not missing, f"{service}: options {missing} are in --help but not in docs/{service}.md"


def test_the_producer_doc_says_what_compose_runs():
    compose = (REPO / "docker-compose.yml").read_text()
    command = re.search(r"producer:.*?command: (\[.*?\])", compose, re.S).group(1)
    words = " ".join(re.findall(r'"([^"]*)"', command))
    said = re.findall(r"compose\S* runs `([^`]*)`", " ".join(service_doc("producer").split()))
    assert said and all(s == words for s in said), f"docs/producer.md says compose runs {said}, it runs `{words}`"


@pytest.mark.parametrize("target", ["demo", "test", "unit", "bench", "up", "down"])
def test_readme_make_targets_exist(target):
    assert f"make {target}" in README
    assert re.search(rf"^{target}:", (REPO / "Makefile").read_text(), re.M)
