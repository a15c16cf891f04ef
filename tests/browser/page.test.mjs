// Headless-Chromium tests of the monitor page (web/index.html).
//   cd tests/browser && npm ci && node --test                 # against the mock hub
//   HUB_URL=http://127.0.0.1:8000 [HUB_TOKEN=..] node --test   # against a running coindcx-hub
//   BROWSER_LOAD_TEST=1 node --test                            # + 200 ev/s for 60 s load test
//   HUB_BIN=.../coindcx-hub node --test                      # real-hub.test.mjs spawns the real hub;
//        this file then keeps only the mock-only tests (scripted events the real hub cannot send)
// Chromium: CHROMIUM_PATH (default /usr/bin/chromium, Debian's package).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MockHub } from './mock-hub.mjs';
import {
  launch, openPage as openAt, waitState, stats, feedRows, cell, frames2, setPaused, setFilters,
  parseCsv, csvField, CSV_HEADER, filtersNarrowTheFeed,
} from './helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const ART = path.join(here, 'artifacts');
const ON_REAL = process.env.HUB_BIN ? 'runs against the real hub in real-hub.test.mjs (HUB_BIN is set)' : false;
const REAL = process.env.HUB_URL && !ON_REAL ? process.env.HUB_URL.replace(/\/+$/, '') : '';
const TOKEN = process.env.HUB_TOKEN || ''; // the hub's HUB_AUTH_TOKEN, if it has one
const LOAD = process.env.BROWSER_LOAD_TEST === '1';
const mockOnly = REAL ? 'needs the mock hub (scripted events / restart); HUB_URL is set' : false;

let hub, base, browser;
const log = { offOrigin: [], pageErrors: [] }; // requests that left the page's origin; page errors

before(async () => {
  fs.mkdirSync(ART, { recursive: true });
  if (!REAL) {
    hub = new MockHub({ rate: 20 });
    await hub.start();
    base = hub.url;
  } else base = REAL;
  browser = await launch();
});
after(async () => {
  if (browser) await browser.close();
  if (hub) await hub.stop();
});

// the shared opener with this file's defaults: the mock (or HUB_URL) hub, HUB_TOKEN if any
const openPage = (opts = {}) => openAt(browser, opts.base ?? base, log,
  { ...opts, path: opts.path ?? (TOKEN ? '/?token=' + encodeURIComponent(TOKEN) : '/') });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let page; // main desktop page shared by the functional tests (one browser client)
async function ensurePage() { // the mock-only tests also run alone (HUB_BIN set: the generic ones run on the real hub)
  if (page) return page;
  page = await openPage();
  await waitState(page, 'live');
  await page.waitForSelector('#orders-table tbody tr[data-id]');
  await page.waitForFunction(() => window.__hub.stats().lastSeq > 0, null, { timeout: 10000 });
  return page;
}

test('page goes live, shows upstream, simulator banner and header counters', { skip: ON_REAL }, async () => {
  page = await openPage();
  await waitState(page, 'live');
  assert.match(await page.textContent('#conn-text'), /live/);
  await page.waitForFunction(() => /joined|idle|connecting|reconnecting|auth/.test(document.getElementById('upstream-state').textContent), null, { timeout: 5000 });
  const status = await (await fetch(base + '/ws/status')).json();
  assert.equal(typeof status.active_connections, 'number');
  const sim = status.upstream && status.upstream.kind === 'simulator';
  assert.equal(await page.isVisible('#sim-banner'), sim, 'simulator banner iff upstream.kind is simulator');
  await page.waitForFunction(() => /^\d+$/.test(document.getElementById('clients').textContent), null, { timeout: 5000 });
  if (!REAL) {
    await page.waitForFunction(() => /simulator · joined/.test(document.getElementById('upstream-state').textContent), null, { timeout: 5000 });
    assert.equal(await page.getAttribute('#upstream-state', 'data-state'), 'joined');
    await page.waitForFunction(() => +document.getElementById('events-rate').textContent > 0, null, { timeout: 5000 });
    await page.waitForFunction(() => /s$/.test(document.getElementById('last-event-age').textContent), null, { timeout: 5000 });
  }
  const s = await stats(page);
  assert.ok(s.snapshots >= 1 && s.counts.system >= 1, 'system + snapshot frames received');
});

