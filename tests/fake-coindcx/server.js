'use strict';
// Vendored from ../shared/bench/fake-coindcx for the tests that must run against real socket.io
// 2 and 4 servers (the exchange runs socket.io; socketioxide behaves differently). Local change:
// FAKE_PING_INTERVAL / FAKE_PING_TIMEOUT (ms) override the 25 s / 20 s heartbeat.
// Fake CoinDCX private stream: a Socket.IO server (socket.io@2.4.1 = EIO3 by default, or
// socket.io@4 with allowEIO3 when FAKE_SIO=v4) plus a small HTTP control API.
// Field shapes follow research/coindcx-protocol.md of this repo sections 3.1-3.4.
const http = require('http');
const crypto = require('crypto');
const { performance } = require('perf_hooks');

const HOST = process.env.FAKE_HOST || '127.0.0.1';
const PORT = +(process.env.FAKE_PORT || 17001);
const CTL_PORT = +(process.env.FAKE_CTL_PORT || 17002);
const KEY = process.env.FAKE_KEY || 'bench-key';
const SECRET = process.env.FAKE_SECRET || 'bench-secret';
const SIO = process.env.FAKE_SIO || 'v2';
const ROOM = 'coindcx';
const PRICES_ROOM = 'currentPrices@futures@rt';
const EXPECTED_SIG = crypto.createHmac('sha256', SECRET).update('{"channel":"coindcx"}').digest('hex');

// Wall-clock nanoseconds with sub-microsecond resolution (Date.now() is only ms).
const NS_OFFSET = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6)) - process.hrtime.bigint();
const nowNs = () => process.hrtime.bigint() + NS_OFFSET;

// ---------------------------------------------------------------- Socket.IO server
const sioServer = http.createServer();
const ioOpts = { pingInterval: +(process.env.FAKE_PING_INTERVAL || 25000), pingTimeout: +(process.env.FAKE_PING_TIMEOUT || 20000), serveClient: false };
const io = SIO === 'v4'
  ? require('socket.io-v4')(sioServer, { ...ioOpts, allowEIO3: true })
  : require('socket.io')(sioServer, ioOpts);
const SIO_NAME = SIO === 'v4' ? 'socket.io@4.8.1 (EIO4 + allowEIO3)' : 'socket.io@2.4.1 (EIO3)';

function roomSize() {
  const rooms = io.sockets.adapter.rooms;
  if (rooms instanceof Map) { const r = rooms.get(ROOM); return r ? r.size : 0; }
  return rooms[ROOM] ? rooms[ROOM].length : 0;
}

const stats = {
  joins_ok: 0, joins_failed: 0, total_connects: 0, total_disconnects: 0,
  events_emitted: 0, records_emitted: 0,
  // bookkeeping for black-box tests: join/leave payloads, REST use
  leaves: 0, price_joins: 0, price_leaves: 0, last_join: null, last_leave: null, rest_calls: 0,
};
// Recent history, newest last, capped: [{at (unix ms), ...}]. Reset by POST /reset.
const logs = { connects: [], joins: [], leaves: [], disconnects: [], rest: [] };
const LOG_CAP = 200;
const logPush = (name, entry) => { const l = logs[name]; l.push({ at: Date.now(), ...entry }); if (l.length > LOG_CAP) l.shift(); };
let nextN = 0;      // bench counter, global and monotonic across runs
let run = null;     // the current/last /rate run

function validJoin(msg) {
  if (!msg || typeof msg !== 'object') return false;
  const sig = Buffer.from(String(msg.authSignature || ''));
  const want = Buffer.from(EXPECTED_SIG);
  return msg.channelName === ROOM && msg.apiKey === KEY &&
    sig.length === want.length && crypto.timingSafeEqual(sig, want);
}

