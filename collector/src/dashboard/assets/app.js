// Watchstand dashboard: a hand-written script with no dependencies. It asks /api/v1 with the
// token the user typed (sessionStorage), renders each page from the answers, draws charts as
// inline SVG, and refreshes the current page every REFRESH_MS. No markup strings: every node is built
// with the DOM API, so nothing from the API is ever parsed as markup.
'use strict';

const TOKEN_KEY = 'watchstand.token';
const REFRESH_MS = 15000;
const DAY = 86400000;
const HOUR = 3600000;
const SVG_NS = 'http://www.w3.org/2000/svg';

// ---- DOM helpers ------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// ---- formatting -------------------------------------------------------------------------

function pct(v) { return v === null || v === undefined ? '—' : v.toFixed(3) + ' %'; }

function dur(sec) {
  if (sec === null || sec === undefined) return '—';
  const neg = sec < 0;
  const t = Math.abs(sec);
  let out;
  if (t < 60) out = (t < 10 ? t.toFixed(1) : t.toFixed(0)) + ' s';
  else {
    const whole = Math.round(t);
    const d = Math.floor(whole / 86400), hr = Math.floor((whole % 86400) / 3600);
    const m = Math.floor((whole % 3600) / 60), sc = whole % 60;
    if (d > 0) out = d + ' d ' + hr + ' h';
    else if (hr > 0) out = hr + ' h ' + m + ' min';
    else out = m + ' min ' + sc + ' s';
  }
  return (neg ? '−' : '') + out;
}

function when(ms) {
  if (ms === null || ms === undefined) return '—';
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + 'Z';
}

function num(v, digits) {
  if (v === null || v === undefined) return '—';
  return Math.abs(v) >= 1000 ? v.toFixed(0) : v.toFixed(digits === undefined ? 2 : digits);
}

// A value cell: the text shown plus the exact figure in data-value (tests compare it with the API).
function figure(field, value, text) {
  return h('span', { class: 'fig', 'data-field': field, 'data-value': value === null || value === undefined ? '' : value }, text);
}

function ruleText(rule) {
  if (!rule || typeof rule !== 'object') return String(rule);
  return String(rule.kind).replace(/_/g, ' ') + (rule.name ? ' (' + rule.name + ')' : '');
}

const LABELS = { meeting: 'Meeting target', below_target: 'Below target', no_data: 'No data', incident: 'Open incident' };

function badge(state) {
  const key = String(state);
  const text = LABELS[key] || key.replace(/_/g, ' ');
  return h('span', { class: 'badge b-' + key.replace(/[^a-z_]/g, '') }, text.charAt(0).toUpperCase() + text.slice(1));
}

// ---- API --------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const init = Object.assign({ headers: {} }, options || {});
  init.headers.Authorization = 'Bearer ' + token;
  if (init.body !== undefined) init.headers['Content-Type'] = 'application/json';
  const res = await fetch('/api/v1' + path, init);
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  if (res.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin('The token was not accepted. Sign in again.');
    throw new ApiError(401, 'signed out');
  }
  if (!res.ok) {
    const msg = body && (body.message || body.error) ? (body.message || body.error) : res.statusText;
    throw new ApiError(res.status, msg);
  }
  return body;
}

// ---- login ------------------------------------------------------------------------------

function showLogin(message) {
  document.getElementById('login').hidden = false;
  document.getElementById('nav').hidden = true;
  document.getElementById('logout').hidden = true;
  document.getElementById('main').replaceChildren();
  document.getElementById('refreshed').textContent = '';
  document.getElementById('login-error').textContent = message || '';
  document.getElementById('token').focus();
}

function showApp() {
  document.getElementById('login').hidden = true;
  document.getElementById('nav').hidden = false;
  document.getElementById('logout').hidden = false;
}

// ---- charts (inline SVG) ----------------------------------------------------------------

const H = 200, PAD = { l: 56, r: 12, t: 12, b: 28 };

