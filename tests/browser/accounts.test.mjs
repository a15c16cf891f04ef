// Headless-Chromium tests of the desk view (SPEC §9) against the REAL coindcx-hub binary in
// simulator mode, which serves two demo accounts (demo-a, demo-b) with their own activity and
// price channel: the account switcher changes every table, the overview shows both accounts,
// the live-mark and uPnL columns and the two uPlot charts render and update. Screenshots at
// desktop and phone size go to artifacts/. Without HUB_BIN every test here is skipped.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RealHub, Tap, until } from './real-hub.mjs';
import { launch, openPage, waitState, stats, dumpTables, expectedTables, diffTables, frames2 } from './helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const ART = path.join(here, 'artifacts');
const BIN = process.env.HUB_BIN || '';
const skip = BIN ? false : 'set HUB_BIN to the coindcx-hub binary to run against the real hub';

let hub, browser, page;
const taps = {};
const log = { offOrigin: [], pageErrors: [] };

before(async () => {
  if (!BIN) return;
  fs.mkdirSync(ART, { recursive: true });
  hub = new RealHub({ bin: BIN, rate: 5, seed: 11, logFile: path.join(ART, 'hub-accounts.log') });
  await hub.start();
  browser = await launch();
  for (const name of ['demo-a', 'demo-b']) taps[name] = await new Tap(`${hub.wsUrl}?account=${name}`).open();
});
after(async () => {
  for (const t of Object.values(taps)) t.close();
  if (browser) await browser.close().catch(() => {});
  if (hub) await hub.stop();
});

/** Latest `pnl` data a tap received (null before any). */
const lastPnl = (tap) => {
  for (let i = tap.frames.length - 1; i >= 0; i--) if (tap.frames[i].f.type === 'pnl') return tap.frames[i].f.data;
  const snap = tap.frames.find((x) => x.f.type === 'snapshot');
  return snap ? snap.f.data.pnl ?? null : null;
};

async function tablesMatch(tap, what) {
  let last = [];
  try {
    await until(async () => {
      last = diffTables(await dumpTables(page), expectedTables(tap));
      return last.length === 0;
    }, { timeout: 15000, every: 150, what });
  } catch (e) {
    assert.fail(`${e.message}\n  ${last.slice(0, 20).join('\n  ')}`);
  }
}

test('accounts: the overview shows both demo accounts; the page opens on the first', { skip, timeout: 60000 }, async () => {
  page = await openPage(browser, hub.url, log);
  await waitState(page, 'live', 15000);
  const status = await hub.status();
  assert.deepEqual(Object.keys(status.accounts), ['demo-a', 'demo-b']);
  assert.notEqual(status.accounts['demo-a'].epoch, status.accounts['demo-b'].epoch, 'one epoch per account');
  await page.waitForFunction(() => document.querySelectorAll('#overview-table tr[data-account]').length === 2, null, { timeout: 15000 });
  const names = await page.$$eval('#overview-table tr[data-account]', (rs) => rs.map((r) => r.getAttribute('data-account')));
  assert.deepEqual(names, ['demo-a', 'demo-b']);
  assert.equal(await page.getAttribute('#overview-table tr[aria-current="true"]', 'data-account'), 'demo-a');
  assert.ok(await page.isVisible('#account'), 'switcher shown with two accounts');
  assert.equal(await page.inputValue('#account'), 'demo-a');
  // Both rows fill with the account's own USDT balance, exactly as its stream carries it.
  for (const name of ['demo-a', 'demo-b']) {
    await until(async () => {
      const want = taps[name].balances.get('USDT');
      const got = await page.textContent(`#overview-table tr[data-account="${name}"] td[data-col="balance"]`);
      return want && got === String(want.balance);
    }, { timeout: 20000, every: 200, what: `${name}'s balance in the overview` });
  }
  assert.equal((await stats(page)).account, 'demo-a');
  await tablesMatch(taps['demo-a'], 'tables show demo-a');
});

test('accounts: the switcher changes every table, the epoch and the header', { skip, timeout: 60000 }, async () => {
  const aIds = new Set([...taps['demo-a'].orders.keys(), ...taps['demo-a'].positions.keys()]);
  await page.selectOption('#account', 'demo-b');
  await until(async () => (await stats(page)).epoch === (await hub.status()).accounts['demo-b'].epoch, { timeout: 15000, every: 100, what: 'page on demo-b\'s epoch' });
  await tablesMatch(taps['demo-b'], 'tables show demo-b');
  const dump = await dumpTables(page);
  for (const t of ['orders', 'positions']) {
    for (const id of Object.keys(dump[t])) assert.ok(!aIds.has(id), `${t} row ${id} of demo-a left after switching`);
  }
  const s = await stats(page);
  assert.equal(s.account, 'demo-b');
  assert.match(page.url(), /[?&]account=demo-b/);
  assert.equal(s.gaps, 0);
  assert.equal(await page.getAttribute('#overview-table tr[aria-current="true"]', 'data-account'), 'demo-b');
  // Clicking the other account's overview row switches back.
  await page.click('#overview-table tr[data-account="demo-a"]');
  await tablesMatch(taps['demo-a'], 'tables show demo-a again');
  assert.equal((await stats(page)).account, 'demo-a');
});

