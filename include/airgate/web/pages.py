"""Server-rendered pages. Every value is HTML-escaped; actions call the JSON API with the CSRF header."""

from __future__ import annotations

from html import escape
from typing import Any

STYLE = """
:root { color-scheme: light dark; --bg:#fff; --fg:#1a202c; --muted:#5a6473; --line:#e2e8f0; --pass:#1f7a3a;
        --fail:#b42318; --ne:#8a6d00; --accent:#017cee; }
@media (prefers-color-scheme: dark) { :root { --bg:#101418; --fg:#e6e9ee; --muted:#9aa4b2; --line:#2a313b;
        --pass:#58c27d; --fail:#f97066; --ne:#e0b400; --accent:#4aa3ff; } }
body { font: 14px/1.45 system-ui, sans-serif; background: var(--bg); color: var(--fg); margin: 16px; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: 6px 8px;
        border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; } .pass { color: var(--pass); } .fail { color: var(--fail); }
.not_evaluated { color: var(--ne); } code { font-size: 12px; } .muted { color: var(--muted); }
textarea { width: 100%; min-height: 3em; background: var(--bg); color: var(--fg); border: 1px solid var(--line); }
button { margin: 4px 4px 0 0; padding: 4px 10px; border: 1px solid var(--accent); background: transparent;
         color: var(--accent); border-radius: 4px; cursor: pointer; } #msg { margin: 8px 0; }
"""

SCRIPT = """
async function decide(id, decision, hash) {
  const comment = document.getElementById('c-' + id).value;
  const r = await fetch('api/approvals/' + encodeURIComponent(id) + '/decisions', {
    method: 'POST', credentials: 'same-origin',
    headers: {'Content-Type': 'application/json', 'X-Requested-With': 'airgate'},
    body: JSON.stringify({decision: decision, comment: comment, evidence_hash: hash})});
  const body = await r.json();
  document.getElementById('msg').textContent = r.ok ? ('Request ' + id + ': ' + body.status)
                                                    : ('Refused: ' + (body.detail || r.status));
  if (r.ok) setTimeout(() => location.reload(), 800);
}
"""


def _gates(gates: dict[str, str]) -> str:
    return "<br>".join(f'<span class="{escape(s)}">{escape(n)}: {escape(s)}</span>' for n, s in gates.items())


def approvals_page(rows: list[dict[str, Any]], username: str) -> str:
    body = []
    for r in rows:
        rid = escape(str(r["id"]))
        auc = r.get("metrics", {}).get("test_auc")
        action = ""
        if r["status"] == "pending":
            action = (f'<textarea id="c-{rid}" placeholder="Comment (required)"></textarea>'
                      f'<button onclick="decide(\'{rid}\', \'approve\', \'{escape(r["evidence_hash"])}\')">Approve</button>'
                      f'<button onclick="decide(\'{rid}\', \'reject\', \'{escape(r["evidence_hash"])}\')">Reject</button>')
        body.append(
            f"<tr><td><code>{rid}</code></td><td>{escape(str(r['model']))}</td>"
            f"<td>v{escape(str(r['model_version']))}</td><td>{escape(str(r['status']))}</td>"
            f"<td>{_gates(r.get('gates', {}))}</td>"
            f"<td>{'' if auc is None else f'{float(auc):.4f}'}</td>"
            f"<td>{escape(str(r['requested_by']))}</td><td class=muted>{escape(str(r['created_at']))[:19]}</td>"
            f"<td><code title=\"{escape(r['evidence_hash'])}\">{escape(r['evidence_hash'][:12])}</code></td>"
            f"<td>{action}</td></tr>")
    rows_html = "".join(body) or '<tr><td colspan="10" class="muted">No approval requests yet.</td></tr>'
    return (f"<!doctype html><html><head><meta charset=utf-8><title>airgate approvals</title>"
            f"<style>{STYLE}</style></head><body><h2>Approval requests</h2>"
            f"<p class=muted>Signed in as <b>{escape(username)}</b>. Decisions are checked on the server: "
            f"approver rights, separation of duties, quorum, expiry and unchanged evidence.</p><div id=msg></div>"
            f"<table><thead><tr><th>Request</th><th>Model</th><th>Version</th><th>Status</th><th>Gates</th>"
            f"<th>Test AUC</th><th>Trained by</th><th>Opened</th><th>Evidence</th><th>Decide</th></tr></thead>"
            f"<tbody>{rows_html}</tbody></table><script>{SCRIPT}</script></body></html>")
