// Headless-Chromium tests of the monitor page against the REAL coindcx-hub binary.
//   HUB_BIN=/path/to/target/release/coindcx-hub node --test          # this file runs
//   + BROWSER_LOAD_TEST=1                                             # 200 events/s for 60 s
// The file spawns the hub itself (built-in simulator, free ports, HUB_SIM_RATE=5, seed 7),
// places and cancels orders through the simulator's signed REST API, watches the stream with
// its own WebSocket ("tap") and SIGKILLs / restarts the hub on the same ports. No mock here:
// page.test.mjs keeps the mock-hub tests for what the real hub cannot be made to send
// (hostile strings in exports, auth_failed, a 700-event burst, a same-epoch outage).
// Without HUB_BIN every test here is skipped.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RealHub, Tap, until, TERMINAL } from './real-hub.mjs';
import {
  launch, openPage, waitState, stats, feedRows, cell, setPaused, setFilters, frames2, filtersNarrowTheFeed,
  dumpTables, expectedTables, diffTables, parseCsv, CSV_HEADER, COLS,
} from './helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const ART = path.join(here, 'artifacts');
const BIN = process.env.HUB_BIN || '';
const LOAD = process.env.BROWSER_LOAD_TEST === '1';
const SEED = 7;
const skip = BIN ? false : 'set HUB_BIN to the coindcx-hub binary to run against the real hub';

let hub, browser, page, tap;
const log = { offOrigin: [], pageErrors: [] };
const timings = {};

before(async () => {
  if (!BIN) return;
  fs.mkdirSync(ART, { recursive: true });
  hub = new RealHub({ bin: BIN, rate: 5, seed: SEED, logFile: path.join(ART, 'hub.log') });
  const t0 = Date.now();
  await hub.start();
  timings.hub_start_ms = Date.now() - t0;
  browser = await launch();
});
after(async () => {
  if (tap) tap.close();
  if (browser) await browser.close().catch(() => {});
  if (hub) {
    await hub.stop();
    assert.equal(hub.child, null, 'hub process gone');
  }
  if (BIN) console.log('# REAL HUB TIMINGS ' + JSON.stringify(timings));
});

/** Poll until the page's tables equal what the hub sent the tap (the two clients race by ms). */
async function tablesMatchTap(timeout = 10000) {
  let last = [];
  try {
    await until(async () => {
      const got = await dumpTables(page);
      last = diffTables(got, expectedTables(tap));
      return last.length === 0;
    }, { timeout, every: 150, what: 'page tables == hub state seen by a second client' });
  } catch (e) {
    assert.fail(`${e.message}\n  ${last.slice(0, 20).join('\n  ')}`);
  }
}
const DECIMALS = {
  orders: ['price', 'total_quantity', 'remaining_quantity', 'avg_price'],
  positions: ['active_pos', 'avg_price', 'liquidation_price', 'locked_margin', 'mark_price'],
  balances: ['balance', 'locked_balance'],
};

test('real hub: page goes green, simulator upstream joined, banner and counters', { skip, timeout: 60000 }, async () => {
  const t0 = Date.now();
  page = await openPage(browser, hub.url, log);
  await waitState(page, 'live', 15000);
  timings.page_green_ms = Date.now() - t0;
  assert.equal(await page.textContent('#conn-text'), 'live');
  await page.waitForFunction(() => /simulator · joined/.test(document.getElementById('upstream-state').textContent), null, { timeout: 15000 });
  assert.equal(await page.getAttribute('#upstream-state', 'data-state'), 'joined');
  const status = await hub.status();
  assert.equal(status.upstream.kind, 'simulator');
  assert.equal(status.upstream.state, 'joined');
  assert.equal(status.coindcx_connected, true);
  // The page's own socket on demo-a, plus its overview socket on the other demo account.
  assert.equal(status.accounts['demo-a'].clients, 1);
  await until(async () => (await hub.status()).active_connections === 2, { timeout: 10000, every: 100, what: 'overview socket on demo-b' });
  assert.ok(await page.isVisible('#sim-banner'), 'simulator banner shown');
  await page.waitForFunction(() => document.getElementById('clients').textContent === '1', null, { timeout: 10000 });
  await page.waitForFunction(() => +document.getElementById('events-rate').textContent > 0, null, { timeout: 15000 });
  await page.waitForFunction(() => /s$/.test(document.getElementById('last-event-age').textContent), null, { timeout: 10000 });
  const s = await stats(page);
  assert.ok(s.snapshots === 1 && s.counts.system >= 1, 'system + snapshot frames received');
  assert.equal(s.epoch, status.epoch, 'page epoch = /ws/status epoch');
  assert.equal(s.gaps, 0); assert.equal(s.dups, 0);
  const ready = await fetch(hub.url + '/readyz');
  assert.equal(ready.status, 200, '/readyz while joined');
});

