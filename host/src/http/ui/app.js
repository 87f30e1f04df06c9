// factline's status page: polls the admin API and renders it. Plain DOM, no framework: every
// value from the host is set as text (never as HTML), so nothing in an event can run here.
'use strict';

const TOKEN_KEY = 'factline.adminToken';
const POLL_MS = 1000;
// Two minutes of samples for the throughput chart and the lag trends.
const SAMPLES = 120;

const $ = (id) => document.getElementById(id);

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || '',
  timer: null,
  lagHistory: new Map(), // group -> [lag, ...]
  throughput: [], // {t, events, commands}
  lastCounters: null, // {t, events, commands, buckets}
  saga: null, // {saga, id} of the instance drilled into
  open: new Set(), // the <details> an operator opened, by key: they stay open across updates
  busy: false,
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function when(ms) {
  if (!ms) return '';
  return new Date(ms).toLocaleString();
}

function shortVersion(v) {
  if (!v) return '';
  const hash = (v.content_hash || '').slice(0, 12);
  return v.label ? `${v.label}+${hash}` : hash;
}

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const response = await fetch(path, Object.assign({}, options, { headers, cache: 'no-store' }));
  if (response.status === 401) throw new Unauthorized('the admin token was refused');
  const type = response.headers.get('Content-Type') || '';
  const body = type.startsWith('application/json') ? await response.json() : await response.text();
  if (!response.ok) {
    const message = body && body.message ? body.message : `${response.status} ${response.statusText}`;
    throw new Error(`${path}: ${message}`);
  }
  return body;
}

function notice(text) {
  const n = $('notice');
  n.textContent = text || '';
  n.hidden = !text;
}

function actionResult(text) {
  const n = $('action-result');
  n.textContent = text;
  n.hidden = !text;
}

// A <details> that stays open across re-renders once the operator opened it.
function details(key, summary, ...content) {
  const d = el('details', { open: state.open.has(key) }, el('summary', { text: summary }), ...content);
  d.addEventListener('toggle', () => (d.open ? state.open.add(key) : state.open.delete(key)));
  return d;
}

function replaceRows(table, rows) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows);
}

// --- throughput, from the Prometheus counters -------------------------------------------

function parseMetrics(text) {
  let events = 0;
  let commands = 0;
  const buckets = new Map(); // le -> cumulative count over every command histogram
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    const name = line.slice(0, space);
    const value = Number(line.slice(space + 1));
    if (!Number.isFinite(value)) continue;
    if (name.startsWith('events_published_total')) events += value;
    else if (name.startsWith('commands_total')) commands += value;
    else if (name.startsWith('command_duration_seconds_bucket')) {
      const le = /le="([^"]+)"/.exec(name);
      if (le) buckets.set(le[1], (buckets.get(le[1]) || 0) + value);
    }
  }
  return { events, commands, buckets };
}

// p99 of the commands between two scrapes: the smallest bucket bound holding 99% of them.
function p99(before, after) {
  const bounds = [...after.buckets.keys()]
    .map((le) => [le, le === '+Inf' ? Infinity : Number(le)])
    .sort((a, b) => a[1] - b[1]);
  const delta = (le) => (after.buckets.get(le) || 0) - ((before && before.buckets.get(le)) || 0);
  const total = bounds.length ? delta(bounds[bounds.length - 1][0]) : 0;
  if (total <= 0) return null;
  for (const [le, bound] of bounds) {
    if (delta(le) >= 0.99 * total) return bound;
  }
  return null;
}

function recordThroughput(metricsText) {
  const now = performance.now();
  const counters = Object.assign({ t: now }, parseMetrics(metricsText));
  const last = state.lastCounters;
  state.lastCounters = counters;
  if (!last) return;
  const dt = (now - last.t) / 1000;
  if (dt <= 0) return;
  state.throughput.push({
    events: Math.max(0, (counters.events - last.events) / dt),
    commands: Math.max(0, (counters.commands - last.commands) / dt),
    p99: p99(last, counters),
  });
  if (state.throughput.length > SAMPLES) state.throughput.shift();
}

