/* Models and their champions according to the promotion ledger (the source of truth, not the MLflow alias). */
(function () {
  'use strict';
  const {el} = AG;
  const out = AG.byId('models');

  function row(m) {
    const c = m.champion;
    const href = AG.pageUrl('/models/' + AG.seg(m.model));
    return el('tr', {testid: 'model-row', data: {model: m.model}}, [
      el('td', null, AG.link(href, m.model, {testid: 'open-model'})),
      el('td', {text: m.owner || '—'}),
      el('td', {class: 'nowrap'}, c ? AG.lineageLink('model_version:' + m.model + '/' + c.version, 'v' + c.version)
                                    : el('span', {class: 'muted', text: 'none'})),
      el('td', null, c ? AG.timeEl(c.since || c.at) : '—'),
      el('td', null, c ? AG.badge(c.action) : '—'),
      el('td', null, c && c.approval_id
        ? AG.link(AG.pageUrl('/approvals/' + AG.seg(c.approval_id)), c.approval_id, {class: 'mono'}) : '—'),
      el('td', {class: 'num'}, m.pending
        ? AG.link(AG.pageUrl('/approvals', {model: m.model}), String(m.pending)) : '0'),
      el('td', {class: 'num', text: AG.num(m.versions)}),
    ]);
  }

  (async function load() {
    try {
      const models = await AG.getJSON('/models');
      AG.put(out, AG.table(['Model', 'Owner', 'Champion', 'Since (UTC)', 'By', 'Approval',
                            {text: 'Pending', class: 'num'}, {text: 'Versions', class: 'num'}],
                           models.length ? models.map(row) : [AG.emptyRow(8, 'No model specs found.')],
                           {testid: 'models-table'}));
    } catch (err) {
      AG.failure(out, err);
    }
  })();
})();
