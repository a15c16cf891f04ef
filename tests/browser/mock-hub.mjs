// Mock coindcx-hub: serves web/index.html at /, /ws/status, /healthz and a /ws (/ws/coindcx)
// stream following SPEC.md §3 (system, snapshot, then order/position/balance events; resume
// with ?since=&epoch=; resync + snapshot otherwise). Stoppable and restartable on one port.
//
//   node mock-hub.mjs [--port 8000] [--rate 5] [--token T] [--upstream simulator|coindcx]
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';

const here = path.dirname(fileURLToPath(import.meta.url));
export const INDEX_HTML = path.resolve(here, '../../web/index.html');
const UPLOT_MARKER = "<!--uplot: the hub puts uPlot's CSS and JS here (web/vendor, MIT), no external fetch-->";

// Deterministic PRNG (mulberry32)
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
// integer units -> decimal string with `dp` decimals, e.g. (210294, 2) -> "2102.94"
function dec(units, dp) {
  const neg = units < 0; let s = String(Math.abs(Math.round(units)));
  if (dp === 0) return (neg ? '-' : '') + s;
  s = s.padStart(dp + 1, '0');
  return (neg ? '-' : '') + s.slice(0, -dp) + '.' + s.slice(-dp);
}

const PAIRS = [
  { pair: 'B-ETH_USDT', px: 210294, pdp: 2, qdp: 3 },
  { pair: 'B-BTC_USDT', px: 842505, pdp: 1, qdp: 3 },
  { pair: 'B-SOL_USDT', px: 14215, pdp: 2, qdp: 2 },
];

const SEEDED_POSITIONS = new Set(['8c0e4b7a-fd3e-11ef-9a61-6b2d03c1e4f2', '1d7c9e42-0b6a-4f3e-8c5d-2e9f7a1b3c60']);

/** Fixed records present in every fresh snapshot (exact-digit checks). */
function seedState(now) {
  const orders = new Map();
  const o1 = {
    id: '9b2e4f70-1c3d-4e8a-a6b5-2f0d9c8e7a13', pair: 'B-BTC_USDT', side: 'sell', status: 'open',
    order_type: 'limit_order', price: '84250.5', total_quantity: '0.002', remaining_quantity: '0.002',
    cancelled_quantity: '0', avg_price: '0', leverage: '5', locked_margin: '33.79961559', fee_amount: '0',
    display_message: null, created_at: now - 60000, updated_at: now - 60000,
  };
  const o2 = {
    id: 'e7d0a5b3-6c2f-4d19-b8e4-5a1c3f9d0e27', pair: 'B-ETH_USDT', side: 'buy', status: 'partially_filled',
    order_type: 'limit_order', price: '2102.94', total_quantity: '0.050', remaining_quantity: '0.020',
    cancelled_quantity: '0', avg_price: '2102.94', leverage: '20.0', locked_margin: '5.25735', fee_amount: '0.0186072135',
    display_message: null, created_at: now - 30000, updated_at: now - 20000,
  };
  const o3 = { // a terminal order in the snapshot ("recent"): must not appear in the open orders table
    id: 'bf2f3834-e7ac-48c1-b0e5-1110bf4dee0e', pair: 'B-ETH_USDT', side: 'buy', status: 'filled',
    order_type: 'market_order', price: '2102.94', total_quantity: '0.015', remaining_quantity: '0',
    cancelled_quantity: '0', avg_price: '2102.51', leverage: '4', locked_margin: '0', fee_amount: '0.0186072135',
    display_message: 'ETH market buy order filled!', created_at: now - 90000, updated_at: now - 89000,
  };
  for (const o of [o1, o2, o3]) orders.set(o.id, o);
  const positions = new Map();
  const p1 = {
    id: '8c0e4b7a-fd3e-11ef-9a61-6b2d03c1e4f2', pair: 'B-ETH_USDT', active_pos: '0.045', avg_price: '2101.75',
    liquidation_price: '1590.37', locked_margin: '23.6446875', mark_price: '2102.96', leverage: '20.0',
    margin_type: 'isolated', margin_currency_short_name: 'USDT', updated_at: now - 20000,
  };
  const p2 = {
    id: '1d7c9e42-0b6a-4f3e-8c5d-2e9f7a1b3c60', pair: 'B-SOL_USDT', active_pos: '-2.50', avg_price: '142.15',
    liquidation_price: '171.20', locked_margin: '17.768750', mark_price: '142.10', leverage: '20.0',
    margin_type: 'isolated', margin_currency_short_name: 'USDT', updated_at: now - 40000,
  };
  positions.set(p1.id, p1); positions.set(p2.id, p2);
  const balances = new Map();
  balances.set('USDT', { id: '7d3a5c10-a622-11ee-bd36-479d3cf6751b', currency_short_name: 'USDT', balance: '412.39080417', locked_balance: '34.15153435' });
  balances.set('INR', { id: '102a7916-a622-11ee-bd36-479d3cf6751b', currency_short_name: 'INR', balance: '265.01745775027309', locked_balance: '258.600771' });
  return { orders, positions, balances };
}