function renderThroughput() {
  const samples = state.throughput;
  const latest = samples[samples.length - 1] || { events: 0, commands: 0, p99: null };
  const p = latest.p99;
  const p99Text = p === null ? '–' : p === Infinity ? '> 10 s' : `≤ ${(p * 1000).toPrecision(3)} ms`;
  $('rates').replaceChildren(
    el('span', { class: 'figure', id: 'events-rate' }, el('b', { text: latest.events.toFixed(1) }), ' events/s'),
    el('span', { class: 'figure', id: 'commands-rate' }, el('b', { text: latest.commands.toFixed(1) }), ' commands/s'),
    el('span', { class: 'figure', id: 'command-p99' }, 'command p99 ', el('b', { text: p99Text })),
  );
  const chart = $('throughput-chart');
  const [w, h] = [600, 120];
  // Headroom above the highest sample, so a steady rate is a line, not the chart's edge.
  const max = 1.25 * Math.max(1, ...samples.map((s) => Math.max(s.events, s.commands)));
  const slots = Math.max(30, samples.length) - 1;
  const line = (key) => samples
    .map((s, i) => `${(i / slots) * w},${h - 4 - (s[key] / max) * (h - 8)}`)
    .join(' ');
  chart.replaceChildren(
    svg('line', { x1: 0, y1: h - 4, x2: w, y2: h - 4, class: 'axis' }),
    svg('polyline', { points: line('events'), class: 'events' }),
    svg('polyline', { points: line('commands'), class: 'commands' }),
  );
  $('chart-scale').textContent = `top of the chart: ${max.toFixed(1)}/s`;
}

// --- groups ----------------------------------------------------------------------------

function trend(group, lag) {
  let history = state.lagHistory.get(group);
  if (!history) state.lagHistory.set(group, (history = []));
  history.push(lag);
  if (history.length > SAMPLES) history.shift();
  const window = history.slice(-10);
  const change = window[window.length - 1] - window[0];
  const word = change > 0 ? 'rising' : change < 0 ? 'falling' : 'steady';
  const arrow = change > 0 ? '↑' : change < 0 ? '↓' : '→';
  const [w, h] = [80, 20];
  const max = Math.max(1, ...history);
  const points = history
    .map((v, i) => `${history.length === 1 ? w : (i / (history.length - 1)) * w},${h - 2 - (v / max) * (h - 4)}`)
    .join(' ');
  const spark = svg('svg', { viewBox: `0 0 ${w} ${h}`, class: 'spark', 'aria-hidden': 'true' });
  spark.append(svg('polyline', { points }));
  return el('span', { class: `trend ${word}`, 'aria-label': `lag ${word}` }, spark, ` ${arrow} ${word}`);
}

function renderGroups(groups) {
  const seen = new Set();
  const rows = groups.map((g) => {
    seen.add(g.group);
    let shown = g.state;
    if (g.state === 'rebuilding' && g.rebuild) {
      const { processed, target } = g.rebuild;
      shown = el('span', {}, 'rebuilding ',
        el('progress', { max: Math.max(1, target), value: processed, 'aria-label': `rebuild of ${g.group}` }),
        ` ${processed}/${target}`);
    } else if (g.state === 'blocked') {
      const at = g.blocked.map((b) => `${b.topic}/${b.partition}@${b.offset}`).join(', ');
      shown = `blocked on a dead letter (${at})`;
    }
    const parts = el('ul', { class: 'partitions' }, ...g.partitions.map((p) =>
      el('li', { class: p.lag > 0 ? 'behind' : '' },
        `${p.topic}/${p.partition}: ${p.committed}/${p.high_water_mark}, lag ${p.lag}`)));
    return el('tr', { 'data-group': g.group, 'data-state': g.state },
      el('th', { scope: 'row', text: g.group }),
      el('td', { text: g.kind || '' }),
      el('td', {}, el('span', { class: `state ${g.state}` }, shown)),
      el('td', { class: 'num lag', text: g.lag }),
      el('td', {}, trend(g.group, g.lag)),
      el('td', {}, parts));
  });
  for (const name of state.lagHistory.keys()) if (!seen.has(name)) state.lagHistory.delete(name);
  replaceRows($('groups'), rows);
}

// --- dead letters ----------------------------------------------------------------------

