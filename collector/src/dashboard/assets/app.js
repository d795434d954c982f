// Watchstand dashboard: a hand-written script with no dependencies. It asks /api/v1 with the
// token the user typed (sessionStorage), renders each page from the answers, draws charts as
// inline SVG, and refreshes the current page every REFRESH_MS. It offers the actions the
// signed-in role may take (`/me`); the API still decides every request. No markup strings: every node is built
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
  for (const c of children.flat(Infinity)) {
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

// One request to /api/v1 with the token; a 401 signs out, any other failure throws ApiError
// with the API's message.
async function request(path, options) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const init = Object.assign({ headers: {} }, options || {});
  init.headers.Authorization = 'Bearer ' + token;
  if (init.body !== undefined) init.headers['Content-Type'] = 'application/json';
  const res = await fetch('/api/v1' + path, init);
  if (res.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin('The token was not accepted. Sign in again.');
    throw new ApiError(401, 'signed out');
  }
  if (!res.ok) {
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    const msg = body && (body.message || body.error) ? (body.message || body.error) : res.statusText;
    throw new ApiError(res.status, msg);
  }
  return res;
}

async function api(path, options) {
  const res = await request(path, options);
  try { return await res.json(); } catch (e) { return null; }
}

// A file from the API (a report): its bytes, its file name (Content-Disposition, else
// `fallback`) and its type. Links cannot carry the token, so files are fetched like any other
// answer and saved from a blob.
async function fetchFile(path, fallback) {
  const res = await request(path);
  const blob = await res.blob();
  const named = /filename="([^"]+)"/.exec(res.headers.get('Content-Disposition') || '');
  return { blob, name: named ? named[1] : fallback, type: res.headers.get('Content-Type') || '' };
}

let blobUrl = null;

// A link that saves `file` (one blob URL at a time: the previous one is released).
function saveLink(file, label, attrs) {
  if (blobUrl) URL.revokeObjectURL(blobUrl);
  blobUrl = URL.createObjectURL(file.blob);
  return h('a', Object.assign({ href: blobUrl, download: file.name, class: 'button' }, attrs || {}), label);
}

// ---- who is signed in -------------------------------------------------------------------

const ROLES = ['viewer', 'operator', 'admin'];
let me = null;

// The token's name and role (`/me`, asked once per sign-in), shown in the header.
async function whoAmI() {
  if (!me) me = await api('/me');
  document.getElementById('who').textContent = `${me.name} · ${me.role}`;
  return me;
}

// Whether the signed-in role is at least `role`: the page offers only what the API would allow
// (the API still checks every request).
function mayAct(role) {
  return me !== null && ROLES.indexOf(me.role) >= ROLES.indexOf(role || 'operator');
}

// A status line for what a button did.
function statusLine(id) {
  return h('p', { id, class: 'result', role: 'status', 'aria-live': 'polite' });
}

// A button that POSTs to `path`, says what happened in `msg`, and calls `done(answer)`.
function actionButton(label, path, msg, done, attrs) {
  const button = h('button', Object.assign({ type: 'button' }, attrs || {}), label);
  button.addEventListener('click', async () => {
    button.disabled = true;
    msg.className = 'result';
    msg.textContent = label + '…';
    try {
      const answer = await api(path, { method: 'POST' });
      msg.textContent = '';
      await done(answer);
    } catch (e) {
      button.disabled = false;
      if (e.status === 401) return;
      msg.className = 'result error';
      msg.textContent = (e.status === 403 ? 'Not allowed: ' : 'Failed: ') + e.message;
    }
  });
  return button;
}

// ---- login ------------------------------------------------------------------------------

function showLogin(message) {
  me = null;
  document.getElementById('who').textContent = '';
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
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => (c instanceof HTMLTableCellElement ? c : h('td', {}, c))))))));
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
  // On a narrow screen only the time of day fits twice under the bars.
  const stamp = (t) => (width < 520 ? when(t).slice(11, 19) : span < 10 * 60000 ? when(t).slice(5, 19) : when(t).slice(5, 16));
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

// ---- runbooks and drills ----------------------------------------------------------------

const enc = encodeURIComponent;