// Charts are drawn at the pixel width they get (text stays 11 px on a phone and a wide
// screen alike); a resize redraws the page.
function chartWidth(full) {
  const w = main().clientWidth - 32;
  const cell = !full && w >= 880 ? (w - 14) / 2 : w;
  return Math.max(260, Math.floor(cell - 26));
}

// About `n` round tick values covering [lo, hi].
function ticks(lo, hi, n) {
  const raw = (hi - lo) / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((st) => st >= raw) || 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return { values: out, step };
}

function tickText(v, step) {
  if (Math.abs(v) >= 1e9) return (v / 1e9).toFixed(step >= 1e9 ? 0 : 1) + 'G';
  if (Math.abs(v) >= 1e6) return (v / 1e6).toFixed(step >= 1e6 ? 0 : 1) + 'M';
  if (Math.abs(v) >= 1e4) return (v / 1e3).toFixed(step >= 1e3 ? 0 : 1) + 'k';
  const digits = step >= 1 ? 0 : Math.min(3, Math.ceil(-Math.log10(step)));
  return v.toFixed(digits);
}

// A line chart: series [{name, cls, points: [[x, y]...]}], hlines [{y, cls, label}].
function lineChart(title, series, opts) {
  opts = opts || {};
  const pts = series.flatMap((se) => se.points).filter((p) => p[1] !== null && Number.isFinite(p[1]));
  const xs = pts.map((p) => p[0]).concat(opts.xs || []);
  const ys = pts.map((p) => p[1]).concat((opts.hlines || []).map((l) => l.y));
  const id = 'c' + Math.random().toString(36).slice(2, 8);
  const figureEl = h('figure', { class: 'chart' }, h('figcaption', { id }, title));
  if (pts.length === 0) {
    figureEl.append(h('p', { class: 'empty' }, opts.empty || 'No data in this range yet.'));
    return figureEl;
  }
  let x0 = Math.min(...xs), x1 = Math.max(...xs);
  if (x1 === x0) x1 = x0 + 1;
  let y0 = Math.min(0, ...ys), y1 = Math.max(...ys);
  if (opts.yMin !== undefined) y0 = opts.yMin;
  if (y1 <= y0) y1 = y0 + 1;
  const yt = ticks(y0, y1 + (y1 - y0) * 0.05, 4);
  y1 = yt.values[yt.values.length - 1];
  if (y1 < Math.max(...ys)) y1 = Math.max(...ys);
  const W = chartWidth(false);
  const X = (x) => PAD.l + ((x - x0) / (x1 - x0)) * (W - PAD.l - PAD.r);
  const Y = (y) => H - PAD.b - ((y - y0) / (y1 - y0)) * (H - PAD.t - PAD.b);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-labelledby': id, class: 'plot' });
  for (const v of yt.values) {
    svg.append(s('line', { x1: PAD.l, x2: W - PAD.r, y1: Y(v), y2: Y(v), class: 'grid' }));
    svg.append(s('text', { x: PAD.l - 6, y: Y(v) + 4, class: 'tick', 'text-anchor': 'end' }, tickText(v, yt.step)));
  }
  for (let i = 0; i <= 3; i++) {
    const v = x0 + ((x1 - x0) * i) / 3;
    const label = (x1 - x0) > 2 * DAY ? when(v).slice(5, 10) : (x1 - x0) > 10 * 60000 ? when(v).slice(11, 16) : when(v).slice(11, 19);
    svg.append(s('text', { x: X(v), y: H - 8, class: 'tick', 'text-anchor': i === 0 ? 'start' : i === 3 ? 'end' : 'middle' }, label));
  }
  for (const l of opts.hlines || []) {
    svg.append(s('line', { x1: PAD.l, x2: W - PAD.r, y1: Y(l.y), y2: Y(l.y), class: 'hline ' + l.cls }));
    svg.append(s('text', { x: W - PAD.r - 4, y: Y(l.y) - 4, class: 'tick', 'text-anchor': 'end' }, l.label));
  }
  for (const se of series) {
    const good = se.points.filter((p) => p[1] !== null && Number.isFinite(p[1]));
    if (good.length === 0) continue;
    const d = good.map((p, i) => (i ? 'L' : 'M') + X(p[0]).toFixed(1) + ' ' + Y(p[1]).toFixed(1)).join(' ');
    svg.append(s('path', { d, class: 'series ' + se.cls }));
    if (good.length === 1) svg.append(s('circle', { cx: X(good[0][0]), cy: Y(good[0][1]), r: 3, class: 'dot ' + se.cls }));
  }
  figureEl.append(svg);
  figureEl.append(h('ul', { class: 'legend' }, series.concat(opts.hlines || []).map((se) =>
    h('li', {}, h('span', { class: 'key ' + se.cls, 'aria-hidden': 'true' }), se.name || se.label))));
  return figureEl;
}