test('orders / positions / balances tables fill and show decimals exactly as received', { skip: ON_REAL }, async () => {
  await page.waitForSelector('#orders-table tbody tr[data-id]');
  await page.waitForSelector('#positions-table tbody tr[data-id]');
  await page.waitForSelector('#balances-table tbody tr[data-id]');
  // every displayed cell equals the string that arrived in the frame (no float round-trip)
  const mismatches = await page.evaluate(() => {
    window.__hub.flushNow(); // DOM and state compared in the same task
    const st = window.__hub.state, bad = [];
    const chk = (table, map, cols) => document.querySelectorAll(`#${table} tbody tr[data-id]`).forEach((tr) => {
      const rec = map.get(tr.dataset.id);
      if (!rec) { bad.push(`${table}: row ${tr.dataset.id} not in state`); return; }
      for (const [col, key] of cols) {
        const want = rec[key] == null || rec[key] === 'None' ? '—' : String(rec[key]);
        const got = tr.querySelector(`td[data-col="${col}"]`).textContent;
        if (got !== want) bad.push(`${table} ${tr.dataset.id} ${col}: ${got} != ${want}`);
      }
    });
    chk('orders-table', st.orders, [['price', 'price'], ['qty', 'total_quantity'], ['remaining', 'remaining_quantity'], ['status', 'status'], ['pair', 'pair'], ['side', 'side']]);
    chk('positions-table', st.positions, [['size', 'active_pos'], ['avg_price', 'avg_price'], ['liquidation', 'liquidation_price'], ['margin', 'locked_margin'], ['mark', 'mark_price']]);
    chk('balances-table', st.balances, [['balance', 'balance'], ['locked', 'locked_balance']]);
    for (const [id, o] of st.orders) if (['filled', 'cancelled', 'partially_cancelled', 'rejected'].includes(o.status)) bad.push('terminal order in open table ' + id);
    return bad;
  });
  assert.deepEqual(mismatches, []);
  if (REAL) return;
  // snapshot records from the mock, digits exactly
  assert.equal(await cell(page, 'orders', '9b2e4f70-1c3d-4e8a-a6b5-2f0d9c8e7a13', 'price'), '84250.5');
  assert.equal(await cell(page, 'orders', 'e7d0a5b3-6c2f-4d19-b8e4-5a1c3f9d0e27', 'price'), '2102.94');
  assert.equal(await cell(page, 'orders', 'e7d0a5b3-6c2f-4d19-b8e4-5a1c3f9d0e27', 'qty'), '0.050');
  assert.equal(await cell(page, 'orders', 'e7d0a5b3-6c2f-4d19-b8e4-5a1c3f9d0e27', 'remaining'), '0.020');
  assert.equal(await page.$('#orders-table tbody tr[data-id="bf2f3834-e7ac-48c1-b0e5-1110bf4dee0e"]'), null, 'filled order from snapshot not shown as open');
  const P = '8c0e4b7a-fd3e-11ef-9a61-6b2d03c1e4f2';
  assert.deepEqual(await Promise.all(['size', 'avg_price', 'liquidation', 'margin', 'mark'].map((c) => cell(page, 'positions', P, c))),
    ['0.045', '2101.75', '1590.37', '23.6446875', '2102.96']);
  assert.equal(await cell(page, 'positions', '1d7c9e42-0b6a-4f3e-8c5d-2e9f7a1b3c60', 'size'), '-2.50');
  assert.equal(await cell(page, 'balances', 'INR', 'balance'), '265.01745775027309');
  assert.equal(await cell(page, 'balances', 'INR', 'locked'), '258.600771');
});