test('real hub: orders / positions / balances tables show exactly the strings the frames carry', { skip, timeout: 60000 }, async () => {
  tap = await new Tap(hub.wsUrl).open();
  await until(() => tap.snapshots >= 1, { what: 'tap snapshot' });
  for (const t of ['orders', 'positions', 'balances']) await page.waitForSelector(`#${t}-table tbody tr[data-id]`, { timeout: 30000 });
  // 1. every cell = the string in window.__hub.state (DOM and state read in the same task)
  const mismatches = await page.evaluate((COLS) => {
    window.__hub.flushNow();
    const st = window.__hub.state, bad = [];
    for (const t of Object.keys(COLS)) {
      document.querySelectorAll(`#${t}-table tbody tr[data-id]`).forEach((tr) => {
        const rec = st[t].get(tr.dataset.id);
        if (!rec) { bad.push(`${t}: row ${tr.dataset.id} not in state`); return; }
        for (const [col, key] of COLS[t]) {
          const want = rec[key] == null || rec[key] === 'None' ? '—' : String(rec[key]);
          const got = tr.querySelector(`td[data-col="${col}"]`).textContent;
          if (got !== want) bad.push(`${t} ${tr.dataset.id} ${col}: ${got} != ${want}`);
        }
      });
    }
    for (const [id, o] of st.orders) if (['filled', 'cancelled', 'partially_cancelled', 'rejected'].includes(o.status)) bad.push('terminal order in open table ' + id);
    return bad;
  }, COLS);
  assert.deepEqual(mismatches, []);
  // 2. the hub sends decimals as JSON strings of plain digits (SPEC §3)
  const notStrings = [];
  for (const t of Object.keys(DECIMALS)) for (const [id, r] of tap[t]) for (const k of DECIMALS[t]) {
    if (r[k] != null && !(typeof r[k] === 'string' && /^-?\d+(\.\d+)?$/.test(r[k]))) notStrings.push(`${t} ${id} ${k}=${JSON.stringify(r[k])}`);
  }
  assert.deepEqual(notStrings, [], 'decimal fields are digit strings');
  // 3. the tables equal what a second, independent client of the hub received
  await tablesMatchTap();
  const shownNow = await dumpTables(page);
  timings.table_rows = Object.fromEntries(Object.keys(shownNow).map((t) => [t, Object.keys(shownNow[t]).length]));
});

