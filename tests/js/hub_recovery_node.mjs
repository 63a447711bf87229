// Reconnection and connection-state recovery of the hub's JavaScript client in Node.js against a real
// `ringwire hub --recovery`, over a real network fault: client x reaches the hub through a TCP forwarder
// that the driving test (cli/tests/hub_js.rs) cuts on demand — `@@ CUT` closes the forwarded TCP
// connections without a WebSocket close frame, `@@ CUT SILENT` stops forwarding while leaving them open
// (x notices by the missing pings); either way the forwarder then holds new connections until `@@
// RESTORE`. Client y talks to the hub directly.
//
// node --experimental-websocket tests/js/hub_recovery_node.mjs DIRECT_URL FORWARDED_URL TOKEN [polling]
// (the hub runs with --token TOKEN --recovery --recovery-window 8 and a short heartbeat)
//
// With `polling`, x uses long-polling only (`transports: ['polling']`): a cut breaks its polls, and the
// forwarder holds its next requests, so x notices by the missing pings (4000) both times; it resumes its
// session with `GET /poll?token=..&sid=..&offset=..`.
import { CLIENT_URL, check, control, equal, next, run, step } from './lib.mjs';

const { connect } = await import(CLIENT_URL);
const [direct, forwarded, token, mode] = process.argv.slice(2);
const polling = mode === 'polling';
if (!direct || !forwarded || !token) {
  console.error('usage: hub_recovery_node.mjs DIRECT_URL FORWARDED_URL TOKEN');
  process.exit(2);
}

async function client(label, url, options = {}) {
  const c = connect(url, { token, ...options });
  c.label = label;
  c.chat = [];
  c.errors = [];
  c.events = [];
  c.on('chat message', (m) => c.chat.push(m.text));
  c.on('error', (e) => c.errors.push(e));
  for (const ev of ['connect', 'disconnect', 'reconnect_attempt', 'reconnect', 'connect_error']) {
    c.on(ev, (i) => c.events.push([ev, i]));
  }
  const [first] = await Promise.race([next(c, 'connect'), next(c, 'connect_error')]);
  check(first && 'recovered' in first, `${label} connects: ${JSON.stringify(first)}`);
  return c;
}

/** Resolves once `c` has received a chat message with this text. */
function hears(c, text) {
  return c.chat.includes(text) ? Promise.resolve() : next(c, 'chat message', (m) => m.text === text);
}

/** What `c` received after `from` (exclusive) up to `to` (inclusive). */
function between(c, from, to) {
  const i = c.chat.indexOf(from);
  const j = c.chat.indexOf(to);
  check(i >= 0 && j > i, `${c.label} heard "${from}" then "${to}": ${JSON.stringify(c.chat)}`);
  return c.chat.slice(i + 1, j + 1);
}

