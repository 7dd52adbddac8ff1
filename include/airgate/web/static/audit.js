/* The audit log, newest first, 100 events a page by keyset (`before` = the last seq seen), so it stays fast at any
   size: the page never loads more than one page. The filters and the page position live in the URL query string,
   so a filtered view can be bookmarked or sent to someone; the export links carry the same filters. */
(function () {
  'use strict';
  const {el} = AG;
  const PAGE = 100;
  const FIELDS = ['model', 'version', 'actor', 'event_type', 'since', 'until'];
  const form = AG.byId('audit-filters');
  const typeSel = AG.byId('audit-filter-type');
  const out = AG.byId('audit-table');
  const info = AG.byId('audit-page-info');
  const nextBtn = AG.byId('audit-next');
  const prevBtn = AG.byId('audit-prev');
  const verifyBtn = AG.byId('audit-verify');
  const verifyOut = AG.byId('audit-verify-result');
  const csv = AG.byId('audit-export-csv');
  const json = AG.byId('audit-export-json');

  let filters = {};
  let before = null;     // the page shown starts below this seq (null: the newest page)
  let nextBefore = null; // from the API: where the next (older) page starts
  let stack = [];        // the `before` of every page visited before this one, for Previous

  /** An ISO time pasted into the URL, as the "YYYY-MM-DDTHH:MM" a datetime-local input holds (UTC). */
  function toInputValue(v) {
    if (!v || /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d)?$/.test(v)) return v || '';
    const d = AG.parseTime(v);
    return d ? d.toISOString().slice(0, 19) : '';
  }

  function readUrl() {
    const q = new URLSearchParams(location.search);
    filters = {};
    FIELDS.forEach(function (f) {
      const v = (q.get(f) || '').trim();
      if (v) filters[f] = f === 'since' || f === 'until' ? toInputValue(v) : v;
    });
    const b = parseInt(q.get('before') || '', 10);
    before = Number.isFinite(b) ? b : null;
    stack = [];
  }

  function fillForm() {
    FIELDS.forEach(function (f) {
      const input = form.elements.namedItem(f);
      if (f === 'event_type') addType(filters[f]);
      if (input) input.value = filters[f] || '';
    });
  }

  function readForm() {
    filters = {};
    FIELDS.forEach(function (f) {
      const input = form.elements.namedItem(f);
      const v = input ? String(input.value || '').trim() : '';
      if (v) filters[f] = v;
    });
  }

  function addType(t) {
    if (!t || Array.from(typeSel.options).some(function (o) { return o.value === t; })) return;
    typeSel.appendChild(el('option', {value: t, text: t}));
  }

  /** Filters as the API takes them: the datetime-local values are UTC, sent with an explicit zone. */
  function apiFilters() {
    const p = Object.assign({}, filters);
    if (p.since) p.since = AG.localInputToIso(p.since);
    if (p.until) p.until = AG.localInputToIso(p.until);
    return p;
  }

  function syncUrl() {
    history.replaceState(null, '', location.pathname + AG.query(Object.assign({}, filters, {before: before})));
    csv.setAttribute('href', AG.apiUrl('/audit/export', Object.assign({format: 'csv'}, apiFilters())));
    json.setAttribute('href', AG.apiUrl('/audit/export', Object.assign({format: 'json'}, apiFilters())));
  }

  const LINEAGE_KEYS = {approval_request_id: 'approval', batch_id: 'batch', raw_version_id: 'dataset',
                        clean_version_id: 'dataset', labeled_version_id: 'dataset', version_id: 'dataset',
                        data_version: 'dataset', training_run_id: 'training_run', scoring_run_id: 'scoring_run'};

  function jsonCell(v, withLinks, model) {
    const text = AG.compact(v);
    const td = el('td', {class: 'wrap'});
    if (!text || text === '{}') { td.appendChild(el('span', {class: 'muted', text: '—'})); return td; }
    if (text.length <= 200) td.appendChild(el('code', {text: text}));
    else td.appendChild(el('details', null, [el('summary', null, el('code', {text: text.slice(0, 120) + '…'})),
                                            el('code', {class: 'pre', text: text})]));
    if (withLinks && v && typeof v === 'object') {
      const links = [];
      Object.entries(LINEAGE_KEYS).forEach(function ([k, kind]) {
        if (typeof v[k] === 'string' && v[k]) links.push(AG.lineageLink(kind + ':' + v[k], kind));
      });
      if (model && (typeof v.model_version === 'string' || typeof v.model_version === 'number')) {
        links.push(AG.lineageLink('model_version:' + model + '/' + v.model_version, 'model version'));
      }
      if (links.length) {
        td.appendChild(el('div', {class: 'small muted'}, ['lineage: ', links.map(function (a, i) {
          return i ? [' · ', a] : a;
        })]));
      }
    }
    return td;
  }

  function row(e) {
    return el('tr', {testid: 'audit-row', data: {'event-type': e.event_type, seq: e.seq}}, [
      el('td', {class: 'num', text: String(e.seq)}),
      el('td', null, AG.timeEl(e.at)),
      el('td', {text: e.actor || '—'}),
      el('td', {class: 'nowrap'}, el('code', {text: e.event_type})),
      el('td', {text: e.model || '—'}),
      jsonCell(e.entity, true, e.model),
      jsonCell(e.details, false),
    ]);
  }

  async function load() {
    syncUrl();
    nextBtn.disabled = prevBtn.disabled = true;
    info.textContent = 'Loading…';
    try {
      const body = await AG.getJSON('/audit', Object.assign(apiFilters(), {before: before, limit: PAGE}));
      const events = body.events || [];
      nextBefore = body.next_before;
      AG.put(out, AG.table([{text: 'Seq', class: 'num'}, 'Time (UTC)', 'Actor', 'Event type', 'Model', 'Entity',
                            'Details'], events.length ? events.map(row)
        : [AG.emptyRow(7, 'No events match these filters.')], {testid: 'audit-table'}));
      info.textContent = events.length
        ? 'seq ' + events[0].seq + ' … ' + events[events.length - 1].seq + ' (' + events.length +
          ' events, newest first' + (stack.length ? ', page ' + (stack.length + 1) : '') + ')'
        : '';
    } catch (err) {
      nextBefore = null;
      info.textContent = '';
      AG.failure(out, err);
    }
    nextBtn.disabled = nextBefore === null || nextBefore === undefined;
    prevBtn.disabled = before === null;
  }

  form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    readForm();
    before = null;
    stack = [];
    load();
  });
  AG.byId('audit-clear').addEventListener('click', function () {
    form.reset();
    readForm();
    before = null;
    stack = [];
    load();
  });
  nextBtn.addEventListener('click', function () {
    if (nextBefore === null || nextBefore === undefined) return;
    stack.push(before);
    before = nextBefore;
    load();
  });
  prevBtn.addEventListener('click', function () {
    before = stack.length ? stack.pop() : null;  // opened on an older page by URL: Previous goes to the newest
    load();
  });
  verifyBtn.addEventListener('click', async function () {
    verifyBtn.disabled = true;
    AG.say(verifyOut, 'Verifying the hash chain…', 'info');
    try {
      const v = await AG.getJSON('/audit/verify');
      if (v.ok) AG.say(verifyOut, 'Chain OK: ' + AG.num(v.entries) + ' entries verified.', 'ok');
      else AG.say(verifyOut, 'Chain BROKEN at seq ' + v.first_broken_seq + (v.reason ? ': ' + v.reason : '') + '.', 'error');
      verifyOut.setAttribute('data-ok', v.ok ? 'true' : 'false');
    } catch (err) {
      AG.say(verifyOut, 'Could not verify: ' + err.message, 'error');
    }
    verifyBtn.disabled = false;
  });

  readUrl();
  fillForm();
  load();
  AG.getJSON('/audit/event-types').then(function (types) {
    (types || []).forEach(addType);
    typeSel.value = filters.event_type || '';
  }).catch(function () { /* the dropdown keeps "any" */ });
})();