function triggerText(t) {
  if (!t) return '—';
  if (t.kind === 'incident') return h('a', { href: '#/incident/' + t.incident }, 'incident #' + t.incident);
  if (t.kind === 'manual') return 'by hand (' + t.by + ')';
  if (t.kind === 'drill') return h('a', { href: '#/drill-run/' + t.drill_run }, 'drill run #' + t.drill_run);
  if (t.kind === 'schedule') return 'schedule (planned ' + when(t.planned_ms) + ')';
  return String(t.kind);
}

function outcomeText(o) {
  if (!o) return '—';
  if (o.kind === 'succeeded') return o.detail || 'succeeded';
  if (o.kind === 'failed') return 'failed: ' + o.reason;
  if (o.kind === 'timed_out') return 'timed out';
  if (o.kind === 'rejected') return 'rejected by ' + o.by;
  if (o.kind === 'cancelled') return 'cancelled by ' + o.by;
  return String(o.kind);
}

// A table cell whose text may wrap (details, reasons).
function wrap(text) { return h('td', { class: 'wrap' }, text); }

// The configured step (`/runbooks`) behind step `stepId` of `run`: a drill's books are
// `{runbook}:drill` and `{runbook}:restore`.
function configuredStep(books, run, stepId) {
  const book = books.find((b) => b.id === run.runbook.split(':')[0]);
  return book ? book.steps.find((st) => st.id === stepId) : undefined;
}

function waitsForApproval(books, run) {
  if (run.status !== 'running' || !run.current_step) return null;
  const step = configuredStep(books, run, run.current_step);
  return step && step.kind === 'approval' ? step : null;
}

function roleName(role) { return role === 'admin' ? 'an admin' : 'an operator or admin'; }

// Approve / Reject for `run` waiting on approval step `step`, or why they are not offered.
function decision(run, step, msg) {
  const need = step.approve_role || 'operator';
  if (!mayAct(need)) {
    return h('p', { class: 'note' }, `Waiting for approval by ${roleName(need)}; you are signed in as ${me.role}.`);
  }
  const attrs = (what) => ({ 'data-action': what, 'data-run': run.id, class: what === 'reject' ? 'danger' : null });
  return h('div', { class: 'actions' },
    actionButton('Approve', `/runbook-runs/${run.id}/approve`, msg, () => render(), attrs('approve')),
    actionButton('Reject', `/runbook-runs/${run.id}/reject`, msg, () => render(), attrs('reject')));
}

// Attempts of a run's steps as timeline rows.
function attemptRows(run, now) {
  return run.steps.flatMap((st) => st.attempts.map((a) => ({
    label: `${st.id} (${a.n})`, from: a.started_ms, to: a.ended_ms || now, cls: a.outcome ? a.outcome.kind : st.status })));
}

function drillBadge(d) {
  return d.verdict ? badge(d.verdict.replace(/ /g, '_')) : badge(d.status);
}