run(async () => {
  step('y connects directly, x through the forwarder; both join room A');
  const y = await client('y', direct);
  // x: short reconnection delays (the forwarder holds its attempts anyway until RESTORE).
  const x = await client('x', forwarded, {
    reconnectionDelay: 100,
    reconnectionDelayMax: 400,
    // Over polling, one TCP connection per request: a silent cut freezes the pooled keep-alive
    // connections for good (the forwarder never revives them), and a request that reused one would wait
    // for connectTimeout (a page's browser pools connections the same way; see the client's JSDoc).
    ...(polling ? { transports: ['polling'], fetch: (u, init = {}) => fetch(u, { ...init, headers: { ...init.headers, connection: 'close' } }) } : {}),
  });
  equal(x.transport, polling ? 'polling' : 'websocket', 'x transport');
  await y.join('A');
  await x.join('A');
  const id = x.id;
  const { sid } = x.hello;
  check(typeof sid === 'string' && /^[0-9a-f]{32}$/.test(sid), `x's hello carries a session id: ${JSON.stringify(x.hello)}`);
  equal(x.hello.recovered, false, 'a first connection is not recovered');
  await y.emitWithAck('chat message', { room: 'A', text: 'before' });
  await hears(x, 'before');
  console.log(`  x=${id} y=${y.id}; hello ${JSON.stringify({ ...x.hello, sid: '…' })}`);

  for (const [round, cut, code] of [[1, 'CUT', polling ? 4000 : 1006], [2, 'CUT SILENT', 4000]]) {
    step(`round ${round}: ${cut}; while x is away y sends 3 messages to A, x buffers one; x recovers`);
    x.events.length = 0;
    const lost = next(x, 'disconnect');
    await control(cut);
    const [info] = await lost;
    equal([info.code, x.state], [code, 'reconnecting'], `x lost its connection: ${JSON.stringify(info)}`);
    console.log(`  x: disconnect ${JSON.stringify(info)}`);
    const missed = [1, 2, 3].map((n) => `round ${round} missed ${n}`);
    for (const text of missed) equal(await y.emitWithAck('chat message', { room: 'A', text }), { ok: true }, `y sends "${text}"`);
    const own = `round ${round} from x while away`;
    x.emit('chat message', { room: 'A', text: own });
    equal(x.buffered, 1, 'x buffered its message');
    const back = next(x, 'connect');
    await control('RESTORE');
    const [c] = await back;
    equal(c, { recovered: true }, `round ${round}: connect`);
    equal([x.id, x.hello.sid, x.hello.recovered, x.transport], [id, sid, true, polling ? 'polling' : 'websocket'], 'same id and session');
    equal(x.rooms.sort(), ['A', id].sort(), 'x is still in A');
    await hears(y, own); // x's buffered message went out after the hello
    const marker = `round ${round} marker`;
    await y.emitWithAck('chat message', { room: 'A', text: marker });
    await hears(x, marker);
    const prev = round === 1 ? 'before' : `round ${round - 1} marker`;
    equal(between(x, prev, marker), [...missed, own, marker], `round ${round}: x got the missed messages once, in order, then its own and the marker`);
    const seen = x.events.map(([ev, i]) => [ev, ev === 'disconnect' ? i.code : i]);
    console.log(`  x events: ${JSON.stringify(seen)}`);
    equal(seen[0], ['disconnect', code], 'first event');
    equal(seen.slice(-2), [['reconnect', { attempt: 1, recovered: true }], ['connect', { recovered: true }]], 'last events');
    equal(seen.filter(([ev]) => ev === 'reconnect_attempt').length, 1, 'one attempt (held by the forwarder until RESTORE)');
  }

  step('round 3: away while more events happen than the hub keeps (window 8): a new session, A joined again');
  {
    const lost = next(x, 'disconnect');
    await control('CUT');
    await lost;
    for (let n = 1; n <= 12; n++) await y.emitWithAck('chat message', { room: 'A', text: `round 3 flood ${n}` });
    const back = next(x, 'connect');
    const rejoined = next(y, 'presence', (p) => p?.event === 'join' && p?.room === 'A' && p?.id !== id);
    await control('RESTORE');
    const [c] = await back;
    equal(c, { recovered: false }, 'not recovered');
    check(x.id !== id && x.hello.sid !== sid, `a new id and session: ${x.id}`);
    const [p] = await rejoined;
    equal(p.id, x.id, 'y hears x (its new id) join A again');
    const marker = 'round 3 marker';
    await y.emitWithAck('chat message', { room: 'A', text: marker });
    await hears(x, marker);
    const after = between(x, 'round 2 marker', marker);
    equal(after, [marker], `x got nothing it missed (the window was gone), then the marker: ${JSON.stringify(after)}`);
  }

  step('no errors; x made one connection per round');
  equal([...x.errors, ...y.errors].map((e) => `${e.name}: ${e.message}`), [], 'errors');
  equal(x.connectAttempts, 4, 'x: the first connection and one per round');
  x.disconnect();
  y.disconnect();
}, 90000);