io.on('connection', (socket) => {
  stats.total_connects++;
  logPush('connects', { sid: socket.id });
  socket.on('join', (msg) => {
    // The public price channel: no signature, counted apart from the private join.
    if (msg && msg.channelName === PRICES_ROOM) { stats.price_joins++; socket.join(PRICES_ROOM); return; }
    const ok = validJoin(msg);
    stats.last_join = { at: Date.now(), ok, payload: msg === undefined ? null : msg };
    logPush('joins', { sid: socket.id, ok });
    if (ok) { stats.joins_ok++; socket.join(ROOM); return; }
    // Real CoinDCX (probe): no error event, just a Socket.IO disconnect ~100 ms later.
    // We send an explicit 'join-error' first so clients can log it, then disconnect.
    stats.joins_failed++;
    socket.emit('join-error', { message: 'Invalid credentials', channelName: msg && msg.channelName });
    setTimeout(() => socket.disconnect(true), 100);
  });
  socket.on('leave', (msg) => {
    if (msg && msg.channelName === PRICES_ROOM) {
      stats.price_leaves++;
      socket.leave(PRICES_ROOM); socket.emit('Left Channel', { channelName: PRICES_ROOM });
      return;
    }
    stats.leaves++;
    stats.last_leave = { at: Date.now(), payload: msg === undefined ? null : msg };
    logPush('leaves', { sid: socket.id });
    socket.leave(ROOM); socket.emit('Left Channel', { channelName: ROOM });
  });
  socket.on('ping', () => {});  // documented app-level keepalive; the real server ignores it
  socket.on('disconnect', (reason) => { stats.total_disconnects++; logPush('disconnects', { sid: socket.id, reason }); });
});

// ---------------------------------------------------------------- synthetic payloads
// Realistic field sets (research doc 3.2 order capture, 3.3 position, 3.4 balance).
// bench tag: orders carry it in display_message (a real field); positions and balances have no
// free-text field, so they carry an extra harness-only field "bench_tag".
const PAIRS = [
  ['B-BTC_USDT', 97000, 0.002], ['B-ETH_USDT', 3400, 0.015], ['B-SOL_USDT', 190, 0.5],
  ['B-XRP_USDT', 2.3, 40], ['B-DOGE_USDT', 0.38, 300], ['B-ID_USDT', 0.2962, 33],
];
const POSITION_IDS = PAIRS.map(() => crypto.randomUUID());
const WALLET_ID = crypto.randomUUID();
const USDT_CURRENCY_ID = crypto.randomUUID();
const STATUSES = ['initial', 'open', 'partially_filled', 'filled', 'cancelled'];
const r = (x, d) => Math.round(x * 10 ** d) / 10 ** d;

function orderRecord(n, tag) {
  const [pair, px, qty] = PAIRS[n % PAIRS.length];
  const status = STATUSES[n % STATUSES.length];
  const price = r(px * (1 + ((n % 200) - 100) / 10000), 4);
  const total = r(qty * (1 + (n % 4)), 6);
  const remaining = status === 'filled' || status === 'cancelled' ? 0 : status === 'partially_filled' ? r(total / 2, 6) : total;
  const cancelled = status === 'cancelled' ? total : 0;
  const filled = total - remaining - cancelled;
  const now = Date.now();
  return {
    id: crypto.randomUUID(), pair, side: n % 2 ? 'sell' : 'buy', status,
    order_type: n % 3 === 0 ? 'market_order' : 'limit_order',
    stop_trigger_instruction: 'last_price', notification: 'no_notification',
    leverage: 10, maker_fee: 0.025, taker_fee: 0.075, fee_amount: r(filled * price * 0.00075, 8),
    price, stop_price: 0, avg_price: filled > 0 ? price : 0,
    total_quantity: total, remaining_quantity: remaining, cancelled_quantity: cancelled,
    ideal_margin: r((total * price) / 10, 8), locked_margin: 0, order_category: null, stage: 'default',
    created_at: now - 1500, updated_at: now, trades: [], display_message: tag,
    group_status: null, group_id: null, metatags: null, liquidation_fee: null,
    position_margin_type: 'isolated', take_profit_price: null, stop_loss_price: null,
    margin_currency_short_name: 'USDT', settlement_currency_conversion_price: 1,
  };
}

