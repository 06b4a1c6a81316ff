/**
 * The portfolio page in a real browser (Debian's chromium, headless, driven by playwright-core):
 * find an account, see its holdings, see them change when a fill arrives. Saves a screenshot to
 * .local/screenshots/portfolio.png.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TOPICS, type Fill, type Kafka } from '@tradeflow/shared';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INSTRUMENTS, instrumentPrices } from '../../scripts/lib/market.ts';
import { freePort, REPO } from '../../scripts/lib/processes.ts';
import { readFills, sumFills } from './order-checks.ts';
import { resetTopics, runScript, startService, stopAllServices, testKafka, uniqueName, waitFor } from './helpers.ts';

const exec = promisify(execFile);
let kafka: Kafka;
let browser: Browser;
let url: string;
let fills: Fill[] = [];
const storeRoot = mkdtempSync(join(tmpdir(), 'portfolio-page-'));


beforeAll(async () => {
  const { stdout } = await exec('bash', [`${REPO}/scripts/infra/chromium.sh`], { timeout: 600_000 });
  const executablePath = stdout.trim();
  kafka = testKafka();
  await resetTopics(kafka);
  const producer = kafka.producer({ idempotent: true });
  await producer.connect();
  await producer.send({ topic: TOPICS.prices, acks: -1, messages: instrumentPrices(Math.floor(Date.now() / 1000)) });
  await producer.disconnect();
  const group = uniqueName('it-page');
  await startService('fill-publisher', { GROUP_ID: `${group}-fills` });
  const port = await freePort();
  await startService('portfolio', { GROUP_ID: group, PORTFOLIO_PORT: String(port), PORTFOLIO_STORE_DIR: storeRoot });
  url = `http://127.0.0.1:${port}`;
  await runScript('queue-executions.ts', ['--count', '60', '--accounts', '3', '--allocations', '--seed', '8', '--quiet']);
  fills = await waitFor('the fills', async () => {
    const all = await readFills(kafka);
    return all.length >= 60 ? all : undefined;
  }, 120_000, 1_000);
  // The flags a sandboxed machine needs: no sandbox as root, no background network (its calls are refused).
  browser = await chromium.launch({
    executablePath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    // Playwright's 30 s defaults bound hangs; a loaded machine can take longer to start a browser.
    timeout: 180_000,
  });
});

afterAll(async () => {
  await browser?.close();
  await stopAllServices();
  rmSync(storeRoot, { recursive: true, force: true });
});

describe('the portfolio page', () => {
  it('finds an account, shows its holdings, and shows them change when a fill arrives', async () => {
    const [taxpayer, sum] = [...sumFills(fills)].sort((a, b) => b[1].fills - a[1].fills)[0]!;
    await waitFor('the account to be complete', async () => {
      const res = await fetch(`${url}/accounts/${taxpayer}`);
      return res.ok && ((await res.json()) as { fills: number }).fills === sum.fills ? true : undefined;
    }, 120_000, 500);

    const page = await browser.newPage({ viewport: { width: 1200, height: 860 } });
    page.setDefaultTimeout(120_000);
    page.setDefaultNavigationTimeout(120_000);
    await page.goto(url);
    await page.fill('#account', String(taxpayer));
    await page.click('button[type=submit]');
    await page.waitForSelector('#holdings tbody tr');
    expect(await page.textContent('#taxpayer')).toBe(String(taxpayer));
    expect(await page.textContent('#fill-count')).toBe(String(sum.fills));
    const held = [...sum.shares].filter(([, shares]) => shares !== 0n).map(([symbol]) => symbol).sort();
    const rowSymbols = async () => Promise.all((await page.$$('#holdings tbody tr')).map((row) => row.getAttribute('data-symbol')));
    expect(await rowSymbols()).toEqual(held);
    await page.waitForSelector('#status.live');

    // A fill of a symbol the account does not hold yet: a new row, one fill more.
    const symbol = INSTRUMENTS.map((i) => i.symbol).find((s) => !sum.shares.has(s))!;
    const template = fills.find((f) => f.taxpayer_id === taxpayer)!;
    const fill: Fill = {
      ...template,
      symbol,
      fill_id: `${template.fill_id}/page`,
      component_order_id: `${template.component_order_id}/page`,
      order_type: 'BUY',
      filled_shares: 3,
      delta_shares_position: 3,
      delta_cash_position: -300,
      filled_amount: 300,
      filled_price: 100,
      timestamp: Date.now() / 1000,
    };
    const producer = kafka.producer({ idempotent: true });
    await producer.connect();
    await producer.send({ topic: TOPICS.fills, acks: -1, messages: [{ key: String(taxpayer), value: JSON.stringify(fill) }] });
    await producer.disconnect();
    await page.waitForSelector(`#holdings tbody tr[data-symbol="${symbol}"]`, { timeout: 60_000 });
    await page.waitForFunction(`document.querySelector('#fill-count')?.textContent === '${sum.fills + 1}'`, undefined, { timeout: 60_000 });
    expect(await page.textContent(`#holdings tbody tr[data-symbol="${symbol}"] td:nth-child(2)`)).toBe('3');
    expect(await page.textContent('#fills tbody tr:first-child td:nth-child(3)')).toBe(symbol);

    mkdirSync(join(REPO, '.local/screenshots'), { recursive: true });
    await page.screenshot({ path: join(REPO, '.local/screenshots/portfolio.png'), fullPage: true });
    await page.close();
  });
});
