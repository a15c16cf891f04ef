// The real coindcx-hub binary as a test fixture: spawned with its built-in simulator on free
// ports, killable (SIGKILL) and restartable on the same ports, plus the simulator's signed
// REST API (demo credentials) and a WebSocket "tap" that records what the hub sends a client.
//
//   const hub = new RealHub({ bin: process.env.HUB_BIN, rate: 5, seed: 7 });
//   await hub.start(); ... hub.kill(); await hub.start(); ... await hub.stop();
//
// Every spawned process is SIGKILLed when this Node process exits, whatever the reason.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';

export const DEMO_KEY = 'demo-key';
export const DEMO_SECRET = 'demo-secret';
const FUTURES = '/exchange/v1/derivatives/futures';
export const TERMINAL = new Set(['filled', 'cancelled', 'partially_cancelled', 'rejected']);

const live = new Set(); // child processes still running
function killAll() { for (const c of live) { try { c.kill('SIGKILL'); } catch { /* gone */ } } }
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => { killAll(); process.exit(128 + (os.constants.signals[sig] || 0)); });
}

/** A TCP port that was free a moment ago (bind port 0, read it, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

/** Poll `fn` (async, returns truthy when done) every `every` ms until `timeout`. */
export async function until(fn, { timeout = 10000, every = 100, what = 'condition' } = {}) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try { last = await fn(); if (last) return last; } catch (e) { if (e && e.fatal) throw e; last = e; }
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what}` + (last instanceof Error ? `: ${last.message}` : ''));
    await new Promise((r) => setTimeout(r, every));
  }
}

export class RealHub {
  constructor(opts = {}) {
    this.bin = opts.bin ? path.resolve(opts.bin) : ''; // spawned from a temp cwd
    this.rate = opts.rate ?? 5;
    this.seed = opts.seed ?? 7;
    this.extraEnv = opts.env ?? {};
    this.logFile = opts.logFile ?? null;
    this.port = 0; this.simPort = 0;
    this.child = null; this.exited = null;
    this.log = [];
    this.starts = 0;
    this.cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'hub-browser-')); // no .env up the tree
  }

  get url() { return `http://127.0.0.1:${this.port}`; }
  get wsUrl() { return `ws://127.0.0.1:${this.port}/ws`; }
  get simUrl() { return `http://127.0.0.1:${this.simPort}`; }
  get pid() { return this.child ? this.child.pid : null; }

  /** Spawn the hub (first call picks two free ports; later calls reuse them) and wait for /healthz. */
  async start() {
    if (this.child) throw new Error('hub already running');
    if (!this.bin || !fs.existsSync(this.bin)) throw new Error(`HUB_BIN ${this.bin} does not exist (cargo build --release)`);
    if (!this.port) { this.port = await freePort(); this.simPort = await freePort(); }
    const env = {};
    for (const [k, v] of Object.entries(process.env)) if (!/^(HUB_|COINDCX_)/.test(k)) env[k] = v;
    Object.assign(env, {
      HUB_BIND: `127.0.0.1:${this.port}`, HUB_SIM_BIND: `127.0.0.1:${this.simPort}`,
      HUB_SIM_RATE: String(this.rate), HUB_SIM_SEED: String(this.seed), RUST_LOG: 'warn',
    }, this.extraEnv);
    const n = ++this.starts;
    const child = spawn(this.bin, [], { cwd: this.cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    live.add(child);
    const onData = (stream) => (b) => {
      for (const line of String(b).split('\n')) if (line) this.log.push(`[run ${n} ${stream}] ${line}`);
      if (this.log.length > 2000) this.log.splice(0, this.log.length - 2000);
    };
    child.stdout.on('data', onData('out'));
    child.stderr.on('data', onData('err'));
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => {
      live.delete(child);
      this.log.push(`[run ${n}] exited code=${code} signal=${signal}`);
      if (this.child === child) this.child = null;
      resolve({ code, signal });
    }));
    let exitedEarly = null;
    this.exited.then((e) => { exitedEarly = e; });
    try {
      await until(async () => {
        if (exitedEarly) throw Object.assign(new Error(`hub exited at start: ${JSON.stringify(exitedEarly)}\n${this.log.slice(-20).join('\n')}`), { fatal: true });
        const r = await fetch(this.url + '/healthz');
        return r.status === 200;
      }, { timeout: 20000, every: 50, what: `hub /healthz on ${this.url}` });
    } catch (e) {
      if (this.child) await this.kill();
      throw e;
    }
    return this;
  }

  /** SIGKILL (default) the running hub and wait until the process is gone. */
  async kill(signal = 'SIGKILL') {
    const c = this.child;
    if (!c) return null;
    c.kill(signal);
    return this.exited;
  }

  async stop() {
    await this.kill('SIGKILL');
    if (this.logFile) { try { fs.writeFileSync(this.logFile, this.log.join('\n') + '\n'); } catch { /* best effort */ } }
    try { fs.rmSync(this.cwd, { recursive: true, force: true }); } catch { /* ignore */ }
  }

  async status() { return (await fetch(this.url + '/ws/status')).json(); }

  /** A signed POST to the simulator's futures REST API; returns {status, body}. */
  async rest(route, payload) {
    const body = JSON.stringify({ timestamp: Date.now(), ...payload });
    const signature = crypto.createHmac('sha256', DEMO_SECRET).update(body).digest('hex');
    const r = await fetch(this.simUrl + FUTURES + route, {
      method: 'POST', body,
      headers: { 'Content-Type': 'application/json', 'X-AUTH-APIKEY': DEMO_KEY, 'X-AUTH-SIGNATURE': signature },
    });
    const text = await r.text();
    let json = null; try { json = JSON.parse(text); } catch { /* keep text */ }
    return { status: r.status, body: json, text };
  }

  /** Place a limit order far from the market; returns the created order record. */
  async createOrder(over = {}) {
    const order = {
      side: 'buy', pair: 'B-ETH_USDT', order_type: 'limit_order', price: '1500.00', total_quantity: 0.001,
      notification: 'no_notification', time_in_force: 'good_till_cancel', margin_currency_short_name: 'USDT', ...over,
    };
    const r = await this.rest('/orders/create', { order });
    if (r.status !== 200 || !Array.isArray(r.body) || !r.body[0] || !r.body[0].id) throw new Error(`create order: HTTP ${r.status} ${r.text}`);
    return r.body[0];
  }

  async cancelOrder(id) {
    const r = await this.rest('/orders/cancel', { id });
    if (r.status !== 200) throw new Error(`cancel order ${id}: HTTP ${r.status} ${r.text}`);
    return r.body;
  }
}