function positionRecord(n, tag) {
  const i = n % PAIRS.length;
  const [pair, px, qty] = PAIRS[i];
  const active = n % 7 === 0 ? 0 : r((n % 2 ? -1 : 1) * qty * (1 + (n % 3)), 6);
  const avg = active === 0 ? 0 : r(px * 0.999, 4);
  return {
    id: POSITION_IDS[i], pair, active_pos: active, inactive_pos_buy: 0, inactive_pos_sell: 0,
    avg_price: avg, liquidation_price: active === 0 ? 0 : r(px * (active > 0 ? 0.91 : 1.09), 4),
    locked_margin: r(Math.abs(active) * avg / 10, 8), locked_user_margin: r(Math.abs(active) * avg / 10, 8),
    locked_order_margin: 0, take_profit_trigger: null, stop_loss_trigger: null, leverage: 10,
    mark_price: r(px, 4), maintenance_margin: r(Math.abs(active) * px * 0.005, 8), updated_at: Date.now(),
    margin_type: 'isolated', margin_currency_short_name: 'USDT', settlement_currency_avg_price: 1,
    bench_tag: tag,
  };
}

function balanceRecord(n, tag) {
  return {
    id: WALLET_ID, balance: (1000 + (n % 1000) / 7).toFixed(8), locked_balance: ((n % 500) / 3).toFixed(8),
    currency_id: USDT_CURRENCY_ID, currency_short_name: 'USDT', bench_tag: tag,
  };
}

const KINDS = {
  order: ['df-order-update', orderRecord],
  position: ['df-position-update', positionRecord],
  balance: ['balance-update', balanceRecord],
};
const mixKind = (i) => (i % 10 < 7 ? 'order' : i % 10 < 9 ? 'position' : 'balance');

function emitRaw(event, payload) {
  io.to(ROOM).emit(event, payload);
  stats.events_emitted++;
}

// One Socket.IO event carrying `batch` records of one kind, CoinDCX envelope.
// pad > 0 adds a harness-only string field "bench_pad" of that many characters to each record;
// keep = true also records them in the REST state (off by default: no extra work in benchmarks).
function emitSynthetic(kind, batch, pad = 0, keep = false) {
  const [event, make] = KINDS[kind];
  const records = [];
  const padding = pad > 0 ? 'x'.repeat(pad) : null;
  for (let j = 0; j < batch; j++) {
    const n = nextN++;
    const rec = make(n, `bench:${n}:${nowNs()}`);
    if (padding) rec.bench_pad = padding;
    records.push(rec);
  }
  if (keep) for (const rec of records) restStore(event, rec.id, rec.currency_short_name, JSON.stringify(rec), rec);
  emitRaw(event, { event, data: JSON.stringify(records) });
  stats.records_emitted += batch;
  return batch;
}

function startRun({ events_per_sec, seconds, kind = 'order', batch = 1, pad = 0, state = false }) {
  const rate = Number(events_per_sec), secs = Number(seconds), k = Math.floor(Number(batch));
  const padN = Math.floor(Number(pad) || 0);
  if (!(rate > 0 && rate <= 200000 && secs > 0 && secs <= 600 && k >= 1 && k <= 1000)) {
    throw new Error('need 0<events_per_sec<=200000, 0<seconds<=600, 1<=batch<=1000');
  }
  if (!(padN >= 0 && padN <= 100000)) throw new Error('need 0<=pad<=100000');
  if (!(kind in KINDS) && kind !== 'mix') throw new Error("kind must be order|position|balance|mix");
  const total = Math.max(1, Math.round(rate * secs));
  const t0 = process.hrtime.bigint();
  run = {
    active: true, kind, batch: k, pad: padN, events_per_sec: rate, seconds: secs, first_n: nextN,
    events_planned: total, records_planned: total * k, events_emitted: 0, records_emitted: 0,
    room_size_at_start: roomSize(), started_unix_ns: String(nowNs()), finished_unix_ns: null,
    achieved_events_per_sec: null,
  };
  const cur = run;
  const tick = () => {
    const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
    const due = Math.min(total, Math.floor(elapsed * rate) + 1);
    while (cur.events_emitted < due) {
      const kk = kind === 'mix' ? mixKind(cur.events_emitted) : kind;
      cur.records_emitted += emitSynthetic(kk, k, padN, state === true);
      cur.events_emitted++;
    }
    if (cur.events_emitted >= total) {
      cur.active = false;
      cur.finished_unix_ns = String(nowNs());
      const dur = Number(process.hrtime.bigint() - t0) / 1e9;
      cur.achieved_events_per_sec = Math.round((total / Math.max(dur, 1e-9)) * 10) / 10;
    } else {
      setTimeout(tick, 1);
    }
  };
  tick();
  return run;
}