async function deadLetterAction(d, action) {
  const where = `${d.group} ${d.topic}/${d.partition}@${d.offset}`;
  if (action === 'discard' && !window.confirm(`Discard the dead letter of ${where}? The event is skipped for good.`)) {
    return;
  }
  const path = `/v1/admin/dlq/${encodeURIComponent(d.group)}/${encodeURIComponent(d.topic)}/${d.partition}/${d.offset}/${action}`;
  try {
    const r = await api(path, { method: 'POST' });
    actionResult(action === 'retry' ? `Retried ${where}: ${r.retried}` : `Discarded ${where}`);
  } catch (e) {
    if (e instanceof Unauthorized) return signedOut(e.message);
    actionResult(`${action} of ${where} failed: ${e.message}`);
  }
  refresh();
}

function renderDeadLetters(letters) {
  $('dlq-count').textContent = letters.length ? `(${letters.length})` : '';
  $('dlq-empty').hidden = letters.length > 0;
  $('dead-letters').hidden = letters.length === 0;
  const rows = letters.map((d) => {
    const where = `${d.group} ${d.topic}/${d.partition}@${d.offset}`;
    const failure = el('td', { class: 'failure' },
      el('span', { class: 'kind', text: d.failure_kind }), ' ',
      el('span', { class: 'message', text: d.message }),
      d.blocking ? el('span', { class: 'state blocked', text: 'blocks its partition' }) : null);
    if (d.backtrace) {
      failure.append(details(`backtrace ${where}`, 'Guest backtrace',
        el('pre', { class: 'backtrace', text: d.backtrace })));
    }
    return el('tr', { 'data-dead-letter': where },
      el('th', { scope: 'row', text: d.group }),
      el('td', {}, `${d.event_type} on ${d.stream}`, el('br'), el('span', { class: 'muted', text: `${d.topic}/${d.partition}@${d.offset}` })),
      failure,
      el('td', { class: 'num', text: d.attempts }),
      el('td', { class: 'mono', text: d.plugin_version }),
      el('td', { text: when(d.last_failed_at) }),
      el('td', { class: 'actions' },
        el('button', { type: 'button', 'aria-label': `Retry ${where}`, onclick: () => deadLetterAction(d, 'retry') }, 'Retry'),
        el('button', { type: 'button', class: 'danger', 'aria-label': `Discard ${where}`, onclick: () => deadLetterAction(d, 'discard') }, 'Discard')));
  });
  replaceRows($('dead-letters'), rows);
}

// --- topics, plugins -------------------------------------------------------------------

function renderTopics(topics) {
  replaceRows($('topics'), topics.map((t) => el('tr', {},
    el('th', { scope: 'row', text: t.topic }),
    el('td', { class: 'num', text: t.events }),
    el('td', { class: 'mono', text: t.partitions.map((p) => `${p.partition}: ${p.high_water_mark}`).join('  ') }))));
}

function renderPlugins(plugins, histories) {
  replaceRows($('plugins'), plugins.map((p, i) => {
    const history = histories[i];
    const version = el('td', { class: 'mono' }, p.version);
    if (history && history.previous && history.previous.length) {
      version.append(details(`history ${p.name}`, `${history.previous.length} earlier`,
        el('ul', {}, ...history.previous.map((v) =>
          el('li', {}, shortVersion(v.version), el('span', { class: 'muted', text: ` ${when(v.deployed_at_ms)}` }))))));
    }
    return el('tr', { 'data-plugin': p.name },
      el('th', { scope: 'row', text: p.name }),
      el('td', { text: p.kind }),
      version,
      el('td', { text: history ? when(history.current.deployed_at_ms) : '' }));
  }));
}

// --- sagas -----------------------------------------------------------------------------

function renderSagas(instances) {
  const counts = new Map();
  for (const s of instances) counts.set(s.status, (counts.get(s.status) || 0) + 1);
  $('saga-counts').replaceChildren(...[...counts].map(([status, n]) =>
    el('span', { class: `figure state ${status}` }, el('b', { text: n }), ` ${status}`)));
  $('sagas-empty').hidden = instances.length > 0;
  $('sagas').hidden = instances.length === 0;
  const order = ['needs-attention', 'failed', 'compensating', 'running', 'completed'];
  const sorted = [...instances].sort((a, b) =>
    order.indexOf(a.status) - order.indexOf(b.status) || b.updated_at - a.updated_at);
  replaceRows($('sagas'), sorted.slice(0, 200).map((s) => {
    const current = s.failed_step || (s.steps.find((st) => st.status === 'pending') || {}).name || '';
    return el('tr', {},
      el('th', { scope: 'row', text: s.saga }),
      el('td', {}, el('button', {
        type: 'button', class: 'link', 'aria-label': `Show saga ${s.saga} instance ${s.instance_id}`,
        onclick: () => { state.saga = { saga: s.saga, id: s.instance_id }; refresh(); },
      }, s.instance_id)),
      el('td', {}, el('span', { class: `state ${s.status}`, text: s.status })),
      el('td', { text: current }),
      el('td', { text: when(s.updated_at) }));
  }));
}