// Uptime bars: one bar per bucket, coloured by availability against the target.
function uptimeBars(history, target, label) {
  const n = history.buckets.length;
  const bw = 600 / n;
  const svg = s('svg', { viewBox: '0 0 600 34', class: 'bars', role: 'img', 'aria-label': label });
  history.buckets.forEach((b, i) => {
    const a = b.availability_pct;
    const cls = a === null ? 'nodata' : a >= target ? 'ok' : a >= target - 1 ? 'warn' : 'bad';
    const r = s('rect', { x: (i * bw + 0.5).toFixed(2), y: 2, width: Math.max(bw - 1, 0.5).toFixed(2), height: 30, class: 'bar ' + cls });
    r.append(s('title', {}, when(b.from_ms).slice(0, 10) + ': ' + (a === null ? 'no data' : pct(a))));
    svg.append(r);
  });
  return svg;
}

// ---- pages ------------------------------------------------------------------------------

const main = () => document.getElementById('main');

function startOfDay(ms) { return ms - (ms % DAY); }

async function overview() {
  const services = await api('/services');
  const to = startOfDay(Date.now()) + DAY;
  const from = to - 90 * DAY;
  const histories = await Promise.all(services.map((sv) =>
    api(`/services/${encodeURIComponent(sv.id)}/history?from=${from}&to=${to}&buckets=90`)));
  const incidents = (await api('/incidents')).filter((x) => x.state !== 'resolved');
  const list = h('div', { class: 'cards' });
  services.forEach((sv, i) => {
    const r = sv.sla;
    const state = r.availability_pct === null ? 'no_data' : r.met ? 'meeting' : 'below_target';
    const open = incidents.filter((x) => x.service === sv.id).length;
    list.append(h('article', { class: 'card', 'data-service': sv.id },
      h('h2', {}, h('a', { href: '#/service/' + encodeURIComponent(sv.id) }, sv.name), ' ', badge(open ? 'incident' : state)),
      h('dl', { class: 'kv' },
        h('dt', {}, `Availability (${sv.window})`), h('dd', {}, figure('availability_pct', r.availability_pct, pct(r.availability_pct))),
        h('dt', {}, 'Target'), h('dd', {}, figure('target_pct', r.target_pct, pct(r.target_pct))),
        h('dt', {}, 'Error budget left'), h('dd', {}, figure('error_budget_remaining_s', r.error_budget_remaining_s, dur(r.error_budget_remaining_s)),
          r.error_budget_s > 0 ? ` of ${dur(r.error_budget_s)}` : ''),
        h('dt', {}, 'Open incidents'), h('dd', {}, figure('open_incidents', open, String(open)))),
      h('p', { class: 'barlabel' }, '90 days, one bar per day (UTC)'),
      uptimeBars(histories[i], r.target_pct, `${sv.name}: availability per day over 90 days`)));
  });
  return [h('h1', {}, 'Services'), services.length ? list : h('p', { class: 'empty' }, 'No services in the catalogue.')];
}

const WINDOWS = [['slo', 'SLO window'], ['1h', 'Last hour'], ['24h', 'Last 24 hours'], ['7d', 'Last 7 days'], ['30d', 'Last 30 days'], ['90d', 'Last 90 days']];
const WINDOW_MS = { '1h': HOUR, '24h': DAY, '7d': 7 * DAY, '30d': 30 * DAY, '90d': 90 * DAY };