async function runbooksPage() {
  const [who, books, runs, drills, drillRuns] = await Promise.all(
    [whoAmI(), api('/runbooks'), api('/runbook-runs'), api('/drills'), api('/drill-runs')]);
  const now = Date.now();
  const msg = statusLine('action-result');
  const operator = mayAct('operator');
  const waiting = runs.map((r) => [r, waitsForApproval(books, r)]).filter(([, st]) => st);

  // Starting a drill breaks a service on purpose: the button asks first, in the page.
  const confirmBox = h('div', { id: 'drill-confirm', class: 'confirm', hidden: true, role: 'group', 'aria-label': 'Confirm the drill' });
  const askToStart = (d) => {
    confirmBox.hidden = false;
    confirmBox.setAttribute('data-hold', '');
    const start = actionButton('Start drill', `/drills/${enc(d.id)}/run`, msg, (run) => { location.hash = '#/drill-run/' + run.id; },
      { 'data-action': 'start-drill', 'data-drill': d.id, class: 'danger' });
    confirmBox.replaceChildren(
      h('p', {}, h('strong', {}, `Start drill ${d.id} now?`), ` It runs runbook ${d.runbook} in drill mode on ${d.service}: its inject steps break the service on purpose (${d.scenario}), then it is recovered and measured. Its downtime counts as drill time, not as downtime.`),
      h('div', { class: 'actions' }, start,
        h('button', { type: 'button', class: 'secondary', onclick: () => { confirmBox.hidden = true; confirmBox.removeAttribute('data-hold'); } }, 'Cancel')));
    start.focus();
  };

  const lastRun = (id) => drillRuns.find((r) => r.drill === id);
  const drillTable = table(['Drill', 'Service', 'Scenario', 'Schedule', 'Next run', 'Last run', 'Action'], drills.map((d) => {
    const last = lastRun(d.id);
    let action = '';
    if (d.running) action = h('a', { href: '#/drill-run/' + d.running }, `In progress (#${d.running})`);
    else if (operator) action = h('button', { type: 'button', 'data-action': 'run-drill', 'data-drill': d.id, onclick: () => askToStart(d) }, 'Run drill…');
    return [d.id, h('a', { href: '#/service/' + enc(d.service) }, d.service), wrap(d.scenario), d.schedule || 'by hand only',
      d.next_ms ? when(d.next_ms) : '—',
      last ? [h('a', { href: '#/drill-run/' + last.id }, '#' + last.id), ' ', drillBadge(last), ' ', when(last.started_ms).slice(0, 10)] : 'never',
      action];
  }));
  const drillRunTable = table(['#', 'Drill', 'Service', 'Status', 'Started', 'Verdict', 'Time to recover', 'Note'], drillRuns.map((r) => [
    h('a', { href: '#/drill-run/' + r.id }, '#' + r.id), r.drill, r.service, badge(r.status), when(r.started_ms),
    r.verdict ? badge(r.verdict.replace(/ /g, '_')) : '—', figure('recover_s', r.recover_s, dur(r.recover_s)), wrap(r.reason || '')]));
  const runTable = table(['#', 'Runbook', 'Trigger', 'Status', 'Started', 'Duration', 'Current step'], runs.map((r) => [
    h('a', { href: '#/run/' + r.id }, '#' + r.id), r.runbook, triggerText(r.trigger),
    waitsForApproval(books, r) ? badge('awaiting_approval') : badge(r.status), when(r.started_ms),
    dur(((r.ended_ms || now) - r.started_ms) / 1000), r.current_step || '—']));
  const bookTable = table(['Runbook', 'Service', 'Steps', 'Starts on', 'Action'], books.map((b) => {
    const starts = [b.on_incident ? 'incident' + (b.on_incident.rules.length ? ' (' + b.on_incident.rules.join(', ') + ')' : '') : null, b.manual ? 'by hand' : null].filter(Boolean).join(', ');
    let action = '';
    if (b.running) action = h('a', { href: '#/run/' + b.running }, `Running (#${b.running})`);
    else if (operator && b.manual) {
      action = actionButton('Run', `/runbooks/${enc(b.id)}/run`, msg, (run) => { location.hash = '#/run/' + run.id; },
        { 'data-action': 'run-runbook', 'data-runbook': b.id });
    }
    return [b.id, b.service, wrap(b.steps.map((x) => x.id).join(' → ')), starts || 'drills only', action];
  }));
  const recent = runs.slice(0, 20);
  return [h('h1', {}, 'Runbooks & drills'),
    operator ? null : h('p', { class: 'note' }, `You are signed in as ${who.role}: you can see every run and report; starting runbooks and drills and approving steps needs the operator role.`),
    msg,
    waiting.length ? [h('h2', {}, 'Waiting for approval'), h('div', { class: 'cards' }, waiting.map(([r, st]) =>
      h('article', { class: 'card', 'data-run': r.id },
        h('h2', {}, h('a', { href: '#/run/' + r.id }, `Run #${r.id}: ${r.runbook}`)),
        h('p', {}, `Step ${st.id} waits for approval since ${when(r.started_ms)} (started ${dur((now - r.started_ms) / 1000)} ago).`),
        decision(r, st, msg))))] : null,
    h('h2', {}, 'Drills'),
    drills.length ? [drillTable, confirmBox] : h('p', { class: 'empty' }, 'No drills configured ([[drills]]).'),
    h('h2', {}, 'Drill runs'),
    drillRuns.length ? drillRunTable : h('p', { class: 'empty' }, 'No drill has run yet.'),
    h('h2', {}, 'Runbook runs'),
    recent.length ? timeline(recent.map((r) => ({ label: `#${r.id} ${r.runbook}`, from: r.started_ms, to: r.ended_ms || now, cls: r.status })),
      Math.min(...recent.map((r) => r.started_ms)) - 60000, now, 'Runs over time (newest 20)') : null,
    runs.length ? runTable : h('p', { class: 'empty' }, 'No runs yet.'),
    h('h2', {}, 'Runbooks'),
    books.length ? bookTable : h('p', { class: 'empty' }, 'No runbooks configured.')];
}