function renderSagaDetail(s) {
  const box = $('saga-detail');
  if (!s) { box.hidden = true; return; }
  box.hidden = false;
  $('h-saga-detail').textContent = `${s.saga} ${s.instance_id}: ${s.status}` +
    (s.failure_reason ? ` (${s.failure_reason})` : '') + (s.attention ? ` (needs attention: ${s.attention})` : '');
  replaceRows($('saga-steps'), s.steps.map((st) => el('tr', {},
    el('th', { scope: 'row', text: st.name }),
    el('td', {}, el('span', { class: `state ${st.status}`, text: st.status })),
    el('td', { text: st.compensable ? 'yes' : 'no' }),
    el('td', { text: when(st.sent_at) }),
    el('td', { text: st.compensation_error ? `${st.compensation_attempts} failed: ${st.compensation_error}` : st.compensation_attempts ? `${st.compensation_attempts} attempts` : '' }))));
  $('saga-history').replaceChildren(...s.history.map((h) =>
    el('li', {}, el('span', { class: 'muted', text: `${when(h.at)} ` }), `${h.step}: ${h.what}`)));
}

// --- polling ---------------------------------------------------------------------------

async function refresh() {
  if (state.busy) return;
  state.busy = true;
  try {
    const [groups, dlq, topics, plugins, sagas, metrics] = await Promise.all([
      api('/v1/admin/groups'), api('/v1/admin/dlq'), api('/v1/admin/topics'),
      api('/v1/admin/plugins'), api('/v1/admin/sagas'),
      api('/metrics').catch(() => ''),
    ]);
    const histories = await Promise.all(plugins.plugins.map((p) =>
      api(`/v1/admin/plugins/${encodeURIComponent(p.name)}`).catch(() => null)));
    let detail = null;
    if (state.saga) {
      detail = await api(`/v1/admin/sagas/${encodeURIComponent(state.saga.saga)}/${encodeURIComponent(state.saga.id)}`)
        .catch(() => null);
    }
    recordThroughput(typeof metrics === 'string' ? metrics : '');
    renderThroughput();
    renderGroups(groups.groups);
    renderDeadLetters(dlq.dead_letters);
    renderTopics(topics.topics);
    renderPlugins(plugins.plugins, histories);
    renderSagas(sagas.instances);
    renderSagaDetail(detail);
    notice('');
    $('board').hidden = false;
    $('connection').textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    if (e instanceof Unauthorized) signedOut(state.token ? 'The admin token was refused.' : 'Sign in with the admin token.');
    else notice(`Cannot reach the host: ${e.message}`);
  } finally {
    state.busy = false;
  }
}

function signedOut(message) {
  clearInterval(state.timer);
  state.timer = null;
  state.token = '';
  sessionStorage.removeItem(TOKEN_KEY);
  $('board').hidden = true;
  $('login').hidden = false;
  $('session').hidden = true;
  notice(message);
  $('token').focus();
}

function start() {
  $('login').hidden = true;
  $('session').hidden = false;
  clearInterval(state.timer);
  state.timer = setInterval(refresh, POLL_MS);
  refresh();
}

document.addEventListener('DOMContentLoaded', () => {
  $('login').addEventListener('submit', (e) => {
    e.preventDefault();
    state.token = $('token').value.trim();
    $('token').value = '';
    // The tab's session only: gone when the tab closes, never sent anywhere but this host.
    sessionStorage.setItem(TOKEN_KEY, state.token);
    start();
  });
  $('sign-out').addEventListener('click', () => signedOut('Signed out.'));
  $('saga-close').addEventListener('click', () => { state.saga = null; renderSagaDetail(null); });
  // A host without an admin token answers without one; with one, the first call asks for it.
  start();
});
