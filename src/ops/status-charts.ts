/*
 * The status page's charts: the last hour, per minute, from /api/trends (ring buffers the process keeps, see
 * net/series.ts and ops/metrics.ts). Drawn in the browser as inline SVG built with createElementNS and
 * textContent (no markup from data, no external chart service, works offline, allowed by the page's CSP).
 * Sized for a projector: large type, thick strokes, one colour per meaning (allow green, deny red).
 * Kept apart from status-page.ts so the page's other sections can change without touching the charts.
 */

/** The section the page shows the charts in (placed by status-page.ts). */
export const CHARTS_HTML = `  <section class="wide" id="trends">
    <h2>Last hour, per minute</h2>
    <div id="charts" class="charts"></div>
  </section>
`;

export const CHARTS_CSS = `.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(24rem, 1fr)); gap: 1rem 1.5rem; }
figure.chart { margin: 0; background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: .6rem .8rem .4rem; }
figure.chart figcaption { font-size: 1.15rem; font-weight: 600; margin-bottom: .2rem; }
figure.chart .legend { font-size: 1rem; margin: 0 0 .2rem; }
figure.chart .legend span.key { margin-right: 1.2rem; white-space: nowrap; }
figure.chart .legend i { display: inline-block; width: .9em; height: .9em; margin-right: .35em; vertical-align: -.1em; border-radius: 2px; }
figure.chart svg { width: 100%; height: auto; display: block; }
figure.chart svg text { font: 15px system-ui, sans-serif; fill: #444; }
figure.chart svg .grid { stroke: #e3e3e3; stroke-width: 1; }
figure.chart svg .axis { stroke: #999; stroke-width: 1.5; }
`;