async function runPage(id) {
  const [, r, books] = await Promise.all([whoAmI(), api('/runbook-runs/' + enc(id)), api('/runbooks')]);
  const now = Date.now();
  const msg = statusLine('action-result');
  const current = r.steps.find((st) => st.status === 'running');
  const approval = r.status === 'running' && current ? configuredStep(books, r, current.id) : null;
  const total = ((r.ended_ms || now) - r.started_ms) / 1000;
  const rows = attemptRows(r, now);
  return [h('h1', {}, `Run #${r.id}: ${r.runbook} `, badge(r.status)),
    h('dl', { class: 'kv wide' },
      h('dt', {}, 'Service'), h('dd', {}, h('a', { href: '#/service/' + enc(r.service) }, r.service)),
      h('dt', {}, 'Trigger'), h('dd', {}, triggerText(r.trigger)),
      h('dt', {}, 'Started'), h('dd', {}, when(r.started_ms)),
      h('dt', {}, 'Ended'), h('dd', {}, r.ended_ms ? when(r.ended_ms) : '—'),
      h('dt', {}, r.ended_ms ? 'Took' : 'Running for'), h('dd', {}, figure('duration_s', r.ended_ms ? total : null, dur(total))),
      h('dt', {}, 'Reason'), h('dd', {}, r.reason || '—')),
    approval && approval.kind === 'approval' ? h('section', { class: 'card approval', 'aria-labelledby': 'approval-title' },
      h('h2', { id: 'approval-title' }, `Step ${current.id} waits for approval`), decision(r, approval, msg)) : null,
    r.status === 'running' && mayAct('operator') ? h('div', { class: 'actions' },
      actionButton('Cancel run', `/runbook-runs/${r.id}/cancel`, msg, () => render(), { class: 'secondary', 'data-action': 'cancel' })) : null,
    msg,
    h('h2', {}, 'Step timeline'),
    rows.length ? timeline(rows, r.started_ms, r.ended_ms || now, 'Step attempts') : h('p', { class: 'empty' }, 'No step has started.'),
    table(['Step', 'Kind', 'Status', 'Attempts', 'Started', 'Duration', 'Outcome'], r.steps.map((st) => {
      const first = st.attempts[0], last = st.attempts[st.attempts.length - 1];
      const took = first && last.ended_ms ? (last.ended_ms - first.started_ms) / 1000 : null;
      return [st.id, st.kind, badge(st.status), figure(st.id + '.attempts', st.attempts.length, String(st.attempts.length)),
        first ? when(first.started_ms) : '—', figure(st.id + '.duration_s', took, dur(took)), wrap(outcomeText(last && last.outcome))];
    }))];
}