test('live events update tables; trailing zeros kept; terminal status removes the order', { skip: mockOnly }, async () => {
  await ensurePage();
  const id = 'dec-test-0001';
  const base0 = { id, pair: 'B-ETH_USDT', side: 'buy', order_type: 'limit_order', cancelled_quantity: '0', avg_price: '0', leverage: '20.0', created_at: Date.now() };
  hub.emit('order', { ...base0, status: 'open', price: '20.0', total_quantity: '1.50', remaining_quantity: '1.50', updated_at: Date.now() });
  await page.waitForSelector(`#orders-table tbody tr[data-id="${id}"]`);
  assert.equal(await cell(page, 'orders', id, 'price'), '20.0');
  assert.equal(await cell(page, 'orders', id, 'qty'), '1.50');
  hub.emit('order', { ...base0, status: 'partially_filled', price: '20.0', total_quantity: '1.50', remaining_quantity: '0.000000007009', updated_at: Date.now() });
  await page.waitForFunction((id) => document.querySelector(`#orders-table tr[data-id="${id}"] td[data-col="remaining"]`)?.textContent === '0.000000007009', id);
  assert.equal(await cell(page, 'orders', id, 'status'), 'partially_filled');
  hub.emit('balance', { currency_short_name: 'BTC', balance: '0.10000000', locked_balance: '0' });
  await page.waitForSelector('#balances-table tbody tr[data-id="BTC"]');
  assert.equal(await cell(page, 'balances', 'BTC', 'balance'), '0.10000000');
  hub.emit('order', { ...base0, status: 'cancelled', price: '20.0', total_quantity: '1.50', remaining_quantity: '0', cancelled_quantity: '1.50', updated_at: Date.now() });
  await page.waitForSelector(`#orders-table tbody tr[data-id="${id}"]`, { state: 'detached' });
  const s = await stats(page);
  assert.equal(s.gaps, 0); assert.equal(s.dups, 0);
  assert.ok(s.latency.n > 0 && s.latency.p50 !== null, 'latency samples from data.updated_at');
  // the header (latency p50) renders once a second
  await page.waitForFunction(() => /^-?\d+ ms$/.test(document.getElementById('lat-p50').textContent), null, { timeout: 5000 });
});

test('filters and free-text search narrow the feed', { skip: ON_REAL }, async () => {
  await page.waitForFunction(() => window.__hub.stats().shown > 20, null, { timeout: 20000 });
  const types = new Set(await page.evaluate(() => window.__hub.state.feed.map((e) => e.type)));
  assert.ok(types.has('snapshot') && types.has('system'));
  await filtersNarrowTheFeed(page);
});

test('pause freezes the feed, resume catches up', { skip: ON_REAL }, async () => {
  await page.click('#pause');
  assert.equal(await page.getAttribute('#pause', 'aria-pressed'), 'true');
  // events that arrived before the click belong to the frozen list: render them, then read the top row
  const n0 = await page.evaluate(() => { window.__hub.flushNow(); return document.querySelector('#feed tbody tr[data-n]').dataset.n; });
  if (!REAL) hub.emit('order', { id: 'pause-test', pair: 'B-ETH_USDT', side: 'buy', status: 'open', order_type: 'limit_order', price: '1.0', total_quantity: '1', remaining_quantity: '1', updated_at: Date.now() });
  await sleep(REAL ? 3000 : 600);
  assert.equal(await page.$eval('#feed tbody tr[data-n]', (r) => r.dataset.n), n0, 'top row unchanged while paused');
  if (!REAL) assert.ok(await page.$('#orders-table tr[data-id="pause-test"]'), 'tables still update while feed is paused');
  assert.match(await page.textContent('#pause'), /Resume \(\d+ new\)/);
  await page.click('#pause');
  assert.equal(await page.getAttribute('#pause', 'aria-pressed'), 'false');
  await page.waitForFunction((n0) => document.querySelector('#feed tbody tr[data-n]').dataset.n !== n0, n0, { timeout: 10000 });
});

