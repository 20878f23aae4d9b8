"""What every browser test shares: a fresh page that records what went wrong in it."""

import pytest


@pytest.fixture
def page(chromium, request, artifacts_dir):
    """A page in a context of its own. ``page.errors``: script errors and console errors; ``page.dialogs``: the
    messages of alert/confirm dialogs (dismissed), which only a script from data would open. A screenshot of
    the end state goes to the test artifacts."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.errors, page.dialogs = [], []
    page.on("pageerror", lambda exc: page.errors.append(f"page error: {exc}"))
    page.on("console", lambda msg: page.errors.append(f"console: {msg.text}") if msg.type == "error" else None)

    def on_dialog(dialog):
        page.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    yield page
    page.screenshot(path=str(artifacts_dir / f"dashboard-{request.node.name}.png"), full_page=True)
    context.close()
