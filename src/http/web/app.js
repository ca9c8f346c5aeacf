// The tierbus dashboard: polls the HTTP API every two seconds and renders what it answers. No
// framework and no build step; every value goes into the page as text (never as HTML), so a
// payload or an error message cannot inject markup.
'use strict';

const POLL_MS = 2000;
const HISTORY = 90; // points per latency chart: three minutes at one per poll

const state = {
  prevTiers: null, // the last /api/tiers answer, to turn totals into rates and interval latencies
  series: {},      // tier -> [{p50, p99}] of the last HISTORY intervals
  openWorkflow: null,
  // Runs retried from this page: id -> {at: ms of the click, done: ms it was first seen finished}.
  // They stay on the failed panel with their live status until a while after they finish, so the
  // retry's outcome shows where the button was clicked.
  retried: new Map(),
};
const RETRIED_KEEP_MS = 60000; // a retried run stays this long after it finished
const RETRIED_MAX_MS = 600000; // and is let go after this long whatever became of it

// ---------------------------------------------------------------- the API

function token() { return localStorage.getItem('tierbus.token') || ''; }

async function api(path, options = {}) {
  const headers = Object.assign({'Accept': 'application/json'}, options.headers || {});
  if (token()) headers['Authorization'] = 'Bearer ' + token();
  if (options.body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, Object.assign({}, options, {headers}));
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  if (!res.ok) {
    const why = body && body.error ? body.error : res.status + ' ' + res.statusText;
    const err = new Error(why);
    err.status = res.status;
    throw err;
  }
  return body;
}

// The list under |key| of an answer.
function items(body, key) { return body && Array.isArray(body[key]) ? body[key] : []; }

// ---------------------------------------------------------------- rendering helpers

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c ?? ''));
  return e;
}

function fmtNum(v) { return v === null || v === undefined ? '–' : Number(v).toLocaleString('en'); }
function fmtMs(v) { return v === null || v === undefined ? '–' : v < 10 ? v.toFixed(2) : v.toFixed(1); }
function fmtTime(us) {
  if (!us) return '–';
  const ms = typeof us === 'number' ? (us > 1e14 ? us / 1000 : us) : Date.parse(us);
  return isNaN(ms) ? String(us) : new Date(ms).toISOString().replace('T', ' ').slice(0, 19);
}
function tierCell(name) { return el('td', {class: 'tier tier-' + name}, name || '–'); }

function toast(text) {
  const t = document.getElementById('toast');
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
}

// Fills |table| with a header and rows; |cols| is [[title, row => cell content], ...].
function fillTable(table, cols, rows, emptyText) {
  table.replaceChildren();
  table.append(el('thead', {}, el('tr', {}, ...cols.map(([title]) => el('th', {}, title)))));
  const body = el('tbody');
  if (rows.length === 0) {
    body.append(el('tr', {}, el('td', {class: 'empty', colspan: String(cols.length)}, emptyText)));
  }
  for (const r of rows) {
    const tr = el('tr');
    for (const [, get] of cols) {
      const v = get(r);
      if (v instanceof HTMLTableCellElement) tr.append(v);
      else if (v instanceof Node) tr.append(el('td', {}, v));
      else tr.append(el('td', {title: String(v ?? '')}, String(v ?? '–')));
    }
    if (r.__onclick) { tr.className = 'clickable'; tr.addEventListener('click', r.__onclick); }
    if (r.__id) tr.setAttribute('data-id', r.__id);
    body.append(tr);
  }
  table.append(body);
}

function showError(table, err) {
  table.replaceChildren(el('tbody', {}, el('tr', {}, el('td', {class: 'error'},
    err.status === 404 ? 'not available from this server' : 'could not load: ' + err.message))));
}

// ---------------------------------------------------------------- tiers

// Quantile |q| of the counts in |counts| (power-of-two buckets bounded by |upper|), in ms.
function quantile(counts, upper, q) {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i];
    if (seen >= q * total) return upper[i];
  }
  return upper[upper.length - 1];
}