// Time to detect and to recover (from the injected failure) as bars against the RTO line.
function recoveryChart(o) {
  const rows = [['Detected (probe)', o.detect_s, 'detect'], ['Detected (incident)', o.detect_incident_s, 'detect'],
    ['Recovered', o.recover_s, o.rto_met ? 'met' : 'missed']];
  const rto = o.targets.rto_s;
  const max = Math.max(rto, ...rows.map((r) => r[1] || 0)) * 1.08 || 1;
  const width = chartWidth(true), left = 150, right = 70, rowH = 28, top = 22;
  const X = (v) => left + (v / max) * (width - left - right);
  const height = top + rows.length * rowH + 22;
  const title = `Time to detect and to recover after the failure was injected, against the RTO of ${dur(rto)}`;
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, width, height, class: 'timeline', role: 'img', 'aria-label': title });
  rows.forEach(([label, v, cls], i) => {
    const y = top + i * rowH;
    svg.append(s('text', { x: 4, y: y + 17, class: 'rowlabel' }, label));
    if (v === null || v === undefined) {
      svg.append(s('text', { x: left + 4, y: y + 17, class: 'tick' }, 'not measured'));
      return;
    }
    svg.append(s('rect', { x: left, y: y + 4, width: Math.max(X(v) - left, 2).toFixed(1), height: rowH - 10, class: 'span ' + cls }));
    svg.append(s('text', { x: X(v) + 6, y: y + 17, class: 'tick' }, dur(v)));
  });
  const bottom = top + rows.length * rowH;
  svg.append(s('line', { x1: X(rto), x2: X(rto), y1: top - 4, y2: bottom, class: 'hline threshold' }));
  svg.append(s('text', { x: X(rto), y: top - 8, class: 'tick', 'text-anchor': 'middle' }, 'RTO ' + dur(rto)));
  svg.append(s('text', { x: left, y: bottom + 16, class: 'tick' }, '0 s'));
  return h('figure', { class: 'chart' }, h('figcaption', {}, 'Detection and recovery against the RTO'), svg);
}

// Continuity report formats the API serves for a drill run.
const DRILL_REPORT_FORMATS = [['html', 'HTML'], ['md', 'Markdown'], ['json', 'JSON'], ['csv', 'CSV']];