async function servicePage(id, params) {
  const win = params.get('window') || 'slo';
  let range = '';
  if (params.get('from') && params.get('to')) range = `from=${params.get('from')}&to=${params.get('to')}`;
  else if (WINDOW_MS[win]) { const now = Date.now(); range = `from=${now - WINDOW_MS[win]}&to=${now}`; }
  const sla = await api(`/services/${encodeURIComponent(id)}/sla${range ? '?' + range : ''}`);
  const hist = await api(`/services/${encodeURIComponent(id)}/history?from=${sla.from_ms}&to=${sla.to_ms}&buckets=48`);
  const incidents = await api(`/incidents?service=${encodeURIComponent(id)}`);
  const select = h('select', { id: 'window', onchange: (e) => { location.hash = `#/service/${encodeURIComponent(id)}?window=${e.target.value}`; } },
    WINDOWS.map(([v, t]) => h('option', { value: v, selected: v === win && !params.get('from') }, t)));
  if (params.get('from')) select.prepend(h('option', { value: 'custom', selected: true }, 'Custom range'));
  const f = (field, text) => figure(field, sla[field], text(sla[field]));
  // Budget burn: the budget left after each bucket.
  let spent = 0;
  const burn = hist.buckets.map((b) => { spent += b.downtime_s; return [b.to_ms, sla.error_budget_s - spent]; });
  const lat = (k) => hist.buckets.map((b) => [b.to_ms, b[k]]);
  const outageRows = hist.buckets.filter((b) => b.outages > 0 || b.downtime_s > 0);
  return [
    h('h1', {}, sla.name, ' ', h('span', { class: 'sub' }, `(${sla.service})`)),
    h('div', { class: 'controls' }, h('label', { for: 'window' }, 'Window'), select,
      h('span', { class: 'range' }, `${when(sla.from_ms)} → ${when(sla.to_ms)}`)),
    h('dl', { class: 'kv wide', 'data-service': sla.service },
      h('dt', {}, 'Availability'), h('dd', {}, f('availability_pct', pct), ' ', badge(sla.met === null ? 'no_data' : sla.met ? 'meeting' : 'below_target')),
      h('dt', {}, 'Target'), h('dd', {}, f('target_pct', pct)),
      h('dt', {}, 'Uptime'), h('dd', {}, f('uptime_s', dur)),
      h('dt', {}, 'Downtime'), h('dd', {}, f('downtime_s', dur)),
      h('dt', {}, 'Unmonitored'), h('dd', {}, f('unmonitored_s', dur)),
      h('dt', {}, 'Maintenance'), h('dd', {}, f('maintenance_s', dur)),
      h('dt', {}, 'Error budget'), h('dd', {}, f('error_budget_s', dur)),
      h('dt', {}, 'Budget left'), h('dd', {}, f('error_budget_remaining_s', dur)),
      h('dt', {}, 'Outages'), h('dd', {}, f('outages', String)),
      h('dt', {}, 'Latency p50 / p90 / p99'), h('dd', {}, f('latency_p50_ms', (v) => num(v, 1)), ' / ', f('latency_p90_ms', (v) => num(v, 1)), ' / ', f('latency_p99_ms', (v) => num(v, 1)), ' ms'),
      h('dt', {}, 'Checks'), h('dd', {}, f('checks', String)),
      h('dt', {}, 'Coverage'), h('dd', {}, f('coverage_pct', pct))),
    h('div', { class: 'charts' },
      lineChart('Error budget left (s)', [{ name: 'budget left', cls: 's1', points: burn }],
        { hlines: [{ y: 0, cls: 'threshold', label: 'spent' }], xs: [hist.from_ms, hist.to_ms] }),
      lineChart('Latency percentiles (ms)', [
        { name: 'p50', cls: 's1', points: lat('latency_p50_ms') },
        { name: 'p90', cls: 's2', points: lat('latency_p90_ms') },
        { name: 'p99', cls: 's3', points: lat('latency_p99_ms') }],
      { hlines: sla.latency_objective_ms ? [{ y: sla.latency_objective_ms, cls: 'threshold', label: 'objective' }] : [], xs: [hist.from_ms, hist.to_ms] })),
    h('h2', {}, 'Downtime by period'),
    outageRows.length ? table(['From', 'To', 'Outages', 'Downtime'], outageRows.map((b) => [when(b.from_ms), when(b.to_ms), String(b.outages), dur(b.downtime_s)]))
      : h('p', { class: 'empty' }, 'No downtime in this window.'),
    h('h2', {}, 'Incidents'),
    incidentTable(incidents),
  ];
}

