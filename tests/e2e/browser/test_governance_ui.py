"""The Governance pages in a real browser, inside the real Airflow UI.

Headless Debian chromium (Playwright) against an `airflow api-server` started for this module over a seeded
warehouse holding one pending approval request that "trainer" trained. People sign in through Airflow's own login
form and reach the pages through the Governance menu of the Airflow nav (the pages load in its iframe).

The tests run in file order on one server: those that must see the request still pending (trainer, viewer) come
before the approver approves it; the audit test then has the decision and the promotion to filter by.
Screenshots: tests/artifacts/browser/ (or $AIRGATE_TEST_ARTIFACTS/browser).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.browser.conftest import TIMEOUT_MS, Site

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

GOVERNANCE_PAGES = ["Approvals", "Models", "Audit", "Lineage"]


def _expect() -> Any:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    return expect


def _open_request(ui: Any, site: Site) -> Any:
    """Governance -> Approvals -> the pending request's row -> its detail page; returns the iframe's locator."""
    expect = _expect()
    frame = ui.open_governance("Approvals")
    row = frame.locator(f'[data-testid="approval-row"][data-request-id="{site.request["id"]}"]')
    expect(row).to_be_visible()
    row.get_by_test_id("open-request").click()
    ui.frame(f"/airgate/approvals/{site.request['id']}")
    expect(frame.get_by_test_id("request-status")).to_be_visible()
    return frame


def _post_decision(site: Site, user: str) -> Any:
    body = {
        "decision": "approve",
        "comment": f"{user} tries to approve",
        "evidence_hash": site.request["evidence_hash"],
    }
    with site.api(user) as api:
        return api.post(f"/airgate/api/approvals/{site.request['id']}/decisions", json=body)


def _champion(site: Site) -> str | None:
    from airgate.core import registry

    return registry.alias_version(site.mlflow, site.model)


def test_login_and_the_governance_menu(ui: Any, site: Site) -> None:
    """The Airflow nav has a Governance menu with every page; Approvals opens in the iframe and lists the request.
    (Dark mode: the person's system colour scheme.)"""
    expect = _expect()
    viewer = ui("viewer", color_scheme="dark")
    page = viewer.page
    page.get_by_role("button", name="Plugins").click()
    page.get_by_role("menuitem", name="Governance", exact=True).click()
    for name in GOVERNANCE_PAGES:
        expect(page.get_by_role("menuitem", name=name, exact=True)).to_be_visible()
    page.get_by_role("menuitem", name="Approvals", exact=True).click()
    page.wait_for_url(re.compile(r"/plugin/airgate-approvals(/|$)"), wait_until="commit")
    expect(page.locator("iframe")).to_have_attribute("src", re.compile(r"^/airgate/approvals/?$"))
    frame = page.frame_locator("iframe")
    row = frame.locator(f'[data-testid="approval-row"][data-request-id="{site.request["id"]}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("pending")
    expect(row.get_by_test_id("open-request")).to_be_visible()
    viewer.shot("approvals-queue-dark.png")


def _no_decision_form(frame: Any, why: str) -> None:
    """The evidence of a pending request is readable, but there is nothing to decide with, and the page says why."""
    expect = _expect()
    expect(frame.get_by_test_id("request-status")).to_contain_text("pending")
    expect(frame.get_by_test_id("evidence-metrics")).to_be_visible()
    expect(frame.get_by_test_id("evidence-gates")).to_be_visible()
    for hook in ("approve-button", "reject-button", "decision-comment"):
        expect(frame.get_by_test_id(hook)).to_have_count(0)
    expect(frame.get_by_test_id("decision-unavailable")).to_contain_text(why)


def test_trainer_cannot_approve_their_own_model(ui: Any, site: Site) -> None:
    trainer = ui("trainer")
    frame = _open_request(trainer, site)
    _no_decision_form(frame, "separation of duties")
    trainer.shot("trainer-detail.png")
    # The page only hides the buttons; the API refuses too, with the cookie the UI set (and the CSRF header).
    r = trainer.context.request.post(
        f"/airgate/api/approvals/{site.request['id']}/decisions",
        headers={"X-Requested-With": "airgate"},
        data={
            "decision": "approve",
            "comment": "my own model",
            "evidence_hash": site.request["evidence_hash"],
        },
    )
    assert r.status == 403, r.text()
    assert r.json()["code"] == "separation_of_duties"
    assert _champion(site) is None


def test_viewer_sees_no_approve_button_and_the_api_refuses(ui: Any, site: Site) -> None:
    viewer = ui("viewer")
    frame = _open_request(viewer, site)
    _no_decision_form(frame, "not an approver")
    viewer.shot("viewer-detail.png")
    r = _post_decision(site, "viewer")
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "not_approver"
    assert _champion(site) is None


def test_approver_reads_the_evidence_and_approves(ui: Any, site: Site) -> None:
    from sqlalchemy import create_engine

    from airgate.governance import promotion

    expect = _expect()
    req = site.request
    ev = req["evidence"]
    with site.api("approver") as api:
        detail = api.get(f"/airgate/api/approvals/{req['id']}").json()
    assert detail["you"] == {"can_decide": True, "reason": None}, detail["you"]
    links = detail["context"]["links"]

    approver = ui("approver")
    frame = approver.open_governance("Approvals")
    expect(frame.locator(f'[data-testid="approval-row"][data-request-id="{req["id"]}"]')).to_be_visible()
    approver.shot("approvals-queue.png")
    frame.locator(f'[data-testid="approval-row"][data-request-id="{req["id"]}"]').get_by_test_id(
        "open-request"
    ).click()
    approver.frame(f"/airgate/approvals/{req['id']}")

    # The evidence, section by section.
    expect(frame.get_by_test_id("request-status")).to_contain_text("pending")
    metrics = frame.get_by_test_id("evidence-metrics")
    expect(metrics).to_contain_text(ev["candidate"])
    expect(metrics).to_contain_text(re.compile("auc", re.I))
    pareto = frame.get_by_test_id("evidence-pareto")
    expect(pareto).to_be_visible()
    assert links["pareto_plot"], "the evidence names no Pareto plot"
    img = pareto if pareto.evaluate("e => e.tagName") == "IMG" else pareto.locator("img").first
    expect(img).to_have_attribute("src", re.compile(re.escape(links["pareto_plot"])))
    img.scroll_into_view_if_needed()  # it may load lazily
    expect(img).to_have_js_property("complete", True)
    assert img.evaluate("e => e.naturalWidth") > 0, "the Pareto plot image did not load"
    slices = frame.get_by_test_id("evidence-slices")
    for column in ev["slices"]:
        expect(slices).to_contain_text(column)
    checked = detail["context"]["validation"]
    assert checked is not None, "the seeded clean data has no validation result"
    validation = frame.get_by_test_id("evidence-validation")
    expect(validation).to_contain_text(checked["status"])
    assert checked["data_docs_url"], "the validation has no Data Docs"
    expect(validation.locator(f'a[href*="{checked["data_docs_url"]}"]')).to_have_count(1)
    drift = frame.get_by_test_id("evidence-drift")
    expect(drift).to_be_visible()
    assert links["drift_report"], "the evidence names no drift report"
    drift_link = drift.locator(f'a[href*="{links["drift_report"]}"]')
    expect(drift_link).to_have_count(1)
    report = approver.context.request.get(links["drift_report"])  # with the UI's cookie, as the link would
    assert report.status == 200 and report.headers["content-type"].startswith("text/html")
    expect(frame.get_by_test_id("evidence-labels")).to_contain_text(re.compile("human", re.I))
    expect(frame.get_by_test_id("evidence-versions")).to_contain_text(ev["data_version"])
    expect(frame.get_by_test_id("evidence-code-version")).to_contain_text(str(ev["code_version"])[:7])
    gates = frame.get_by_test_id("evidence-gates")
    for gate in ev["gates"]:
        expect(gates).to_contain_text(gate["name"])
    approver.shot("evidence-detail.png")

    # The decision.
    frame.get_by_test_id("decision-comment").fill(
        "Evidence reviewed in the browser: metrics, slices and drift ok."
    )
    frame.get_by_test_id("approve-button").click()
    expect(frame.get_by_test_id("request-status")).to_have_attribute(
        "data-status", "approved", timeout=60_000
    )
    expect(frame.get_by_test_id("request-status")).to_contain_text("approved")
    expect(frame.get_by_test_id("decision-message")).to_contain_text("Approved")
    expect(frame.get_by_test_id("approve-button")).to_have_count(0)
    decisions = frame.get_by_test_id("decisions")
    expect(decisions).to_contain_text("approver")
    expect(decisions).to_contain_text("Evidence reviewed in the browser")
    approver.shot("approved.png")

    # The alias moved, and the promotion ledger says who and why.
    assert _champion(site) == req["model_version"]
    engine = create_engine(site.warehouse_url)
    try:
        last = promotion.ledger(engine, site.model)[-1]
    finally:
        engine.dispose()
    assert (last["action"], last["to_version"], last["approval_id"], last["actor"]) == (
        "promote",
        req["model_version"],
        req["id"],
        "approver",
    )
    with site.api("viewer") as api:
        assert (
            api.get(f"/airgate/api/models/{site.model}").json()["champion"]["version"] == req["model_version"]
        )


def test_models_and_lineage_views(ui: Any, site: Site) -> None:
    """After the approval: Models shows the champion and its ledger row; from the model version, Lineage walks back
    to the source files, and a file steps forward again to the batch it was ingested in."""
    expect = _expect()
    req = site.request
    viewer = ui("viewer")
    frame = viewer.open_governance("Models")
    row = frame.locator(f'[data-testid="model-row"][data-model="{site.model}"]')
    expect(row).to_contain_text(f"v{req['model_version']}")
    row.get_by_test_id("open-model").click()
    expect(frame.get_by_test_id("champion-version")).to_have_attribute("data-version", req["model_version"])
    ledger = frame.get_by_test_id("ledger-row")
    expect(ledger).to_have_count(1)
    expect(ledger.first).to_have_attribute("data-action", "promote")
    expect(frame.get_by_test_id("rollback-button")).to_have_count(0)  # a viewer may not roll back
    expect(frame.get_by_test_id("revoke-button")).to_have_count(0)
    viewer.shot("models.png")

    frame = viewer.open_governance("Lineage")
    viewer.frame("/airgate/lineage").goto(
        f"{site.base}/airgate/lineage?node=model_version:{site.model}/{req['model_version']}"
    )
    focus = frame.get_by_test_id("lineage-focus")
    expect(focus).to_have_attribute("data-kind", "model_version")
    nodes = frame.get_by_test_id("lineage-node")
    for kind in ("file", "batch", "dataset", "training_run", "approval"):
        expect(frame.locator(f'[data-testid="lineage-node"][data-kind="{kind}"]').first).to_be_visible()
    approval = frame.locator(f'[data-testid="lineage-node"][data-ref="approval:{req["id"]}"]')
    expect(approval).to_contain_text("approver")  # who approved it is on the way
    viewer.shot("lineage.png")
    assert nodes.count() >= 6
    frame.locator('[data-testid="lineage-node"][data-kind="file"]').first.click()
    expect(focus).to_have_attribute("data-kind", "file")
    expect(frame.locator('[data-testid="lineage-node"][data-kind="batch"]').first).to_be_visible()


def test_audit_filter_by_event_type(ui: Any, site: Site) -> None:
    expect = _expect()
    with site.api("viewer") as api:
        types = api.get("/airgate/api/audit/event-types").json()
    wanted = "promotion" if "promotion" in types else "approval_requested"
    assert wanted in types, types

    auditor = ui("viewer")
    frame = auditor.open_governance("Audit")
    rows = frame.get_by_test_id("audit-row")
    expect(rows.first).to_be_visible()
    kinds_before = set(rows.evaluate_all("rs => rs.map(r => r.dataset.eventType)"))
    assert len(kinds_before) > 1, kinds_before
    all_count = rows.count()

    type_filter = frame.get_by_test_id("audit-filter-type")
    if type_filter.evaluate("e => e.tagName") == "SELECT":
        type_filter.select_option(wanted)
    else:
        type_filter.fill(wanted)
    frame.get_by_test_id("audit-apply").click()
    expect(frame.locator(f'[data-testid="audit-row"]:not([data-event-type="{wanted}"])')).to_have_count(0)
    expect(rows.first).to_have_attribute("data-event-type", wanted)
    audit_frame = auditor.frame("/airgate/audit")
    audit_frame.wait_for_url(re.compile(rf"[?&]event_type={wanted}(&|$)"), wait_until="commit")
    filtered_count = rows.count()
    assert 0 < filtered_count < all_count
    auditor.shot("audit-filtered.png")

    # The URL alone restores the filter (a link can be shared).
    audit_frame.goto(audit_frame.url)
    expect(frame.get_by_test_id("audit-filter-type")).to_have_value(wanted)
    expect(frame.locator(f'[data-testid="audit-row"]:not([data-event-type="{wanted}"])')).to_have_count(0)
    expect(rows.first).to_be_visible()

    # Clearing the filter shows the other events again.
    type_filter = frame.get_by_test_id("audit-filter-type")
    if type_filter.evaluate("e => e.tagName") == "SELECT":
        type_filter.select_option("")
    else:
        type_filter.fill("")
    frame.get_by_test_id("audit-apply").click()
    expect(
        frame.locator(f'[data-testid="audit-row"]:not([data-event-type="{wanted}"])').first
    ).to_be_visible()
    assert rows.count() > filtered_count
    assert not re.search(rf"[?&]event_type={wanted}(&|$)", audit_frame.url), audit_frame.url
    auditor.shot("audit-all.png")
