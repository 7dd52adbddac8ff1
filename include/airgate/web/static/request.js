/* One approval request: the evidence bundle an approver decides on, and the decision form when the API says this
   user may decide. The decision carries the evidence hash this page loaded, so the server refuses it if the
   evidence changed in between (409 evidence_changed). */
(function () {
  'use strict';
  const {el} = AG;
  const requestId = AG.ctx.request_id;
  const out = AG.byId('request');
  const decideBody = AG.byId('decide-body');
  const msg = AG.byId('decision-message');
  let loadedHash = null;

  const METRIC_ORDER = ['test_auc', 'valid_auc', 'test_logloss', 'valid_logloss', 'test_brier', 'valid_brier',
                        'test_ece', 'valid_ece', 'p95_latency_ms_per_1k', 'valid_p95_latency_ms_per_1k',
                        'model_size_kb', 'valid_model_size_kb', 'repro_max_abs_diff', 'train_seconds', 'n_trials'];

  function section(title, testid, children) {
    return el('section', {class: 'card', testid: testid}, [el('h2', {text: title}), children]);
  }

  function valueCell(v) {
    if (v !== null && typeof v === 'object') return el('td', null, el('code', {text: AG.compact(v)}));
    return el('td', {class: 'num', text: AG.num(v)});
  }

  /** Long id lists (every raw batch of a labeled version) fold after the first few. */
  function idList(ids, kind) {
    const links = (ids || []).map(function (id) { return el('li', null, AG.lineageLink(kind + ':' + id, id, {class: 'mono'})); });
    if (!links.length) return el('span', {class: 'muted', text: 'none'});
    if (links.length <= 8) return el('ul', {class: 'plain'}, links);
    return el('div', null, [el('ul', {class: 'plain'}, links.slice(0, 5)),
                            el('details', null, [el('summary', {text: (links.length - 5) + ' more'}),
                                                 el('ul', {class: 'plain'}, links.slice(5))])]);
  }

  // Who started the training run, from its identity record (the dag run's authenticated user): a run nobody
  // triggered by hand (the scheduler, an asset event, dag.test) is answered for by the spec's owner.
  function triggeredBy(ident) {
    if (!ident) return el('span', {class: 'muted', text: 'no identity record'});
    const run = ' (' + ident.run_type + ' run ' + ident.airflow_run_id + ')';
    if (ident.triggered_by) return el('span', {testid: 'triggered-by', text: ident.triggered_by + run});
    return el('span', {testid: 'triggered-by', text: 'nobody: owner ' + ident.owner + ' answers for it' + run});
  }

  // The role quorum still missing (approval.required_roles): role -> approvers holding it still needed.
  function missingRoles(missing) {
    const names = Object.keys(missing || {});
    if (!names.length) return null;
    return el('span', {class: 'muted', testid: 'missing-roles',
      text: ' still needs ' + names.map(function (r) { return missing[r] + ' ' + r; }).join(', ')});
  }

  function summary(req) {
    const ev = req.evidence || {};
    const approvals = (req.decisions || []).filter(function (d) { return d.decision === 'approve'; }).length;
    const quorum = req.quorum || 1;
    const status = el('span', {testid: 'request-status', data: {status: req.status}}, [
      AG.badge(req.status), ' ',
      el('span', {class: 'muted', text: approvals + ' of ' + quorum + ' approval' + (quorum === 1 ? '' : 's')}), ' ',
      el('progress', {max: quorum, value: Math.min(approvals, quorum), title: approvals + ' / ' + quorum}),
      missingRoles((req.quorum_status || {}).missing_roles)]);
    const links = (req.context || {}).links || {};
    return el('section', {class: 'card'}, [
      ev.approvable === false
        ? el('p', {class: 'notice error', text: 'A blocking gate did not pass: this version cannot be approved.'})
        : null,
      AG.kv([
        ['Status', status],
        ['Model', [req.model, ' ', AG.lineageLink('model_version:' + req.model + '/' + req.model_version,
                                                 'v' + req.model_version)]],
        ['Candidate', ev.candidate ? ev.candidate + (ev.kind && ev.kind !== ev.candidate ? ' (' + ev.kind + ')' : '') : null],
        ['Triggered by', triggeredBy(req.identity)],
        ['Trained by', ev.trained_by || req.requested_by],
        ['Requested by', req.requested_by],
        ['Owner', req.owner],
        ['Opened', AG.timeEl(req.created_at)],
        ['Expires', AG.timeEl(req.expires_at)],
        req.decided_at ? ['Decided', AG.timeEl(req.decided_at)] : null,
        ['Evidence hash', el('code', {class: 'wrap', testid: 'evidence-hash', text: req.evidence_hash})],
        ['Reports', [
          links.gate_report ? AG.link(links.gate_report, 'full gate report') : null,
          links.gate_report ? ' · ' : null,
          AG.link(links.lineage || AG.lineageUrl('model_version:' + req.model + '/' + req.model_version),
                  'lineage of this model version', {testid: 'lineage-link'}),
          (req.you || {}).can_decide ? [' · ', AG.link('#decide', 'decide ↓')] : null]],
      ]),
    ]);
  }

  function gatesSection(ev) {
    const rows = (ev.gates || []).map(function (g) {
      const value = g.value !== undefined ? g.value : g.observed;
      return el('tr', {data: {gate: g.name, state: g.state}}, [
        el('td', {class: 'nowrap', text: g.name}),
        el('td', null, AG.badge(g.state)),
        valueCell(value),
        valueCell(g.threshold),
        el('td', {text: g.blocking === false ? 'no (evidence)' : 'yes'}),
        el('td', {class: 'wrap', text: g.detail || ''}),
      ]);
    });
    return section('Gates', 'evidence-gates',
                   AG.table(['Gate', 'State', {text: 'Observed', class: 'num'}, {text: 'Threshold', class: 'num'},
                             'Blocking', 'Detail'], rows.length ? rows : [AG.emptyRow(6, 'No gates recorded.')]));
  }

  function metricsSection(ev) {
    const cands = ev.metrics || {};
    const chosen = ev.candidate;
    const cols = [];
    if (chosen && cands[chosen]) cols.push({title: chosen + ' (chosen)', values: cands[chosen], chosen: true});
    const champ = ev.champion || {};
    if (champ.version !== null && champ.version !== undefined) {
      const vals = Object.assign({}, champ);
      delete vals.version;
      cols.push({title: 'champion v' + champ.version, values: vals});
    }
    const others = Object.keys(cands).filter(function (c) { return c !== chosen; });
    others.sort(function (a, b) { return (a === 'baseline' ? -1 : 0) - (b === 'baseline' ? -1 : 0); });
    others.forEach(function (c) { cols.push({title: c, values: cands[c]}); });
    const keys = new Set();
    cols.forEach(function (c) { Object.keys(c.values || {}).forEach(function (k) { keys.add(k); }); });
    const ordered = METRIC_ORDER.filter(function (k) { return keys.has(k); })
      .concat(Array.from(keys).filter(function (k) { return !METRIC_ORDER.includes(k); }).sort());
    const rows = ordered.map(function (k) {
      return el('tr', {data: {metric: k}}, [el('td', {class: 'nowrap', text: k})].concat(
        cols.map(function (c) { return valueCell((c.values || {})[k]); })));
    });
    const counts = ev.rows || {};
    return section('Metrics', 'evidence-metrics', [
      AG.table(['Metric'].concat(cols.map(function (c) { return {text: c.title, class: 'num'}; })),
               rows.length ? rows : [AG.emptyRow(1 + cols.length, 'No metrics recorded.')]),
      el('p', {class: 'muted small', text: 'Rows: ' + Object.entries(counts).map(function ([k, v]) {
        return k + ' ' + AG.num(v);
      }).join(' · ') + '. Test metrics exist only for the models scored on the test split (read once).'}),
      champ.version === null || champ.version === undefined
        ? el('p', {class: 'muted small', text: 'No approved champion to compare with yet.'}) : null,
    ]);
  }

  function paretoSection(ev, links) {
    const p = ev.pareto || {};
    const objectives = (p.objectives || []).map(function (o) {
      return typeof o === 'object' ? o.metric + ' (' + o.direction + ')' : String(o);
    }).join(', ');
    const chosen = p.chosen || {};
    return el('section', {class: 'card'}, [
      el('h2', {text: 'Pareto front'}),
      AG.kv([['Front size', AG.num(p.size)], ['Trials', AG.num(p.trials)], ['Objectives', objectives || null],
             chosen.candidate ? ['Chosen point', chosen.candidate + ' trial ' + chosen.trial] : null,
             chosen.params ? ['Parameters', el('code', {class: 'wrap', text: AG.compact(chosen.params)})] : null]),
      links.pareto_plot
        ? el('img', {src: links.pareto_plot, class: 'plot', testid: 'evidence-pareto', loading: 'lazy',
                     alt: 'Pareto front of every trial of every candidate; the star is the chosen point'})
        : el('p', {class: 'muted', text: 'No Pareto plot in this evidence.'}),
    ]);
  }

  function slicesSection(ev) {
    const rows = [];
    const gaps = [];
    Object.entries(ev.slices || {}).forEach(function ([column, info]) {
      const slices = (info && info.slices) || {};
      Object.entries(slices).forEach(function ([value, s]) {
        rows.push(el('tr', {data: {column: column, slice: value}}, [
          el('td', {text: column}), el('td', {text: value}), valueCell(s.rows), valueCell(s.auc),
          el('td', {text: s.counted === false ? 'no (too few rows)' : 'yes'})]));
      });
      if (info && info.gap !== undefined) {
        gaps.push(column + ': AUC gap ' + AG.num(info.gap) + ' over ' + AG.num(info.compared) + ' slices');
      }
    });
    return section('Slices', 'evidence-slices', [
      AG.table(['Column', 'Slice', {text: 'Rows', class: 'num'}, {text: 'AUC', class: 'num'}, 'Counted'],
               rows.length ? rows : [AG.emptyRow(5, 'No slice metrics (no roster configured).')]),
      gaps.length ? el('p', {class: 'muted small', text: gaps.join(' · ')}) : null,
    ]);
  }

  function listOrNone(items) {
    if (!items || !items.length) return el('span', {class: 'muted', text: 'none'});
    return el('ul', {class: 'plain'}, items.map(function (i) {
      return el('li', {class: 'wrap', text: typeof i === 'object' ? AG.compact(i) : String(i)});
    }));
  }

  function validationSection(v) {
    if (!v) {
      return section('Data validation (Great Expectations)', 'evidence-validation',
                     el('p', {class: 'muted', text: 'No validation result for the clean versions of this data.'}));
    }
    return section('Data validation (Great Expectations)', 'evidence-validation', AG.kv([
      ['Status', AG.badge(v.status)],
      ['Newest clean version', v.version_id ? AG.lineageLink('dataset:' + v.version_id, v.version_id) : null],
      ['Evaluated', AG.timeEl(v.evaluated_at)],
      v.versions_checked !== undefined
        ? ['Versions checked', AG.num(v.versions_checked) + (v.by_status ? ' (' + Object.entries(v.by_status)
          .map(function ([k, n]) { return k + ' ' + n; }).join(', ') + ')' : '')] : null,
      ['Critical', listOrNone(v.critical)],
      ['Warnings', listOrNone(v.warnings)],
      ['Data Docs', v.data_docs_url
        ? AG.link(v.data_docs_url, 'open Data Docs', {testid: 'evidence-data-docs'})
        : el('span', {class: 'muted', text: 'not built'})],
    ]));
  }

  function driftSection(ev, links) {
    const d = ev.drift || {};
    const gate = (ev.gates || []).find(function (g) { return g.name === 'data_drift'; });
    return section('Data drift (Evidently)', 'evidence-drift', Object.keys(d).length ? AG.kv([
      ['Drifted features', AG.pct(d.drift_share) + ' of ' + AG.num(d.columns_checked) + ' checked'],
      ['Dataset drift', d.dataset_drift === undefined ? null : (d.dataset_drift ? 'yes' : 'no')],
      ['Drifted columns', (d.drifted || []).length ? (d.drifted || []).join(', ') : 'none'],
      ['Rows', 'reference ' + AG.num(d.reference_rows) + ' · current ' + AG.num(d.current_rows)],
      d.current_version ? ['Compared with', AG.lineageLink('dataset:' + d.current_version, d.current_version)] : null,
      gate ? ['Gate', [AG.badge(gate.state), gate.blocking === false ? ' evidence only, not blocking' : ' blocking']] : null,
      ['Report', links.drift_report
        ? AG.link(links.drift_report, 'open the Evidently report',
                  {testid: 'evidence-drift-report'})
        : el('span', {class: 'muted', text: 'not available'})],
    ]) : el('p', {class: 'muted', text: 'No drift report in this evidence.'}));
  }

  function labelsSection(l) {
    if (!l) return section('Labels', 'evidence-labels', el('p', {class: 'muted', text: 'Unknown.'}));
    const total = l.total || 0;
    const rows = Object.entries(l.by_source || {}).map(function ([src, n]) {
      return el('tr', {data: {source: src}}, [el('td', {text: src}), valueCell(n),
                                              el('td', {class: 'num', text: total ? AG.pct(n / total) : '—'})]);
    });
    return section('Labels', 'evidence-labels', [
      AG.kv([['Labeled version', AG.lineageLink('dataset:' + l.version_id, l.version_id)],
             ['Labels', AG.num(total)],
             ['Human share', AG.pct(l.human_share)], ['Auto share', AG.pct(l.auto_share)]]),
      AG.table(['Source', {text: 'Labels', class: 'num'}, {text: 'Share', class: 'num'}], rows),
      el('p', {class: 'muted small', text: 'Validation and test use trusted labels only; auto-labels never score a model.'}),
    ]);
  }

  function versionsSection(v) {
    v = v || {};
    return section('Data versions', 'evidence-versions', AG.kv([
      ['Labeled', v.labeled ? AG.lineageLink('dataset:' + v.labeled, v.labeled, {class: 'mono'}) : null],
      ['Clean (' + (v.clean || []).length + ')', idList(v.clean, 'dataset')],
      ['Raw (' + (v.raw || []).length + ')', idList(v.raw, 'dataset')],
    ]));
  }

  function codeSection(ev, links) {
    return section('Code and run', 'evidence-code-version', AG.kv([
      ['Code version', el('code', {class: 'wrap', text: ev.code_version || '—'})],
      ['Spec hash', el('code', {class: 'wrap', text: ev.spec_hash || '—'})],
      ['Split hash', el('code', {class: 'wrap', text: ev.split_hash || '—'})],
      ['Training run', ev.training_run_id
        ? AG.lineageLink('training_run:' + ev.training_run_id, ev.training_run_id, {class: 'mono'}) : null],
      ['MLflow run', el('code', {text: links.mlflow_run || ev.mlflow_run_id || '—'})],
      ['Model URI', el('code', {class: 'wrap', text: ev.model_uri || '—'})],
    ]));
  }

  function decisionsSection(req) {
    const rows = (req.decisions || []).map(function (d) {
      return el('tr', {data: {actor: d.actor, decision: d.decision}}, [
        el('td', null, AG.timeEl(d.decided_at)), el('td', {text: d.actor}), el('td', null, AG.badge(d.decision)),
        el('td', {class: 'pre', text: d.comment || ''}), el('td', null, AG.shortHash(d.evidence_hash))]);
    });
    return el('section', {class: 'card'}, [
      el('h2', {text: 'Decisions'}),
      AG.table(['When (UTC)', 'Who', 'Decision', 'Comment', 'On evidence'],
               rows.length ? rows : [AG.emptyRow(5, 'No decisions yet.')], {testid: 'decisions'})]);
  }

  function decideForm(req) {
    const you = req.you || {};
    if (!you.can_decide) {
      return el('p', {class: 'notice', testid: 'decision-unavailable',
                      text: 'You cannot decide this request: ' + (you.reason || 'not allowed') + '.'});
    }
    const comment = el('textarea', {id: 'decision-comment', testid: 'decision-comment', required: true,
                                    maxlength: 4000, 'aria-label': 'Comment (required)',
                                    placeholder: 'Comment (required): what you checked and why you decide so'});
    const approve = el('button', {type: 'button', class: 'primary', testid: 'approve-button', text: 'Approve'});
    const reject = el('button', {type: 'button', class: 'danger', testid: 'reject-button', text: 'Reject'});
    async function send(decision) {
      const text = comment.value.trim();
      if (!text) {
        AG.say(msg, 'A comment is required: say what you checked.', 'error');
        comment.focus();
        return;
      }
      approve.disabled = reject.disabled = true;
      AG.say(msg, 'Sending…', 'info');
      const r = await AG.postJSON('/approvals/' + AG.seg(requestId) + '/decisions',
                                  {decision: decision, comment: text, evidence_hash: loadedHash});
      if (!r.ok) {
        AG.say(msg, 'Refused: ' + r.message, 'error');
        approve.disabled = reject.disabled = false;
        return;
      }
      const b = r.body || {};
      AG.say(msg, (decision === 'approve' ? 'Approved' : 'Rejected') + '. The request is ' + b.status + ' (' +
             b.approvals + ' of ' + b.quorum + ' approvals' +
             (Object.keys(b.missing_roles || {}).length
               ? '; still needs ' + Object.keys(b.missing_roles).map(function (k) {
                 return b.missing_roles[k] + ' ' + k; }).join(', ') : '') + ')' +
             (b.status === 'approved' ? '; v' + b.model_version + ' is now champion.' : '.'), 'ok');
      await load();
    }
    approve.addEventListener('click', function () { send('approve'); });
    reject.addEventListener('click', function () { send('reject'); });
    return el('div', null, [
      el('label', {for: 'decision-comment', class: 'muted small', text: 'Comment (required)'}), comment,
      el('div', {class: 'toolbar'}, [approve, reject,
        el('span', {class: 'muted small', text: 'You decide on evidence '}), AG.shortHash(loadedHash)]),
    ]);
  }

  async function load() {
    let req;
    try {
      req = await AG.getJSON('/approvals/' + AG.seg(requestId));
    } catch (err) {
      AG.failure(out, err);
      AG.clear(decideBody);
      return;
    }
    loadedHash = req.evidence_hash;
    const ev = req.evidence || {};
    const cx = req.context || {};
    const links = cx.links || {};
    AG.put(out, [
      summary(req),
      gatesSection(ev),
      metricsSection(ev),
      paretoSection(ev, links),
      slicesSection(ev),
      el('div', {class: 'cards'}, [validationSection(cx.validation), driftSection(ev, links)]),
      el('div', {class: 'cards'}, [labelsSection(cx.labels), versionsSection(cx.versions)]),
      codeSection(ev, links),
      decisionsSection(req),
    ]);
    AG.put(decideBody, decideForm(req));
  }

  load();
})();