function table(head, rows, caption) {
  return h('div', { class: 'scroll' }, h('table', {},
    caption ? h('caption', {}, caption) : null,
    h('thead', {}, h('tr', {}, head.map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c)))))));
}

function incidentTable(incidents) {
  if (!incidents.length) return h('p', { class: 'empty' }, 'No incidents.');
  return table(['#', 'Service', 'Rule', 'Priority', 'State', 'Detected', 'Acknowledged by', 'Resolved'],
    incidents.map((x) => [h('a', { href: '#/incident/' + x.id }, '#' + x.id), x.service || x.agent || '', ruleText(x.rule), x.priority,
      badge(x.state), when(x.detected_ms), x.acknowledged_by || '—', x.resolved_ms ? when(x.resolved_ms) : '—']));
}

async function incidentsPage(params) {
  const state = params.get('state') || '';
  const incidents = await api('/incidents' + (state ? '?state=' + state : ''));
  const select = h('select', { id: 'state', onchange: (e) => { location.hash = '#/incidents' + (e.target.value ? '?state=' + e.target.value : ''); } },
    [['', 'All'], ['open', 'Open'], ['acknowledged', 'Acknowledged'], ['resolved', 'Resolved']].map(([v, t]) => h('option', { value: v, selected: v === state }, t)));
  const now = Date.now();
  const first = Math.min(now, ...incidents.slice(0, 20).map((x) => x.detected_ms));
  const from = first - Math.max((now - first) * 0.05, 60000);
  return [h('h1', {}, 'Incidents'), h('div', { class: 'controls' }, h('label', { for: 'state' }, 'State'), select),
    incidents.length ? timeline(incidents.slice(0, 20).map((x) => ({ label: '#' + x.id + ' ' + (x.service || x.agent || ''), from: x.detected_ms, to: x.resolved_ms || now, cls: x.state })), from, now, 'Incidents over time') : null,
    incidentTable(incidents)];
}

// A Gantt-like timeline: rows [{label, from, to, cls}].
function timeline(rows, from, to, title) {
  const rowH = 24, top = 4, left = 170, width = chartWidth(true);
  const span = Math.max(to - from, 1);
  const X = (t) => left + ((t - from) / span) * (width - left - 8);
  const height = top + rows.length * rowH + 20;
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, width, height, class: 'timeline', role: 'img', 'aria-label': title });
  rows.forEach((r, i) => {
    const y = top + i * rowH;
    svg.append(s('text', { x: 4, y: y + 16, class: 'rowlabel' }, r.label.length > 22 ? r.label.slice(0, 21) + '…' : r.label));
    const rect = s('rect', { x: X(r.from).toFixed(1), y: y + 3, width: Math.max(X(r.to) - X(r.from), 2).toFixed(1), height: rowH - 8, class: 'span ' + r.cls });
    rect.append(s('title', {}, `${r.label}: ${when(r.from)} → ${when(r.to)}`));
    svg.append(rect);
  });
  const y = top + rows.length * rowH + 14;
  const stamp = (t) => (span < 10 * 60000 ? when(t).slice(5, 19) : when(t).slice(5, 16));
  svg.append(s('text', { x: left, y, class: 'tick' }, stamp(from)));
  svg.append(s('text', { x: width - 8, y, class: 'tick', 'text-anchor': 'end' }, stamp(to)));
  return h('figure', { class: 'chart' }, h('figcaption', {}, title), svg);
}

