/* Approvals queue: the filters live in the URL (?status=&model=) so a view can be shared; each row opens the
   evidence page of its request. */
(function () {
  'use strict';
  const {el} = AG;
  const statusSel = AG.byId('status-filter');
  const modelSel = AG.byId('model-filter');
  const out = AG.byId('approvals');
  const LIMIT = 200;

  const params = new URLSearchParams(location.search);
  statusSel.value = params.get('status') || 'pending';
  if (!statusSel.value) statusSel.value = 'pending';
  const wantedModel = params.get('model') || '';

  function addModelOption(name) {
    if (!name || Array.from(modelSel.options).some(function (o) { return o.value === name; })) return;
    modelSel.appendChild(el('option', {value: name, text: name}));
  }

  function row(r) {
    const href = AG.pageUrl('/approvals/' + AG.seg(r.id));
    const gates = Object.entries(r.gates || {}).map(function ([n, s]) { return AG.gateChip(n, s); });
    const auc = (r.metrics || {}).test_auc;
    return el('tr', {testid: 'approval-row', data: {'request-id': r.id, status: r.status}}, [
      el('td', null, AG.link(href, r.id, {testid: 'open-request', class: 'mono'})),
      el('td', {text: r.model}),
      el('td', {class: 'nowrap', text: 'v' + r.model_version}),
      el('td', null, AG.badge(r.status)),
      el('td', null, el('div', {class: 'gates'}, gates.length ? gates : el('span', {class: 'muted', text: 'none'}))),
      el('td', {class: 'num', text: AG.num(auc)}),
      el('td', {text: r.requested_by}),
      el('td', {class: 'num nowrap', text: (r.approvals || 0) + ' / ' + (r.quorum || 1)}),
      el('td', null, AG.timeEl(r.created_at)),
      el('td', null, AG.timeEl(r.expires_at)),
    ]);
  }

  async function load() {
    const status = statusSel.value;
    AG.put(out, el('p', {class: 'muted', text: 'Loading…'}));
    try {
      const rows = await AG.getJSON('/approvals', {status: status === 'all' ? '' : status, model: modelSel.value,
                                                   limit: LIMIT});
      const body = rows.length ? rows.map(row)
        : [AG.emptyRow(10, status === 'pending' ? 'Nothing waits for a decision.' : 'No approval requests match.')];
      AG.put(out, [
        AG.table(['Request', 'Model', 'Version', 'Status', 'Gates', {text: 'Test AUC', class: 'num'}, 'Trained by',
                  {text: 'Approvals', class: 'num'}, 'Opened (UTC)', 'Expires (UTC)'], body,
                 {testid: 'approvals-table'}),
        rows.length >= LIMIT ? el('p', {class: 'muted small', text: 'Showing the newest ' + LIMIT + '.'}) : null,
      ]);
    } catch (err) {
      AG.failure(out, err);
    }
  }

  function onChange() {
    const q = AG.query({status: statusSel.value === 'pending' ? '' : statusSel.value, model: modelSel.value});
    history.replaceState(null, '', location.pathname + q);
    load();
  }

  statusSel.addEventListener('change', onChange);
  modelSel.addEventListener('change', onChange);

  (async function init() {
    addModelOption(wantedModel);
    modelSel.value = wantedModel;
    load();
    try {
      (await AG.getJSON('/models')).forEach(function (m) { addModelOption(m.model); });
      modelSel.value = wantedModel;
    } catch (err) { /* the queue works without the model list */ }
  })();
})();
