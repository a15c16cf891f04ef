// Helpers shared by the browser test files: Chromium launch, page opening with an
// off-origin request log, feed/table readers, filters, CSV reference parser.
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

export const CHROME = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
export const launch = () => chromium.launch({ executablePath: CHROME, args: ARGS, headless: true });

/**
 * Open `base + path` in a fresh context. Every request or WebSocket leaving the page's origin
 * is pushed to `log.offOrigin`, every uncaught page error to `log.pageErrors`.
 */
export async function openPage(browser, base, log, opts = {}) {
  const ctx = await browser.newContext({ viewport: opts.viewport ?? { width: 1280, height: 800 }, acceptDownloads: true });
  const page = await ctx.newPage();
  const origin = new URL(base).origin;
  const host = new URL(origin).host;
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.protocol === 'data:' || u.protocol === 'blob:') return;
    if (u.origin !== origin) log.offOrigin.push(r.url());
  });
  page.on('websocket', (ws) => { if (new URL(ws.url()).host !== host) log.offOrigin.push(ws.url()); });
  page.on('pageerror', (e) => log.pageErrors.push(String(e)));
  await page.goto(base + (opts.path ?? '/'));
  return page;
}

export const waitState = (page, st, timeout = 10000) =>
  page.waitForSelector(`#conn-indicator[data-state="${st}"]`, { timeout });
export const stats = (page) => page.evaluate(() => window.__hub.stats());
export const feedRows = (page) => page.$$eval('#feed tbody tr[data-n]', (rs) => rs.map((r) => ({
  type: r.dataset.type, pair: r.dataset.pair || '', side: r.dataset.side || '', status: r.dataset.status || '', id: r.dataset.id || '', n: r.dataset.n,
})));
export const cell = (page, table, id, col) => page.$eval(`#${table}-table tbody tr[data-id="${id}"] td[data-col="${col}"]`, (e) => e.textContent);
// two animation frames, then render whatever the feed's 100 ms throttle still holds back
export const frames2 = (page) => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))).then(() => window.__hub.flushNow()));
export async function setPaused(page, on) {
  if ((await page.getAttribute('#pause', 'aria-pressed')) !== String(on)) await page.click('#pause');
  await frames2(page);
}
export async function setFilters(page, f) {
  for (const k of ['type', 'pair', 'side', 'status']) await page.selectOption(`#filter-${k}`, f[k] ?? '');
  await page.fill('#search', f.q ?? '');
  await page.press('#search', 'Enter');
  await frames2(page);
}

/**
 * The filter / search checks, run on a live page by both the mock and the real-hub files: waits
 * for varied traffic, pauses for a stable list, then checks each filter shows exactly the
 * matching events, the pair + type combination, a case-insensitive id search (export = what
 * is shown), an empty search result, and that clearing the filters shows everything again.
 */
export async function filtersNarrowTheFeed(page) {
  await setFilters(page, {});
  // enough varied traffic: orders, positions, both sides, open orders
  await page.waitForFunction(() => {
    const f = window.__hub.state.feed;
    const has = (p) => f.some(p);
    return f.length > 30 && has((e) => e.type === 'position') && has((e) => e.side === 'sell') && has((e) => e.side === 'buy')
      && has((e) => e.status === 'open') && has((e) => e.type === 'balance');
  }, null, { timeout: 60000, polling: 250 });
  await setPaused(page, true); // a stable list to compare against
  const allShown = (await stats(page)).shown;
  for (const [k, v, attr] of [['type', 'order', 'type'], ['type', 'position', 'type'], ['type', 'balance', 'type'], ['side', 'sell', 'side'], ['status', 'open', 'status']]) {
    await setFilters(page, { [k]: v });
    const rows = await feedRows(page);
    const want = await page.evaluate(([attr, v]) => window.__hub.state.frozen.filter((e) => e[attr] === v).length, [attr, v]);
    assert.ok(rows.length > 0, `filter ${k}=${v} shows rows`);
    assert.ok(rows.every((r) => r[attr] === v), `filter ${k}=${v} only`);
    assert.equal((await stats(page)).shown, want, `filter ${k}=${v}: every matching event shown`);
    assert.ok(want < allShown);
  }
  const pair = await page.$eval('#filter-pair option:nth-child(2)', (o) => o.value);
  await setFilters(page, { pair, type: 'order' });
  let rows = await feedRows(page);
  assert.ok(rows.length > 0 && rows.every((r) => r.pair === pair && r.type === 'order'), 'pair + type combined');
  // search by an order id (case-insensitive): only frames containing it remain
  const term = await page.evaluate(() => { const f = window.__hub.state.frozen.filter((e) => e.type === 'order'); return f[f.length - 1].f.data.id; });
  await setFilters(page, { q: term.toUpperCase() });
  rows = await feedRows(page);
  const frames = JSON.parse(await page.evaluate(() => window.__hub.exportJson()));
  const nShown = (await stats(page)).shown;
  assert.ok(rows.length >= 1 && nShown < allShown);
  assert.equal(frames.length, nShown, 'export = what is shown');
  assert.ok(frames.every((f) => JSON.stringify(f).includes(term)));
  await setFilters(page, { q: 'no-such-text-zzz' });
  assert.equal((await feedRows(page)).length, 0);
  await setFilters(page, {});
  assert.equal((await stats(page)).shown, allShown);
  await setPaused(page, false);
}