/**
 * A plain WebSocket client of the hub that records every frame and keeps the same tables the
 * page keeps (latest record per order id / position id / currency; terminal orders removed).
 */
export class Tap {
  constructor(url) {
    this.url = url;
    this.frames = [];            // {text, f, at}
    this.byId = new Map();       // event id -> raw text (order/position/balance frames)
    this.orders = new Map(); this.positions = new Map(); this.balances = new Map();
    this.epoch = null; this.lastSeq = null; this.snapshots = 0; this.gaps = 0; this.closed = false;
  }

  open() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      ws.on('open', () => resolve(this));
      ws.on('error', (e) => { if (!this.opened) reject(e); });
      ws.on('close', () => { this.closed = true; });
      ws.on('message', (data, isBinary) => { if (!isBinary) this.onText(String(data)); });
    }).then((t) => { this.opened = true; return t; });
  }

  onText(text) {
    let f; try { f = JSON.parse(text); } catch { return; }
    this.frames.push({ text, f, at: Date.now() });
    if (typeof f.epoch === 'string') this.epoch = f.epoch;
    const d = f.data;
    if (f.type === 'snapshot' && d) {
      this.orders.clear(); this.positions.clear(); this.balances.clear();
      for (const o of d.orders || []) if (!TERMINAL.has(o.status)) this.orders.set(String(o.id), o);
      for (const p of d.positions || []) this.positions.set(String(p.id), p);
      for (const b of d.balances || []) this.balances.set(String(b.currency_short_name), b);
      this.lastSeq = d.seq; this.snapshots++;
    } else if (['order', 'position', 'balance'].includes(f.type) && d) {
      if (typeof f.seq === 'number') { if (this.lastSeq !== null && f.seq !== this.lastSeq + 1) this.gaps++; this.lastSeq = f.seq; }
      if (f.id) this.byId.set(f.id, text);
      if (f.type === 'order') { if (TERMINAL.has(d.status)) this.orders.delete(String(d.id)); else this.orders.set(String(d.id), d); }
      else if (f.type === 'position') this.positions.set(String(d.id), d);
      else this.balances.set(String(d.currency_short_name), d);
    }
  }

  /** Frames of `type` whose data.id equals `id` (orders/positions). */
  recordFrames(type, id) { return this.frames.filter((x) => x.f.type === type && x.f.data && String(x.f.data.id) === String(id)); }

  close() { try { this.ws.terminate(); } catch { /* gone */ } }
}