test('real hub: a REST test order appears in open orders with its id; cancel removes it', { skip, timeout: 60000 }, async () => {
  const t0 = Date.now();
  const created = await hub.createOrder();
  const id = created.id;
  assert.match(id, /^[0-9a-f-]{36}$/);
  const row = `#orders-table tbody tr[data-id="${id}"]`;
  await page.waitForSelector(row, { timeout: 10000 });
  timings.rest_order_to_row_ms = Date.now() - t0;
  await until(() => tap.orders.has(id), { what: 'tap saw the order' });
  await page.waitForFunction((id) => window.__hub.state.orders.get(id)?.status === 'open', id, { timeout: 10000 });
  await until(async () => {
    const rec = tap.orders.get(id);
    const got = await Promise.all(COLS.orders.map(([c]) => cell(page, 'orders', id, c)));
    return rec && JSON.stringify(got) === JSON.stringify(COLS.orders.map(([, k]) => (rec[k] == null ? '—' : String(rec[k]))));
  }, { what: 'order row == the frame' });
  assert.equal(await cell(page, 'orders', id, 'pair'), 'B-ETH_USDT');
  assert.equal(await cell(page, 'orders', id, 'side'), 'buy');
  assert.equal(await cell(page, 'orders', id, 'status'), 'open');
  assert.equal(await cell(page, 'orders', id, 'price'), tap.orders.get(id).price);
  assert.match(await cell(page, 'orders', id, 'price'), /^1500(\.0+)?$/);
  assert.match(await cell(page, 'orders', id, 'qty'), /^0\.0010*$/);
  // the feed finds the order's frames by its id
  await setFilters(page, { q: id });
  const rows = await feedRows(page);
  assert.ok(rows.length >= 1 && rows.every((r) => r.type === 'order'), 'search by order id shows its order frames');
  await setFilters(page, {});

  const t1 = Date.now();
  await hub.cancelOrder(id);
  await page.waitForSelector(row, { state: 'detached', timeout: 10000 });
  timings.cancel_to_row_gone_ms = Date.now() - t1;
  await until(() => tap.recordFrames('order', id).some((x) => x.f.data.status === 'cancelled'), { what: 'tap saw the cancel' });
  await page.waitForFunction((id) => window.__hub.state.feed.some((e) => e.type === 'order' && e.f.data.id === id && e.status === 'cancelled'), id, { timeout: 5000 });
  assert.equal(await page.evaluate((id) => window.__hub.state.orders.has(id), id), false);
  await tablesMatchTap();
});

test('real hub: filters and free-text search narrow the feed', { skip, timeout: 90000 }, async () => {
  await filtersNarrowTheFeed(page);
});

test('real hub: pause freezes the feed (tables stay live), resume catches up', { skip, timeout: 60000 }, async () => {
  await setPaused(page, false);
  await page.click('#pause');
  assert.equal(await page.getAttribute('#pause', 'aria-pressed'), 'true');
  // events that arrived before the click belong to the frozen list: render them, then read the top row
  const n0 = await page.evaluate(() => { window.__hub.flushNow(); return document.querySelector('#feed tbody tr[data-n]').dataset.n; });
  assert.equal(n0, await page.evaluate(() => String(window.__hub.state.frozen[window.__hub.state.frozen.length - 1].n)));
  await page.waitForFunction(() => { const m = /Resume \((\d+) new\)/.exec(document.getElementById('pause').textContent); return m && +m[1] >= 3; }, null, { timeout: 15000 });
  assert.equal(await page.$eval('#feed tbody tr[data-n]', (r) => r.dataset.n), n0, 'top row unchanged while paused');
  await tablesMatchTap(); // tables keep following the stream while the feed is paused
  await page.click('#pause');
  assert.equal(await page.getAttribute('#pause', 'aria-pressed'), 'false');
  await page.waitForFunction((n0) => document.querySelector('#feed tbody tr[data-n]').dataset.n !== n0, n0, { timeout: 10000 });
});