export class MockHub {
  constructor(opts = {}) {
    this.port = opts.port ?? 0;
    this.host = opts.host ?? '127.0.0.1';
    this.rate = opts.rate ?? 5;                 // events per second (0 = only scripted events)
    this.token = opts.token ?? '';
    this.kind = opts.upstream ?? 'simulator';
    this.seed = opts.seed ?? 42;
    this.historyCap = opts.history ?? 10000;
    this.indexPath = opts.indexPath ?? INDEX_HTML;
    this.connections = [];                      // log of every ws request {url, since, epoch, resumed}
    this.server = null;
    this.newEpoch();
  }

  newEpoch() {
    this.epoch = crypto.randomUUID();
    this.seq = 0;
    this.history = [];                          // [{seq, text}]
    this.startedAt = Date.now();
    this.eventsTotal = 0;
    this.rand = rng(this.seed);
    this.orderNo = 0;
    Object.assign(this, seedState(Date.now()));
    this.upstreamState = 'idle';
    this.upstreamSince = new Date().toISOString();
    this.lastEventAt = null;
    this.reconnects = 0;
  }

  get url() { return `http://${this.host}:${this.port}`; }

  /** Start listening (same port as before after a stop()). opts.newEpoch simulates a hub restart. */
  async start(opts = {}) {
    if (this.server) return this;
    if (opts.newEpoch) this.newEpoch();
    this.clients = new Set();
    this.server = http.createServer((req, res) => this.onHttp(req, res));
    this.wss = new WebSocketServer({ noServer: true });
    this.server.on('upgrade', (req, sock, head) => this.onUpgrade(req, sock, head));
    this.sockets = new Set();
    this.server.on('connection', (s) => { this.sockets.add(s); s.on('close', () => this.sockets.delete(s)); });
    await new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.port, this.host, () => { this.server.off('error', reject); resolve(); });
    });
    this.port = this.server.address().port;
    this.setRate(this.rate);
    return this;
  }

  /** Stop: kill every client connection abruptly (no close frame) and stop listening. */
  async stop() {
    if (!this.server) return;
    clearInterval(this.timer); this.timer = null;
    for (const ws of this.clients) ws.terminate();
    for (const s of this.sockets) s.destroy();
    this.wss.close();
    await new Promise((r) => this.server.close(() => r()));
    this.server = null;
    this.upstreamState = 'idle';
  }

  setRate(rate) {
    this.rate = rate;
    clearInterval(this.timer); this.timer = null;
    if (!this.server || !rate) return;
    // tick every 10 ms (or slower), emitting the right number of events to hold the rate
    const tickMs = Math.max(10, Math.min(200, Math.floor(1000 / rate)));
    let due = 0, last = Date.now();
    this.timer = setInterval(() => {
      const now = Date.now(); due += ((now - last) * this.rate) / 1000; last = now;
      if (this.clients.size === 0) { due = 0; return; }
      while (due >= 1) due -= this.step(); // step() returns how many events it emitted
    }, tickMs);
  }

  setUpstream(state) {
    this.upstreamState = state; this.upstreamSince = new Date().toISOString();
    const msg = state === 'auth_failed' ? 'upstream auth failed' : state === 'joined' ? 'upstream joined' : `upstream ${state}`;
    this.broadcast(this.frame('system', 'system', { message: msg, coindcx_connected: state === 'joined', upstream: this.kind }));
  }

  frame(type, event, data, extra = {}) {
    const f = { id: crypto.randomUUID() };
    if (extra.seq !== undefined) f.seq = extra.seq;
    f.epoch = this.epoch; f.type = type; f.event = event;
    f.timestamp = new Date().toISOString();
    if (extra.reconciled) f.reconciled = true;
    f.data = data;
    return JSON.stringify(f);
  }

  /** Emit one exchange record as an event (assigns seq, stores history, updates state). */
  emit(type, data, opts = {}) {
    const event = { order: 'df-order-update', position: 'df-position-update', balance: 'balance-update' }[type];
    if (type === 'order') this.orders.set(data.id, data);
    if (type === 'position') this.positions.set(data.id, data);
    if (type === 'balance') this.balances.set(data.currency_short_name, data);
    const seq = ++this.seq;
    const text = this.frame(type, event, data, { seq, reconciled: opts.reconciled });
    this.history.push({ seq, text });
    if (this.history.length > this.historyCap) this.history.shift();
    this.eventsTotal++; this.lastEventAt = new Date().toISOString();
    this.broadcast(text);
    return text;
  }

  broadcast(text) { for (const ws of this.clients) if (ws.readyState === 1 && ws.live) ws.send(text); }

  snapshotFrame() {
    // open orders plus the most recent terminal ones, as the hub does
    const all = [...this.orders.values()];
    const open = all.filter((o) => ['initial', 'open', 'partially_filled', 'untriggered'].includes(o.status));
    const recent = all.filter((o) => !open.includes(o)).slice(-20);
    return this.frame('snapshot', 'snapshot', {
      orders: [...open, ...recent], positions: [...this.positions.values()], balances: [...this.balances.values()], seq: this.seq,
    });
  }

  /** One step of believable activity. */
  step() {
    const r = this.rand, now = Date.now();
    const active = [...this.orders.values()].filter((o) => ['initial', 'open', 'partially_filled'].includes(o.status) && o.mock);
    if (active.length < 8 || r() < 0.3) {
      const P = PAIRS[Math.floor(r() * PAIRS.length)];
      const px = P.px + Math.round((r() - 0.5) * 200);
      const qty = 1 + Math.floor(r() * 50);
      const o = {
        id: crypto.randomUUID(), pair: P.pair, side: r() < 0.5 ? 'buy' : 'sell', status: 'initial',
        order_type: r() < 0.8 ? 'limit_order' : 'market_order', price: dec(px, P.pdp),
        total_quantity: dec(qty, P.qdp), remaining_quantity: dec(qty, P.qdp), cancelled_quantity: '0',
        avg_price: '0', leverage: '10', locked_margin: dec(Math.round(px * qty / 10), P.pdp + P.qdp), fee_amount: '0',
        display_message: null, created_at: now, updated_at: now,
      };
      Object.defineProperty(o, 'mock', { value: { P, qty, filled: 0 }, enumerable: false });
      this.emit('order', o);
      return 1;
    }
    const o = active[Math.floor(r() * active.length)];
    const m = o.mock, P = m.P;
    const n = { ...o, updated_at: now };
    Object.defineProperty(n, 'mock', { value: m, enumerable: false });
    if (o.status === 'initial') n.status = 'open';
    else if (r() < 0.15) { n.status = m.filled ? 'partially_cancelled' : 'cancelled'; n.cancelled_quantity = dec(m.qty - m.filled, P.qdp); n.remaining_quantity = '0'; }
    else {
      const fill = Math.max(1, Math.floor((m.qty - m.filled) * (r() < 0.5 ? 1 : 0.5)));
      m.filled += fill;
      n.remaining_quantity = dec(m.qty - m.filled, P.qdp);
      n.avg_price = o.price;
      n.status = m.filled >= m.qty ? 'filled' : 'partially_filled';
      this.emit('order', n);
      // position + balance follow the fill
      const pos = [...this.positions.values()].find((p) => p.pair === P.pair && !SEEDED_POSITIONS.has(p.id)) ?? {
        id: crypto.randomUUID(), pair: P.pair, active_pos: '0', avg_price: '0', liquidation_price: '0', locked_margin: '0', mark_price: o.price, leverage: '10',
      };
      const cur = Math.round(parseFloat(pos.active_pos) * 10 ** P.qdp); // mock-internal arithmetic only
      const next = cur + (o.side === 'buy' ? fill : -fill);
      this.emit('position', { ...pos, active_pos: dec(next, P.qdp), avg_price: o.price, mark_price: dec(P.px + Math.round((r() - 0.5) * 50), P.pdp), updated_at: Date.now() });
      const b = this.balances.get('USDT');
      const bal = BigInt(b.balance.replace('.', '')) - BigInt(Math.floor(r() * 1e6));
      const bs = bal.toString().padStart(9, '0');
      this.emit('balance', { ...b, balance: bs.slice(0, -8) + '.' + bs.slice(-8) });
      return 3;
    }
    this.emit('order', n);
    return 1;
  }

  statusJson() {
    return {
      active_connections: this.clients ? this.clients.size : 0,
      coindcx_connected: this.upstreamState === 'joined',
      upstream: { kind: this.kind, state: this.upstreamState, since: this.upstreamSince, last_event_at: this.lastEventAt, reconnects: this.reconnects },
      events_total: this.eventsTotal, seq: this.seq, epoch: this.epoch, uptime_s: Math.floor((Date.now() - this.startedAt) / 1000),
    };
  }

  onHttp(req, res) {
    const u = new URL(req.url, 'http://x');
    if (req.method === 'GET' && (u.pathname === '/' || u.pathname === '/index.html')) {
      // re-read: edits show up without restart; uPlot inlined at the marker as the hub does (src/http.rs)
      const vendor = path.resolve(here, '../../web/vendor');
      const html = fs.readFileSync(this.indexPath, 'utf8').replace(UPLOT_MARKER, () =>
        `<style>${fs.readFileSync(path.join(vendor, 'uPlot.min.css'), 'utf8')}</style>\n<script>${fs.readFileSync(path.join(vendor, 'uPlot.iife.min.js'), 'utf8')}</script>`);
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      return res.end(html);
    }
    if (u.pathname === '/ws/status') {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      return res.end(JSON.stringify(this.statusJson()));
    }
    if (u.pathname === '/healthz') { res.writeHead(200); return res.end('ok'); }
    res.writeHead(404, { 'content-type': 'text/plain' }); res.end('not found');
  }

  onUpgrade(req, sock, head) {
    const u = new URL(req.url, 'http://x');
    if (u.pathname !== '/ws' && u.pathname !== '/ws/coindcx') { sock.destroy(); return; }
    if (this.token && u.searchParams.get('token') !== this.token) {
      sock.end('HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'); return;
    }
    this.wss.handleUpgrade(req, sock, head, (ws) => this.onClient(ws, u));
  }

  onClient(ws, u) {
    const since = u.searchParams.get('since'), epoch = u.searchParams.get('epoch');
    const rec = { url: u.pathname + u.search, since, epoch, resumed: false, at: Date.now() };
    this.connections.push(rec);
    this.clients.add(ws);
    if (this.upstreamState === 'idle') { this.upstreamState = 'joined'; this.upstreamSince = new Date().toISOString(); }
    ws.on('close', () => { this.clients.delete(ws); if (!this.clients.size && this.upstreamState === 'joined') this.upstreamState = 'idle'; });
    ws.on('message', (m, isBinary) => {
      const t = m.toString();
      if (!isBinary && (t === 'ping' || t === '{"type":"ping"}')) ws.send(this.frame('pong', 'pong', { message: 'pong' }));
      else ws.send(this.frame('error', 'error', { message: 'unknown client message' }));
    });
    ws.send(this.frame('system', 'system', { message: 'connected', coindcx_connected: this.upstreamState === 'joined', upstream: this.kind }));
    const s = since !== null ? Number(since) : NaN;
    const oldest = this.history.length ? this.history[0].seq : this.seq + 1;
    if (since !== null && epoch === this.epoch && Number.isInteger(s) && s <= this.seq && s >= oldest - 1) {
      rec.resumed = true;
      for (const h of this.history) if (h.seq > s) ws.send(h.text);
    } else {
      if (since !== null || epoch !== null) ws.send(this.frame('resync', 'resync', { message: 'history unavailable, full snapshot follows', since: since, epoch: epoch }));
      ws.send(this.snapshotFrame());
    }
    ws.live = true;
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = Object.fromEntries(process.argv.slice(2).join(' ').split('--').filter(Boolean).map((a) => a.trim().split(/\s+/)));
  const hub = new MockHub({ port: Number(args.port ?? 8000), rate: Number(args.rate ?? 5), token: args.token ?? '', upstream: args.upstream ?? 'simulator' });
  await hub.start();
  console.log(`mock hub on ${hub.url} (rate ${hub.rate}/s, epoch ${hub.epoch})`);
}