function renderTiers(body) {
  const prev = state.prevTiers;
  const secs = prev ? (body.now_us - prev.now_us) / 1e6 : 0;
  const tbody = document.querySelector('#tiers tbody');
  tbody.replaceChildren();
  const total = {depth: 0, inflight: 0, rate: 0, processed: 0, failed: 0, dead: 0, inversions: 0};
  for (const t of body.tiers) {
    const before = prev && prev.tiers.find(p => p.name === t.name);
    let rate = null;
    let p50 = t.start.count ? t.start.p50_ms : null, p99 = t.start.count ? t.start.p99_ms : null;
    if (before && secs > 0) {
      rate = (t.processed - before.processed) / secs;
      const delta = t.start.counts.map((c, i) => c - (before.start.counts[i] || 0));
      if (delta.some(c => c > 0)) {
        p50 = quantile(delta, body.bucket_upper_ms, 0.5);
        p99 = quantile(delta, body.bucket_upper_ms, 0.99);
        const s = state.series[t.name] = state.series[t.name] || [];
        s.push({p50, p99});
        if (s.length > HISTORY) s.shift();
      }
    }
    total.depth += t.depth || 0;
    total.inflight += t.in_flight || 0;
    total.rate += rate || 0;
    total.processed += t.processed;
    total.failed += t.failed;
    total.dead += t.dead;
    total.inversions += t.inversions;
    tbody.append(el('tr', {'data-tier': t.name},
      tierCell(t.name), el('td', {class: 'depth'}, fmtNum(t.depth)),
      el('td', {class: 'inflight'}, fmtNum(t.in_flight) + ' / ' + t.concurrency),
      el('td', {class: 'rate'}, rate === null ? '–' : rate.toFixed(1)),
      el('td', {}, fmtMs(p50)), el('td', {}, fmtMs(p99)),
      el('td', {class: 'processed'}, fmtNum(t.processed)), el('td', {class: 'failed'}, fmtNum(t.failed)),
      el('td', {class: 'dead'}, fmtNum(t.dead)), el('td', {class: 'inversions'}, fmtNum(t.inversions))));
  }
  document.getElementById('total-depth').textContent = fmtNum(total.depth);
  document.getElementById('total-inflight').textContent = fmtNum(total.inflight);
  document.getElementById('total-rate').textContent = prev ? total.rate.toFixed(1) : '–';
  document.getElementById('total-processed').textContent = fmtNum(total.processed);
  document.getElementById('total-failed').textContent = fmtNum(total.failed);
  document.getElementById('total-dead').textContent = fmtNum(total.dead);
  document.getElementById('total-inversions').textContent = fmtNum(total.inversions);
  state.prevTiers = body;
  renderCharts(body.tiers.map(t => t.name));
}

function renderCharts(names) {
  const box = document.getElementById('charts');
  for (const name of names) {
    let c = box.querySelector(`[data-tier="${CSS.escape(name)}"]`);
    if (!c) {
      c = el('div', {class: 'chart', 'data-tier': name},
        el('div', {class: 'label'}, el('span', {class: 'tier tier-' + name}, name), ' ',
          el('span', {class: 'last'}, '')), el('canvas', {width: '520', height: '180'}));
      box.append(c);
    }
    drawChart(c, state.series[name] || [], name);
  }
}

