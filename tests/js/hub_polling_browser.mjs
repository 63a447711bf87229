// The hub's chat page in headless Chromium with its WebSockets cut (playwright's routeWebSocket closes
// every one the page opens, as a proxy that does not pass them would): the page falls back to
// long-polling, says so ("connected as <id> (polling)"), chats with a page on a WebSocket both ways, and
// stays on polling (its upgrade's WebSocket is cut too). Then a page started with ?transports=polling,websocket
// (WebSockets not cut) upgrades: its badge drops "(polling)".
//
// node tests/js/hub_polling_browser.mjs http://127.0.0.1:PORT TOKEN SCREENSHOT.png
// (the hub runs with --token TOKEN; CHROMIUM overrides /usr/bin/chromium)
import { chromium } from 'playwright-core';
import { check, equal, executablePath, lines, run, shows, step, WAIT } from './lib.mjs';

const [url, token, shot] = process.argv.slice(2);
if (!url || !token || !shot) {
  console.error('usage: hub_polling_browser.mjs URL TOKEN SCREENSHOT.png');
  process.exit(2);
}

let browser; // killed by playwright-core when this script exits, on a failure too

/** A page of the chat, with uncaught exceptions collected. */
async function open(context, label, query) {
  const page = await context.newPage();
  page.label = label;
  page.problems = [];
  page.polls = 0;
  page.on('pageerror', (e) => page.problems.push(`uncaught: ${e.message}`));
  if (process.env.TRACE) page.on('console', (m) => console.log(`    [${label}] ${m.type()}: ${m.text()}`));
  if (process.env.TRACE) page.on('pageerror', (e) => console.log(`    [${label}] uncaught: ${e.message}`));
  if (process.env.TRACE) page.on('request', (r) => console.log(`    [${label}] ${r.method()} ${r.url()}`));
  page.on('request', (req) => {
    if (new URL(req.url()).pathname === '/poll') page.polls++;
  });
  await page.goto(`${url}/?${query}`);
  return page;
}

/** Waits for "connected as <id><suffix>" in #state; returns the id. */
async function connected(page, suffix) {
  await page.waitForSelector('#state[data-state="connected"]', WAIT).catch(async (e) => {
    throw new Error(`${page.label}: #state is ${JSON.stringify(await page.textContent('#state'))}: ${e.message}`);
  });
  const state = await page.textContent('#state');
  const m = new RegExp(`^connected as (\\S+)${suffix.replace(/[()]/g, '\\$&')}$`).exec(state);
  check(m, `${page.label} #state: ${JSON.stringify(state)}`);
  return m[1];
}

async function join(page, room) {
  await page.fill('#room', room);
  await page.click('#join');
  await page.waitForSelector(`#rooms li[data-room="${room}"]`, WAIT);
}

async function send(page, to, text) {
  await page.selectOption('#to', to);
  await page.fill('#text', text);
  await page.click('#send');
  // The input is cleared once the hub acknowledged the message.
  await page.waitForFunction(() => document.querySelector('#text').value === '', null, WAIT);
}

run(async () => {
  step(`launch ${executablePath} headless`);
  browser = await chromium.launch({ executablePath, args: ['--no-sandbox'], headless: true });
  console.log(`  ${browser.version()}`);

  step('a context whose WebSockets are all cut: the page falls back to polling and says so');
  const cut = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  const cutUrls = [];
  await cut.routeWebSocket(/\/ws/, (ws) => {
    cutUrls.push(ws.url());
    ws.close({ code: 1011, reason: 'no WebSockets through here' });
  });
  const polling = await open(cut, 'polling page', `token=${encodeURIComponent(token)}`);
  const pid = await connected(polling, ' (polling)');
  check(polling.polls > 0, 'the page polled');

  step('a page on a WebSocket (another context) connects normally');
  const plain = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  const wsPage = await open(plain, 'websocket page', `token=${encodeURIComponent(token)}`);
  const wid = await connected(wsPage, '');
  equal(wsPage.polls, 0, 'the WebSocket page never polled');

  step('both join room P and chat both ways');
  await join(polling, 'P');
  await join(wsPage, 'P');
  const texts = [];
  for (let i = 0; i < 5; i++) {
    const fromPoll = `over polling #${i}`;
    await send(polling, 'P', fromPoll);
    await shows(wsPage, fromPoll);
    const fromWs = `over a WebSocket #${i}`;
    await send(wsPage, 'P', fromWs);
    await shows(polling, fromWs);
    texts.push(fromPoll, fromWs);
  }
  for (const p of [polling, wsPage]) {
    const got = (await lines(p)).filter((l) => texts.some((t) => l.includes(t)));
    equal(got.map((l) => texts.find((t) => l.includes(t))), texts, `${p.label}: every message once, in order`);
  }
  const line = (await lines(wsPage)).find((l) => l.includes('over polling #0'));
  check(line.includes(pid), `the WebSocket page names the polling page as the sender: ${line}`);
  await shows(polling, `${wid} joined P`);

  step('the polling page tried WebSockets (to connect, to upgrade), all cut; it stays on polling');
  check(cutUrls.length >= 2 && cutUrls.some((u) => u.includes('pid=')), `WebSockets cut: ${JSON.stringify(cutUrls)}`);
  await connected(polling, ' (polling)');

  step(`screenshot: ${shot}`);
  await polling.bringToFront();
  await polling.screenshot({ path: shot });
  console.log(`screenshot: ${shot}`);

  step('?transports=polling,websocket with WebSockets allowed: polling first, then the upgrade');
  const upgrading = await open(plain, 'upgrading page', `token=${encodeURIComponent(token)}&transports=polling,websocket`);
  await upgrading.waitForSelector('#state[data-state="connected"]', WAIT);
  await upgrading.waitForFunction(() => /^connected as \S+$/.test(document.querySelector('#state').textContent), null, WAIT);
  check(upgrading.polls > 0, 'it polled first');
  await join(upgrading, 'P');
  await send(upgrading, 'P', 'after the upgrade');
  await shows(polling, 'after the upgrade');
  await shows(wsPage, 'after the upgrade');

  step('no uncaught exceptions');
  for (const p of [polling, wsPage, upgrading]) equal(p.problems, [], `${p.label} problems`);

  await browser.close();
}, 90000);