test('CSV and JSON export of the shown feed', { skip: ON_REAL }, async () => {
  // generic: whatever is shown exports consistently
  await setPaused(page, true);
  const csv = await page.evaluate(() => window.__hub.exportCsv());
  const json = await page.evaluate(() => window.__hub.exportJson());
  const { shown } = await stats(page);
  const frames = JSON.parse(json);
  const parsed = parseCsv(csv);
  assert.equal(parsed[0].join(','), CSV_HEADER);
  assert.equal(parsed.length - 1, shown); assert.equal(frames.length, shown);
  parsed.slice(1).forEach((r, i) => { assert.equal(r.length, 12); assert.deepEqual(JSON.parse(r[11]), frames[i]); assert.equal(r[1], frames[i].type); });
  // the buttons download the same text
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#export-csv')]);
  assert.match(dl.suggestedFilename(), /^coindcx-hub-feed-.*\.csv$/);
  assert.equal(fs.readFileSync(await dl.path(), 'utf8'), csv);
  const [dj] = await Promise.all([page.waitForEvent('download'), page.click('#export-json')]);
  assert.equal(fs.readFileSync(await dj.path(), 'utf8'), json);
  await setPaused(page, false);
});

test('CSV and JSON export with hostile strings: exact contents, RFC 4180 quoting', { skip: mockOnly }, async () => {
  await ensurePage();
  await setPaused(page, false);
  // exact: two scripted events with a comma, a quote and a newline in a text field
  const weird = 'B-Q"T,1\nX_USDT';
  const rec = { id: 'csv-1', pair: weird, side: 'sell', status: 'open', order_type: 'limit_order', price: '0.10', total_quantity: '3.000', remaining_quantity: '3.000', display_message: 'a "quoted", multi\nline note', updated_at: Date.now() };
  const t1 = hub.emit('order', rec);
  const t2 = hub.emit('order', { ...rec, status: 'partially_filled', remaining_quantity: '1.000' }, { reconciled: true });
  await page.waitForFunction(() => window.__hub.state.feed.some((e) => e.f.id && e.f.reconciled && e.pair.startsWith('B-Q')));
  await setFilters(page, { q: 'b-q\\"t' });
  assert.equal((await feedRows(page)).length, 2);
  assert.equal((await stats(page)).shown, 2);
  const row = (t) => {
    const f = JSON.parse(t);
    const d = f.data;
    return [f.timestamp, 'order', 'df-order-update', String(f.seq), f.id, d.pair, d.side, d.status, d.price, d.total_quantity, f.reconciled ? 'true' : '', t].map(csvField).join(',');
  };
  const want = [CSV_HEADER, row(t2), row(t1)].join('\r\n') + '\r\n';
  assert.equal(await page.evaluate(() => window.__hub.exportCsv()), want);
  // a hand-written spot check of the quoting rules
  assert.ok(want.includes(',"B-Q""T,1\nX_USDT",sell,partially_filled,0.10,3.000,true,"{""id"":'));
  assert.equal(await page.evaluate(() => window.__hub.exportJson()), `[\n${t2},\n${t1}\n]\n`);
  await setFilters(page, {});
});

test('clicking a feed row opens its raw JSON; keyboard too', { skip: ON_REAL }, async () => {
  await setPaused(page, true);
  const first = await page.$('#feed tbody tr[data-type="order"]') ?? await page.$('#feed tbody tr[data-n]');
  const evId = await first.getAttribute('data-id');
  await first.click();
  await page.waitForSelector('#raw-json', { state: 'visible' });
  const text = await page.textContent('#raw-json');
  const f = JSON.parse(text);
  assert.equal(f.id, evId);
  assert.equal(await page.getAttribute('#raw-json', 'data-raw'), await page.evaluate((id) => window.__hub.state.feed.find((e) => e.f.id === id).text, evId), 'raw text exactly as received');
  await page.keyboard.press('Escape');
  await page.waitForSelector('#raw-json', { state: 'hidden' });
  // keyboard: focus a row, Enter opens, Close button closes
  await page.evaluate(() => document.querySelectorAll('#feed tbody tr[data-n]')[1].focus());
  await page.keyboard.press('Enter');
  await page.waitForSelector('#raw-json', { state: 'visible' });
  await page.click('#raw-close');
  await page.waitForSelector('#raw-json', { state: 'hidden' });
  await setPaused(page, false);
});

