"""The layering: the services import ``common`` and themselves only; ``common`` imports no service; only the
demo composes them. Read from the sources' import statements."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PIPELINE = ("producer", "consumer_db", "consumer_alerts", "dashboard")
SERVICES = (*PIPELINE, "notifier", "api")


def imported_packages(package: str) -> dict[str, set[str]]:
    """Per source file of ``package``, the top-level packages it imports (absolute imports)."""
    found = {}
    for path in sorted((REPO / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO))] = names
    return found


@pytest.mark.parametrize("package", [*SERVICES, "common"])
def test_a_service_imports_no_other_service(package):
    others = set(SERVICES) - {package} | {"demo"}
    wrong = {path: sorted(names & others) for path, names in imported_packages(package).items() if names & others}
    assert not wrong, f"{package} imports other services: {wrong}"


def test_the_demo_composes_every_service_of_the_pipeline():
    """The notifier is not in the demo: it needs mail servers and receivers that a demo does not have."""
    used = set().union(*imported_packages("demo").values())
    assert set(PIPELINE) <= used