/** Table columns: [td data-col, record field]. */
export const COLS = {
  orders: [['pair', 'pair'], ['side', 'side'], ['status', 'status'], ['price', 'price'], ['qty', 'total_quantity'], ['remaining', 'remaining_quantity']],
  positions: [['size', 'active_pos'], ['avg_price', 'avg_price'], ['liquidation', 'liquidation_price'], ['margin', 'locked_margin'], ['mark', 'mark_price']],
  balances: [['balance', 'balance'], ['locked', 'locked_balance']],
};
/** How the page must show a received value: the string itself, '—' for null/"None". */
export const shown = (v) => (v === null || v === undefined || v === 'None' ? '—' : String(v));

/** The three tables as rendered: {orders: {id: {col: text}}, positions: ..., balances: ...}. */
export const dumpTables = (page) => page.evaluate((COLS) => {
  window.__hub.flushNow();
  const out = {};
  for (const t of Object.keys(COLS)) {
    out[t] = {};
    document.querySelectorAll(`#${t}-table tbody tr[data-id]`).forEach((tr) => {
      const row = {};
      for (const [col] of COLS[t]) { const td = tr.querySelector(`td[data-col="${col}"]`); row[col] = td ? td.textContent : null; }
      out[t][tr.dataset.id] = row;
    });
  }
  return out;
}, COLS);

/** The same shape computed from record maps (what the tables must show). */
export function expectedTables(maps) {
  const out = {};
  for (const t of Object.keys(COLS)) {
    out[t] = {};
    for (const [id, rec] of maps[t]) out[t][id] = Object.fromEntries(COLS[t].map(([col, key]) => [col, shown(rec[key])]));
  }
  return out;
}

/** Human-readable differences between two dumps (empty = equal). */
export function diffTables(got, want) {
  const bad = [];
  for (const t of Object.keys(COLS)) {
    for (const id of Object.keys(want[t])) {
      if (!got[t][id]) { bad.push(`${t}: row ${id} missing`); continue; }
      for (const [col] of COLS[t]) if (got[t][id][col] !== want[t][id][col]) bad.push(`${t} ${id} ${col}: shown ${JSON.stringify(got[t][id][col])}, frame ${JSON.stringify(want[t][id][col])}`);
    }
    for (const id of Object.keys(got[t])) if (!want[t][id]) bad.push(`${t}: row ${id} shown but not in the hub's state`);
  }
  return bad;
}

// RFC 4180 parser (the reference the page's CSV must satisfy)
export function parseCsv(text) {
  const rows = []; let row = [], f = '', q = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (q) { if (c === '"') { if (text[i + 1] === '"') { f += '"'; i++; } else q = false; } else f += c; }
    else if (c === '"') q = true;
    else if (c === ',') { row.push(f); f = ''; }
    else if (c === '\r' && text[i + 1] === '\n') { row.push(f); rows.push(row); row = []; f = ''; i++; }
    else f += c;
  }
  if (f !== '' || row.length) { row.push(f); rows.push(row); }
  return rows;
}
export const csvField = (v) => (/[",\r\n]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v);
export const CSV_HEADER = 'timestamp,type,event,seq,id,pair,side,status,price,quantity,reconciled,raw';