test('keyboard reaches the controls', async () => {
  await ensurePage();
  await page.focus('body');
  const seen = new Set();
  for (let i = 0; i < 40; i++) {
    await page.keyboard.press('Tab');
    seen.add(await page.evaluate(() => document.activeElement.id || document.activeElement.tagName));
  }
  for (const id of ['filter-type', 'filter-pair', 'filter-side', 'filter-status', 'search', 'pause', 'export-csv', 'export-json']) assert.ok(seen.has(id), `${id} reachable by Tab`);
  for (const id of ['orders-table', 'positions-table', 'balances-table', 'feed']) {
    assert.ok(seen.has('TR'), 'a table row is a Tab stop');
    const [rows, stops] = await page.$$eval(`#${id} tbody tr[data-n], #${id} tbody tr[data-id]`, (rs) => [rs.length, rs.filter((r) => r.tabIndex === 0).length]);
    assert.equal(stops, 1, `${id}: exactly one of its ${rows} rows is the table's Tab stop`);
  }
  // arrow keys move between rows (feed paused so rows stay put)
  await setPaused(page, true);
  await page.evaluate(() => document.querySelector('#feed tbody tr[data-n]').focus());
  const rowsN = await page.$$eval('#feed tbody tr[data-n]', (rs) => rs.map((r) => r.dataset.n));
  await page.keyboard.press('ArrowDown');
  assert.equal(await page.evaluate(() => document.activeElement.dataset.n), rowsN[1]);
  await page.keyboard.press('ArrowUp');
  assert.equal(await page.evaluate(() => document.activeElement.dataset.n), rowsN[0]);
  await setPaused(page, false);
});

test('feed is capped at 500 rows', { skip: mockOnly }, async () => {
  await ensurePage();
  await setPaused(page, false); await setFilters(page, {});
  for (let i = 0; i < 700; i++) hub.emit('balance', { currency_short_name: 'CAP', balance: `${i}.0`, locked_balance: '0' });
  await page.waitForFunction(() => window.__hub.state.feed.some((e) => e.f.data && e.f.data.balance === '699.0'));
  await page.evaluate(() => window.__hub.flushNow());
  const st = await stats(page);
  assert.equal(st.feedLen, 500); assert.equal(st.shown, 500);
  assert.ok(st.domRows > 10 && st.domRows < 120, `only the visible window is in the DOM (${st.domRows} rows)`);
  assert.equal(await cell(page, 'balances', 'CAP', 'balance'), '699.0');
  // scrolling to the bottom renders the oldest kept row
  await page.$eval('#feed-wrap', (w) => { w.scrollTop = w.scrollHeight; });
  await page.waitForFunction(() => { const rs = document.querySelectorAll('#feed tbody tr[data-n]'); return rs.length && rs[rs.length - 1].dataset.n === String(window.__hub.state.feed[0].n); });
  await page.$eval('#feed-wrap', (w) => { w.scrollTop = 0; });
});

test('upstream auth_failed turns the indicator red, recovery turns it green', { skip: mockOnly }, async () => {
  await ensurePage();
  hub.setUpstream('auth_failed');
  await waitState(page, 'down', 6000);
  assert.match(await page.textContent('#conn-text'), /auth/);
  assert.equal(await page.getAttribute('#upstream-state', 'data-state'), 'auth_failed');
  hub.setUpstream('joined');
  await waitState(page, 'live', 6000);
});