async function drillRunPage(id) {
  const [, d] = await Promise.all([whoAmI(), api('/drill-runs/' + enc(id))]);
  const now = Date.now();
  const o = d.outcome;
  // Before it is measured, the steps so far come from its runbook run.
  const book = !o && d.run ? await api('/runbook-runs/' + d.run) : null;
  const msg = statusLine('report-result');
  const fig = (field, v, text) => figure(field, v, text === undefined ? dur(v) : text);
  const reportButtons = DRILL_REPORT_FORMATS.map(([f, label]) => h('button', { type: 'button', class: 'secondary', 'data-report': f, onclick: async () => {
    msg.className = 'result';
    msg.textContent = 'Fetching the report…';
    try {
      const file = await fetchFile(`/drill-runs/${d.id}/report?format=${f}`, `continuity-drill-run-${d.id}.${f}`);
      const link = saveLink(file, 'Save ' + file.name);
      msg.replaceChildren(link);
      link.click();
    } catch (e) {
      if (e.status === 401) return;
      msg.className = 'result error';
      msg.textContent = 'Failed: ' + e.message;
    }
  } }, label));
  const stepRows = o ? o.steps.filter((st) => st.started_ms).map((st) => ({ label: `${st.phase}: ${st.id}`, from: st.started_ms, to: st.ended_ms || now, cls: st.status })) : [];
  return [h('h1', {}, `Drill run #${d.id}: ${d.drill} `, badge(d.status), ' ', o ? badge(o.verdict) : null),
    h('dl', { class: 'kv wide' },
      h('dt', {}, 'Service'), h('dd', {}, h('a', { href: '#/service/' + enc(d.service) }, d.service)),
      h('dt', {}, 'Scenario'), h('dd', {}, d.scenario),
      h('dt', {}, 'Participants'), h('dd', {}, d.participants.length ? d.participants.join(', ') : '—'),
      h('dt', {}, 'Started'), h('dd', {}, when(d.started_ms), ' ', triggerText(d.trigger)),
      h('dt', {}, 'Failure injected'), h('dd', {}, when(d.inject_ms)),
      h('dt', {}, 'Runbook ended'), h('dd', {}, when(d.ended_ms)),
      h('dt', {}, 'Measured'), h('dd', {}, d.finished_ms ? when(d.finished_ms) : d.settle_until_ms ? 'after ' + when(d.settle_until_ms) : '—'),
      h('dt', {}, 'Runbook run'), h('dd', {}, d.run ? h('a', { href: '#/run/' + d.run }, '#' + d.run) : '—',
        d.restore_run ? [' · restore ', h('a', { href: '#/run/' + d.restore_run }, '#' + d.restore_run)] : null),
      d.skipped ? [h('dt', {}, 'Skipped'), h('dd', {}, d.skipped)] : null,
      d.aborted ? [h('dt', {}, 'Aborted'), h('dd', {}, d.aborted)] : null),
    o ? [h('h2', {}, 'Detection and recovery'),
      h('dl', { class: 'kv wide', 'data-drill-run': d.id },
        h('dt', {}, 'Verdict'), h('dd', {}, figure('verdict', o.verdict, o.verdict.replace(/_/g, ' ')), ' — ', o.reason),
        h('dt', {}, 'Time to detect (probe)'), h('dd', {}, fig('detect_s', o.detect_s)),
        h('dt', {}, 'Time to detect (incident)'), h('dd', {}, fig('detect_incident_s', o.detect_incident_s)),
        h('dt', {}, 'Time to recover'), h('dd', {}, fig('recover_s', o.recover_s)),
        h('dt', {}, 'RTO'), h('dd', {}, fig('rto_s', o.targets.rto_s), ' ', badge(o.rto_met ? 'met' : 'not_met')),
        h('dt', {}, 'Confirmation period'), h('dd', {}, fig('confirm_s', o.confirm_s)),
        h('dt', {}, 'Non-up time'), h('dd', {}, fig('non_up_s', o.non_up_s)),
        h('dt', {}, 'RPO'), h('dd', {}, fig('rpo_s', o.targets.rpo_s), ' — ', o.rpo_result)),
      recoveryChart(o),
      h('h2', {}, 'Steps'),
      stepRows.length ? timeline(stepRows, Math.min(...stepRows.map((r) => r.from)), Math.max(...stepRows.map((r) => r.to)), 'Drill steps') : null,
      table(['Step', 'Phase', 'Kind', 'Status', 'Started', 'Duration', 'Attempts', 'Detail'], o.steps.map((st) => [
        st.id, st.phase, st.kind, badge(st.status), when(st.started_ms), fig('steps.' + st.id + '.duration_s', st.duration_s),
        String(st.attempts), wrap(st.detail)])),
      h('h2', {}, 'Incidents during the drill'),
      o.incidents.length ? table(['#', 'Rule', 'Detected', 'Resolved', 'Drill incident', 'Paged'], o.incidents.map((x) => [
        h('a', { href: '#/incident/' + x.id }, '#' + x.id), x.rule.replace(/_/g, ' '), when(x.detected_ms), when(x.resolved_ms), x.drill ? 'yes' : 'no', x.notified ? 'yes' : 'no']))
        : h('p', { class: 'empty' }, 'No incident was opened.'),
      o.sla ? [h('h2', {}, 'SLA over the drill window'), h('dl', { class: 'kv wide' },
        h('dt', {}, 'Window'), h('dd', {}, `${when(o.sla.from_ms)} → ${when(o.sla.to_ms)}`),
        h('dt', {}, 'Drill time'), h('dd', {}, fig('sla.drill_s', o.sla.drill_s)),
        h('dt', {}, 'Downtime'), h('dd', {}, fig('sla.downtime_s', o.sla.downtime_s)),
        h('dt', {}, 'Unmonitored'), h('dd', {}, fig('sla.unmonitored_s', o.sla.unmonitored_s)),
        h('dt', {}, 'Uptime'), h('dd', {}, fig('sla.uptime_s', o.sla.uptime_s)))] : null,
      o.deviations.length ? [h('h2', {}, 'Deviations'), h('ul', {}, o.deviations.map((x) => h('li', {}, x)))] : null]
      : [h('h2', {}, 'Steps so far'), book && attemptRows(book, now).length ? timeline(attemptRows(book, now), book.started_ms, book.ended_ms || now, 'Step attempts')
        : h('p', { class: 'empty' }, d.status === 'skipped' ? 'The drill did not start.' : 'No step has started yet.'),
      d.status === 'skipped' ? null : h('p', { class: 'note' }, 'The figures appear once the drill is measured (after the confirmation period); this page refreshes itself.')],
    h('h2', {}, 'Continuity test report'),
    h('div', { class: 'actions' }, h('span', {}, o ? 'Download:' : 'Download (not final yet):'), reportButtons), msg,
    h('h2', {}, 'Review'),
    d.review ? h('dl', { class: 'kv wide' },
      h('dt', {}, 'Reviewer'), h('dd', {}, d.review.reviewer),
      h('dt', {}, 'Findings'), h('dd', {}, d.review.findings),
      h('dt', {}, 'Corrective actions'), h('dd', {}, d.review.corrective_actions.join('; ') || '—'),
      h('dt', {}, 'Plan updated'), h('dd', {}, d.review.plan_updated ? 'yes' : 'no'),
      h('dt', {}, 'Recorded'), h('dd', {}, `${d.review.recorded_by} at ${when(d.review.recorded_ms)}`))
      : h('p', { class: 'empty' }, o ? 'Not reviewed yet (watchstand-collector drill review, or POST /api/v1/drill-runs/' + d.id + '/review).' : 'Reviewed after the drill is finished.')];
}

