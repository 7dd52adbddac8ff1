/* One model: its champion, the promotion ledger, the versions that asked for approval, and the governed writes:
   propose a rollback to an earlier approved version, confirm another approver's proposal (four eyes: it takes
   effect only then), or revoke the champion (break-glass). The buttons appear only where the API says this user
   may act, and where it says they may not confirm, the page shows the API's reason (the server's own rule); the
   server checks every rule again and its refusal is shown verbatim. */
(function () {
  'use strict';
  const {el} = AG;
  const model = AG.ctx.model;
  const out = AG.byId('model-champion');
  const versionsOut = AG.byId('model-versions');
  const ledgerOut = AG.byId('model-ledger');
  const rollbacksOut = AG.byId('model-rollbacks');
  const actions = AG.byId('model-actions');
  const justification = AG.byId('justification');
  const msg = AG.byId('model-message');

  function approvalLink(id) {
    return id ? AG.link(AG.pageUrl('/approvals/' + AG.seg(id)), id, {class: 'mono'}) : '—';
  }
  function versionLink(v) {
    return v === null || v === undefined ? el('span', {class: 'muted', text: 'none'})
      : AG.lineageLink('model_version:' + model + '/' + v, 'v' + v);
  }

  function needJustification() {
    const text = justification.value.trim();
    if (!text) {
      AG.say(msg, 'A justification is required: say why.', 'error');
      justification.focus();
      return null;
    }
    return text;
  }

  async function act(path, payload, done) {
    const buttons = Array.from(document.querySelectorAll('button[data-action]'));
    buttons.forEach(function (b) { b.disabled = true; });
    AG.say(msg, 'Sending…', 'info');
    const r = await AG.postJSON('/models/' + AG.seg(model) + path, payload);
    if (!r.ok) {
      AG.say(msg, 'Refused: ' + r.message, 'error');
      buttons.forEach(function (b) { b.disabled = false; });
      return;
    }
    justification.value = '';
    AG.say(msg, done(r.body || {}), 'ok');
    await load();
  }

  function rollback(version) {
    const text = needJustification();
    if (text === null) return;
    act('/rollback', {to_version: String(version), justification: text}, function (b) {
      return 'Proposed rolling back to v' + b.to_version + ': nothing changes until ' + b.quorum +
             ' other approver(s) confirm (not you, the owner or a trainer of either version).';
    });
  }

  function confirmRollback(p) {
    act('/rollbacks/' + AG.seg(p.id) + '/confirm', {comment: justification.value.trim()}, function (b) {
      return b.status === 'confirmed'
        ? 'Rolled back: v' + b.to_version + ' is champion again (was ' +
          (b.from_version === null ? 'none' : 'v' + b.from_version) + ').'
        : 'Confirmed (' + b.confirmations + ' of ' + b.quorum + '): waiting for another approver.';
    });
  }

  function proposalRow(p) {
    const cell = el('td', {class: 'nowrap'});
    if (p.can_confirm) {
      const b = el('button', {type: 'button', class: 'primary', testid: 'confirm-button',
                              data: {action: 'confirm', proposal: p.id}, text: 'Confirm rollback'});
      b.addEventListener('click', function () { confirmRollback(p); });
      cell.appendChild(b);
    } else {
      cell.appendChild(el('span', {class: 'muted small', testid: 'confirm-refusal', text: p.cannot_confirm || ''}));
    }
    return el('tr', {testid: 'rollback-proposal', data: {proposal: p.id, status: p.status}}, [
      el('td', {class: 'mono small', text: p.id}),
      el('td', {class: 'nowrap'}, [versionLink(p.from_version), ' → ', versionLink(p.to_version)]),
      el('td', {text: p.proposed_by}),
      el('td', {class: 'pre', text: p.justification}),
      el('td', {class: 'num', text: p.confirmations + ' / ' + p.quorum}),
      el('td', null, AG.timeEl(p.expires_at)),
      cell,
    ]);
  }

  function renderRollbacks(m) {
    const rows = (m.rollbacks || []).map(proposalRow);
    if (!rows.length) {
      AG.clear(rollbacksOut);
      return;
    }
    AG.put(rollbacksOut, el('section', {class: 'card'}, [
      el('h2', {text: 'Rollback proposals'}),
      el('p', {class: 'muted small', text: 'A rollback takes effect when another approver confirms it: not its ' +
               'proposer, the owner, or a trainer of either version. It lapses at its expiry, or when the ' +
               'champion changes first.'}),
      AG.table(['Proposal', 'From → to', 'Proposed by', 'Justification', 'Confirmations', 'Expires (UTC)', ''],
               rows, {testid: 'rollbacks-table'})]));
  }

  function revoke(version) {
    const text = needJustification();
    if (text === null) return;
    if (!window.confirm('Revoke v' + version + ' of ' + model + '? Nightly scoring stops until another version ' +
                        'is approved or rolled back to.')) {
      AG.say(msg, 'Revocation cancelled.', 'info');
      return;
    }
    act('/revoke', {version: String(version), justification: text}, function (b) {
      return 'Revoked v' + b.from_version + ': ' + model + ' has no champion; scoring refuses until one is approved.';
    });
  }

  function render(m) {
    const you = m.you || {};
    const c = m.champion;
    const champion = el('section', {class: 'card'}, [
      el('h2', {text: 'Champion'}),
      AG.kv([
        ['Champion', el('span', {testid: 'champion-version', data: {version: c ? c.version : ''}},
                        c ? 'v' + c.version : 'none')],
        c ? ['Since', AG.timeEl(c.since || c.at)] : null,
        c ? ['By', AG.badge(c.action)] : null,
        c ? ['Approval', approvalLink(c.approval_id)] : null,
        ['Owner', m.owner],
        ['Your rights', (you.can_rollback ? 'propose or confirm a rollback' : 'no rollback') + ' · ' +
                        (you.can_revoke ? 'break-glass revoke' : 'no revoke')],
      ]),
    ]);

    const versions = (m.versions || []).map(function (v) {
      const cell = el('td', {class: 'nowrap'});
      if (v.can_roll_back_to && you.can_rollback) {
        const b = el('button', {type: 'button', testid: 'rollback-button', data: {action: 'rollback', version: v.version},
                                text: 'Propose rollback to v' + v.version});
        b.addEventListener('click', function () { rollback(v.version); });
        cell.appendChild(b);
      }
      if (v.champion && you.can_revoke) {
        const b = el('button', {type: 'button', class: 'danger', testid: 'revoke-button',
                                data: {action: 'revoke', version: v.version}, text: 'Revoke (break-glass)'});
        b.addEventListener('click', function () { revoke(v.version); });
        cell.appendChild(b);
      }
      return el('tr', {testid: 'version-row', data: {version: v.version}, class: v.champion ? 'highlight' : null}, [
        el('td', {class: 'nowrap'}, versionLink(v.version)),
        el('td', null, [AG.badge(v.status), v.champion ? [' ', AG.badge('champion', 'champion')] : null,
                        v.revoked ? [' ', AG.badge('revoked')] : null]),
        el('td', null, approvalLink(v.approval_id)),
        el('td', null, v.training_run_id ? AG.lineageLink('training_run:' + v.training_run_id, v.training_run_id,
                                                          {class: 'mono small'}) : '—'),
        el('td', null, AG.timeEl(v.requested_at)),
        el('td', null, AG.timeEl(v.approved_at)),
        cell,
      ]);
    });

    const ledger = (m.ledger || []).slice().reverse().map(function (e) {
      return el('tr', {testid: 'ledger-row', data: {action: e.action, id: e.id}}, [
        el('td', {class: 'num', text: AG.num(e.id)}),
        el('td', null, AG.timeEl(e.at)),
        el('td', null, AG.badge(e.action)),
        el('td', {class: 'nowrap'}, [versionLink(e.from_version), ' → ', versionLink(e.to_version)]),
        el('td', null, approvalLink(e.approval_id)),
        el('td', {text: e.actor}),
        el('td', {class: 'pre', text: e.reason || ''}),
      ]);
    });

    AG.put(out, champion);
    renderRollbacks(m);
    AG.put(versionsOut, el('section', {class: 'card'}, [
      el('h2', {text: 'Versions'}),
      AG.table(['Version', 'Status', 'Approval', 'Training run', 'Requested (UTC)', 'Approved (UTC)', ''],
               versions.length ? versions : [AG.emptyRow(7, 'No version has asked for approval yet.')],
               {testid: 'versions-table'})]));
    AG.put(ledgerOut, el('section', {class: 'card'}, [
      el('h2', {text: 'Promotion ledger'}),
      el('p', {class: 'muted small', text: 'Newest first. Every promotion, rollback and revocation, with who and why.'}),
      AG.table([{text: '#', class: 'num'}, 'When (UTC)', 'Action', 'From → to', 'Approval', 'Who', 'Reason'],
               ledger.length ? ledger : [AG.emptyRow(7, 'Nothing promoted yet.')], {testid: 'ledger-table'})]));
    actions.hidden = !(you.can_rollback || you.can_revoke);
  }

  async function load() {
    try {
      render(await AG.getJSON('/models/' + AG.seg(model)));
    } catch (err) {
      AG.failure(out, err);
      AG.clear(versionsOut);
      AG.clear(ledgerOut);
      AG.clear(rollbacksOut);
      actions.hidden = true;
    }
  }

  load();
})();