test('hub killed: amber then red; restarted (new epoch): green, resync, tables rebuilt', { skip: mockOnly || ON_REAL, timeout: 60000 }, async () => {
  const before = await stats(page);
  const oldEpoch = hub.epoch;
  const t0 = Date.now();
  await hub.stop();
  await waitState(page, 'reconnecting', 3000);
  const tAmber = Date.now() - t0;
  const atKill = await stats(page); // last seq the page saw before the socket died
  await waitState(page, 'down', 15000);
  const tRed = Date.now() - t0;
  assert.match(await page.textContent('#conn-text'), /down/);
  await page.screenshot({ path: path.join(ART, 'down-1280x800.png') });
  await hub.start({ newEpoch: true });
  await waitState(page, 'live', 20000);
  const tGreen = Date.now() - t0;
  console.log(`# kill -> amber ${tAmber} ms, red ${tRed} ms; restart -> green ${tGreen} ms after kill`);
  await page.waitForFunction((n) => window.__hub.stats().snapshots > n, before.snapshots, { timeout: 5000 });
  const after = await stats(page);
  assert.ok(after.resyncs > before.resyncs, 'resync frame seen');
  assert.equal(after.epoch, hub.epoch);
  const resume = hub.connections[hub.connections.length - 1];
  assert.equal(resume.epoch, oldEpoch, 'reconnect carried the old epoch');
  assert.equal(Number(resume.since), atKill.lastSeq, 'reconnect carried ?since=<last seq>');
  assert.equal(resume.resumed, false);
  // tables hold exactly the new hub's snapshot state (old epoch rows are gone)
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  assert.equal(await page.$('#orders-table tr[data-id="pause-test"]'), null);
  assert.equal(await page.$('#balances-table tr[data-id="CAP"]'), null);
  await page.waitForSelector('#orders-table tbody tr[data-id="9b2e4f70-1c3d-4e8a-a6b5-2f0d9c8e7a13"]');
  assert.equal(await cell(page, 'balances', 'INR', 'balance'), '265.01745775027309');
});

test('short outage in the same epoch resumes with since: missed events replayed, no gap, no snapshot', { skip: mockOnly, timeout: 30000 }, async () => {
  await ensurePage();
  const before = await stats(page);
  await hub.stop();
  await waitState(page, 'reconnecting', 3000);
  const missed = [1, 2, 3].map((i) => JSON.parse(hub.emit('order', { id: `missed-${i}`, pair: 'B-ETH_USDT', side: 'buy', status: 'open', order_type: 'limit_order', price: `100.${i}0`, total_quantity: '1', remaining_quantity: '1', updated_at: Date.now() })));
  await hub.start();
  await waitState(page, 'live', 10000);
  await page.waitForSelector('#orders-table tbody tr[data-id="missed-3"]');
  assert.equal(await cell(page, 'orders', 'missed-2', 'price'), '100.20');
  const after = await stats(page);
  const rec = hub.connections[hub.connections.length - 1];
  assert.equal(rec.resumed, true);
  assert.ok(Number(rec.since) >= before.lastSeq);
  assert.equal(after.snapshots, before.snapshots, 'no snapshot on resume');
  assert.equal(after.gaps, 0); assert.equal(after.dups, 0);
  assert.ok(after.lastSeq >= missed[2].seq);
});

test('?token= is passed on to the WebSocket', { skip: mockOnly }, async () => {
  const th = new MockHub({ rate: 2, token: 's3cret' });
  await th.start();
  try {
    const p = await openPage({ base: th.url, path: '/?token=s3cret' });
    await waitState(p, 'live');
    assert.match(th.connections[0].url, /token=s3cret/);
    assert.doesNotMatch((await stats(p)).lastUrl, /s3cret/, 'token not exposed in stats');
    await p.context().close();
  } finally { await th.stop(); }
});

