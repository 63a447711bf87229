// The hub's chat page (src/hub/assets/index.html) in headless Chromium (Debian's, driven by
// playwright-core; no browser download): pages join rooms and chat through a real `ringwire hub`.
//
// node tests/js/hub_browser.mjs http://127.0.0.1:PORT TOKEN SCREENSHOT.png
// (the hub runs with --token TOKEN --notify-every N; CHROMIUM overrides /usr/bin/chromium)
import { chromium } from 'playwright-core';
import { check, equal, executablePath, lines, run, shows, step, WAIT } from './lib.mjs';

const [url, token, shot] = process.argv.slice(2);
if (!url || !token || !shot) {
  console.error('usage: hub_browser.mjs URL TOKEN SCREENSHOT.png');
  process.exit(2);
}
const origin = new URL(url).origin;

let browser; // killed by playwright-core when this script exits, on a failure too

/** A page of the chat, with everything that should not happen collected. */
async function open(context, label, pageToken, { expectRefusal = false } = {}) {
  const page = await context.newPage();
  page.label = label;
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(`uncaught: ${e.message}`));
  page.on('console', (msg) => {
    // A refused page logs the failed handshake and the 401 of its probe; nothing else may be an error.
    if (msg.type() === 'error' && !expectRefusal) page.problems.push(`console: ${msg.text()}`);
  });
  page.on('request', (req) => {
    const u = new URL(req.url());
    if (u.protocol === 'data:') return;
    const host = `${u.protocol}//${u.host}`;
    if (host !== origin && host !== origin.replace(/^http/, 'ws')) page.problems.push(`external request: ${req.url()}`);
  });
  const q = pageToken === undefined ? '' : `?token=${encodeURIComponent(pageToken)}`;
  await page.goto(`${url}/${q}`);
  return page;
}

async function connected(page) {
  await page.waitForSelector('#state[data-state="connected"]', WAIT);
  const state = await page.textContent('#state');
  const m = /^connected as (\S+)$/.exec(state);
  check(m, `${page.label} #state: ${state}`);
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
}

/** Waits until `page` shows a message line containing `text`. */
run(async () => {
  step(`launch ${executablePath} headless`);
  browser = await chromium.launch({ executablePath, args: ['--no-sandbox'], headless: true });
  console.log(`  ${browser.version()}`);
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });

  step('three pages connect; #state says "connected as <id>"');
  const p1 = await open(context, 'page 1', token);
  const p2 = await open(context, 'page 2', token);
  const p3 = await open(context, 'page 3', token);
  const ids = [await connected(p1), await connected(p2), await connected(p3)];
  check(new Set(ids).size === 3, `distinct ids ${ids}`);

  step('pages 1 and 2 join room A, page 3 joins room B; page 1 shows page 2 joining');
  await join(p1, 'A');
  await join(p2, 'A');
  await join(p3, 'B');
  await shows(p1, `${ids[1]} joined A`);
  equal(await p1.$$eval('#to option', (o) => o.map((x) => x.value)), ['', 'A'], 'page 1 "send to" choices');
  equal(await p1.$$eval('#rooms li', (l) => l.map((x) => x.dataset.room)), ['A'], 'page 1 rooms list');

  step('page 1 sends to room A; page 2 shows it, and so does page 1');
  const text = `hello from page 1 at ${Date.now()}`;
  await send(p1, 'A', text);
  await shows(p2, text);
  await shows(p1, text);
  const line = (await lines(p2)).find((l) => l.includes(text));
  check(line.includes('A') && line.includes(ids[0]), `page 2's line names the room and the sender: ${line}`);
  equal(await p1.inputValue('#text'), '', 'the input is cleared after the ack');

  step('page 3 (room B) does not show it: a later message to everyone reaches page 3 first');
  const marker = `marker to everyone ${Date.now()}`;
  await send(p1, '', marker);
  await shows(p3, marker);
  const p3lines = await lines(p3);
  check(!p3lines.some((l) => l.includes(text)), `page 3 never showed the room-A message: ${JSON.stringify(p3lines)}`);
  await shows(p2, marker);

  step('page 3 sends to room B; page 1 and 2 do not show it (proved by a later message to everyone)');
  const inB = `only for room B ${Date.now()}`;
  await send(p3, 'B', inB);
  await shows(p3, inB);
  const marker2 = `second marker ${Date.now()}`;
  await send(p3, '', marker2);
  await shows(p1, marker2);
  await shows(p2, marker2);
  for (const p of [p1, p2]) check(!(await lines(p)).some((l) => l.includes(inB)), `${p.label} did not show the room-B message`);

  step('a server push shows in #notifications');
  await p2.locator('#notifications li').first().waitFor(WAIT);
  const note = p2.locator('#notifications li').first();
  console.log(`  ${await note.evaluate((li) => [...li.childNodes].map((n) => n.textContent).join(' '))}`);

  step('a page with a wrong token shows the refusal in #state');
  const p4 = await open(context, 'page 4 (wrong token)', `${token}-wrong`, { expectRefusal: true });
  await p4.waitForSelector('#state[data-state="refused"]', WAIT);
  const refusal = await p4.textContent('#state');
  check(/^refused: .+ \(HTTP 401\)$/.test(refusal), `#state: ${refusal}`);
  console.log(`  #state: ${refusal}`);
  check(await p4.isDisabled('#send'), 'a refused page cannot send');

  step(`screenshots: ${shot}`);
  // Page 1 in front: room A's conversation, presence lines, the markers, notifications.
  await p1.bringToFront();
  await p1.screenshot({ path: shot });
  const refusedShot = shot.replace(/\.png$/, '') + '-refused.png';
  await p4.screenshot({ path: refusedShot });
  console.log(`screenshot: ${shot}`);
  console.log(`screenshot: ${refusedShot}`);

  step('page 2 leaves room A: the list empties, page 1 shows it leaving');
  await p2.fill('#room', 'A');
  await p2.click('#leave');
  await p2.waitForSelector('#rooms li[data-room="A"]', { state: 'detached', ...WAIT });
  await shows(p1, `${ids[1]} left A`);

  step('no uncaught exceptions, console errors or external requests');
  for (const p of [p1, p2, p3, p4]) equal(p.problems, [], `${p.label} problems`);

  await browser.close();
}, 90000);
