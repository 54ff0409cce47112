// RiftKV web console: a hash-routed single page over the node's own API (admin, metrics,
// objects, bucket props). No dependencies, no build step; every element is made with the DOM
// API (never innerHTML), so keys and values from the store are always shown as text.
'use strict';

(function () {
  const TOKEN_KEY = 'riftkv-console-token';
  const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948',
    '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac', '#1f77b4', '#2ca02c'];
  const FORBIDDEN_TEXT = 'your token does not allow this';

  // Which page is showing; bumped on every navigation so timers of the old page stop.
  let generation = 0;

  // ---------------------------------------------------------------- DOM helpers

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  function svg(tag, attrs, ...children) {
    const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') {
        el.addEventListener(k.slice(2), v);
      } else if (k === 'value') {
        el.value = v;
      } else if (k === 'checked') {
        el.checked = !!v;
      } else {
        el.setAttribute(k, v === true ? '' : String(v));
      }
    }
  }

  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  }

  function $(id) { return document.getElementById(id); }

  function badge(text, kind) { return h('span', { class: 'badge ' + (kind || '') }, text); }

  function enc(s) { return encodeURIComponent(s); }

  function setStatusLine(text, isError) {
    const f = $('status-line');
    f.textContent = text;
    f.className = isError ? 'error' : 'muted';
  }

  function now() { return new Date().toLocaleTimeString(); }

  // ---------------------------------------------------------------- HTTP

  class HttpError extends Error {
    constructor(status, body, message) {
      super(message);
      this.status = status;
      this.body = body;
    }
  }

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; }
  }

  function setToken(t) {
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage disabled: the token lives until reload */ }
  }

  // One request to this node. 401 opens the login and throws; 403 throws (the panel says
  // so); any other answer is returned as {status, headers, text, json}.
  async function request(method, path, opts) {
    opts = opts || {};
    const headers = Object.assign({}, opts.headers || {});
    const t = token();
    if (t) headers.Authorization = 'Bearer ' + t;
    let resp;
    try {
      resp = await fetch(path, { method, headers, body: opts.body, cache: 'no-store' });
    } catch (e) {
      throw new HttpError(0, null, 'the node did not answer (' + e.message + ')');
    }
    const text = await resp.text();
    let json = null;
    if ((resp.headers.get('content-type') || '').indexOf('json') >= 0) {
      try { json = JSON.parse(text); } catch (e) { json = null; }
    }
    if (resp.status === 401) {
      showLogin(t ? 'The token was refused: unknown, revoked or expired.'
        : 'This node requires a bearer token.');
      throw new HttpError(401, json, 'sign in with a token to see this');
    }
    if (resp.status === 403) throw new HttpError(403, json, FORBIDDEN_TEXT);
    return { status: resp.status, headers: resp.headers, text, json };
  }

  function errorText(r) {
    if (r.json && r.json.message) return r.status + ' ' + r.json.error + ': ' + r.json.message;
    return 'HTTP ' + r.status + (r.text ? ': ' + r.text.slice(0, 200) : '');
  }

  async function getJson(path) {
    const r = await request('GET', path, { headers: { Accept: 'application/json' } });
    if (r.status !== 200) throw new HttpError(r.status, r.json, errorText(r));
    return r.json;
  }

  // Replaces a panel's content by why it cannot be shown.
  function showFailure(panel, err) {
    clear(panel);
    if (err && err.status === 403) {
      panel.appendChild(h('p', { class: 'forbidden', 'data-error': 'forbidden' }, FORBIDDEN_TEXT));
    } else if (err && err.status === 401) {
      panel.appendChild(h('p', { class: 'error', 'data-error': 'unauthorized' }, err.message));
    } else {
      panel.appendChild(h('p', { class: 'error', 'data-error': 'failed' },
        String(err && err.message ? err.message : err)));
    }
  }

  // Runs `fn` now and then every `ms` until the page changes; one run at a time.
  function every(ms, fn) {
    const mine = generation;
    const tick = async () => {
      if (mine !== generation) return;
      try { await fn(); } catch (e) { setStatusLine('Refresh failed: ' + e.message, true); }
      if (mine === generation) setTimeout(tick, ms);
    };
    tick();
  }

  // ---------------------------------------------------------------- login

  function showLogin(reason) {
    const login = $('login');
    $('login-reason').textContent = reason || 'Enter a bearer token.';
    if (login.hidden) {
      login.hidden = false;
      $('token-input').value = token();
      $('token-input').focus();
    }
  }

  function setupLogin() {
    $('login-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      setToken($('token-input').value.trim());
      $('login').hidden = true;
      route();
    });
    $('login-clear').addEventListener('click', () => {
      setToken('');
      $('token-input').value = '';
      $('login').hidden = true;
      route();
    });
    $('login-cancel').addEventListener('click', () => { $('login').hidden = true; });
    $('token-button').addEventListener('click', () => {
      if ($('login').hidden) showLogin(token() ? 'A token is set for this tab.' : 'No token is set.');
      else $('login').hidden = true;
    });
  }

  // ---------------------------------------------------------------- colours

  let colourOrder = [];
  function colourOf(node) {
    let i = colourOrder.indexOf(node);
    if (i < 0) { colourOrder.push(node); colourOrder.sort(); i = colourOrder.indexOf(node); }
    return PALETTE[i % PALETTE.length];
  }

  // ---------------------------------------------------------------- cluster page

  function pageCluster(view) {
    const summary = h('div', { class: 'panel', id: 'cluster-summary' }, 'Loading...');
    const members = h('div', { class: 'panel', id: 'cluster-members' });
    const workers = h('div', { class: 'panel', id: 'cluster-workers' });
    append(view, [summary, members, workers]);

    every(2000, async () => {
      let status;
      try {
        status = await getJson('/v1/admin/status');
      } catch (e) {
        showFailure(summary, e);
        clear(members);
        clear(workers);
        return;
      }
      let owned = null;
      try {
        const ring = await getJson('/v1/admin/ring');
        owned = {};
        for (const p of ring.partitions) owned[p.owner] = (owned[p.owner] || 0) + 1;
      } catch (e) { owned = null; }
      $('node-name').textContent = status.node_id + ' @ ' + status.cluster_name;
      renderSummary(summary, status);
      renderMembers(members, status, owned);
      renderWorkers(workers, status);
      setStatusLine('Updated ' + now() + ' from node ' + status.node_id + ' (every 2 s)');
    });
  }

  function renderSummary(panel, s) {
    const reachable = s.members.filter((m) => m.reachable).length;
    clear(panel);
    append(panel, [
      h('h2', null, 'Cluster ', s.cluster_name),
      h('div', { class: 'summary' },
        h('div', null, 'this node', h('b', { id: 'this-node' }, s.node_id)),
        h('div', null, 'members', h('b', { id: 'member-count' }, reachable + ' / ' + s.members.length + ' reachable')),
        h('div', null, 'ring version', h('b', { id: 'ring-version' }, s.ring_version)),
        h('div', null, 'ring size', h('b', { id: 'ring-size' }, s.ring_size)),
        h('div', null, 'ring',
          h('b', { id: 'ring-settled', 'data-settled': String(s.ring_settled) },
            s.ring_settled ? badge('settled', 'ok') : badge('not settled', 'warn'))),
        h('div', null, 'hints pending here', h('b', { id: 'hints-pending' }, s.hints_pending)),
        h('div', null, 'handoffs pending here', h('b', { id: 'handoffs-pending' }, s.handoffs_pending)),
        h('div', null, 'partitions owned here', h('b', { id: 'owned-partitions' }, s.owned_partitions))),
      s.transfers ? h('p', { id: 'transfers' }, 'Transfers: ', s.transfers.partitions_done, ' / ',
        s.transfers.partitions_total, ' partitions, ', s.transfers.bytes_moved, ' bytes moved') : null,
    ]);
  }

  function renderMembers(panel, s, owned) {
    const rows = s.members.map((m) => h('tr', {
      class: 'member', 'data-node': m.node_id, 'data-reachable': String(m.reachable),
      'data-status': m.status,
    },
    h('td', null, h('span', { class: 'swatch', 'data-colour': colourOf(m.node_id) }), m.node_id,
      m.node_id === s.node_id ? h('span', { class: 'muted' }, ' (this node)') : null),
    h('td', { class: 'member-status' }, badge(m.status, m.status === 'valid' ? 'ok' : 'warn')),
    h('td', { class: 'member-reachable' }, m.reachable ? badge('reachable', 'ok') : badge('unreachable', 'bad')),
    h('td', null, m.zone || h('span', { class: 'muted' }, '-')),
    h('td', { class: 'num member-partitions' }, owned ? (owned[m.node_id] || 0) : '?'),
    h('td', { class: 'mono' }, m.api_addr),
    h('td', { class: 'mono' }, m.peer_addr)));
    clear(panel);
    append(panel, [
      h('h2', null, 'Members'),
      h('table', { id: 'members' },
        h('thead', null, h('tr', null, h('th', null, 'node'), h('th', null, 'status'),
          h('th', null, 'reachable'), h('th', null, 'zone'), h('th', { class: 'num' }, 'partitions'),
          h('th', null, 'api'), h('th', null, 'peer'))),
        h('tbody', null, rows)),
      owned ? null : h('p', { class: 'muted' }, 'Partition counts need the ring (admin permission).'),
    ]);
    // Swatch colours through the CSSOM (the policy forbids style attributes).
    for (const sw of panel.querySelectorAll('.swatch')) sw.style.background = sw.getAttribute('data-colour');
  }

  function renderWorkers(panel, s) {
    clear(panel);
    if (!s.workers || !s.workers.length) return;
    append(panel, [
      h('h2', null, 'Background workers on ', s.node_id),
      h('table', { id: 'workers' },
        h('thead', null, h('tr', null, h('th', null, 'worker'), h('th', null, 'state'),
          h('th', { class: 'num' }, 'steps'), h('th', { class: 'num' }, 'errors'), h('th', null, 'last error'))),
        h('tbody', null, s.workers.map((w) => h('tr', { class: 'worker', 'data-worker': w.name },
          h('td', null, w.name),
          h('td', null, badge(w.state, w.state === 'error' ? 'bad' : (w.state === 'stopped' ? 'warn' : 'ok'))),
          h('td', { class: 'num' }, w.steps === undefined ? '' : w.steps),
          h('td', { class: 'num' }, w.errors === undefined ? '' : w.errors),
          h('td', { class: 'mono' }, w.last_error || ''))))),
    ]);
  }

  // ---------------------------------------------------------------- ring page

  function arcPath(cx, cy, r0, r1, a0, a1) {
    const p = (r, a) => (cx + r * Math.cos(a)).toFixed(2) + ' ' + (cy + r * Math.sin(a)).toFixed(2);
    const large = a1 - a0 > Math.PI ? 1 : 0;
    return 'M ' + p(r1, a0) + ' A ' + r1 + ' ' + r1 + ' 0 ' + large + ' 1 ' + p(r1, a1) +
      ' L ' + p(r0, a1) + ' A ' + r0 + ' ' + r0 + ' 0 ' + large + ' 0 ' + p(r0, a0) + ' Z';
  }

  function pageRing(view) {
    const panel = h('div', { class: 'panel', id: 'ring-panel' }, 'Loading...');
    view.appendChild(panel);
    let shownVersion = null;
    let selected = null;

    every(5000, async () => {
      let ring;
      try {
        ring = await getJson('/v1/admin/ring');
      } catch (e) {
        showFailure(panel, e);
        shownVersion = null;
        return;
      }
      setStatusLine('Ring version ' + ring.ring_version + ', checked ' + now());
      if (shownVersion === ring.ring_version) return;
      shownVersion = ring.ring_version;
      drawRing(panel, ring, selected, (id) => { selected = id; });
    });
  }

  function drawRing(panel, ring, selected, onSelect) {
    const N = ring.partitions.length;
    const counts = {};
    for (const p of ring.partitions) counts[p.owner] = (counts[p.owner] || 0) + 1;
    const owners = Object.keys(counts).sort();
    const cx = 210, cy = 210, r0 = 120, r1 = 195;
    const detail = h('div', { id: 'partition-detail', class: 'panel' },
      h('p', { class: 'muted' }, 'Click a partition to see its preference list.'));
    const drawing = svg('svg', {
      id: 'ring-svg', viewBox: '0 0 420 420', role: 'img',
      'data-ring-size': ring.ring_size, 'data-partitions': N,
      'aria-label': 'ring of ' + N + ' partitions',
    });
    const paths = [];
    ring.partitions.forEach((p, i) => {
      const a0 = (2 * Math.PI * i) / N - Math.PI / 2;
      let a1 = (2 * Math.PI * (i + 1)) / N - Math.PI / 2;
      if (N === 1) a1 -= 1e-4;
      const path = svg('path', {
        class: 'partition', d: arcPath(cx, cy, r0, r1, a0, a1), fill: colourOf(p.owner),
        'data-partition': p.id, 'data-owner': p.owner,
      }, svg('title', null, 'partition ' + p.id + ': ' + p.owner));
      path.addEventListener('click', () => select(p, path));
      paths.push(path);
      drawing.appendChild(path);
    });
    drawing.appendChild(svg('text', { x: cx, y: cy - 8, 'text-anchor': 'middle' }, N + ' partitions'));
    drawing.appendChild(svg('text', { x: cx, y: cy + 12, 'text-anchor': 'middle' },
      'ring version ' + ring.ring_version));

    function select(p, path) {
      for (const q of paths) q.classList.remove('selected');
      path.classList.add('selected');
      onSelect(p.id);
      clear(detail);
      append(detail, [
        h('h3', { id: 'partition-title', 'data-partition': p.id }, 'Partition ', p.id),
        h('p', null, 'Owner: ', h('b', { id: 'partition-owner' }, p.owner)),
        h('p', null, 'Preference list (n = ' + ring.n + '), in order:'),
        h('ol', { id: 'preflist' }, p.preference_list.map((n) => h('li', { 'data-node': n }, n))),
      ]);
    }

    const legend = h('ul', { id: 'ring-legend' }, owners.map((o) => h('li', { 'data-owner': o, 'data-count': counts[o] },
      h('span', { class: 'swatch', 'data-colour': colourOf(o) }), o, ': ', counts[o], ' partitions')));
    const finder = h('form', { class: 'row', id: 'preflist-form' },
      h('input', { id: 'preflist-bucket', placeholder: 'bucket', size: 12 }),
      h('input', { id: 'preflist-key', placeholder: 'key', size: 16 }),
      h('button', { type: 'submit' }, 'Find partition'));
    const found = h('div', { id: 'preflist-result' });
    finder.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const b = $('preflist-bucket').value, k = $('preflist-key').value;
      if (!b || !k) return;
      try {
        const pl = await getJson('/v1/admin/preflist/' + enc(b) + '/' + enc(k));
        clear(found);
        append(found, h('p', null, 'partition ', pl.partition, '; primaries ', pl.primaries.join(', '),
          '; serving now ', pl.serving.join(', ')));
        const i = ring.partitions.findIndex((p) => p.id === pl.partition);
        if (i >= 0) select(ring.partitions[i], paths[i]);
      } catch (e) { showFailure(found, e); }
    });

    clear(panel);
    append(panel, [
      h('h2', null, 'Ring: ', N, ' partitions, n = ', ring.n),
      h('div', { class: 'ring-layout' }, drawing,
        h('div', null, h('h3', null, 'Owners'), legend, finder, found, detail)),
    ]);
    for (const sw of panel.querySelectorAll('.swatch')) sw.style.background = sw.getAttribute('data-colour');
    if (selected !== null) {
      const i = ring.partitions.findIndex((p) => p.id === selected);
      if (i >= 0) select(ring.partitions[i], paths[i]);
    }
  }

  // ---------------------------------------------------------------- traffic page

  // Prometheus text format → [{name, labels, value}].
  function parseMetrics(text) {
    const out = [];
    const lineRe = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
    const labelRe = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    for (const line of text.split('\n')) {
      if (!line || line[0] === '#') continue;
      const m = lineRe.exec(line);
      if (!m) continue;
      const labels = {};
      if (m[2]) {
        let l;
        labelRe.lastIndex = 0;
        while ((l = labelRe.exec(m[2])) !== null) labels[l[1]] = l[2].replace(/\\(.)/g, '$1');
      }
      const value = m[3] === '+Inf' ? Infinity : parseFloat(m[3]);
      out.push({ name: m[1], labels, value });
    }
    return out;
  }

  // Sums of a metric grouped by one label (or all together when `by` is null).
  function sumBy(samples, name, by, filter) {
    const out = {};
    for (const s of samples) {
      if (s.name !== name || (filter && !filter(s.labels))) continue;
      const k = by ? s.labels[by] : '';
      out[k] = (out[k] || 0) + s.value;
    }
    return out;
  }

  function one(samples, name) {
    const s = samples.find((x) => x.name === name && Object.keys(x.labels).length === 0);
    return s ? s.value : null;
  }

  // Cumulative histogram buckets of one op: [[le, count], ...] sorted by le.
  function buckets(samples, name, op) {
    return samples.filter((s) => s.name === name + '_bucket' && s.labels.op === op)
      .map((s) => [s.labels.le === '+Inf' ? Infinity : parseFloat(s.labels.le), s.value])
      .sort((a, b) => a[0] - b[0]);
  }

  // The q-quantile of cumulative buckets, interpolated inside its bucket (as PromQL does).
  function quantile(q, bs) {
    if (!bs.length) return null;
    const total = bs[bs.length - 1][1];
    if (total <= 0) return null;
    const rank = q * total;
    let prevLe = 0, prevCount = 0;
    for (const [le, count] of bs) {
      if (count >= rank) {
        if (le === Infinity) return -prevLe; // beyond the largest bound: negative = "over"
        if (count === prevCount) return le;
        return prevLe + (le - prevLe) * ((rank - prevCount) / (count - prevCount));
      }
      prevLe = le;
      prevCount = count;
    }
    return prevLe;
  }

  function fmtSeconds(s) {
    if (s === null || s === undefined || isNaN(s)) return '-';
    if (s < 0 || (s === 0 && Object.is(s, -0))) return '> ' + fmtSeconds(-s);
    if (s < 0.001) return (s * 1e6).toFixed(0) + ' µs';
    if (s < 1) return (s * 1000).toFixed(s < 0.01 ? 2 : 1) + ' ms';
    return s.toFixed(2) + ' s';
  }

  function fmtRate(r) {
    if (r === null || r === undefined || isNaN(r)) return '-';
    return r < 10 ? r.toFixed(2) : r.toFixed(0);
  }

  function pageTraffic(view) {
    const panel = h('div', { class: 'panel', id: 'traffic-panel' }, 'Scraping /metrics ...');
    const gauges = h('div', { class: 'panel', id: 'traffic-gauges' });
    append(view, [panel, gauges]);
    let prev = null;
    const history = [];

    every(2000, async () => {
      let samples;
      try {
        const r = await request('GET', '/metrics');
        if (r.status !== 200) throw new HttpError(r.status, r.json, errorText(r));
        samples = { at: performance.now(), data: parseMetrics(r.text) };
      } catch (e) {
        showFailure(panel, e);
        clear(gauges);
        prev = null;
        return;
      }
      renderTraffic(panel, gauges, prev, samples, history);
      prev = samples;
      setStatusLine('Scraped /metrics at ' + now() + ' (every 2 s; rates over the last interval)');
    });
  }

  function renderTraffic(panel, gauges, prev, cur, history) {
    const dt = prev ? (cur.at - prev.at) / 1000 : 0;
    const reqNow = sumBy(cur.data, 'riftkv_requests_total', 'op');
    const reqPrev = prev ? sumBy(prev.data, 'riftkv_requests_total', 'op') : {};
    const is5xx = (l) => /^5/.test(l.code || '');
    const errNow = sumBy(cur.data, 'riftkv_requests_total', 'op', is5xx);
    const errPrev = prev ? sumBy(prev.data, 'riftkv_requests_total', 'op', is5xx) : {};
    const qfNow = sumBy(cur.data, 'riftkv_quorum_failures_total', 'op');
    const qfPrev = prev ? sumBy(prev.data, 'riftkv_quorum_failures_total', 'op') : {};
    const ops = Array.from(new Set(Object.keys(reqNow).concat(Object.keys(qfNow)))).sort();
    const rate = (a, b, k) => (prev && dt > 0 ? Math.max(0, (a[k] || 0) - (b[k] || 0)) / dt : null);

    let totalRate = 0;
    const rows = ops.map((op) => {
      const r = rate(reqNow, reqPrev, op);
      if (r) totalRate += r;
      // Latency over the last interval when it saw requests, else since the node started.
      const bNow = buckets(cur.data, 'riftkv_request_duration_seconds', op);
      let bs = bNow;
      let window = 'since start';
      if (prev) {
        const bPrev = buckets(prev.data, 'riftkv_request_duration_seconds', op);
        if (bPrev.length === bNow.length) {
          const diff = bNow.map(([le, c], i) => [le, c - bPrev[i][1]]);
          if (diff.length && diff[diff.length - 1][1] > 0) { bs = diff; window = 'last interval'; }
        }
      }
      return h('tr', { class: 'op-row', 'data-op': op },
        h('td', null, op),
        h('td', { class: 'num op-rate' }, fmtRate(r)),
        h('td', { class: 'num op-errors' }, fmtRate(rate(errNow, errPrev, op))),
        h('td', { class: 'num op-p50' }, fmtSeconds(quantile(0.5, bs))),
        h('td', { class: 'num op-p95' }, fmtSeconds(quantile(0.95, bs))),
        h('td', { class: 'num op-p99' }, fmtSeconds(quantile(0.99, bs))),
        h('td', { class: 'muted' }, window),
        h('td', { class: 'num op-quorum-failures', 'data-total': qfNow[op] || 0 },
          (qfNow[op] || 0) + (prev ? ' (' + fmtRate(rate(qfNow, qfPrev, op)) + '/s)' : '')),
        h('td', { class: 'num' }, reqNow[op] || 0));
    });

    if (prev) {
      history.push(totalRate);
      if (history.length > 90) history.shift();
    }
    const max = Math.max(1, ...history);
    const pts = history.map((v, i) => (i * (600 / 89)).toFixed(1) + ',' + (58 - (v / max) * 54).toFixed(1)).join(' ');
    const spark = svg('svg', { class: 'spark', viewBox: '0 0 600 60', preserveAspectRatio: 'none', id: 'traffic-spark' },
      svg('polyline', { points: pts || '0,58' }));

    clear(panel);
    append(panel, [
      h('h2', null, 'Requests on this node'),
      h('div', { class: 'summary' },
        h('div', null, 'all requests', h('b', { id: 'total-rate' }, prev ? fmtRate(totalRate) + ' /s' : 'measuring...')),
        h('div', null, 'quorum failures', h('b', { id: 'quorum-failures-total' },
          Object.values(qfNow).reduce((a, b) => a + b, 0)))),
      spark,
      h('p', { class: 'muted' }, 'Request rate over the last 3 minutes (peak ', fmtRate(max), ' /s). ',
        'The console itself shows up as ops metrics, admin and ui.'),
      h('table', { id: 'traffic-table' },
        h('thead', null, h('tr', null, h('th', null, 'op'), h('th', { class: 'num' }, 'req/s'),
          h('th', { class: 'num' }, '5xx/s'), h('th', { class: 'num' }, 'p50'), h('th', { class: 'num' }, 'p95'),
          h('th', { class: 'num' }, 'p99'), h('th', null, 'latency window'),
          h('th', { class: 'num' }, 'quorum failures'), h('th', { class: 'num' }, 'total'))),
        h('tbody', null, rows)),
    ]);

    const counter = (name) => {
      const v = one(cur.data, name);
      const p = prev ? one(prev.data, name) : null;
      return [v === null ? '-' : v, v !== null && p !== null && dt > 0 ? ' (' + fmtRate((v - p) / dt) + '/s)' : ''];
    };
    const g = (label, name) => h('tr', { 'data-metric': name }, h('td', null, label),
      h('td', { class: 'num' }, one(cur.data, name) === null ? '-' : one(cur.data, name)));
    const c = (label, name) => h('tr', { 'data-metric': name }, h('td', null, label), h('td', { class: 'num' }, counter(name)));
    clear(gauges);
    append(gauges, [
      h('h2', null, 'Replication on this node'),
      h('table', { id: 'traffic-gauges-table' }, h('tbody', null,
        g('hints pending', 'riftkv_hints_pending'),
        c('hints delivered', 'riftkv_hints_delivered_total'),
        g('handoffs pending', 'riftkv_handoffs_pending'),
        g('partitions owned', 'riftkv_partitions_owned'),
        c('sloppy writes', 'riftkv_sloppy_writes_total'),
        c('read repairs', 'riftkv_read_repairs_total'),
        c('anti-entropy exchanges', 'riftkv_aae_exchanges_total'),
        c('keys repaired by anti-entropy', 'riftkv_aae_keys_repaired_total'),
        g('storage bytes (estimate)', 'riftkv_storage_bytes'))),
    ]);
  }

  // ---------------------------------------------------------------- keys page

  function pageKeys(view, args) {
    const bucket = args[0] || '';
    const panel = h('div', { class: 'panel', id: 'keys-panel' });
    const list = h('div', { class: 'panel', id: 'keys-list-panel' });
    append(view, [panel, list]);
    const form = h('form', { class: 'row', id: 'keys-form' },
      h('label', null, 'Bucket ', h('input', { id: 'bucket-input', value: bucket, required: true, size: 16 })),
      h('label', null, 'Page size ', h('input', { id: 'limit-input', class: 'small', type: 'number', min: 1, max: 10000, value: 100 })),
      h('button', { id: 'list-keys', type: 'submit' }, 'List keys'));
    const open = h('form', { class: 'row', id: 'open-key-form' },
      h('label', null, 'Key ', h('input', { id: 'key-input', size: 24 })),
      h('button', { id: 'open-key', type: 'submit', class: 'secondary' }, 'Open key'));
    append(panel, [h('h2', null, 'Keys'), form, open]);
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const b = $('bucket-input').value;
      if (b === bucket) load(null, []); else location.hash = '#/keys/' + enc(b);
    });
    open.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const b = $('bucket-input').value, k = $('key-input').value;
      if (b && k) location.hash = '#/key/' + enc(b) + '/' + enc(k);
    });
    if (!bucket) {
      list.appendChild(h('p', { class: 'muted' }, 'Choose a bucket to list its keys (there is no bucket listing in the API).'));
      return;
    }

    // `afters` holds the `after` of every page before the current one, for "previous".
    async function load(after, afters) {
      const limit = Math.max(1, Math.min(10000, parseInt($('limit-input').value, 10) || 100));
      let q = '/v1/kv/' + enc(bucket) + '?keys=true&limit=' + limit;
      if (after !== null) q += '&after=' + enc(after);
      let page;
      try { page = await getJson(q); } catch (e) { showFailure(list, e); return; }
      clear(list);
      const prevBtn = h('button', { id: 'keys-prev', type: 'button', class: 'secondary', disabled: !afters.length }, 'Previous');
      const nextBtn = h('button', { id: 'keys-next', type: 'button', disabled: !page.next }, 'Next');
      prevBtn.addEventListener('click', () => { const a = afters.slice(); const back = a.pop(); load(back === undefined ? null : back, a); });
      nextBtn.addEventListener('click', () => load(page.next, afters.concat([after])));
      append(list, [
        h('h2', null, 'Bucket ', bucket),
        h('p', { class: 'muted', id: 'keys-page-info', 'data-count': page.keys.length },
          'Page ', afters.length + 1, ': ', page.keys.length, ' key', page.keys.length === 1 ? '' : 's',
          after !== null ? ' after "' + after + '"' : '', page.next ? '' : ' (last page)'),
        page.keys.length ? h('ul', { id: 'key-list' }, page.keys.map((k) => h('li', { class: 'key', 'data-key': k },
          h('a', { href: '#/key/' + enc(bucket) + '/' + enc(k) }, k)))) : h('p', { class: 'muted' }, 'No live keys.'),
        h('div', { class: 'row' }, prevBtn, nextBtn),
      ]);
      setStatusLine('Listed ' + page.keys.length + ' keys of ' + bucket + ' at ' + now());
    }
    load(null, []);
  }

  // ---------------------------------------------------------------- key page

  function decodeValue(b64) {
    let bytes;
    try {
      const bin = atob(b64 || '');
      bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    } catch (e) {
      return { text: b64, utf8: false, size: 0 };
    }
    try {
      return { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes), utf8: true, size: bytes.length };
    } catch (e) {
      return { text: b64, utf8: false, size: bytes.length };
    }
  }

  function base64ToBytes(b64) {
    const bin = atob(b64.replace(/\s+/g, ''));
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return bytes;
  }

  function quorumQuery(pairs) {
    const q = pairs.filter(([, v]) => v !== '').map(([k, v]) => k + '=' + enc(v));
    return q.length ? '?' + q.join('&') : '';
  }

  function pageKey(view, args) {
    const bucket = args[0] || '', key = args.slice(1).join('/');
    const head = h('div', { class: 'panel', id: 'key-head' });
    const body = h('div', { class: 'panel', id: 'key-body' }, 'Reading ...');
    const editor = h('div', { class: 'panel', id: 'key-editor' });
    append(view, [head, body, editor]);
    if (!bucket || !key) { body.textContent = 'No key given.'; return; }

    const readForm = h('form', { class: 'row', id: 'read-form' },
      h('label', null, 'r ', h('input', { id: 'read-r', class: 'small', placeholder: 'bucket' })),
      h('label', null, 'pr ', h('input', { id: 'read-pr', class: 'small', placeholder: 'bucket' })),
      h('button', { id: 'reload', type: 'submit', class: 'secondary' }, 'Read again'));
    append(head, [
      h('h2', null, h('a', { href: '#/keys/' + enc(bucket) }, bucket), ' / ', h('span', { id: 'key-name' }, key)),
      readForm,
    ]);
    readForm.addEventListener('submit', (ev) => { ev.preventDefault(); read(); });

    let context = '';

    async function read() {
      const q = quorumQuery([['r', $('read-r').value.trim()], ['pr', $('read-pr').value.trim()]]);
      let r;
      try {
        r = await request('GET', '/v1/kv/' + enc(bucket) + '/' + enc(key) + q, { headers: { Accept: 'application/json' } });
      } catch (e) { showFailure(body, e); clear(editor); return; }
      clear(body);
      let siblings = [];
      if (r.status === 200 || r.status === 300) {
        context = r.json.context;
        siblings = r.json.siblings;
      } else if (r.status === 404) {
        context = r.headers.get('x-riftkv-context') || '';
      } else {
        append(body, h('p', { class: 'error', id: 'read-error' }, errorText(r)));
        return;
      }
      const live = siblings.filter((s) => !s.deleted).length;
      append(body, [
        h('h3', { id: 'read-status', 'data-status': r.status, 'data-siblings': siblings.length },
          r.status === 404 ? 'No live value (404)' : (siblings.length > 1 ? siblings.length + ' siblings (300): edit a value and save to resolve them'
            : 'One value (200)')),
        h('div', { class: 'siblings', id: 'siblings' }, siblings.map((s, i) => siblingCard(s, i))),
        h('p', { class: 'muted' }, 'Context: ', h('span', { class: 'mono', id: 'read-context' }, context ? context.slice(0, 48) + (context.length > 48 ? '...' : '') : 'none'),
          ' (sent with the save below, so the save replaces every version shown here)'),
      ]);
      const first = siblings.find((s) => !s.deleted);
      renderEditor(first || null, live);
      setStatusLine('Read ' + bucket + '/' + key + ' at ' + now());
    }

    function siblingCard(s, i) {
      const v = decodeValue(s.value_base64);
      const use = h('button', { type: 'button', class: 'secondary use-sibling', 'data-index': i, disabled: s.deleted }, 'Edit this value');
      use.addEventListener('click', () => {
        $('value-editor').value = v.text;
        $('editor-base64').checked = !v.utf8;
        $('content-type-input').value = s.content_type;
      });
      return h('div', { class: 'sibling', 'data-index': i, 'data-deleted': String(s.deleted), 'data-encoding': v.utf8 ? 'utf-8' : 'base64' },
        h('h3', null, 'Sibling ', i + 1, s.deleted ? ' (deleted)' : ''),
        s.deleted ? h('p', { class: 'muted' }, 'A delete (tombstone), concurrent with the other versions.')
          : h('pre', { class: 'sibling-value' }, v.text),
        h('dl', null,
          h('dt', null, 'content type'), h('dd', { class: 'sibling-content-type' }, s.content_type),
          h('dt', null, 'last modified'), h('dd', { class: 'sibling-modified' }, s.last_modified),
          h('dt', null, 'etag'), h('dd', { class: 'mono' }, s.etag),
          h('dt', null, 'size'), h('dd', null, v.size + ' bytes' + (v.utf8 ? '' : ', shown as base64')),
          h('dt', null, 'deleted'), h('dd', { class: 'sibling-deleted' }, String(s.deleted))),
        use);
    }

    function renderEditor(first, live) {
      const v = first ? decodeValue(first.value_base64) : { text: '', utf8: true };
      const save = h('button', { id: 'save-button', type: 'submit' }, live > 1 ? 'Save (resolve siblings)' : 'Save');
      const del = h('button', { id: 'delete-button', type: 'button', class: 'secondary' }, 'Delete');
      const result = h('p', { id: 'save-result' });
      const form = h('form', { id: 'editor-form' },
        h('textarea', { id: 'value-editor', spellcheck: 'false', value: v.text }),
        h('div', { class: 'row' },
          h('label', null, 'Content-Type ', h('input', { id: 'content-type-input', size: 28, value: first ? first.content_type : 'text/plain' })),
          h('label', null, h('input', { id: 'editor-base64', type: 'checkbox', checked: !v.utf8 }), ' value is base64'),
          h('label', null, 'w ', h('input', { id: 'write-w', class: 'small', placeholder: 'bucket' })),
          h('label', null, 'dw ', h('input', { id: 'write-dw', class: 'small', placeholder: 'bucket' })),
          h('label', null, 'pw ', h('input', { id: 'write-pw', class: 'small', placeholder: 'bucket' }))),
        h('div', { class: 'row' }, save, del),
        result);
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        let bodyBytes;
        try {
          bodyBytes = $('editor-base64').checked ? base64ToBytes($('value-editor').value) : $('value-editor').value;
        } catch (e) { result.className = 'error'; result.textContent = 'Not valid base64.'; return; }
        await write('PUT', bodyBytes, result, save);
      });
      del.addEventListener('click', () => write('DELETE', undefined, result, del));
      clear(editor);
      append(editor, [h('h2', null, live > 1 ? 'Resolve: the saved value replaces every sibling above' : 'Edit'), form]);
    }

    async function write(method, bodyBytes, result, button) {
      const q = quorumQuery([['w', $('write-w').value.trim()], ['dw', $('write-dw').value.trim()], ['pw', $('write-pw').value.trim()]]);
      const headers = {};
      if (context) headers['X-RiftKV-Context'] = context;
      if (method === 'PUT') headers['Content-Type'] = $('content-type-input').value || 'application/octet-stream';
      button.disabled = true;
      result.className = 'muted';
      result.textContent = 'Saving ...';
      try {
        const r = await request(method, '/v1/kv/' + enc(bucket) + '/' + enc(key) + q, { headers, body: bodyBytes });
        if (r.status >= 200 && r.status < 300) {
          await read();
          const done = $('save-result');
          done.className = 'ok';
          done.setAttribute('data-saved', method === 'PUT' ? 'put' : 'delete');
          done.textContent = (method === 'PUT' ? 'Saved' : 'Deleted') + ' at ' + now() + '.';
        } else {
          result.className = 'error';
          result.textContent = errorText(r);
        }
      } catch (e) {
        result.className = e.status === 403 ? 'forbidden' : 'error';
        result.textContent = e.message;
      } finally {
        button.disabled = false;
      }
    }

    read();
  }

  // ---------------------------------------------------------------- buckets page

  const PROP_FIELDS = ['n', 'r', 'w', 'dw', 'pr', 'pw', 'conflict', 'ttl', 'datatype'];

  function pageBuckets(view, args) {
    const bucket = args[0] || '';
    const panel = h('div', { class: 'panel', id: 'buckets-panel' });
    const props = h('div', { class: 'panel', id: 'props-panel' });
    append(view, [panel, props]);
    const form = h('form', { class: 'row', id: 'props-load-form' },
      h('label', null, 'Bucket ', h('input', { id: 'props-bucket', value: bucket, required: true, size: 16 })),
      h('button', { id: 'props-load', type: 'submit' }, 'Show props'));
    append(panel, [h('h2', null, 'Bucket properties'), form,
      h('p', { class: 'muted' }, 'Every bucket has props (the cluster defaults until changed). Changing n of a bucket that holds data, or its datatype, is refused.')]);
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const b = $('props-bucket').value;
      if (b === bucket) load(); else location.hash = '#/buckets/' + enc(b);
    });
    if (!bucket) return;

    async function load(message) {
      let p;
      try { p = await getJson('/v1/buckets/' + enc(bucket) + '/props'); } catch (e) { showFailure(props, e); return; }
      const shown = {};
      for (const f of PROP_FIELDS) shown[f] = p[f] === undefined || p[f] === null ? '' : String(p[f]);
      if (!shown.ttl) shown.ttl = '0';
      const quorumInput = (f) => h('label', null, f + ' ', h('input', { id: 'prop-' + f, class: 'small', value: shown[f], list: 'quorum-values' }));
      const select = (f, options) => h('select', { id: 'prop-' + f },
        options.map((o) => { const opt = h('option', { value: o[0] }, o[1]); if (o[0] === shown[f]) opt.selected = true; return opt; }));
      const result = h('p', { id: 'props-result' }, message || '');
      const edit = h('form', { id: 'props-form' },
        h('datalist', { id: 'quorum-values' }, ['one', 'quorum', 'all', '0', '1', '2', '3'].map((v) => h('option', { value: v }))),
        h('div', { class: 'row' },
          h('label', null, 'n ', h('input', { id: 'prop-n', class: 'small', type: 'number', min: 1, max: 5, value: shown.n })),
          ['r', 'w', 'dw', 'pr', 'pw'].map(quorumInput)),
        h('div', { class: 'row' },
          h('label', null, 'conflict ', select('conflict', [['siblings', 'siblings'], ['lww', 'last write wins']])),
          h('label', null, 'ttl (s) ', h('input', { id: 'prop-ttl', class: 'small', type: 'number', min: 0, value: shown.ttl })),
          h('label', null, 'datatype ', select('datatype', [['', 'plain values'], ['counter', 'counter'], ['set', 'set'], ['map', 'map']]))),
        h('div', { class: 'row' }, h('button', { id: 'props-save', type: 'submit' }, 'Save changes')),
        result);
      edit.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        const change = {};
        for (const f of PROP_FIELDS) {
          const v = $('prop-' + f).value.trim();
          if (v === shown[f]) continue;
          if (f === 'datatype' && v === '') continue; // cannot go back to plain values
          change[f] = /^\d+$/.test(v) ? parseInt(v, 10) : v;
        }
        if (!Object.keys(change).length) { result.className = 'muted'; result.textContent = 'Nothing changed.'; return; }
        try {
          const r = await request('PUT', '/v1/buckets/' + enc(bucket) + '/props',
            { headers: { 'Content-Type': 'application/json', Accept: 'application/json' }, body: JSON.stringify(change) });
          if (r.status >= 200 && r.status < 300) {
            await load('Saved ' + Object.keys(change).join(', ') + ' at ' + now() + '.');
          } else {
            result.className = 'error';
            result.textContent = errorText(r);
          }
        } catch (e) {
          result.className = e.status === 403 ? 'forbidden' : 'error';
          result.textContent = e.message;
        }
      });
      clear(props);
      append(props, [h('h2', null, 'Props of ', bucket), edit,
        h('details', null, h('summary', null, 'As JSON'), h('pre', { class: 'mono', id: 'props-json' }, JSON.stringify(p, null, 2)))]);
      setStatusLine('Props of ' + bucket + ' read at ' + now());
    }
    load();
  }

  // ---------------------------------------------------------------- routing

  const PAGES = { cluster: pageCluster, ring: pageRing, traffic: pageTraffic, keys: pageKeys, key: pageKey, buckets: pageBuckets };

  function route() {
    generation++;
    const raw = location.hash.replace(/^#\/?/, '');
    const parts = raw === '' ? [] : raw.split('/').map((p) => { try { return decodeURIComponent(p); } catch (e) { return p; } });
    let name = parts[0] || 'cluster';
    if (!PAGES[name]) name = 'cluster';
    const navName = name === 'key' ? 'keys' : name;
    for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.getAttribute('data-page') === navName);
    const view = clear($('view'));
    view.setAttribute('data-page', name);
    setStatusLine('');
    PAGES[name](view, parts.slice(1));
  }

  setupLogin();
  window.addEventListener('hashchange', route);
  route();
}());