// ---------------------------------------------------------------- futures REST (read side)
// The latest record per order id / position id / wallet currency from everything emitted (or set
// with POST /state), served on the control port under the real paths (research doc 5.4-5.7) so a
// hub's snapshot/reconcile (COINDCX_API_URL=http://127.0.0.1:<ctl port>) sees the same account as
// the stream. Records are kept as their exact JSON text, so decimals keep their digits.
const rest = { orders: new Map(), positions: new Map(), balances: new Map() };

function restStore(event, id, currency, raw, obj) {
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) return;
  const map = event === 'df-order-update' ? rest.orders : event === 'df-position-update' ? rest.positions
    : event === 'balance-update' ? rest.balances : null;
  const key = event === 'balance-update' ? (currency || id) : id;
  if (!map || typeof key !== 'string') return;
  map.delete(key);  // re-insert: Map order = least recently updated first
  map.set(key, { raw, obj });
}

// Top-level elements of a JSON array as their exact source text (null if `text` is not an array).
function splitJsonArray(text) {
  let parsed;
  try { parsed = JSON.parse(text); } catch (e) { return null; }
  if (!Array.isArray(parsed)) return null;
  const raws = [];
  let depth = 0, inStr = false, esc = false, start = -1;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inStr) { if (esc) esc = false; else if (c === '\\') esc = true; else if (c === '"') inStr = false; continue; }
    if (c === '"') { inStr = true; if (depth === 1 && start < 0) start = i; continue; }
    if (c === '[' || c === '{') { if (depth === 1 && start < 0) start = i; depth++; continue; }
    if (c === ']' || c === '}') { depth--; if (depth === 0 && start >= 0) { raws.push(text.slice(start, i).trim()); start = -1; } continue; }
    if (c === ',' && depth === 1) { raws.push(text.slice(start, i).trim()); start = -1; continue; }
    if (depth === 1 && start < 0 && !/\s/.test(c)) start = i;
  }
  return parsed.map((obj, k) => ({ obj, raw: raws[k] }));
}

function restStoreText(event, dataText) {
  const items = typeof dataText === 'string' ? splitJsonArray(dataText) : null;
  if (!items) return 0;
  for (const { obj, raw } of items) if (obj && typeof obj === 'object') restStore(event, obj.id, obj.currency_short_name, raw, obj);
  return items.length;
}

const restErr = (code, message) => ({ code, message, status: 'error' });
const rawArray = (entries) => '[' + entries.map((e) => e.raw).join(',') + ']';
function page(entries, body) {
  if (body.page === undefined && body.size === undefined) return entries;
  const p = Math.max(1, parseInt(body.page, 10) || 1), n = Math.max(1, parseInt(body.size, 10) || 10);
  return entries.slice((p - 1) * n, p * n);
}
const csv = (v) => (typeof v === 'string' && v.trim() ? v.split(',').map((x) => x.trim()) : null);

// -> [status, body text] or null when the path is not a REST route.
function restRoute(method, path, body, headers) {
  const base = '/exchange/v1/derivatives/futures/';
  if (!path.startsWith(base)) return null;
  const sig = crypto.createHmac('sha256', SECRET).update(body).digest('hex');
  if (headers['x-auth-apikey'] !== KEY || headers['x-auth-signature'] !== sig) {
    return [401, JSON.stringify(restErr(401, 'Invalid credentials'))];
  }
  let json;
  try { json = body ? JSON.parse(body) : {}; } catch (e) { return [400, JSON.stringify(restErr(400, 'bad_request'))]; }
  const route = `${method} ${path.slice(base.length).replace(/\/+$/, '')}`;
  if (route === 'POST orders') {
    const statuses = csv(json.status), sides = csv(json.side);
    let list = [...rest.orders.values()].reverse()  // newest first
      .filter((e) => (!statuses || statuses.includes(e.obj.status)) && (!sides || sides.includes(e.obj.side)));
    return [200, rawArray(page(list, json))];
  }
  if (route === 'POST positions') {
    const pairs = csv(json.pairs), ids = csv(json.position_ids);
    const list = [...rest.positions.values()]
      .filter((e) => (!pairs || pairs.includes(e.obj.pair)) && (!ids || ids.includes(e.obj.id)));
    return [200, rawArray(page(list, json))];
  }
  if (route === 'GET wallets') return [200, rawArray([...rest.balances.values()])];
  return [404, JSON.stringify(restErr(404, 'not_found'))];
}