async function incidentPage(id) {
  const x = await api('/incidents/' + encodeURIComponent(id));
  const msg = h('p', { id: 'action-result', role: 'status', 'aria-live': 'polite' });
  const comment = h('input', { id: 'comment', type: 'text', autocomplete: 'off' });
  const act = (what) => async () => {
    msg.className = '';
    msg.textContent = '…';
    try {
      await api(`/incidents/${x.id}/${what}`, { method: 'POST', body: JSON.stringify({ comment: comment.value }) });
      msg.textContent = what === 'ack' ? 'Acknowledged.' : 'Resolved.';
      refresh();
    } catch (e) {
      if (e.status === 401) return;
      msg.className = 'error';
      msg.textContent = (e.status === 403 ? 'Not allowed: ' : 'Failed: ') + e.message;
    }
  };
  const active = x.state !== 'resolved';
  return [
    h('h1', {}, `Incident #${x.id} `, badge(x.state)),
    h('dl', { class: 'kv wide' },
      h('dt', {}, 'Service'), h('dd', {}, x.service ? h('a', { href: '#/service/' + encodeURIComponent(x.service) }, x.service) : (x.agent || '—')),
      h('dt', {}, 'Rule'), h('dd', {}, ruleText(x.rule)),
      h('dt', {}, 'Priority'), h('dd', {}, x.priority),
      h('dt', {}, 'Detected'), h('dd', {}, when(x.detected_ms)),
      h('dt', {}, 'Acknowledged'), h('dd', { id: 'acknowledged-by' }, x.acknowledged_by ? `${x.acknowledged_by} at ${when(x.acknowledged_ms)}` : '—'),
      h('dt', {}, 'Resolved'), h('dd', {}, x.resolved_by ? `${x.resolved_by} at ${when(x.resolved_ms)}` : '—'),
      h('dt', {}, 'Time to restore'), h('dd', {}, dur(x.time_to_restore_s)),
      x.inhibited ? [h('dt', {}, 'Inhibited by'), h('dd', {}, x.inhibited_by || 'yes')] : null),
    active ? h('form', { class: 'actions', onsubmit: (e) => e.preventDefault() },
      h('label', { for: 'comment' }, 'Comment'), comment,
      x.state === 'open' ? h('button', { type: 'button', id: 'ack', onclick: act('ack') }, 'Acknowledge') : null,
      h('button', { type: 'button', id: 'resolve', onclick: act('resolve') }, 'Resolve')) : null,
    msg,
    h('h2', {}, 'Timeline'),
    table(['When', 'Event', 'By', 'Detail'], (x.timeline || []).map((t) => [when(t.at_ms), t.event.replace(/_/g, ' '), t.by || '—', t.detail || ''])),
  ];
}

async function runbooksPage() {
  const [books, runs] = await Promise.all([api('/runbooks'), api('/runbook-runs')]);
  const now = Date.now();
  return [h('h1', {}, 'Runbook runs'),
    runs.length ? timeline(runs.slice(0, 20).map((r) => ({ label: `#${r.id} ${r.runbook}`, from: r.started_ms, to: r.ended_ms || now, cls: r.status })),
      Math.min(...runs.slice(0, 20).map((r) => r.started_ms)) - 60000, now, 'Runs over time') : null,
    runs.length ? table(['#', 'Runbook', 'Service', 'Status', 'Started', 'Ended', 'Current step'],
      runs.map((r) => [h('a', { href: '#/run/' + r.id }, '#' + r.id), r.runbook, r.service, badge(r.status), when(r.started_ms), r.ended_ms ? when(r.ended_ms) : '—', r.current_step || '—']))
      : h('p', { class: 'empty' }, 'No runs yet.'),
    h('h2', {}, 'Runbooks'),
    books.length ? table(['Runbook', 'Service', 'Steps', 'Trigger'], books.map((b) => [b.id, b.service, b.steps.map((x) => x.id).join(' → '), b.on_incident ? b.on_incident.rules.join(', ') : 'manual']))
      : h('p', { class: 'empty' }, 'No runbooks configured.')];
}

