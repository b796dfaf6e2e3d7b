/*
 * The status page for trainers: one static HTML file, its stylesheet and script (separate files so the
 * Content-Security-Policy can forbid inline code). The script reads /api/state every few seconds and
 * /events (server-sent decisions) live, and writes everything with textContent, never as HTML, so a
 * hostile user name or address in a decision cannot become markup. The charts (last hour, per minute) are
 * their own section, script and styles in status-charts.ts.
 */
import { CHARTS_CSS, CHARTS_HTML } from './status-charts.js';

export const STATUS_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Gatehouse status</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/status.css">
<script src="/status.js" defer></script>
<script src="/charts.js" defer></script>
</head>
<body>
<header>
  <h1>Gatehouse <span id="hostname"></span></h1>
  <p>Read-only status. <span id="conn" class="muted">connecting…</span> · up since <span id="started"></span></p>
</header>
<main>
  <section>
    <h2>Listeners</h2>
    <table id="listeners"><thead><tr><th>service</th><th>state</th><th>bound</th></tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Queue</h2>
    <p id="queue-summary">…</p>
    <table id="queue"><thead><tr><th>id</th><th>age</th><th>recipients</th><th>attempts</th><th>last error</th></tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Login throttles</h2>
    <p id="locks-empty" class="muted">no address or name is throttled</p>
    <table id="locks"><thead><tr><th>kind</th><th>address</th><th>name</th><th>failures</th><th>until</th></tr></thead><tbody></tbody></table>
  </section>
${CHARTS_HTML}  <section class="wide">
    <h2>Live decisions</h2>
    <p><label><input type="checkbox" id="only-deny"> denials only</label> · <span id="counts" class="muted"></span></p>
    <table id="decisions"><thead><tr><th>time</th><th>service</th><th>phase</th><th>verdict</th><th>rule</th><th>ip</th><th>user</th><th>reason</th><th>object</th></tr></thead><tbody></tbody></table>
  </section>
</main>
</body>
</html>
`;

export const STATUS_CSS = `body { font: 14px/1.4 system-ui, sans-serif; margin: 1rem 2rem; color: #222; background: #fafafa; }
h1 { font-size: 1.4rem; margin: 0; } h2 { font-size: 1.1rem; margin: 1.2rem 0 .4rem; }
.muted { color: #777; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: .2rem .5rem; border-bottom: 1px solid #e4e4e4; vertical-align: top; }
th { background: #f0f0f0; font-weight: 600; }
td { font-family: ui-monospace, monospace; font-size: 12px; overflow-wrap: break-word; }
tr.deny td { background: #fdecec; } tr.deny td.verdict { color: #b00020; font-weight: 700; }
tr.allow td.verdict { color: #1b6e20; }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(22rem, 1fr)); gap: 0 2rem; }
section.wide { grid-column: 1 / -1; }
${CHARTS_CSS}`;

export const STATUS_JS = `'use strict';
(function () {
  var MAX_ROWS = 300;
  var counts = { allow: 0, deny: 0 };
  function $(id) { return document.getElementById(id); }
  function cell(tr, text, cls) {
    var td = document.createElement('td');
    td.textContent = text === undefined || text === null ? '' : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  function fill(tbody, rows, cols) {
    while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
    rows.forEach(function (r) {
      var tr = document.createElement('tr');
      cols.forEach(function (c) { cell(tr, typeof c === 'function' ? c(r) : r[c]); });
      tbody.appendChild(tr);
    });
  }
  function age(s) {
    if (s < 120) return s + ' s';
    if (s < 7200) return Math.round(s / 60) + ' min';
    return Math.round(s / 3600) + ' h';
  }
  function applyFilter() {
    var only = $('only-deny').checked;
    var rows = $('decisions').tBodies[0].rows;
    for (var i = 0; i < rows.length; i++) rows[i].hidden = only && rows[i].className !== 'deny';
  }
  function state() {
    fetch('/api/state', { cache: 'no-store', credentials: 'same-origin' }).then(function (r) { return r.json(); }).then(function (s) {
      $('hostname').textContent = s.hostname;
      $('started').textContent = s.startedAt;
      var ls = Object.keys(s.listeners).map(function (k) {
        var l = s.listeners[k];
        return { service: k, state: l.enabled ? (l.bound.length ? 'listening' : 'not bound') : 'off',
          bound: l.bound.map(function (b) { return (b.host.indexOf(':') >= 0 ? '[' + b.host + ']' : b.host) + ':' + b.port + (b.name === 'plain' ? '' : ' (' + b.name + ')'); }).join(', ') };
      });
      var st = s.stateStore;
      if (st && st.configured) ls.push({ service: 'state store', state: st.up ? 'up' : 'DOWN since ' + st.downSince, bound: 'on_error: ' + st.onError });
      fill($('listeners').tBodies[0], ls, ['service', 'state', 'bound']);
      var q = s.queue;
      $('queue-summary').textContent = q.depth === 0 ? 'empty' : q.depth + (q.truncated ? '+' : '') + ' message(s), oldest ' + age(q.oldestAgeSeconds);
      $('queue').hidden = q.oldest.length === 0;
      fill($('queue').tBodies[0], q.oldest, ['id', function (e) { return age(e.ageSeconds); }, function (e) { return e.pending + '/' + e.recipients + ' pending'; }, 'attempts', 'lastError']);
      $('locks-empty').hidden = s.throttles.length > 0;
      $('locks').hidden = s.throttles.length === 0;
      fill($('locks').tBodies[0], s.throttles, ['kind', function (t) { return t.address || (t.kind === 'user' ? '(unfamiliar)' : ''); }, 'name', 'failures', 'until']);
    }).catch(function () { /* next tick retries */ });
  }
  function decision(rec) {
    var tbody = $('decisions').tBodies[0];
    var tr = document.createElement('tr');
    tr.className = rec.verdict === 'deny' ? 'deny' : 'allow';
    tr.setAttribute('data-rule', String(rec.rule));
    cell(tr, String(rec.time).replace('T', ' ').replace('Z', ''));
    cell(tr, rec.service); cell(tr, rec.phase); cell(tr, rec.verdict, 'verdict'); cell(tr, rec.rule);
    cell(tr, rec.proxy ? rec.ip + ' via ' + rec.proxy : rec.ip); cell(tr, rec.user); cell(tr, rec.reason); cell(tr, rec.object);
    tr.hidden = $('only-deny').checked && tr.className !== 'deny';
    tbody.insertBefore(tr, tbody.firstChild);
    while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(tbody.rows.length - 1);
    counts[tr.className]++;
    $('counts').textContent = counts.allow + ' allowed, ' + counts.deny + ' denied since this page opened';
  }
  document.addEventListener('DOMContentLoaded', function () {
    $('only-deny').addEventListener('change', applyFilter);
    state();
    setInterval(state, 3000);
    var es = new EventSource('/events');
    es.addEventListener('open', function () { $('conn').textContent = 'live'; $('conn').className = 'live'; });
    es.addEventListener('error', function () { $('conn').textContent = 'reconnecting…'; $('conn').className = 'muted'; });
    es.addEventListener('decision', function (ev) {
      try { decision(JSON.parse(ev.data)); } catch (e) { /* ignore a malformed event */ }
    });
  });
})();
`;