// ---------------------------------------------------------------- control API
function reply(res, code, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

const ctl = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; if (body.length > 1e6) req.destroy(); });
  req.on('end', () => {
    const path = req.url.split('?')[0];
    const restAnswer = restRoute(req.method, path, body, req.headers);
    if (restAnswer) {
      stats.rest_calls++;
      logPush('rest', { method: req.method, path, code: restAnswer[0] });
      res.writeHead(restAnswer[0], { 'content-type': 'application/json', 'content-length': Buffer.byteLength(restAnswer[1]) });
      return res.end(restAnswer[1]);
    }
    let json = {};
    try { json = body ? JSON.parse(body) : {}; } catch (e) { return reply(res, 400, { error: 'bad json' }); }
    const route = `${req.method} ${path}`;
    try {
      if (route === 'GET /stats') {
        return reply(res, 200, {
          server: SIO_NAME, connections: io.engine.clientsCount, room_size: roomSize(),
          ...stats, next_n: nextN, run,
          rest_state: { orders: rest.orders.size, positions: rest.positions.size, balances: rest.balances.size },
        });
      }
      if (route === 'GET /logs') return reply(res, 200, logs);
      if (route === 'POST /reset') {
        // Zero the counters and logs (not the live connections); {"state": true} also empties the REST state.
        for (const k of Object.keys(stats)) stats[k] = typeof stats[k] === 'number' ? 0 : null;
        for (const k of Object.keys(logs)) logs[k] = [];
        if (json.state) for (const m of Object.values(rest)) m.clear();
        return reply(res, 200, { ok: true });
      }
      if (route === 'POST /state') {
        // {event, data}: update the REST state as if the records had been emitted, without emitting
        // them (an account change the hub missed while its upstream was down).
        if (!json.event) return reply(res, 400, { error: 'event required' });
        const data = typeof json.data === 'string' ? json.data : JSON.stringify(json.data ?? []);
        return reply(res, 200, { ok: true, records: restStoreText(json.event, data) });
      }
      if (route === 'POST /emit') {
        // {event, data}: data string is sent as-is, anything else JSON-encoded (CoinDCX envelope);
        // {event, payload}: payload sent verbatim as the event argument.
        // The records also update the REST state unless "state": false.
        if (!json.event) return reply(res, 400, { error: 'event required' });
        const payload = 'payload' in json ? json.payload
          : { event: json.event, data: typeof json.data === 'string' ? json.data : JSON.stringify(json.data ?? []) };
        if (json.state !== false && payload && typeof payload.data === 'string') restStoreText(json.event, payload.data);
        emitRaw(json.event, payload);
        return reply(res, 200, { ok: true, room_size: roomSize() });
      }
      if (route === 'POST /rate') {
        if (run && run.active) return reply(res, 409, { error: 'a run is active', run });
        return reply(res, 200, { ok: true, ...startRun(json) });
      }
      if (route === 'POST /disconnect-all') {
        const n = io.engine.clientsCount;
        for (const s of Object.values(io.sockets.sockets instanceof Map
          ? Object.fromEntries(io.sockets.sockets) : io.sockets.sockets)) s.disconnect(true);
        return reply(res, 200, { ok: true, disconnected: n });
      }
      return reply(res, 404, {
        error: 'routes: GET /stats, GET /logs, POST /emit, POST /state, POST /rate, POST /disconnect-all, POST /reset; '
          + 'REST: POST ' + '/exchange/v1/derivatives/futures/{orders,positions}, GET .../wallets',
      });
    } catch (e) {
      return reply(res, 400, { error: String(e.message || e) });
    }
  });
});

sioServer.listen(PORT, HOST, () => {
  ctl.listen(CTL_PORT, HOST, () => {
    console.log(`fake-coindcx ${SIO_NAME} on ws://${HOST}:${PORT} control http://${HOST}:${CTL_PORT} key=${KEY}`);
  });
});
const stop = () => { io.close(); ctl.close(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