async function runPage(id) {
  const r = await api('/runbook-runs/' + encodeURIComponent(id));
  const now = Date.now();
  const rows = r.steps.flatMap((st) => st.attempts.map((a) => ({ label: `${st.id} (${a.n})`, from: a.started_ms, to: a.ended_ms || now, cls: a.outcome ? a.outcome.kind : st.status })));
  return [h('h1', {}, `Run #${r.id}: ${r.runbook} `, badge(r.status)),
    h('dl', { class: 'kv wide' }, h('dt', {}, 'Service'), h('dd', {}, r.service), h('dt', {}, 'Started'), h('dd', {}, when(r.started_ms)),
      h('dt', {}, 'Ended'), h('dd', {}, r.ended_ms ? when(r.ended_ms) : '—'), h('dt', {}, 'Reason'), h('dd', {}, r.reason || '—')),
    rows.length ? timeline(rows, r.started_ms, r.ended_ms || now, 'Step attempts') : h('p', { class: 'empty' }, 'No step has started.'),
    table(['Step', 'Kind', 'Status', 'Attempts'], r.steps.map((st) => [st.id, st.kind, badge(st.status), String(st.attempts.length)]))];
}

async function capacityPage() {
  const summary = await api('/capacity/summary');
  const rows = summary.rows || [];
  const watched = rows.filter((r) => r.threshold !== null && r.threshold !== undefined);
  const others = rows.filter((r) => r.threshold === null || r.threshold === undefined);
  const charts = await Promise.all(watched.slice(0, 6).map(async (row) => {
    const q = `agent=${encodeURIComponent(row.agent)}&metric=${encodeURIComponent(row.metric)}`;
    const from = Date.now() - 7 * DAY;
    const [series, fc] = await Promise.all([api(`/capacity?${q}&from=${from}`), api(`/capacity/forecast?${q}`)]);
    const pts = ((series.metrics[0] || {}).points || []);
    const fit = fc.forecast && fc.forecast.fit;
    const threshold = row.threshold !== null && row.threshold !== undefined ? row.threshold : (fc.forecast ? fc.forecast.threshold : null);
    const xs = pts.map((p) => p[0]);
    const end = Date.now() + 7 * DAY;
    const trend = fit ? [[xs.length ? xs[0] : from, 0], [end, 0]].map(([t]) => [t, fit.pivot_value + (fit.slope_per_day * (t - fit.pivot_ms)) / DAY]) : [];
    const series2 = [{ name: 'measured', cls: 's1', points: pts }];
    if (fit) series2.push({ name: 'trend and 7-day forecast', cls: 's2 dashed', points: trend });
    return lineChart(`${row.agent} · ${row.metric}`, series2, {
      hlines: threshold !== null && threshold !== undefined ? [{ y: threshold, cls: 'threshold', label: 'threshold' }] : [],
      xs: fit ? [end] : [],
    });
  }));
  const head = ['Agent', 'Metric', 'Current', 'Peak', 'Threshold', 'Trend / day', 'Projected crossing'];
  const line = (r) => [r.agent, r.metric, num(r.current), num(r.peak), num(r.threshold), num(r.trend_per_day, 3),
    r.projected_ms ? when(r.projected_ms).slice(0, 10) : r.outcome.replace(/_/g, ' ')];
  return [h('h1', {}, 'Capacity'),
    rows.length ? null : h('p', { class: 'empty' }, 'No capacity samples yet.'),
    charts.length ? h('div', { class: 'charts' }, charts) : null,
    watched.length ? [h('h2', {}, 'Metrics with a threshold (at risk first)'), table(head, watched.map(line))] : null,
    others.length ? h('details', {}, h('summary', {}, `Other metrics (${others.length})`), table(head, others.map(line))) : null];
}