function drawChart(box, points, name) {
  const canvas = box.querySelector('canvas');
  const g = canvas.getContext('2d');
  const w = canvas.width, h = canvas.height, pad = 4;
  g.clearRect(0, 0, w, h);
  const last = points[points.length - 1];
  box.querySelector('.last').textContent =
    last ? `p50 ${fmtMs(last.p50)} ms · p99 ${fmtMs(last.p99)} ms` : 'no events yet';
  if (points.length === 0) return;
  const max = Math.max(1, ...points.map(p => p.p99));
  g.strokeStyle = '#deded8';
  g.beginPath(); g.moveTo(0, h - pad); g.lineTo(w, h - pad); g.stroke();
  g.fillStyle = '#6b6b66';
  g.font = '20px system-ui';
  g.fillText(fmtMs(max) + ' ms', 6, 22);
  const color = getComputedStyle(document.documentElement).getPropertyValue('--' + name).trim() || '#2e86c1';
  for (const [key, alpha] of [['p50', 0.45], ['p99', 1]]) {
    g.strokeStyle = color;
    g.globalAlpha = alpha;
    g.lineWidth = 3;
    g.beginPath();
    points.forEach((p, i) => {
      const x = (i / (HISTORY - 1)) * w;
      const y = h - pad - (p[key] / max) * (h - 2 * pad - 24);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  }
  g.globalAlpha = 1;
}

// ---------------------------------------------------------------- workflows

function workflowId(w) { return w.id; }

async function showWorkflow(id) {
  state.openWorkflow = id;
  const box = document.getElementById('wf-detail');
  box.hidden = false;
  box.replaceChildren(el('div', {class: 'empty'}, 'loading ' + id + '…'));
  try {
    const body = await api('/api/workflows/' + encodeURIComponent(id));
    const wf = body.workflow;
    const t = el('table', {class: 'list'});
    fillTable(t, [
      ['step', s => `${s.step} ${s.name}`],
      ['kind', s => s.kind],
      ['attempt', s => s.attempt],
      ['status', s => s.status],
      ['tier', s => tierCell(s.tier)],
      ['started', s => fmtTime(s.started_us)],
      ['detail', s => s.error || s.detail || ''],
    ], body.history || [], 'no steps recorded');
    const esc = (body.escalations || []).length;
    box.replaceChildren(el('h3', {}, `Workflow ${id} — ${wf.name} (${wf.status}, tier ${wf.tier}` +
      (esc ? `, ${esc} escalation${esc > 1 ? 's' : ''})` : ')')),
      el('button', {onclick: () => { box.hidden = true; state.openWorkflow = null; }}, 'close'), t);
  } catch (err) {
    box.replaceChildren(el('div', {class: 'error'}, 'could not load ' + id + ': ' + err.message));
  }
}

const WF_COLS = [
  ['id', w => w.id],
  ['type', w => w.name],
  ['tier', w => tierCell(w.tier)],
  ['step', w => w.step_name ? `${w.step_name} (${w.step_state})` : ''],
  ['updated', w => fmtTime(w.updated_us)],
];

async function renderWorkflows(status, tableId) {
  const table = document.getElementById(tableId);
  try {
    const rows = items(await api(`/api/workflows?status=${status}&limit=20`), 'workflows');
    for (const r of rows) r.__onclick = () => showWorkflow(workflowId(r));
    fillTable(table, WF_COLS, rows, 'none ' + status);
  } catch (err) { showError(table, err); }
}

// ---------------------------------------------------------------- failed jobs and dead letters

// POSTs |path|; on success runs |after| (if any), says |done| and polls at once.
async function act(button, path, done, after) {
  button.disabled = true;
  try {
    await api(path, {method: 'POST', body: '{}'});
    if (after) after();
    toast(done);
    poll();
  } catch (err) {
    toast('failed: ' + err.message);
    button.disabled = false;
  }
}

const FINISHED = new Set(['completed', 'cancelled']);

// The runs retried from this page that are no longer in the failed list, as the API has them now;
// the ones finished long enough ago, or retried too long ago, are let go.
async function retriedRuns(failedIds) {
  const now = Date.now();
  const ids = [];
  for (const [id, r] of state.retried) {
    if (now - r.at > RETRIED_MAX_MS || (r.done && now - r.done > RETRIED_KEEP_MS)) state.retried.delete(id);
    else if (!failedIds.has(id)) ids.push(id);
  }
  const runs = await Promise.all(ids.map(id =>
    api('/api/workflows/' + encodeURIComponent(id)).then(b => b.workflow, () => null)));
  return runs.filter(w => {
    if (w && FINISHED.has(w.status)) {
      const r = state.retried.get(w.id);
      if (r && !r.done) r.done = now;
    }
    return w !== null;
  });
}

function retryButton(w) {
  const id = workflowId(w);
  return el('button', {class: 'retry', 'data-id': id, onclick: e => {
    e.stopPropagation();
    act(e.target, `/api/jobs/${encodeURIComponent(id)}/retry`, 'retry started',
        () => state.retried.set(id, {at: Date.now(), done: 0}));
  }}, 'retry');
}

// Failed runs, newest first, each with a retry button; a run retried from here stays on the list
// with its live status (running, waiting, completed, or failed again) until a while after.
async function renderFailed() {
  const table = document.getElementById('failed');
  try {
    const failed = items(await api('/api/workflows?status=failed&limit=20'), 'workflows');
    const rows = (await retriedRuns(new Set(failed.map(workflowId)))).concat(failed);
    for (const r of rows) {
      r.__id = workflowId(r);
      r.__onclick = () => showWorkflow(workflowId(r));
    }
    fillTable(table, [
      ['id', w => w.id],
      ['type', w => w.name],
      ['tier', w => tierCell(w.tier)],
      ['status', w => el('td', {class: 'run-status st-' + w.status},
        state.retried.has(w.id) && w.status !== 'failed' ? 'retried → ' + w.status : w.status)],
      ['step', w => !w.step_name ? '' : FINISHED.has(w.status) ? w.step_name
        : `${w.step_name} (attempt ${w.attempt})`],
      ['error', w => w.error || ''],
      ['updated', w => fmtTime(w.updated_us)],
      ['', w => w.status === 'failed' ? retryButton(w) : ''],
    ], rows, 'no failed runs');
  } catch (err) { showError(table, err); }
}

function dlqId(d) { return d.msg_id; }

async function renderDlq() {
  const table = document.getElementById('dlq');
  try {
    const rows = items(await api('/api/dlq?limit=50'), 'entries');
    fillTable(table, [
      ['id', d => d.msg_id],
      ['event', d => d.event_type],
      ['tier', d => tierCell(d.tier)],
      ['reason', d => d.reason],
      ['last error', d => d.error],
      ['deliveries', d => d.deliveries],
      ['replays', d => d.replays],
      ['at', d => fmtTime(d.at)],
      ['', d => el('button', {class: 'replay', 'data-id': d.msg_id,
        onclick: e => act(e.target, `/api/dlq/${encodeURIComponent(d.msg_id)}/replay`, 'replayed')}, 'replay')],
    ], rows, 'the dead-letter queue is empty');
  } catch (err) { showError(table, err); }
}

// ---------------------------------------------------------------- schedules and repositories

async function renderSchedules() {
  const table = document.getElementById('schedules');
  try {
    fillTable(table, [
      ['task', s => s.name],
      ['on', s => s.enabled ? 'on' : 'off'],
      ['pattern', s => s.pattern === s.cron ? s.pattern : `${s.pattern} (${s.cron})`],
      ['event', s => s.event],
      ['tier', s => tierCell(s.priority)],
      ['next run', s => fmtTime(s.next_us)],
      ['last run', s => fmtTime(s.last_run_us)],
      ['status', s => s.status + (s.last_error ? ': ' + s.last_error : '')],
    ], items(await api('/api/schedules'), 'schedules'), 'no scheduled tasks');
  } catch (err) { showError(table, err); }
}

async function renderRepositories() {
  const dist = document.getElementById('distribution');
  try {
    const body = await api('/api/priority/distribution');
    const chips = body.groups.map(g => el('span', {class: 'chip'},
      el('span', {class: 'tier'}, g.priority), ` ${fmtNum(g.count)} ` +
      (g.is_workspace_repo ? 'in workspaces' : 'tracked only')));
    chips.push(el('span', {class: 'chip'}, `inversions ${fmtNum(body.inversions.repositories)}`));
    dist.replaceChildren(...chips);
  } catch (err) {
    dist.replaceChildren(el('span', {class: 'error'}, err.status === 404 ? 'not available from this server' : err.message));
  }
  const repos = document.getElementById('repos');
  try {
    fillTable(repos, [
      ['repository', r => r.repository_id],
      ['priority', r => r.priority + (r.manual_override ? ' (override)' : '')],
      ['score', r => r.priority_score],
      ['workspaces', r => r.workspace_count],
      ['jobs tier', r => tierCell(r.jobs_tier)],
    ], items(await api('/api/repositories?limit=20'), 'repositories'), 'no repositories tracked');
  } catch (err) { showError(repos, err); }
  const syncs = document.getElementById('syncs');
  try {
    fillTable(syncs, [
      ['finished', s => fmtTime(s.finished_at)],
      ['trigger', s => s.trigger],
      ['status', s => s.status],
      ['repositories', s => `${s.workspaceRepos} in workspaces, ${s.trackedOnlyRepos} tracked only`],
      ['priority changes', s => s.priorityChanges],
    ], items(await api('/api/priority/syncs?limit=10'), 'syncs'), 'no priority syncs yet');
  } catch (err) { showError(syncs, err); }
}

// ---------------------------------------------------------------- the poll

async function poll() {
  const status = document.getElementById('status');
  try {
    renderTiers(await api('/api/tiers'));
    status.textContent = 'live · ' + new Date().toLocaleTimeString();
    status.className = 'status ok';
  } catch (err) {
    status.textContent = err.status === 401 ? 'the API needs a token' : 'unreachable: ' + err.message;
    status.className = 'status bad';
    return;
  }
  await Promise.all([
    renderWorkflows('running', 'wf-running'), renderWorkflows('waiting', 'wf-waiting'),
    renderFailed(), renderDlq(), renderSchedules(), renderRepositories(),
  ]);
  if (state.openWorkflow) showWorkflow(state.openWorkflow);
}

document.getElementById('token').value = token();
document.getElementById('token').addEventListener('change', e => {
  localStorage.setItem('tierbus.token', e.target.value.trim());
  poll();
});
// One poll at a time: the next starts two seconds after the last ended, however slow it was.
(async function loop() {
  await poll();
  setTimeout(loop, POLL_MS);
})();
