// The hub's chat page in headless Chromium across a hub RESTART: two `ringwire hub --recovery` processes,
// A and B, share rooms through a Redis stream (`--cluster redis-stream:...`), so a lost connection's
// session is kept in Redis and the stream is the replay log (ARCHITECTURE.md, "Recovery across hubs").
// The page is on hub A; a Node.js client y is on hub B. The driving test (cli/tests/hub_js.rs) stops hub
// A with SIGTERM on `@@ STOP` (it closes its connections with 1001 and stores their sessions), and starts
// a new hub A on the same address on `@@ START`. Meanwhile y sends to room A; the page shows
// "reconnecting (attempt n)", then "connected as <same id> (recovered)", and the missed messages once,
// replayed by a hub process that was not running when they were sent.
//
// node --experimental-websocket tests/js/hub_restart_browser.mjs HUB_A_URL HUB_B_URL TOKEN SHOT.png
import { chromium } from 'playwright-core';
import { check, CLIENT_URL, control, equal, executablePath, lines, next, run, shows, step, WAIT } from './lib.mjs';

const { connect } = await import(CLIENT_URL);
const [hubA, hubB, token, shot] = process.argv.slice(2);
if (!hubA || !hubB || !token || !shot) {
  console.error('usage: hub_restart_browser.mjs HUB_A_URL HUB_B_URL TOKEN SHOT.png');
  process.exit(2);
}

run(async () => {
  step('y connects to hub B and joins A');
  const y = connect(hubB, { token });
  await next(y, 'connect');
  await y.join('A');

  step(`launch ${executablePath}; the page connects to hub A and joins A`);
  const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'], headless: true });
  const page = await (await browser.newContext({ viewport: { width: 1100, height: 720 } })).newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
  page.on('console', (msg) => {
    // The page's own reconnection attempts while hub A is down fail in the browser's console.
    if (msg.type() === 'error' && !/WebSocket connection to .* failed|ERR_CONNECTION_REFUSED/.test(msg.text())) {
      problems.push(`console: ${msg.text()}`);
    }
  });
  await page.goto(`${hubA}/?token=${encodeURIComponent(token)}`);
  await page.waitForSelector('#state[data-state="connected"]', WAIT);
  const m = /^connected as (\S+)$/.exec(await page.textContent('#state'));
  check(m, `#state: ${await page.textContent('#state')}`);
  const id = m[1];
  await page.fill('#room', 'A');
  await page.click('#join');
  await page.waitForSelector('#rooms li[data-room="A"]', WAIT);
  await y.emitWithAck('chat message', { room: 'A', text: 'before the restart' });
  await shows(page, 'before the restart');

  step('STOP hub A: the page shows "reconnecting (attempt n)"; y sends 3 messages to A through hub B');
  await control('STOP');
  await page.waitForSelector('#state[data-state="reconnecting"]', WAIT);
  const reconnecting = await page.textContent('#state');
  check(/^reconnecting \(attempt \d+\)/.test(reconnecting), `#state: ${reconnecting}`);
  console.log(`  #state: ${reconnecting}`);
  const missed = [1, 2, 3].map((n) => `missed while hub A was down ${n}`);
  for (const text of missed) equal(await y.emitWithAck('chat message', { room: 'A', text }), { ok: true }, `y sends "${text}"`);

  step('START a new hub A on the same address: the page is "connected as <same id> (recovered)", the missed messages once, in order');
  await control('START');
  await page.waitForSelector('#state[data-state="recovered"]', WAIT);
  equal(await page.textContent('#state'), `connected as ${id} (recovered)`, '#state');
  for (const text of missed) await shows(page, text);
  await y.emitWithAck('chat message', { room: 'A', text: 'after the restart' });
  await shows(page, 'after the restart');
  const all = await lines(page);
  const chat = all.filter((l) => /before the restart|missed while hub A was down|after the restart/.test(l));
  equal(chat.length, 5, `chat lines: ${JSON.stringify(all)}`);
  missed.forEach((text, i) => check(chat[i + 1].includes(text) && chat[i + 1].includes(y.id), `line ${i + 1}: ${chat[i + 1]}`));
  check(chat[0].includes('before the restart') && chat[4].includes('after the restart'), `order: ${JSON.stringify(chat)}`);
  equal(await page.$$eval('#rooms li', (l) => l.map((x) => x.dataset.room)), ['A'], 'still in A');

  step(`screenshot: ${shot}`);
  await page.screenshot({ path: shot });
  console.log(`screenshot: ${shot}`);

  step('the page sends to A through the new hub A; y, on hub B, gets it from the same id');
  const heard = next(y, 'chat message', (msg) => msg.text === 'from the page after the restart');
  await page.selectOption('#to', 'A');
  await page.fill('#text', 'from the page after the restart');
  await page.click('#send');
  equal((await heard)[0].from, id, 'from');

  step('no uncaught exceptions or console errors');
  equal(problems, [], 'problems');
  await browser.close();
  y.disconnect();
}, 120000);
