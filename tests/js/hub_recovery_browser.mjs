// The hub's chat page in headless Chromium recovering from a real network fault: the page reaches a
// `ringwire hub --recovery` through a TCP forwarder that the driving test (cli/tests/hub_js.rs) cuts on
// demand (`@@ CUT`: the forwarded TCP connections are closed, no WebSocket close frame; new ones are held
// until `@@ RESTORE`). A Node.js client y, connected directly, sends to room A meanwhile; the page shows
// "reconnecting (attempt n)", then "connected as <same id> (recovered)", and the missed messages once.
//
// node --experimental-websocket tests/js/hub_recovery_browser.mjs DIRECT_URL FORWARDED_URL TOKEN SHOT.png
import { chromium } from 'playwright-core';
import { check, CLIENT_URL, control, equal, executablePath, lines, next, run, shows, step, WAIT } from './lib.mjs';

const { connect } = await import(CLIENT_URL);
const [direct, forwarded, token, shot] = process.argv.slice(2);
if (!direct || !forwarded || !token || !shot) {
  console.error('usage: hub_recovery_browser.mjs DIRECT_URL FORWARDED_URL TOKEN SHOT.png');
  process.exit(2);
}

run(async () => {
  step('y connects directly and joins A');
  const y = connect(direct, { token });
  await next(y, 'connect');
  await y.join('A');

  step(`launch ${executablePath}; the page, through the forwarder, connects and joins A`);
  const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'], headless: true });
  const page = await (await browser.newContext({ viewport: { width: 1100, height: 720 } })).newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
  });
  await page.goto(`${forwarded}/?token=${encodeURIComponent(token)}`);
  await page.waitForSelector('#state[data-state="connected"]', WAIT);
  const m = /^connected as (\S+)$/.exec(await page.textContent('#state'));
  check(m, `#state: ${await page.textContent('#state')}`);
  const id = m[1];
  const joined = next(y, 'presence', (p) => p?.id === id && p?.event === 'join');
  await page.fill('#room', 'A');
  await page.click('#join');
  await page.waitForSelector('#rooms li[data-room="A"]', WAIT);
  await joined;
  await y.emitWithAck('chat message', { room: 'A', text: 'before the cut' });
  await shows(page, 'before the cut');

  step('CUT: the page shows "reconnecting (attempt n)"; y sends 3 messages to A meanwhile');
  await control('CUT');
  await page.waitForSelector('#state[data-state="reconnecting"]', WAIT);
  const reconnecting = await page.textContent('#state');
  check(/^reconnecting \(attempt \d+\)/.test(reconnecting), `#state: ${reconnecting}`);
  console.log(`  #state: ${reconnecting}`);
  check(await page.isDisabled('#send'), 'no sending while reconnecting');
  const missed = [1, 2, 3].map((n) => `missed while away ${n}`);
  for (const text of missed) equal(await y.emitWithAck('chat message', { room: 'A', text }), { ok: true }, `y sends "${text}"`);

  step('RESTORE: the page shows "connected as <same id> (recovered)" and the missed messages, once, in order');
  await control('RESTORE');
  await page.waitForSelector('#state[data-state="recovered"]', WAIT);
  equal(await page.textContent('#state'), `connected as ${id} (recovered)`, '#state');
  for (const text of missed) await shows(page, text);
  await y.emitWithAck('chat message', { room: 'A', text: 'after the recovery' });
  await shows(page, 'after the recovery');
  const all = await lines(page);
  const chat = all.filter((l) => /before the cut|missed while away|after the recovery/.test(l));
  equal(chat.length, 5, `chat lines: ${JSON.stringify(all)}`);
  missed.forEach((text, i) => check(chat[i + 1].includes(text) && chat[i + 1].includes(y.id), `line ${i + 1}: ${chat[i + 1]}`));
  check(chat[0].includes('before the cut') && chat[4].includes('after the recovery'), `order: ${JSON.stringify(chat)}`);
  check(all.some((l) => l.includes('session recovered')), `a system line says so: ${JSON.stringify(all)}`);
  equal(await page.$$eval('#rooms li', (l) => l.map((x) => x.dataset.room)), ['A'], 'still in A');
  check(!(await page.isDisabled('#send')), 'sending is enabled again');

  step(`screenshot: ${shot}`);
  await page.screenshot({ path: shot });
  console.log(`screenshot: ${shot}`);

  step('the page sends to A after the recovery; y gets it from the same id');
  const heard = next(y, 'chat message', (msg) => msg.text === 'from the recovered page');
  await page.selectOption('#to', 'A');
  await page.fill('#text', 'from the recovered page');
  await page.click('#send');
  equal((await heard)[0].from, id, 'from');

  step('no uncaught exceptions or console errors');
  equal(problems, [], 'problems');
  await browser.close();
  y.disconnect();
}, 90000);