test('real hub: CSV and JSON export hold exactly the shown frames, as the hub sent them', { skip, timeout: 60000 }, async () => {
  await setFilters(page, {});
  await setPaused(page, true);
  const csv = await page.evaluate(() => window.__hub.exportCsv());
  const json = await page.evaluate(() => window.__hub.exportJson());
  const { shown } = await stats(page);
  const frames = JSON.parse(json);
  const parsed = parseCsv(csv);
  assert.equal(parsed[0].join(','), CSV_HEADER);
  assert.ok(csv.endsWith('\r\n'));
  assert.equal(parsed.length - 1, shown); assert.equal(frames.length, shown);
  // newest first, the same order as the rendered feed rows
  const dom = await feedRows(page);
  assert.ok(dom.length > 10);
  dom.forEach((r, i) => { assert.equal(r.type, frames[i].type); if (r.id) assert.equal(r.id, frames[i].id); });
  let compared = 0;
  parsed.slice(1).forEach((r, i) => {
    const f = frames[i];
    assert.equal(r.length, 12);
    assert.deepEqual(JSON.parse(r[11]), f, 'raw column = the JSON export entry');
    assert.equal(r[0], f.timestamp ?? ''); assert.equal(r[1], f.type); assert.equal(r[2], f.event ?? '');
    assert.equal(r[3], f.seq == null ? '' : String(f.seq)); assert.equal(r[4], f.id ?? '');
    assert.equal(r[10], f.reconciled ? 'true' : '');
    if (f.type === 'order') {
      assert.deepEqual([r[5], r[6], r[7], r[8], r[9]], [f.data.pair, f.data.side, f.data.status, f.data.price, f.data.total_quantity]);
    }
    // the same event (same id) as received by the test's own WebSocket: identical content
    if (f.id && tap.byId.has(f.id)) { assert.deepEqual(f, JSON.parse(tap.byId.get(f.id))); compared++; }
  });
  assert.ok(compared >= 10, `exported events compared with the tap's frames (${compared})`);
  timings.export = { shown, compared_with_tap: compared };
  // the buttons download the same text
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#export-csv')]);
  assert.match(dl.suggestedFilename(), /^coindcx-hub-feed-.*\.csv$/);
  assert.equal(fs.readFileSync(await dl.path(), 'utf8'), csv);
  const [dj] = await Promise.all([page.waitForEvent('download'), page.click('#export-json')]);
  assert.match(dj.suggestedFilename(), /^coindcx-hub-feed-.*\.json$/);
  assert.equal(fs.readFileSync(await dj.path(), 'utf8'), json);
  // filtered export = the filtered view
  await setFilters(page, { type: 'balance' });
  const fb = JSON.parse(await page.evaluate(() => window.__hub.exportJson()));
  assert.ok(fb.length > 0 && fb.every((f) => f.type === 'balance'));
  assert.equal(fb.length, (await stats(page)).shown);
  assert.equal(parseCsv(await page.evaluate(() => window.__hub.exportCsv())).length - 1, fb.length);
  await setFilters(page, {});
  await setPaused(page, false);
});

test('real hub: a feed row opens its raw JSON exactly as received', { skip, timeout: 30000 }, async () => {
  await setPaused(page, true);
  const first = await page.$('#feed tbody tr[data-type="order"]') ?? await page.$('#feed tbody tr[data-n]');
  const evId = await first.getAttribute('data-id');
  await first.click();
  await page.waitForSelector('#raw-json', { state: 'visible' });
  assert.equal(JSON.parse(await page.textContent('#raw-json')).id, evId);
  const raw = await page.getAttribute('#raw-json', 'data-raw');
  assert.equal(raw, await page.evaluate((id) => window.__hub.state.feed.find((e) => e.f.id === id).text, evId));
  if (tap.byId.has(evId)) assert.deepEqual(JSON.parse(raw), JSON.parse(tap.byId.get(evId)));
  await page.keyboard.press('Escape');
  await page.waitForSelector('#raw-json', { state: 'hidden' });
  await setPaused(page, false);
});

