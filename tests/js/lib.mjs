// Helpers the hub test scripts share. Every wait is bounded by the script's deadline: a script that waits
// too long prints what it was waiting for and exits 1 (the Rust side has its own deadline as well).

export const CLIENT_URL = new URL('../../src/hub/assets/client.js', import.meta.url);

let current = 'start';
let checks = 0;

/** Names the step being run (printed when the script fails or runs out of time). */
export function step(name) {
  current = name;
  console.log(`- ${name}`);
}

export function check(cond, what) {
  checks++;
  if (!cond) throw new Error(`check failed in "${current}": ${what}`);
}

/** JSON with object keys sorted, so that key order does not matter to `equal`. */
function canonical(v) {
  return JSON.stringify(v, (_, x) =>
    x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : 1))) : x,
  );
}

export function equal(got, want, what) {
  const g = canonical(got);
  const w = canonical(want);
  check(g === w, `${what}: got ${g}, want ${w}`);
}

/** Runs `main`, then exits 0 with a count of checks, or 1 with the failure; `limitMs` caps the whole. */
export function run(main, limitMs) {
  const timer = setTimeout(() => {
    console.error(`TIMED OUT after ${limitMs} ms in step "${current}"`);
    process.exit(1);
  }, limitMs);
  main().then(
    () => {
      clearTimeout(timer);
      console.log(`ok: ${checks} checks passed`);
      process.exit(0);
    },
    (e) => {
      console.error(`FAILED in step "${current}": ${e?.stack ?? e}`);
      process.exit(1);
    },
  );
}

/** The next `name` event of `client` whose arguments satisfy `pred`; resolves with the arguments. */
export function next(client, name, pred = () => true) {
  return new Promise((resolve) => {
    const fn = (...args) => {
      if (!pred(...args)) return;
      client.off(name, fn);
      resolve(args);
    };
    client.on(name, fn);
  });
}

/** Resolves with the rejection of `promise`; fails if it resolves. */
export async function rejection(promise, what) {
  try {
    const v = await promise;
    throw new Error(`${what}: resolved with ${JSON.stringify(v)}, expected a rejection`);
  } catch (e) {
    if (e?.message?.startsWith(`${what}: resolved`)) throw e;
    return e;
  }
}

/** Returns `fn`'s exception; fails if it returns. */
export function thrown(fn, what) {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error(`${what}: did not throw`);
}

let stdinLines;
/**
 * Asks the driving test for something it does (e.g. `CUT`: cut the forwarder's connections): prints
 * `@@ <command>` on stdout and waits for the line `<command> DONE` on stdin.
 */
export async function control(command) {
  if (!stdinLines) {
    const { createInterface } = await import('node:readline');
    stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  }
  console.log(`@@ ${command}`);
  const { value, done } = await stdinLines.next();
  if (done || value.trim() !== `${command} DONE`) throw new Error(`asked "${command}", the test answered ${done ? 'nothing (stdin closed)' : JSON.stringify(value)}`);
}

/** Chromium for the browser tests: $CHROMIUM, or Debian's (scripts/setup.sh installs it). */
export const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** How long a browser test waits for something the page should show. */
export const WAIT = { timeout: 20000 };

/** The chat page's message lines, as text. */
export async function lines(page) {
  return page.$$eval('#messages li', (els) => els.map((e) => e.textContent));
}

/** Waits until the chat page shows a message line containing `text`. */
export async function shows(page, text) {
  await page.locator('#messages li', { hasText: text }).first().waitFor(WAIT);
}