async function agentsPage() {
  const agents = await api('/agents');
  const details = await Promise.all(agents.map((a) => api('/agents/' + encodeURIComponent(a.agent))));
  const now = Date.now();
  return [h('h1', {}, 'Agents'),
    agents.length ? table(['Agent', 'Site', 'State', 'Last seen', 'Stored', 'Duplicates', 'Gaps open', 'Lost', 'Delivery (watermark / highest)', 'Backlog (missing)'],
      agents.map((a, i) => {
        const boot = (details[i].boots || []).find((b) => b.boot === a.boot) || {};
        const missing = (details[i].boots || []).reduce((n, b) => n + (b.missing || 0), 0);
        return [a.agent, a.site, badge(a.state), `${when(a.last_seen_ms)} (${dur((now - a.last_seen_ms) / 1000)} ago)`, String(a.stored), String(a.duplicates), String(a.gaps_open), String(a.lost_entries),
          boot.watermark !== undefined ? `${boot.watermark} / ${boot.highest}` : '—', String(missing)];
      }))
      : h('p', { class: 'empty' }, 'No agent has announced itself yet.')];
}

function reportsPage() {
  return [h('h1', {}, 'Reports'), h('p', {}, 'Availability, service, incident, continuity and capacity reports are produced by the collector\'s report module (',
    h('code', {}, 'watchstand-collector report'), ', ', h('code', {}, 'GET /api/v1/reports/{kind}'), '). Links to them appear here once that API is part of this build.')];
}

// ---- routing and refresh ----------------------------------------------------------------

let rendering = 0;

async function render() {
  if (!sessionStorage.getItem(TOKEN_KEY)) { showLogin(''); return; }
  showApp();
  const [path, query] = (location.hash.replace(/^#/, '') || '/').split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const page = parts[0] || '';
  for (const a of document.querySelectorAll('#nav a')) {
    const target = a.getAttribute('href').slice(2);
    const current = target === page || (target === '' && page === 'service') || (target === 'incidents' && page === 'incident') || (target === 'runbooks' && page === 'run');
    if (current) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const ticket = ++rendering;
  let nodes;
  try {
    if (page === '') nodes = await overview();
    else if (page === 'service') nodes = await servicePage(parts[1], params);
    else if (page === 'incidents') nodes = await incidentsPage(params);
    else if (page === 'incident') nodes = await incidentPage(parts[1]);
    else if (page === 'runbooks') nodes = await runbooksPage();
    else if (page === 'run') nodes = await runPage(parts[1]);
    else if (page === 'capacity') nodes = await capacityPage();
    else if (page === 'agents') nodes = await agentsPage();
    else if (page === 'reports') nodes = reportsPage();
    else nodes = [h('h1', {}, 'Not found'), h('p', {}, 'No such page. '), h('a', { href: '#/' }, 'Overview')];
  } catch (e) {
    if (e.status === 401) return;
    nodes = [h('h1', {}, 'Could not load this page'), h('p', { class: 'error', role: 'alert' }, e.message)];
  }
  if (ticket !== rendering || !sessionStorage.getItem(TOKEN_KEY)) return;
  const m = main();
  // Keep what the user is typing: a refresh waits while a field in the page has focus.
  m.replaceChildren(...nodes.flat().filter(Boolean));
  m.setAttribute('data-page', page || 'overview');
  m.setAttribute('data-loaded', String(ticket));
  document.getElementById('refreshed').textContent = 'Updated ' + when(Date.now()).slice(11, 19) + 'Z';
}

function refresh() {
  const active = document.activeElement;
  if (active && main().contains(active) && (active.tagName === 'INPUT' || active.tagName === 'SELECT')) return;
  render();
}

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const field = document.getElementById('token');
    sessionStorage.setItem(TOKEN_KEY, field.value.trim());
    field.value = '';
    render();
  });
  document.getElementById('logout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin('Signed out.');
  });
  window.addEventListener('hashchange', () => { render().then(() => main().focus()); });
  let resized = null;
  window.addEventListener('resize', () => { clearTimeout(resized); resized = setTimeout(refresh, 250); });
  setInterval(() => { if (!document.hidden && sessionStorage.getItem(TOKEN_KEY)) refresh(); }, REFRESH_MS);
  render();
});