test('real hub: SIGKILL -> amber then red; restart on the same ports -> green, resync, tables rebuilt', { skip, timeout: 120000 }, async () => {
  await setFilters(page, {});
  // an open order on this run of the hub: the restarted simulator starts from its seed again
  const old = await hub.createOrder({ price: '1400.00' });
  await page.waitForSelector(`#orders-table tbody tr[data-id="${old.id}"]`, { timeout: 10000 });
  const before = await stats(page);
  const oldStatus = await hub.status();
  assert.equal(before.epoch, oldStatus.epoch);
  tap.close();

  const pid = hub.pid;
  const t0 = Date.now();
  const exit = await hub.kill('SIGKILL');
  assert.equal(exit.signal, 'SIGKILL', `hub pid ${pid} killed`);
  await waitState(page, 'reconnecting', 5000);
  const tAmber = Date.now() - t0;
  assert.match(await page.textContent('#conn-text'), /reconnecting/);
  const atKill = await stats(page);
  await waitState(page, 'down', 30000);
  const tRed = Date.now() - t0;
  assert.match(await page.textContent('#conn-text'), /^down/);
  await page.screenshot({ path: path.join(ART, 'real-down-1280x800.png') });

  await hub.start(); // same HUB_BIND / HUB_SIM_BIND ports, same seed, new process
  const tUp = Date.now() - t0;
  await waitState(page, 'live', 30000);
  const tGreen = Date.now() - t0;
  timings.kill = { amber_ms: tAmber, red_ms: tRed, restarted_ms: tUp, green_ms: tGreen };
  console.log(`# real hub SIGKILL -> amber ${tAmber} ms, red ${tRed} ms; restarted at ${tUp} ms; green ${tGreen} ms after the kill`);
  const newStatus = await hub.status();
  assert.notEqual(newStatus.epoch, oldStatus.epoch, 'restarted hub has a new epoch');
  await page.waitForFunction((n) => window.__hub.stats().snapshots > n, before.snapshots, { timeout: 10000 });
  const afterS = await stats(page);
  assert.equal(afterS.epoch, newStatus.epoch, 'page follows the new epoch');
  assert.ok(afterS.resyncs > before.resyncs, `resync frame seen (resyncs ${before.resyncs} -> ${afterS.resyncs})`);
  const u = new URL(afterS.lastUrl);
  assert.equal(u.searchParams.get('epoch'), oldStatus.epoch, 'reconnect carried the old epoch');
  assert.equal(u.searchParams.get('since'), String(atKill.lastSeq), 'reconnect carried ?since=<last seq seen>');
  await page.waitForFunction(() => /simulator · joined/.test(document.getElementById('upstream-state').textContent), null, { timeout: 15000 });
  // tables = the new run's state, exactly what a fresh client of the restarted hub gets
  tap = await new Tap(hub.wsUrl).open();
  await until(() => tap.snapshots >= 1, { what: 'tap snapshot from the restarted hub' });
  await tablesMatchTap(15000);
  if (!tap.orders.has(old.id)) assert.equal(await page.$(`#orders-table tbody tr[data-id="${old.id}"]`), null, 'order of the killed run is gone');
  assert.equal((await stats(page)).gaps, afterS.gaps, 'no seq gaps after the rebuild');
});