export const CHARTS_JS = `'use strict';
(function () {
  var SVG = 'http://www.w3.org/2000/svg';
  var W = 640, H = 240, L = 56, R = 12, T = 14, B = 34;
  var GREEN = '#2e7d32', RED = '#c62828';
  var CHARTS = [
    { id: 'smtp', title: 'SMTP decisions', kind: 'stack', series: [{ key: 'smtp.allow', label: 'allowed', color: GREEN }, { key: 'smtp.deny', label: 'denied', color: RED }] },
    { id: 'ftp', title: 'FTP decisions', kind: 'stack', series: [{ key: 'ftp.allow', label: 'allowed', color: GREEN }, { key: 'ftp.deny', label: 'denied', color: RED }] },
    { id: 'nntp', title: 'NNTP decisions', kind: 'stack', series: [{ key: 'nntp.allow', label: 'allowed', color: GREEN }, { key: 'nntp.deny', label: 'denied', color: RED }] },
    { id: 'auth', title: 'Auth failures and throttles', kind: 'bars', series: [{ key: 'auth_failures', label: 'auth failures', color: '#6a1b9a' }, { key: 'throttles', label: 'throttles', color: '#ef6c00' }] },
    { id: 'queue', title: 'Queue depth and oldest message', kind: 'lines', series: [{ key: 'queue_depth', label: 'messages', color: '#1565c0' }, { key: 'queue_oldest_s', label: 'oldest (right scale)', color: '#8d6e63', right: true, age: true }] },
    { id: 'sessions', title: 'Active sessions', kind: 'lines', series: [{ key: 'sessions.smtp', label: 'SMTP', color: '#1565c0' }, { key: 'sessions.ftp', label: 'FTP', color: '#00897b' }, { key: 'sessions.nntp', label: 'NNTP', color: '#f9a825' }] }
  ];
  function $(id) { return document.getElementById(id); }
  function el(name, attrs, parent) {
    var e = document.createElementNS(SVG, name);
    for (var k in attrs) e.setAttribute(k, String(attrs[k]));
    if (parent) parent.appendChild(e);
    return e;
  }
  function text(parent, x, y, s, anchor) {
    var t = el('text', { x: x, y: y, 'text-anchor': anchor || 'start' }, parent);
    t.textContent = s;
    return t;
  }
  function age(s) {
    if (s < 10) return Math.round(s * 10) / 10 + ' s';
    if (s < 120) return Math.round(s) + ' s';
    if (s < 7200) return Math.round(s / 60) + ' min';
    return Math.round(s / 3600) + ' h';
  }
  /** 1, 2, 5, 10, 20, 50 ... at or above v */
  function nice(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log(v) / Math.LN10));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
    return 10 * p;
  }
  function sum(a) { var s = 0; for (var i = 0; i < a.length; i++) s += a[i] || 0; return s; }
  function max(a) { var m = 0; for (var i = 0; i < a.length; i++) if ((a[i] || 0) > m) m = a[i]; return m; }
  function last(a) { for (var i = a.length - 1; i >= 0; i--) if (a[i] !== null) return a[i]; return 0; }
  function hhmm(ms) { var d = new Date(ms); return ('0' + d.getHours()).slice(-2) + ':' + ('0' + d.getMinutes()).slice(-2); }

  function draw(chart, data) {
    var fig = $('chart-' + chart.id);
    if (!fig) {
      fig = document.createElement('figure');
      fig.className = 'chart';
      fig.id = 'chart-' + chart.id;
      fig.setAttribute('data-chart', chart.id);
      var cap = document.createElement('figcaption');
      cap.textContent = chart.title;
      fig.appendChild(cap);
      var legend = document.createElement('p');
      legend.className = 'legend';
      fig.appendChild(legend);
      $('charts').appendChild(fig);
    }
    var n = data.series[chart.series[0].key].length;
    var cols = chart.series.map(function (s) { return data.series[s.key] || []; });
    var left = chart.series.filter(function (s) { return !s.right; });
    var leftCols = cols.filter(function (c, i) { return !chart.series[i].right; });
    var top = chart.kind === 'stack'
      ? nice(max(leftCols[0].map(function (_, i) { return leftCols.reduce(function (a, c) { return a + (c[i] || 0); }, 0); })))
      : nice(Math.max.apply(null, leftCols.map(max)));
    var rightIdx = -1;
    chart.series.forEach(function (s, i) { if (s.right) rightIdx = i; });
    var rtop = rightIdx >= 0 ? nice(max(cols[rightIdx])) : 0;

    var legendEl = fig.querySelector('p.legend');
    while (legendEl.firstChild) legendEl.removeChild(legendEl.firstChild);
    chart.series.forEach(function (s, i) {
      var span = document.createElement('span');
      span.className = 'key';
      span.setAttribute('data-series', s.key);
      var total = chart.kind === 'lines' ? last(cols[i]) : sum(cols[i]);
      span.setAttribute('data-value', String(total));
      span.setAttribute('data-max', String(max(cols[i])));
      var sw = document.createElement('i');
      sw.style.background = s.color;
      span.appendChild(sw);
      span.appendChild(document.createTextNode(s.label + ' ' + (s.age ? age(total) : total) + (chart.kind === 'lines' ? ' now' : ' in the hour')));
      legendEl.appendChild(span);
    });

    var old = fig.querySelector('svg');
    if (old) fig.removeChild(old);
    var svg = el('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', preserveAspectRatio: 'xMidYMid meet' });
    svg.setAttribute('aria-label', chart.title + ', last 60 minutes');
    var pw = W - L - R, ph = H - T - B, bw = pw / n;
    var y = function (v, t) { return T + ph - (ph * v) / t; };
    [0, 0.5, 1].forEach(function (f) {
      el('line', { x1: L, x2: W - R, y1: y(top * f, top), y2: y(top * f, top), 'class': f === 0 ? 'axis' : 'grid' }, svg);
      text(svg, L - 6, y(top * f, top) + 5, String(Math.round(top * f * 10) / 10), 'end');
      if (rtop) text(svg, W - R, y(rtop * f, rtop) - 4, age(rtop * f), 'end');
    });
    text(svg, L, H - 8, hhmm(data.start), 'start');
    text(svg, L + pw / 2, H - 8, hhmm(data.start + data.stepMs * Math.floor(n / 2)), 'middle');
    text(svg, W - R, H - 8, 'now', 'end');

    if (chart.kind === 'stack' || chart.kind === 'bars') {
      var inner = chart.kind === 'bars' ? chart.series.length : 1;
      for (var i = 0; i < n; i++) {
        var base = 0;
        chart.series.forEach(function (s, k) {
          var v = cols[k][i] || 0;
          if (v <= 0) return;
          var x = L + i * bw + (chart.kind === 'bars' ? (k * bw) / inner : 0) + 0.5;
          var h = (ph * v) / top;
          var y0 = chart.kind === 'stack' ? y(base + v, top) : y(v, top);
          var r = el('rect', { x: x, y: y0, width: Math.max(1, bw / inner - 1), height: Math.max(1, h), fill: s.color }, svg);
          r.setAttribute('data-series', s.key);
          var tip = el('title', {}, r);
          tip.textContent = hhmm(data.start + i * data.stepMs) + ' ' + s.label + ': ' + v;
          if (chart.kind === 'stack') base += v;
        });
      }
    } else {
      chart.series.forEach(function (s, k) {
        var t = s.right ? rtop : top;
        var pts = [];
        for (var i = 0; i < n; i++) {
          var v = cols[k][i];
          if (v === null || v === undefined) continue;
          pts.push((L + i * bw + bw / 2).toFixed(1) + ',' + y(v, t).toFixed(1));
        }
        if (pts.length === 0) return;
        var line = el('polyline', { points: pts.join(' '), fill: 'none', stroke: s.color, 'stroke-width': 3, 'stroke-linejoin': 'round' }, svg);
        line.setAttribute('data-series', s.key);
        if (s.right) line.setAttribute('stroke-dasharray', '6 4');
      });
    }
    fig.appendChild(svg);
  }

  function refresh() {
    fetch('/api/trends', { cache: 'no-store', credentials: 'same-origin' }).then(function (r) { return r.json(); }).then(function (data) {
      CHARTS.forEach(function (c) { draw(c, data); });
      $('charts').setAttribute('data-updated', String(Date.now()));
    }).catch(function () { /* next tick retries */ });
  }
  document.addEventListener('DOMContentLoaded', function () {
    refresh();
    setInterval(refresh, 3000);
  });
})();
`;