// ---- reports ----------------------------------------------------------------------------

const REPORT_KINDS = [
  ['availability', 'Availability measurement', 'per service: availability against the target, every outage of the period'],
  ['service', 'Service report', 'all services against their SLAs, compared with the previous period'],
  ['incident', 'Incident report', 'the incidents of the period with their timelines, MTTR and MTBF'],
  ['capacity', 'Capacity report', 'every host and metric: peak, trend and projected crossing, at risk first']];
const REPORT_FORMATS = [['html', 'HTML (print or archive)'], ['md', 'Markdown'], ['csv', 'CSV (spreadsheet)'], ['json', 'JSON']];

function monthOf(ms) { return new Date(ms).toISOString().slice(0, 7); }
function dayOf(ms) { return new Date(ms).toISOString().slice(0, 10); }

// The report page: nothing here refreshes by itself (data-hold); the report is fetched with
// the token and offered as a file to save, with a preview of the text formats.
function reportsPage() {
  const now = Date.now();
  const firstOfMonth = Date.parse(monthOf(now) + '-01T00:00:00Z');
  const kindHelp = h('p', { class: 'hint', id: 'report-kind-help' });
  const describe = () => { kindHelp.textContent = REPORT_KINDS.find((k) => k[0] === kind.value)[2] + '.'; };
  const kind = h('select', { id: 'report-kind', 'aria-describedby': 'report-kind-help', onchange: describe },
    REPORT_KINDS.map(([v, t]) => h('option', { value: v }, t)));
  describe();
  const month = h('input', { type: 'month', id: 'report-month', value: monthOf(firstOfMonth - 1), max: monthOf(now), pattern: '[0-9]{4}-[0-9]{2}', placeholder: 'YYYY-MM' });
  const from = h('input', { type: 'date', id: 'report-from', value: dayOf(now - 30 * DAY), max: dayOf(now) });
  const to = h('input', { type: 'date', id: 'report-to', value: dayOf(now), max: dayOf(now) });
  const monthBox = h('div', { class: 'controls', id: 'period-month-fields' }, h('label', { for: 'report-month' }, 'Month'), month);
  const rangeBox = h('div', { class: 'controls', id: 'period-range-fields', hidden: true },
    h('label', { for: 'report-from' }, 'From'), from, h('label', { for: 'report-to' }, 'to (inclusive)'), to);
  const choose = (e) => { monthBox.hidden = e.target.value !== 'month'; rangeBox.hidden = e.target.value !== 'range'; };
  const byMonth = h('input', { type: 'radio', name: 'period', id: 'period-month', value: 'month', checked: true, onchange: choose });
  const byRange = h('input', { type: 'radio', name: 'period', id: 'period-range', value: 'range', onchange: choose });
  const format = h('select', { id: 'report-format' }, REPORT_FORMATS.map(([v, t]) => h('option', { value: v }, t)));
  const result = h('div', { id: 'report-result', role: 'status', 'aria-live': 'polite' });

  const submit = async (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    if (byMonth.checked) {
      if (!/^\d{4}-\d{2}$/.test(month.value)) { result.replaceChildren(h('p', { class: 'error' }, 'Pick a month (YYYY-MM).')); return; }
      q.set('period', month.value);
    } else {
      const f = Date.parse(from.value + 'T00:00:00Z'), t = Date.parse(to.value + 'T00:00:00Z') + DAY;
      if (!Number.isFinite(f) || !Number.isFinite(t) || f >= t) { result.replaceChildren(h('p', { class: 'error' }, 'Pick a start day on or before the end day.')); return; }
      q.set('from', String(f));
      q.set('to', String(Math.min(t, Date.now())));
    }
    q.set('format', format.value);
    result.replaceChildren(h('p', { class: 'result' }, 'Building the report…'));
    try {
      const file = await fetchFile(`/reports/${kind.value}?${q}`, `${kind.value}.${format.value}`);
      const text = format.value === 'html' ? null : await file.blob.text();
      result.replaceChildren(
        h('div', { class: 'actions' },
          h('span', {}, h('strong', { 'data-file': file.name }, file.name), ` (${(file.blob.size / 1024).toFixed(1)} kB)`),
          saveLink(file, 'Save file', { id: 'report-save' })),
        text === null
          ? h('p', { class: 'note' }, 'The HTML report is a document of its own (its own styles, made to print or archive): save it and open it in a browser. The dashboard does not show it inside itself, because its security policy allows no inline styles or frames.')
          : h('pre', { class: 'preview', id: 'report-preview', tabindex: 0, 'aria-label': 'Report preview' }, text));
    } catch (err) {
      if (err.status === 401) return;
      result.replaceChildren(h('p', { class: 'error', role: 'alert' }, 'The report could not be made: ' + err.message));
    }
  };

  return [h('h1', {}, 'Reports'),
    h('p', {}, 'The ISO/IEC 20000 records, built from what the collector measured. The same reports come from ',
      h('code', {}, 'watchstand-collector report'), ' and ', h('code', {}, 'GET /api/v1/reports/{kind}'), '; continuity test reports are on each drill run\'s page.'),
    h('form', { id: 'report-form', class: 'panel', 'data-hold': '', onsubmit: submit },
      h('div', { class: 'controls' }, h('label', { for: 'report-kind' }, 'Report'), kind), kindHelp,
      h('fieldset', {}, h('legend', {}, 'Period'),
        h('div', { class: 'controls' },
          h('span', { class: 'choice' }, byMonth, h('label', { for: 'period-month' }, 'A calendar month')),
          h('span', { class: 'choice' }, byRange, h('label', { for: 'period-range' }, 'Days from … to'))),
        monthBox, rangeBox),
      h('div', { class: 'controls' }, h('label', { for: 'report-format' }, 'Format'), format),
      h('button', { type: 'submit', id: 'report-get' }, 'Get report')),
    result];
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
    const current = target === page || (target === '' && page === 'service') || (target === 'incidents' && page === 'incident')
      || (target === 'runbooks' && (page === 'run' || page === 'drill-run'));
    if (current) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const ticket = ++rendering;
  let nodes;
  try {
    await whoAmI();
    if (page === '') nodes = await overview();
    else if (page === 'service') nodes = await servicePage(parts[1], params);
    else if (page === 'incidents') nodes = await incidentsPage(params);
    else if (page === 'incident') nodes = await incidentPage(parts[1]);
    else if (page === 'runbooks') nodes = await runbooksPage();
    else if (page === 'run') nodes = await runPage(parts[1]);
    else if (page === 'drill-run') nodes = await drillRunPage(parts[1]);
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
  m.replaceChildren(...nodes.flat(Infinity).filter(Boolean));
  m.setAttribute('data-page', page || 'overview');
  m.setAttribute('data-loaded', String(ticket));
  document.getElementById('refreshed').textContent = 'Updated ' + when(Date.now()).slice(11, 19) + 'Z';
}

// A refresh (timer, resize) waits while a field in the page has focus, and skips parts of a
// page that hold what the user is doing (`data-hold`: a drill's confirmation, the report form).
function refresh() {
  const active = document.activeElement;
  if (active && main().contains(active) && (active.tagName === 'INPUT' || active.tagName === 'SELECT')) return;
  if (main().querySelector('[data-hold]')) return;
  render();
}

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const field = document.getElementById('token');
    me = null;
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
