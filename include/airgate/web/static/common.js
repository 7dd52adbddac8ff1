/* Shared helpers for the airgate pages.
   Every value from the API reaches the DOM through textContent or setAttribute, never as markup: a comment, a
   filter value or a model name can hold "<script>" and still only ever be text. Links are same-origin paths only. */
'use strict';

const AG = (function () {
  const ctx = JSON.parse(document.body.getAttribute('data-ctx') || '{}');
  const root = ctx.root || '/airgate';

  /** A same-origin path, or "#": API data never becomes a javascript: or off-site URL. */
  function safeUrl(u) {
    const s = String(u);
    return (s.startsWith('/') && !s.startsWith('//')) || s.startsWith('?') || s.startsWith('#') ? s : '#';
  }

  function append(node, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { append(node, c); }); return; }
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }

  /** el('a', {href, text, testid, data: {ref}}, children): one element, text only. */
  function el(tag, props, children) {
    const node = document.createElement(tag);
    Object.entries(props || {}).forEach(function ([k, v]) {
      if (v === null || v === undefined || v === false) return;
      if (k === 'text') node.textContent = String(v);
      else if (k === 'class') node.className = String(v);
      else if (k === 'testid') node.setAttribute('data-testid', String(v));
      else if (k === 'data') Object.entries(v).forEach(function ([dk, dv]) { node.setAttribute('data-' + dk, String(dv)); });
      else if (k === 'href' || k === 'src') node.setAttribute(k, safeUrl(v));
      else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
      else if (v === true) node.setAttribute(k, '');
      else node.setAttribute(k, String(v));
    });
    append(node, children);
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  function put(node, children) { clear(node); append(node, children); return node; }
  function byId(id) { return document.getElementById(id); }

  function query(params) {
    const q = new URLSearchParams();
    Object.entries(params || {}).forEach(function ([k, v]) {
      if (v !== null && v !== undefined && v !== '') q.set(k, String(v));
    });
    const s = q.toString();
    return s ? '?' + s : '';
  }

  function apiUrl(path, params) { return root + '/api' + path + query(params); }
  function pageUrl(path, params) { return root + path + query(params); }
  function lineageUrl(ref) { return pageUrl('/lineage', {node: ref}); }
  function seg(s) { return encodeURIComponent(String(s)); }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function readBody(r) {
    const t = await r.text();
    try { return t ? JSON.parse(t) : null; } catch (e) { return t; }
  }

  /** The server's own words for a refusal ("detail"), or the validation errors of a 422. */
  function errorText(status, body) {
    if (status === 401) return 'Not signed in (401): your Airflow session may have expired. Reload the Airflow UI.';
    const d = body && typeof body === 'object' ? body.detail : body;
    if (Array.isArray(d)) {
      return d.map(function (e) {
        const where = Array.isArray(e.loc) ? e.loc.filter(function (x) { return x !== 'body'; }).join('.') : '';
        return (where ? where + ': ' : '') + (e.msg || JSON.stringify(e));
      }).join('; ');
    }
    if (d) return String(d);
    return 'HTTP ' + status;
  }

  async function getJSON(path, params) {
    const r = await fetch(apiUrl(path, params), {credentials: 'same-origin', headers: {Accept: 'application/json'}});
    const body = await readBody(r);
    if (!r.ok) throw new ApiError(r.status, errorText(r.status, body));
    return body;
  }

  /** Writes carry the CSRF header the API requires for cookie-authenticated calls. */
  async function postJSON(path, payload) {
    const r = await fetch(apiUrl(path), {
      method: 'POST', credentials: 'same-origin',
      headers: {'Content-Type': 'application/json', Accept: 'application/json', 'X-Requested-With': 'airgate'},
      body: JSON.stringify(payload)});
    const body = await readBody(r);
    return {ok: r.ok, status: r.status, body: body, message: r.ok ? '' : errorText(r.status, body)};
  }

  /** Timestamps are UTC; one written without a zone (SQLite) is read as UTC too, not as local time. */
  function parseTime(iso) {
    if (!iso) return null;
    let s = String(iso).replace(' ', 'T');
    if (!/([zZ]|[+-]\d\d:?\d\d)$/.test(s)) s += 'Z';
    const d = new Date(s);
    return isNaN(d.getTime()) ? null : d;
  }
  function fmtTime(iso) {
    const d = parseTime(iso);
    if (!d) return iso ? String(iso) : '—';
    return d.toISOString().slice(0, 19).replace('T', ' ');
  }
  function timeEl(iso) {
    if (!iso) return el('span', {class: 'muted', text: '—'});
    return el('time', {datetime: String(iso), title: String(iso) + ' (UTC)', class: 'nowrap', text: fmtTime(iso)});
  }

  function num(v, digits) {
    if (v === null || v === undefined || v === '') return '—';
    if (typeof v !== 'number') return String(v);
    if (Number.isInteger(v)) return v.toLocaleString('en-US');
    const d = digits === undefined ? 4 : digits;
    return Math.abs(v) >= 1000 ? v.toLocaleString('en-US', {maximumFractionDigits: 1}) : v.toFixed(d);
  }
  function pct(v) { return typeof v === 'number' ? (v * 100).toFixed(1) + '%' : '—'; }
  function shortHash(h) { return h ? el('code', {title: String(h), text: String(h).slice(0, 12)}) : '—'; }

  function cssToken(s) { return String(s).replace(/[^A-Za-z0-9_-]/g, '_'); }
  function badge(state, text) {
    if (state === null || state === undefined) return el('span', {class: 'muted', text: '—'});
    return el('span', {class: 'badge s-' + cssToken(state), text: text === undefined ? String(state) : text});
  }
  const GATE_MARK = {pass: '✓', fail: '✗', not_evaluated: '?'};
  function gateChip(name, state) {
    return el('span', {class: 'badge s-' + cssToken(state), title: name + ': ' + state,
                       text: (GATE_MARK[state] || '·') + ' ' + name});
  }

  function link(href, text, props) { return el('a', Object.assign({href: href, text: text}, props || {})); }
  function lineageLink(ref, text, props) { return link(lineageUrl(ref), text === undefined ? ref : text, props); }

  function table(headers, rows, props) {
    const head = el('tr', null, headers.map(function (h) {
      return typeof h === 'string' ? el('th', {text: h}) : el('th', {text: h.text, class: h.class});
    }));
    return el('div', {class: 'table-scroll'},
              el('table', Object.assign({class: 'grid'}, props || {}), [el('thead', null, head), el('tbody', null, rows)]));
  }
  function emptyRow(span, text) { return el('tr', null, el('td', {colspan: span, class: 'empty', text: text})); }

  function kv(pairs) {
    const items = [];
    pairs.forEach(function (p) {
      if (!p) return;
      items.push(el('dt', {text: p[0]}));
      items.push(el('dd', null, p[1] === null || p[1] === undefined || p[1] === '' ? '—' : p[1]));
    });
    return el('dl', {class: 'kv'}, items);
  }

  function compact(v) { return v === null || v === undefined ? '' : JSON.stringify(v); }

  function say(node, text, kind) {
    node.textContent = text || '';
    node.className = 'msg' + (kind ? ' ' + kind : '');
  }
  function failure(node, err) {
    put(node, el('p', {class: 'notice error', text: err && err.message ? err.message : String(err)}));
  }

  /** UTC "YYYY-MM-DDTHH:MM" from a datetime-local input, as the API's ISO form with an explicit zone. */
  function localInputToIso(v) {
    if (!v) return '';
    let s = String(v);
    if (/^\d{4}-\d\d-\d\dT\d\d:\d\d$/.test(s)) s += ':00';
    return /([zZ]|[+-]\d\d:?\d\d)$/.test(s) ? s : s + 'Z';
  }

  return {ctx, root, el, append, clear, put, byId, query, apiUrl, pageUrl, lineageUrl, seg, getJSON, postJSON,
          errorText, parseTime, fmtTime, timeEl, num, pct, shortHash, badge, gateChip, link, lineageLink, table,
          emptyRow, kv, compact, say, failure, localInputToIso, safeUrl, cssToken, ApiError};
})();