test('real hub: screenshots at 1280x800 and 390x844, no horizontal overflow', { skip, timeout: 60000 }, async () => {
  await page.waitForSelector('#orders-table tbody tr[data-id]');
  await waitState(page, 'live');
  await frames2(page);
  await page.screenshot({ path: path.join(ART, 'real-desktop-1280x800.png') });
  const dOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(dOverflow <= 0, `no horizontal page scroll at 1280 px (overflow ${dOverflow}px)`);
  const m = await openPage(browser, hub.url, log, { viewport: { width: 390, height: 844 } });
  await waitState(m, 'live', 15000);
  await m.waitForSelector('#feed tbody tr[data-n]');
  await m.waitForSelector('#orders-table tbody tr[data-id]');
  await m.waitForFunction(() => /joined/.test(document.getElementById('upstream-state').textContent), null, { timeout: 10000 });
  await m.screenshot({ path: path.join(ART, 'real-mobile-390x844.png') });
  await m.screenshot({ path: path.join(ART, 'real-mobile-390x844-full.png'), fullPage: true });
  const overflow = await m.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no horizontal page scroll at 390 px (overflow ${overflow}px)`);
  for (const id of ['conn-indicator', 'pause', 'search', 'export-csv']) assert.ok(await m.isVisible('#' + id), id + ' visible on mobile');
  await m.context().close();
});

test('real hub load: 200 events/s for 60 s (HUB_SIM_RATE=200), page stays responsive', { skip: skip || (LOAD ? false : 'set BROWSER_LOAD_TEST=1'), timeout: 180000 }, async () => {
  // one page alone on a hub of its own
  if (page) { await page.context().close(); page = null; }
  if (tap) { tap.close(); tap = null; }
  await hub.kill();
  const lh = new RealHub({ bin: BIN, rate: 200, seed: SEED, logFile: path.join(ART, 'hub-load.log') });
  try {
    await lh.start();
    const lp = await openPage(browser, lh.url, log);
    await waitState(lp, 'live', 15000);
    await lp.waitForFunction(() => window.__hub.stats().lastSeq > 200, null, { timeout: 15000 }); // warmed up
    await lp.evaluate(() => window.__hub.resetPerf());
    const s0 = await stats(lp);
    const h0 = await lh.status();
    const clicks = [];
    const t0 = Date.now();
    while (Date.now() - t0 < 60000) { // a fixed 60 s measurement window, probed every 5 s
      await new Promise((r) => setTimeout(r, 5000));
      clicks.push(await lp.evaluate(() => new Promise((res) => {
        const t = performance.now();
        setTimeout(() => requestAnimationFrame(() => res(performance.now() - t)), 0);
      })));
    }
    const secs = (Date.now() - t0) / 1000;
    const s = await stats(lp);
    const h1 = await lh.status();
    const events = ['order', 'position', 'balance'].reduce((a, k) => a + (s.counts[k] || 0) - (s0.counts[k] || 0), 0);
    const fig = {
      hub: 'real', seconds: +secs.toFixed(1), events_received: events, rate_per_s: +(events / secs).toFixed(1),
      hub_seq_delta: h1.seq - h0.seq, hub_rate_per_s: +((h1.seq - h0.seq) / secs).toFixed(1),
      frame_interval_ms: { p50: +s.frameDelay.p50.toFixed(1), p99: +s.frameDelay.p99.toFixed(1), max: +s.frameDelay.max.toFixed(1), n: s.frameDelay.n },
      flush_ms: { p50: +s.flushMs.p50.toFixed(2), p99: +s.flushMs.p99.toFixed(2), max: +s.flushMs.max.toFixed(2), n: s.flushMs.n },
      ingest_ms_avg: +s.ingestMsAvg.toFixed(3),
      long_tasks: s.longTasks, timer_to_paint_ms: clicks.map((x) => +x.toFixed(1)),
      latency_ms: s.latency, feed_rows: s.shown, dom_nodes: s.domNodes, gaps: s.gaps, dups: s.dups,
      tables: { orders: s.orders, positions: s.positions, balances: s.balances },
    };
    console.log('# LOAD FIGURES ' + JSON.stringify(fig));
    fs.writeFileSync(path.join(ART, 'real-load-figures.json'), JSON.stringify(fig, null, 2));
    await lp.screenshot({ path: path.join(ART, 'real-load-1280x800.png') });
    assert.equal(s.conn, 'live');
    assert.ok(s.shown <= 500);
    assert.ok(events >= 200 * secs * 0.8, `~200 events/s reached the page (${fig.rate_per_s}/s)`);
    assert.equal(s.gaps, 0, 'no seq gaps'); assert.equal(s.dups, 0, 'no duplicates');
    // thresholds leave room for a loaded CI box; the printed figures are the real result
    assert.ok(s.frameDelay.p50 < 20, `rAF frame interval p50 ${s.frameDelay.p50} ms < 20 ms`);
    assert.ok(s.frameDelay.p99 < 100, `rAF frame interval p99 ${s.frameDelay.p99} ms < 100 ms`);
    assert.ok(s.longTasks.totalMs < 12000, `long tasks ${s.longTasks.totalMs} ms < 20% of the 60 s`);
    assert.ok(s.longTasks.maxMs < 500, `no long task over 500 ms (max ${s.longTasks.maxMs})`);
    await lp.context().close();
  } finally {
    await lh.stop();
  }
});

test('real hub: no request left the page origin; no page errors', { skip }, async () => {
  assert.deepEqual(log.offOrigin, []);
  assert.deepEqual(log.pageErrors, []);
});