test('accounts: live mark and uPnL columns follow the pnl frames; sign colours', { skip, timeout: 60000 }, async () => {
  let lastDiff = '';
  await until(async () => {
    const pnl = lastPnl(taps['demo-a']);
    if (!pnl || !pnl.positions.some((p) => p.unrealized_pnl !== null)) { lastDiff = 'no pnl yet'; return false; }
    await frames2(page);
    for (const p of pnl.positions) {
      const sel = `#positions-table tr[data-id="${p.id}"]`;
      const got = await page.$eval(`${sel} td[data-col="upnl"]`, (e) => [e.textContent, e.className]).catch(() => null);
      const mark = await page.$eval(`${sel} td[data-col="live_mark"]`, (e) => e.textContent).catch(() => null);
      const want = p.unrealized_pnl === null ? '—' : p.unrealized_pnl;
      if (!got || got[0] !== want || mark !== (p.mark_price ?? '—')) { lastDiff = `${p.id}: page ${got} / ${mark}, frame ${want} / ${p.mark_price}`; return false; }
      const cls = want === '—' || /^-?0(\.0+)?$/.test(want) ? 'num' : want.startsWith('-') ? 'num neg' : 'num pos';
      assert.equal(got[1], cls, `${p.id} class for ${want}`);
    }
    return true;
  }, { timeout: 30000, every: 250, what: 'uPnL column == last pnl frame' }).catch((e) => assert.fail(`${e.message}: ${lastDiff}`));
  const pnl = lastPnl(taps['demo-a']);
  for (const p of pnl.positions) if (p.unrealized_pnl !== null) assert.match(p.unrealized_pnl, /^-?\d+\.\d{8}$/, '8 places');
  assert.equal(taps['demo-a'].frames.filter((x) => x.f.type === 'pnl' && 'seq' in x.f).length, 0, 'pnl frames carry no seq');
});

test('accounts: equity/uPnL and events/s charts render with uPlot and update', { skip, timeout: 60000 }, async () => {
  const s0 = (await stats(page)).charts;
  assert.equal(s0.uplot, true, 'uPlot is inlined in the page');
  await until(async () => (await stats(page)).charts.drawn >= 2, { timeout: 15000, every: 200, what: 'two uPlot canvases' });
  const a = (await stats(page)).charts;
  await until(async () => {
    const b = (await stats(page)).charts;
    return b.ratePoints > a.ratePoints + 2 && b.equityPoints > a.equityPoints;
  }, { timeout: 30000, every: 250, what: 'charts get new points' });
  const box = await page.$eval('#chart-equity canvas', (c) => [c.width, c.height]);
  assert.ok(box[0] > 100 && box[1] > 50, `equity canvas ${box}`);
});

test('accounts: screenshots at 1280x800 and 390x844 without horizontal overflow', { skip, timeout: 60000 }, async () => {
  await frames2(page);
  await page.screenshot({ path: path.join(ART, 'accounts-desktop-1280x800.png') });
  const d = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(d <= 0, `no horizontal scroll at 1280 px (${d}px)`);
  const m = await openPage(browser, hub.url, log, { viewport: { width: 390, height: 844 }, path: '/?account=demo-b' });
  await waitState(m, 'live', 15000);
  await m.waitForFunction(() => document.querySelectorAll('#overview-table tr[data-account]').length === 2, null, { timeout: 15000 });
  await m.waitForFunction(() => window.__hub.stats().charts.drawn >= 2, null, { timeout: 15000 });
  assert.equal(await m.inputValue('#account'), 'demo-b', '?account= opens that account');
  await m.screenshot({ path: path.join(ART, 'accounts-phone-390x844.png') });
  await m.screenshot({ path: path.join(ART, 'accounts-phone-390x844-full.png'), fullPage: true });
  const o = await m.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(o <= 0, `no horizontal scroll at 390 px (${o}px)`);
  await m.context().close();
});

test('accounts: no request left the page origin; no page errors', { skip }, async () => {
  assert.deepEqual(log.offOrigin, []);
  assert.deepEqual(log.pageErrors, []);
});
