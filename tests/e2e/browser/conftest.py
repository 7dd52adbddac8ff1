"""Browser-test fixtures: a real `airflow api-server` over a freshly seeded warehouse and MLflow, and Debian's
chromium driven by Playwright.

One server and one browser serve the whole module. The warehouse holds one pending approval request for a model
version that user "trainer" trained; the tests log in through the Airflow UI's own login form, as a person would.
Screenshots land in ``$AIRGATE_TEST_ARTIFACTS/browser`` (default ``tests/artifacts/browser``, git-ignored).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from tests.apiserver import ApiServer, free_port
from tests.helpers import REPO_ROOT, prepare_data, quick_spec

ROOT = REPO_ROOT
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1440, "height": 900}
TIMEOUT_MS = 20_000
RUN_ID = "tr-browser"


def artifacts_dir() -> Path:
    """Where screenshots go: $AIRGATE_TEST_ARTIFACTS/browser, by default tests/artifacts/browser."""
    root = Path(os.environ.get("AIRGATE_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts")
    out = root / "browser"
    out.mkdir(parents=True, exist_ok=True)
    return out


@dataclass
class Site:
    """The live server and what it was seeded with."""

    base: str
    home: Path
    warehouse_url: str
    mlflow: Any  # airgate.core.registry.MlflowConfig
    model: str
    request: dict[str, Any]  # the pending approval request, as promotion.get_request returned it
    log: Path

    def password(self, user: str) -> str:
        passwords = json.loads(
            Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).read_text()
        )
        return str(passwords[user])

    def token(self, user: str) -> str:
        r = httpx.post(
            f"{self.base}/auth/token", json={"username": user, "password": self.password(user)}, timeout=30
        )
        assert r.status_code in (200, 201), r.text
        return str(r.json()["access_token"])

    def api(self, user: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.token(user)}"}, timeout=60
        )

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def _seed(home: Path, mlflow_template: Path) -> tuple[str, Any, str, dict[str, Any]]:
    """A migrated warehouse, an MLflow copy and one pending approval request that "trainer" trained, all under
    ``home`` (which the server then uses as AIRGATE_HOME, so the evidence files are where it looks)."""
    from airgate.core import migrations
    from airgate.core.registry import MlflowConfig
    from airgate.core.settings import code_version
    from airgate.core.warehouse import make_engine
    from airgate.data import checks
    from airgate.dev.simulator import SimConfig, Simulator, write_catalog
    from airgate.governance import promotion, registration
    from airgate.model import gates, training

    url = f"sqlite:///{home / 'warehouse.db'}"
    (home / "mlflow").mkdir(parents=True)
    shutil.copy(mlflow_template, home / "mlflow" / "mlflow.db")
    cfg = MlflowConfig.under(home / "mlflow")
    spec = quick_spec()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(
            "AIRGATE_HOME", str(home)
        )  # catalog, roster, Data Docs and runs all under the server's home
        sim = Simulator(SimConfig(students_per_batch=120, events_per_student=40))
        write_catalog(sim, home / "catalog" / "knowledge_tracing_items.csv")
        engine = make_engine(url)
        try:
            migrations.upgrade(engine)
            labeled = prepare_data(engine, spec, sim, home)
            # Great Expectations results (and Data Docs) for the clean data, as the DAG records before training.
            checks.validate_pending(engine, spec)
            # As tests.helpers.train_to_request, with the code version the DAG records (the evidence shows it).
            training.train(
                engine,
                training.TrainConfig(
                    spec, labeled, RUN_ID, "trainer", cfg, str(home / "runs"), code_version=code_version()
                ),
            )
            report = gates.validate(engine, spec, cfg, RUN_ID, str(home / "runs"))
            assert report.approvable, report.failures
            made = registration.register_and_request(engine, spec, cfg, RUN_ID)
            request = promotion.get_request(engine, made["approval_request_id"])
        finally:
            engine.dispose()
    assert request["status"] == "pending" and request["requested_by"] == "trainer", request
    return url, cfg, spec.name, request


@pytest.fixture(scope="module")
def site(
    airflow_db: Path, _mlflow_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    home = tmp_path_factory.mktemp("browser-site")
    url, cfg, model, request = _seed(home, _mlflow_template)

    env = {
        **os.environ,
        "AIRGATE_HOME": str(home),
        "AIRFLOW_CONN_AIRGATE_WAREHOUSE": json.dumps(
            {"conn_type": "sqlite", "host": str(home / "warehouse.db")}
        ),
        "AIRFLOW_CONN_AIRGATE_MLFLOW": json.dumps(
            {
                "conn_type": "generic",
                "extra": {"tracking_uri": cfg.tracking_uri, "artifact_root": cfg.artifact_root},
            }
        ),
    }
    srv = ApiServer(env, free_port(), home / "api-server.log").wait_healthy()
    try:
        yield Site(srv.base, home, url, cfg, model, request, srv.log_path)
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless chromium. Missing chromium fails (never skips): the browser tests are part of the suite."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium. Run "
            f"`bash scripts/ensure_chromium.sh` (as root, or with sudo); `make test` installs it itself.",
            pytrace=False,
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.fail(
            f"Python Playwright is not installed ({exc}); `make test` installs it from requirements-dev.txt "
            "(never run `playwright install`: the tests use Debian's chromium).",
            pytrace=False,
        )
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


class UI:
    """One signed-in person in the Airflow UI (a browser context of their own)."""

    def __init__(self, site: Site, browser: Any, user: str, color_scheme: str = "light") -> None:
        self.site, self.user = site, user
        self.context = browser.new_context(viewport=VIEWPORT, color_scheme=color_scheme, base_url=site.base)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.dialogs: list[str] = []
        self.page.on("dialog", self._accept)

    def _accept(self, dialog: Any) -> None:
        """A confirm() before a decision is answered OK, as the person would; its text is kept for asserts."""
        self.dialogs.append(dialog.message)
        dialog.accept()

    def login(self) -> UI:
        """Sign in through SimpleAuthManager's login form, the page Airflow redirects an anonymous visitor to."""
        page = self.page
        page.goto("/")
        page.wait_for_url(re.compile(r"/auth/login"))
        page.get_by_label("Username").fill(self.user)
        page.get_by_label("Password").fill(self.site.password(self.user))
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda u: "/auth/login" not in u)
        page.get_by_test_id("nav-home-link").wait_for()
        assert any(c["name"] == "_token" for c in self.context.cookies()), "the login set no _token cookie"
        return self

    def open_governance(self, item: str) -> Any:
        """Open ``item`` from the Governance menu of the Airflow nav; returns the iframe the plugin page loads in.

        Airflow 3.3 groups the plugins' nav entries under "Plugins", one submenu per category, once there are two
        or more of them (airgate registers four, all in the category "Governance").
        """
        page = self.page
        page.get_by_role("button", name="Plugins").click()
        page.get_by_role("menuitem", name="Governance", exact=True).click()
        page.get_by_role("menuitem", name=item, exact=True).click()
        page.wait_for_url(re.compile(rf"/plugin/airgate-{item.lower()}(/|$)"), wait_until="commit")
        return page.frame_locator("iframe")

    def frame(self, path: str) -> Any:
        """The plugin's iframe as a Playwright Frame once its document is at ``path`` (to read or await its URL).

        The Airflow UI mirrors the iframe's path into its own URL (``/plugin/airgate-audit/airgate/audit``), so the
        main frame is never taken for it."""
        deadline = time.time() + TIMEOUT_MS / 1000
        while time.time() < deadline:
            for f in self.page.frames:
                if f is not self.page.main_frame and urlparse(f.url).path.rstrip("/") == path.rstrip("/"):
                    return f
            self.page.wait_for_timeout(100)
        raise AssertionError(f"no iframe at {path}: {[f.url for f in self.page.frames]}")

    def shot(self, name: str) -> Path:
        """A full-page screenshot. The plugin page scrolls inside its iframe, so the viewport is first made as tall
        as that page's content (then restored), or the screenshot would cut it at the fold."""
        page = self.page
        size = page.viewport_size or VIEWPORT
        height = size["height"]
        for f in page.frames[1:]:
            if "/airgate/" in f.url:
                try:
                    content = f.evaluate(
                        "() => Math.max(document.documentElement.scrollHeight,"
                        " document.body ? document.body.scrollHeight : 0)"
                    )
                except Exception:  # noqa: BLE001 - a frame mid-navigation: keep the viewport as it is
                    continue
                height = max(height, min(int(content) + 60, 8000))
        path = artifacts_dir() / name
        if height != size["height"]:
            page.set_viewport_size({"width": size["width"], "height": height})
            page.wait_for_timeout(300)
        try:
            page.screenshot(path=str(path), full_page=True)
        finally:
            if height != size["height"]:
                page.set_viewport_size(size)
        return path

    def close(self) -> None:
        self.context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Keep each phase's report on the test item, so the ``ui`` fixture knows whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def ui(browser: Any, site: Site, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A factory: ``ui("approver")`` is a signed-in UI for that user; every context is closed after the test.
    When the test failed, each person's page is saved as FAILED-<test>-<user>.png first, and the api-server log's
    tail is printed (pytest shows it with the failure)."""
    made: list[UI] = []

    def make(user: str, color_scheme: str = "light") -> UI:
        u = UI(site, browser, user, color_scheme)
        made.append(u)
        return u.login()

    yield make
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        print(f"--- last lines of the api-server log ({site.log}):\n{site.log_tail()}")
    for u in made:
        if failed is not None and failed.failed:
            try:
                u.shot(f"FAILED-{request.node.name}-{u.user}.png")
            except Exception:  # noqa: BLE001 - a screenshot must never hide the real failure
                pass
        u.close()