test('screenshots at 1280x800 and 390x844 without horizontal overflow', { skip: ON_REAL }, async () => {
  await page.waitForSelector('#orders-table tbody tr[data-id]');
  if (!REAL) await page.waitForFunction(() => /joined/.test(document.getElementById('upstream-state').textContent), null, { timeout: 5000 });
  await page.screenshot({ path: path.join(ART, 'desktop-1280x800.png') });
  const m = await openPage({ viewport: { width: 390, height: 844 } });
  await waitState(m, 'live');
  await m.waitForSelector('#feed tbody tr[data-n]');
  await m.waitForSelector('#orders-table tbody tr[data-id]');
  await m.screenshot({ path: path.join(ART, 'mobile-390x844.png') });
  await m.screenshot({ path: path.join(ART, 'mobile-390x844-full.png'), fullPage: true });
  await m.locator('#feed-panel').screenshot({ path: path.join(ART, 'mobile-390-feed.png') });
  const overflow = await m.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no horizontal page scroll at 390 px (overflow ${overflow}px)`);
  for (const id of ['conn-indicator', 'pause', 'search', 'export-csv']) assert.ok(await m.isVisible('#' + id), id + ' visible on mobile');
  await m.context().close();
});

test('load: 200 events/s for 60 s, main-thread responsiveness', { skip: ON_REAL || (LOAD ? false : 'set BROWSER_LOAD_TEST=1'), timeout: 120000 }, async () => {
  if (page) { await page.context().close(); page = null; } // measure one page alone
  const lp = await openPage();
  await waitState(lp, 'live');
  if (!REAL) hub.setRate(200);
  await sleep(2000);
  await lp.evaluate(() => window.__hub.resetPerf());
  const s0 = await stats(lp);
  // probe input latency: time from a click to its handler finishing a paint, every 5 s
  const clicks = [];
  const t0 = Date.now();
  while (Date.now() - t0 < 60000) {
    await sleep(5000);
    clicks.push(await lp.evaluate(() => new Promise((res) => {
      const t = performance.now();
      setTimeout(() => requestAnimationFrame(() => res(performance.now() - t)), 0);
    })));
  }
  const s = await stats(lp);
  if (!REAL) hub.setRate(20);
  const events = ['order', 'position', 'balance'].reduce((a, k) => a + (s.counts[k] || 0) - (s0.counts[k] || 0), 0);
  const fig = {
    events_received: events, rate_per_s: +(events / 60).toFixed(1),
    frame_interval_ms: { p50: +s.frameDelay.p50.toFixed(1), p99: +s.frameDelay.p99.toFixed(1), max: +s.frameDelay.max.toFixed(1), n: s.frameDelay.n },
    flush_ms: { p50: +s.flushMs.p50.toFixed(2), p99: +s.flushMs.p99.toFixed(2), max: +s.flushMs.max.toFixed(2), n: s.flushMs.n },
    ingest_ms_avg: +s.ingestMsAvg.toFixed(3),
    long_tasks: s.longTasks, timer_to_paint_ms: clicks.map((x) => +x.toFixed(1)),
    latency_ms: s.latency, feed_rows: s.shown, dom_nodes: s.domNodes, gaps: s.gaps, dups: s.dups,
  };
  console.log('# LOAD FIGURES ' + JSON.stringify(fig));
  fs.writeFileSync(path.join(ART, 'load-figures.json'), JSON.stringify(fig, null, 2));
  await lp.screenshot({ path: path.join(ART, 'load-1280x800.png') });
  assert.ok(s.shown <= 500);
  if (!REAL) assert.ok(events > 200 * 60 * 0.9, 'mock delivered ~200/s');
  // thresholds leave room for a loaded CI box; the printed figures are the real result
  assert.ok(s.frameDelay.p50 < 20, `rAF frame interval p50 ${s.frameDelay.p50} ms < 20 ms (60 fps median)`);
  assert.ok(s.frameDelay.p99 < 100, `rAF frame interval p99 ${s.frameDelay.p99} ms < 100 ms`);
  assert.ok(s.longTasks.totalMs < 12000, `long tasks ${s.longTasks.totalMs} ms < 20% of the 60 s`);
  assert.ok(s.longTasks.maxMs < 500, `no long task over 500 ms (max ${s.longTasks.maxMs})`);
  await lp.context().close();
});

test('no request left the page origin; no page errors', async () => {
  assert.deepEqual(log.offOrigin, []);
  assert.deepEqual(log.pageErrors, []);
});
