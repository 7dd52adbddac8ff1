/* Lineage of one node (?node=<kind>:<key>): everything upstream of it back to the source files, grouped by kind in
   the order data flows, then the node, then its direct downstream. Every node links to its own lineage page, so
   one can walk both ways a click at a time. The "as of" form answers, for a time T, which approved version was
   champion and which version had produced a given partition by then. */
(function () {
  'use strict';
  const {el} = AG;
  const out = AG.byId('lineage');
  const msg = AG.byId('lineage-message');
  const searchForm = AG.byId('lineage-search-form');
  const asofForm = AG.byId('asof-form');
  const asofOut = AG.byId('asof-result');

  const KINDS = ['file', 'batch', 'dataset', 'training_run', 'model_version', 'approval', 'scoring_run', 'prediction'];
  const FLOW = ['file', 'batch', 'dataset:raw', 'dataset:clean', 'dataset:labeled', 'dataset', 'training_run',
                'model_version', 'approval', 'scoring_run', 'prediction'];
  const TITLES = {file: 'Files', batch: 'Batches', 'dataset:raw': 'Raw datasets', 'dataset:clean': 'Clean datasets',
                  'dataset:labeled': 'Labeled datasets', dataset: 'Datasets', training_run: 'Training runs',
                  model_version: 'Model versions', approval: 'Approvals', scoring_run: 'Scoring runs',
                  prediction: 'Predictions'};
  const SINGULAR = {file: 'File', batch: 'Batch', 'dataset:raw': 'Raw dataset', 'dataset:clean': 'Clean dataset',
                    'dataset:labeled': 'Labeled dataset', dataset: 'Dataset', training_run: 'Training run',
                    model_version: 'Model version', approval: 'Approval', scoring_run: 'Scoring run',
                    prediction: 'Prediction'};
  const FOLD_AFTER = 12;

  const params = new URLSearchParams(location.search);
  const focusRef = (params.get('node') || '').trim();

  function group(n) {
    if (n.kind === 'dataset' && n.attrs && ['raw', 'clean', 'labeled'].includes(n.attrs.kind)) return 'dataset:' + n.attrs.kind;
    return n.kind;
  }

  /** The few attributes that tell nodes of one kind apart at a glance. */
  function keyAttrs(n) {
    const a = n.attrs || {};
    if (a.missing) return ['missing: ' + a.missing];
    switch (n.kind) {
      case 'file': return [a.status, typeof a.size_bytes === 'number' ? AG.num(Math.round(a.size_bytes / 1024)) + ' KB' : null];
      case 'batch': return [AG.num(a.files) + ' file' + (a.files === 1 ? '' : 's')];
      case 'dataset': return [a.kind, typeof a.rows === 'number' ? AG.num(a.rows) + ' rows' : null];
      case 'training_run': return ['by ' + (a.trained_by || '?'), a.chosen, a.test_auc != null ? 'test AUC ' + AG.num(a.test_auc) : null, a.status];
      case 'model_version': return [a.champion ? 'champion' : null, a.approval_status, a.kind];
      case 'approval': return [a.status, (a.approvers || []).length ? 'approved by ' + a.approvers.join(', ')
        : 'no approvals', a.quorum ? 'quorum ' + a.quorum : null];
      case 'scoring_run': return [a.partition_key, a.model_version ? 'v' + a.model_version : null,
                                  typeof a.rows_scored === 'number' ? AG.num(a.rows_scored) + ' rows' : null, a.status];
      case 'prediction': return [typeof a.score === 'number' ? 'score ' + AG.num(a.score) : null,
                                 a.student_id ? 'student ' + a.student_id : null, a.item_id ? 'item ' + a.item_id : null];
      default: return [];
    }
  }

  function nodeLink(n, extra) {
    const attrs = keyAttrs(n).filter(function (x) { return x !== null && x !== undefined && x !== ''; });
    const cls = 'node' + (n.ref === focusRef || extra.focus ? ' focus' : '') + (n.attrs && n.attrs.missing ? ' missing' : '');
    return el('a', {href: AG.lineageUrl(n.ref), class: cls, testid: 'lineage-node', title: n.ref,
                    data: {ref: n.ref, kind: n.kind}}, [
      el('span', {class: 'label', text: n.label || n.ref}),
      attrs.length ? el('span', {class: 'attrs', text: attrs.join(' · ')}) : null,
      n.at ? el('span', {class: 'attrs', text: AG.fmtTime(n.at) + ' UTC'}) : null,
      extra.relation ? el('span', {class: 'rel', text: extra.relation}) : null,
    ]);
  }

  function groups(nodes, extraOf) {
    const by = {};
    nodes.forEach(function (n) { (by[group(n)] = by[group(n)] || []).push(n); });
    const keys = FLOW.filter(function (k) { return by[k]; })
      .concat(Object.keys(by).filter(function (k) { return !FLOW.includes(k); }));
    return keys.map(function (k) {
      const list = by[k].slice().sort(function (a, b) {
        return String(a.at || '').localeCompare(String(b.at || '')) || String(a.ref).localeCompare(String(b.ref));
      });
      const links = list.map(function (n) { return nodeLink(n, extraOf(n)); });
      const shown = links.slice(0, FOLD_AFTER);
      const rest = links.slice(FOLD_AFTER);
      return el('div', {class: 'group', data: {group: k}}, [
        el('div', {class: 'kind', text: (TITLES[k] || k) + (list.length > 1 ? ' (' + list.length + ')' : '')}),
        el('div', {class: 'nodes'}, [shown, rest.length
          ? el('details', null, [el('summary', {text: rest.length + ' more'}), el('div', {class: 'nodes'}, rest)])
          : null]),
      ]);
    });
  }

  function attrValue(v) {
    if (v === null || v === undefined || v === '') return '—';
    if (Array.isArray(v) && v.every(function (x) { return typeof x !== 'object' || x === null; })) {
      return v.length ? v.join(', ') : 'none';
    }
    if (typeof v === 'object') return el('code', {class: 'wrap', text: AG.compact(v)});
    if (typeof v === 'boolean') return v ? 'yes' : 'no';
    return typeof v === 'number' ? AG.num(v) : String(v);
  }

  function focusCard(n, g) {
    const a = n.attrs || {};
    const pairs = [['Ref', el('code', {class: 'wrap', text: n.ref})], ['Kind', n.kind + (a.kind && n.kind === 'dataset' ? ' (' + a.kind + ')' : '')],
                   ['Time', AG.timeEl(n.at)]];
    Object.keys(a).filter(function (k) { return !['decisions', 'ledger', 'downstream_total'].includes(k); })
      .forEach(function (k) { pairs.push([k, attrValue(a[k])]); });
    const extra = [];
    if (n.kind === 'approval') {
      extra.push(AG.link(AG.pageUrl('/approvals/' + AG.seg(n.ref.slice('approval:'.length))), 'open the evidence'));
      if ((a.decisions || []).length) {
        extra.push(el('h3', {text: 'Decisions'}));
        extra.push(AG.table(['When (UTC)', 'Who', 'Decision', 'Comment'], a.decisions.map(function (d) {
          return el('tr', null, [el('td', null, AG.timeEl(d.at)), el('td', {text: d.actor}), el('td', null, AG.badge(d.decision)),
                                 el('td', {class: 'pre', text: d.comment || ''})]);
        })));
      }
      if ((a.ledger || []).length) {
        extra.push(el('h3', {text: 'Promotion ledger'}));
        extra.push(AG.table(['#', 'When (UTC)', 'Action', 'From → to', 'Who', 'Reason'], a.ledger.map(function (e) {
          return el('tr', null, [el('td', {text: String(e.id)}), el('td', null, AG.timeEl(e.at)), el('td', null, AG.badge(e.action)),
                                 el('td', {text: (e.from_version || '—') + ' → ' + (e.to_version || '—')}),
                                 el('td', {text: e.actor}), el('td', {class: 'pre', text: e.reason || ''})]);
        })));
      }
    }
    if (n.kind === 'model_version' && a.model) {
      extra.push(AG.link(AG.pageUrl('/models/' + AG.seg(a.model)), 'model page and ledger'));
    }
    if (g.truncated) extra.push(el('p', {class: 'notice', text: 'The upstream graph was cut at its size limit.'}));
    return el('section', {class: 'card', testid: 'lineage-focus', data: {ref: n.ref, kind: n.kind}}, [
      el('h2', {text: (SINGULAR[group(n)] || n.kind) + ': ' + (n.label || n.ref)}),
      AG.kv(pairs), extra]);
  }

  function render(g) {
    const nodes = {};
    (g.nodes || []).forEach(function (n) { nodes[n.ref] = n; });
    const focus = nodes[g.focus];
    if (!focus) { AG.failure(out, new Error('The API returned no focus node.')); return; }
    const parents = {};
    const downRel = {};
    (g.edges || []).forEach(function (e) {
      (parents[e.target] = parents[e.target] || []).push(e.source);
      if (e.source === g.focus) downRel[e.target] = e.relation;
    });
    const up = new Set();
    const todo = [g.focus];
    while (todo.length) {
      (parents[todo.pop()] || []).forEach(function (p) {
        if (!up.has(p) && p !== g.focus) { up.add(p); todo.push(p); }
      });
    }
    const upNodes = Array.from(up).map(function (r) { return nodes[r]; }).filter(Boolean);
    const downNodes = Object.keys(downRel).filter(function (r) { return !up.has(r); })
      .map(function (r) { return nodes[r]; }).filter(Boolean);
    const total = (focus.attrs || {}).downstream_total;
    AG.put(out, [
      focusCard(focus, g),
      el('section', {class: 'card'}, [
        el('h2', {text: 'Upstream (' + upNodes.length + ')'}),
        upNodes.length ? el('div', {class: 'flow'}, groups(upNodes, function () { return {}; }))
          : el('p', {class: 'muted', text: 'Nothing upstream: this is where the data enters.'}),
        el('div', {class: 'arrow', text: '↓'}),
        el('div', {class: 'flow'}, groups([focus], function () { return {focus: true}; })),
        el('div', {class: 'arrow', text: '↓'}),
        el('h2', {text: 'Downstream (' + downNodes.length +
                        (typeof total === 'number' && total > downNodes.length ? ' of ' + AG.num(total) : '') + ')'}),
        downNodes.length
          ? el('div', {class: 'flow'}, groups(downNodes, function (n) { return {relation: downRel[n.ref]}; }))
          : el('p', {class: 'muted', text: 'Nothing downstream yet.'}),
      ]),
    ]);
    prefillAsOf(focus);
  }

  /** A pasted ref, or a shorthand: model/partition/event (a prediction), model/version, or a bare id. */
  function toRef(text) {
    const v = text.trim();
    const colon = v.indexOf(':');
    if (colon > 0 && KINDS.includes(v.slice(0, colon))) return v;
    const slashes = (v.match(/\//g) || []).length;
    if (slashes === 2) return 'prediction:' + v;
    if (slashes === 1) return 'model_version:' + v;
    if (/^apr-/.test(v)) return 'approval:' + v;
    if (/^tr-/.test(v)) return 'training_run:' + v;
    if (/^(raw|clean|labeled)-/.test(v)) return 'dataset:' + v;
    return null;
  }

  searchForm.addEventListener('submit', function (ev) {
    ev.preventDefault();
    const text = String(searchForm.elements.namedItem('node').value || '');
    const ref = toRef(text);
    if (!ref) {
      AG.say(msg, 'Not a lineage ref: write <kind>:<key> (kinds: ' + KINDS.join(', ') +
             '), or model/partition/event for a prediction.', 'error');
      return;
    }
    location.assign(AG.lineageUrl(ref));
  });

  function prefillAsOf(focus) {
    const a = focus.attrs || {};
    const model = asofForm.elements.namedItem('model');
    const partition = asofForm.elements.namedItem('partition_key');
    if (!model.value && a.model) model.value = a.model;
    if (!partition.value && a.partition_key) partition.value = a.partition_key;
  }

  function asofResult(r) {
    const parts = [el('p', null, ['As of ', AG.timeEl(r.at), ' UTC, for ', el('b', {text: r.model}), ':'])];
    const c = r.champion;
    parts.push(el('p', {testid: 'asof-champion'}, c
      ? ['Champion by the ledger: ', AG.lineageLink('model_version:' + r.model + '/' + c.version, 'v' + c.version),
         ' (', AG.badge(c.action), ' since ', AG.timeEl(c.since), c.approval_id ? [', approval ',
         AG.lineageLink('approval:' + c.approval_id, c.approval_id)] : null, ', ledger #' + c.ledger_id + ').']
      : 'No champion: nothing had been promoted by then, or the champion had been revoked.'));
    if (r.partition_key) {
      const s = r.scoring_run;
      parts.push(el('p', {testid: 'asof-scoring'}, s
        ? ['Partition ', el('b', {text: r.partition_key}), ' had been produced by ',
           AG.lineageLink('model_version:' + r.model + '/' + s.model_version, 'v' + s.model_version), ' in scoring run ',
           AG.lineageLink('scoring_run:' + s.run_id, s.run_id), ' (finished ', AG.timeEl(s.finished_at), ', ',
           AG.num(s.rows_scored), ' rows), authorised by approval ', AG.lineageLink('approval:' + s.approval_id, s.approval_id),
           (s.approvers || []).length ? ' approved by ' + s.approvers.join(', ') : '', '.']
        : ['No succeeded scoring run of partition ', el('b', {text: r.partition_key}), ' had finished by then.']));
    }
    return parts;
  }

  async function asOf() {
    const f = asofForm.elements;
    const model = String(f.namedItem('model').value || '').trim();
    const partition = String(f.namedItem('partition_key').value || '').trim();
    const at = String(f.namedItem('at').value || '').trim();
    if (!model || !at) { AG.put(asofOut, el('p', {class: 'msg error', text: 'Model and time are required.'})); return; }
    const q = new URLSearchParams(location.search);
    q.set('asof_model', model);
    q.set('asof_at', at);
    if (partition) q.set('asof_partition', partition); else q.delete('asof_partition');
    history.replaceState(null, '', location.pathname + '?' + q.toString());
    AG.put(asofOut, el('p', {class: 'muted', text: 'Looking up…'}));
    try {
      const r = await AG.getJSON('/lineage/as-of', {model: model, partition_key: partition, at: AG.localInputToIso(at)});
      AG.put(asofOut, asofResult(r));
    } catch (err) {
      AG.failure(asofOut, err);
    }
  }

  asofForm.addEventListener('submit', function (ev) { ev.preventDefault(); asOf(); });

  (async function init() {
    searchForm.elements.namedItem('node').value = focusRef;
    const f = asofForm.elements;
    f.namedItem('model').value = params.get('asof_model') || '';
    f.namedItem('partition_key').value = params.get('asof_partition') || '';
    f.namedItem('at').value = params.get('asof_at') || '';
    if (params.get('asof_model') && params.get('asof_at')) asOf();
    AG.getJSON('/models').then(function (ms) {
      const list = AG.byId('asof-models');
      (ms || []).forEach(function (m) { list.appendChild(el('option', {value: m.model})); });
    }).catch(function () { /* free text still works */ });
    if (!focusRef) {
      AG.put(out, el('p', {class: 'muted', text: 'Paste a ref above, or open lineage from an approval, a model ' +
                                                  'version or an audit event.'}));
      return;
    }
    AG.put(out, el('p', {class: 'muted', text: 'Loading…'}));
    try {
      render(await AG.getJSON('/lineage', {node: focusRef}));
    } catch (err) {
      AG.failure(out, err);
    }
  })();
})();
