// The hub's JavaScript client over long-polling, in Node.js against a real `ringwire hub`: the same chat
// sequence (two clients, 30 numbered messages each way through a room, acked and not) over a WebSocket,
// over polling only, and over polling that upgrades to a WebSocket half-way through, compared: identical.
// Then the fallback: a WebSocket that cannot be built, or that fails before opening, leaves the client on
// polling, chatting; `transports: ['polling']` never builds one; heartbeats are answered over POSTs.
//
// node --experimental-websocket tests/js/hub_polling_node.mjs http://127.0.0.1:PORT TOKEN
// (the hub runs with --token TOKEN --ping-interval 1000 --ping-timeout 5000)
import { CLIENT_URL, check, equal, next, run, step } from './lib.mjs';

const { connect } = await import(CLIENT_URL);
const [url, token] = process.argv.slice(2);
if (!url || !token) {
  console.error('usage: hub_polling_node.mjs URL TOKEN');
  process.exit(2);
}
const COUNT = 30;
const runTag = Math.random().toString(16).slice(2);
const fbRoom = `fb-${runTag}`;
const fb2Room = `fb2-${runTag}`;

/** A fetch that counts what it does (polls, posts, pongs posted). */
function countingFetch() {
  const stats = { opens: 0, polls: 0, posts: 0, pongs: 0 };
  const pong = new TextEncoder().encode('ringwire:pong');
  const has = (body, needle) => {
    const b = body instanceof Uint8Array ? body : new Uint8Array(0);
    outer: for (let i = 0; i + needle.length <= b.length; i++) {
      for (let j = 0; j < needle.length; j++) if (b[i + j] !== needle[j]) continue outer;
      return true;
    }
    return false;
  };
  const f = (u, init = {}) => {
    const target = new URL(u);
    if (target.pathname.endsWith('/poll')) {
      if (init.method === 'POST') {
        stats.posts++;
        if (has(init.body, pong)) stats.pongs++;
      } else if (target.searchParams.has('pid')) stats.polls++;
      else stats.opens++;
    }
    return fetch(u, init);
  };
  return { fetch: f, stats };
}

/**
 * A WebSocket whose connection is made only once `gate` resolves (the client's upgrade then starts
 * when the test says so); counts the sockets asked for.
 */
function gatedWebSocket(gate, counter = { made: 0 }) {
  return class GatedWebSocket {
    binaryType = 'arraybuffer';
    onopen = null;
    onmessage = null;
    onclose = null;
    onerror = null;
    #ws = null;
    #closed = false;
    constructor(u) {
      counter.made++;
      gate.then(() => {
        if (this.#closed) return;
        const ws = new WebSocket(u);
        ws.binaryType = 'arraybuffer';
        this.#ws = ws;
        ws.onopen = (e) => this.onopen?.(e);
        ws.onmessage = (e) => this.onmessage?.(e);
        ws.onclose = (e) => this.onclose?.(e);
        ws.onerror = (e) => this.onerror?.(e);
      });
    }
    send(data) {
      this.#ws.send(data);
    }
    close(code, reason) {
      this.#closed = true;
      this.#ws?.close(code, reason);
    }
  };
}

/** A connected client, with the chat messages it hears collected. */
async function client(name, options) {
  const t0 = Date.now();
  const traced = (u, init = {}) => {
    const tag = `${name} ${init.method ?? 'GET'} ${new URL(u).search.slice(0, 12)}`;
    console.log(`      ${Date.now() - t0} ${tag} ->`);
    return (options?.fetch ?? fetch)(u, init).then(
      (r) => (console.log(`      ${Date.now() - t0} ${tag} <- ${r.status}`), r),
      (e) => (console.log(`      ${Date.now() - t0} ${tag} <- ${e.message}`), Promise.reject(e)),
    );
  };
  const c = connect(url, { token, ...options, ...(process.env.TRACE ? { fetch: traced } : {}) });
  c.label = name;
  c.chat = [];
  c.errors = [];
  c.upgrades = [];
  c.disconnects = [];
  c.on('chat message', (m) => c.chat.push(m));
  c.on('error', (e) => c.errors.push(e));
  c.on('upgrade', (u) => c.upgrades.push(u));
  c.on('disconnect', (d) => c.disconnects.push(d));
  const ok = await Promise.race([next(c, 'connect').then(() => true), next(c, 'connect_error').then(([i]) => i)]);
  check(ok === true, `${name} connects: ${JSON.stringify(ok)}`);
  return c;
}

/** Resolves once `c` has received `n` chat messages. */
function heard(c, n) {
  if (c.chat.length >= n) return Promise.resolve();
  return next(c, 'chat message', () => c.chat.length >= n);
}

/** Resolves once `c` is on the WebSocket (after its `upgrade`). */
function upgraded(c) {
  return c.transport === 'websocket' ? Promise.resolve() : next(c, 'upgrade');
}

/**
 * `from` sends COUNT numbered messages to `room`: every third acked and awaited, the others emitted
 * without waiting (so that several queue up behind a post). `midway` runs after message 10 (without
 * waiting), `settle` is awaited before message 20. Returns the transports the sends went out on.
 */
async function burst(from, tag, room, midway = () => {}, settle = () => Promise.resolve()) {
  const on = [];
  for (let i = 0; i < COUNT; i++) {
    if (i === 10) midway();
    if (i === 20) await settle();
    if (process.env.TRACE) console.log('    send', tag, i, from.transport);
    on.push(from.transport);
    const text = `${tag}#${i}`;
    if (i % 3 === 0) equal(await from.emitWithAck('chat message', { room, text }), { ok: true }, `ack of ${text}`);
    else from.emit('chat message', { room, text });
  }
  return on;
}

/** What `c` heard, without ids and times: `FROM:text` (FROM the sender's label). */
function heardAs(c, labels) {
  return c.chat.map((m) => `${m.room.replace(/^seq-.*/, 'seq')}|${labels[m.from] ?? m.from}|${m.text}`);
}

/**
 * One run of the sequence: a and b join a room; a sends COUNT, b checks it got them (and a its own);
 * then b sends COUNT the other way. `gates` ({a, b} of functions, upgrade mode only) open a's WebSocket
 * half-way through a's burst and b's half-way through b's.
 */
async function sequence(mode, options, gates) {
  const a = await client(`${mode}-a`, options.a);
  const b = await client(`${mode}-b`, options.b);
  const labels = { [a.id]: 'A', [b.id]: 'B' };
  // A room of this run only (the hub may serve other scripts), named `seq` in the sequences compared.
  const room = `seq-${mode}-${Math.random().toString(16).slice(2)}`;
  equal(await a.join(room), { ok: true }, 'a joins');
  equal(await b.join(room), { ok: true }, 'b joins');
  const start = [a.transport, b.transport];
  const trace = process.env.TRACE ? (...x) => console.log('   ', ...x) : () => {};
  const aOn = await burst(a, 'A', room, gates?.a ?? (() => {}), () => (gates ? upgraded(a) : Promise.resolve()));
  trace('a sent', a.chat.length, b.chat.length);
  await Promise.all([heard(a, COUNT), heard(b, COUNT)]);
  trace('b sends');
  const bOn = await burst(b, 'B', room, gates?.b ?? (() => {}), () => (gates ? upgraded(b) : Promise.resolve()));
  trace('b sent', a.chat.length, b.chat.length);
  await Promise.all([heard(a, 2 * COUNT), heard(b, 2 * COUNT)]);
  const seq = { a: heardAs(a, labels), b: heardAs(b, labels) };
  const want = [...Array(COUNT).keys()].map((i) => `seq|A|A#${i}`).concat([...Array(COUNT).keys()].map((i) => `seq|B|B#${i}`));
  equal(seq.a, want, `${mode}: what a heard`);
  equal(seq.b, want, `${mode}: what b heard`);
  for (const c of [a, b]) {
    equal([c.errors.map(String), c.disconnects], [[], []], `${c.label}: no errors, no disconnects`);
  }
  const info = { start, end: [a.transport, b.transport], aOn, bOn, upgrades: [a.upgrades.length, b.upgrades.length] };
  a.disconnect();
  b.disconnect();
  return { seq, info };
}

run(async () => {
  step('(i) WebSocket only: 30 messages each way through a room');
  const ws = await sequence('websocket', { a: { transports: ['websocket'] }, b: { transports: ['websocket'] } });
  equal([ws.info.start, ws.info.end, ws.info.upgrades], [['websocket', 'websocket'], ['websocket', 'websocket'], [0, 0]], 'on WebSockets');

  step('(ii) polling only (upgrade: false): the same sequence');
  const pa = countingFetch();
  const pb = countingFetch();
  const made = { made: 0 };
  const never = gatedWebSocket(Promise.resolve(), made);
  const poll = await sequence('polling', {
    a: { transports: ['polling'], upgrade: false, fetch: pa.fetch, WebSocket: never },
    b: { transports: ['polling', 'websocket'], upgrade: false, fetch: pb.fetch, WebSocket: never },
  });
  equal([poll.info.start, poll.info.end, poll.info.upgrades], [['polling', 'polling'], ['polling', 'polling'], [0, 0]], 'on polling');
  equal(made.made, 0, 'no WebSocket was built');
  check(pa.stats.posts > 0 && pa.stats.polls > 0 && pb.stats.posts > 0, `polls and posts: ${JSON.stringify([pa.stats, pb.stats])}`);
  console.log(`  a: ${JSON.stringify(pa.stats)}, b: ${JSON.stringify(pb.stats)}`);
  equal(poll.seq, ws.seq, 'polling heard exactly what the WebSocket run heard');

  step('(iii) polling that upgrades half-way (a during its burst, b during its): the same sequence');
  let openA;
  let openB;
  const gateA = new Promise((r) => (openA = r));
  const gateB = new Promise((r) => (openB = r));
  const up = await sequence(
    'upgrade',
    {
      a: { transports: ['polling', 'websocket'], WebSocket: gatedWebSocket(gateA) },
      b: { transports: ['polling', 'websocket'], WebSocket: gatedWebSocket(gateB) },
    },
    { a: () => openA(), b: () => openB() },
  );
  equal([up.info.start, up.info.end, up.info.upgrades], [['polling', 'polling'], ['websocket', 'websocket'], [1, 1]], 'upgraded once each');
  equal([up.info.aOn[0], up.info.aOn[COUNT - 1], up.info.bOn[0], up.info.bOn[COUNT - 1]], ['polling', 'websocket', 'polling', 'websocket'], 'each burst began on polling and ended on the WebSocket');
  console.log(`  a sent on: ${up.info.aOn.join(' ')}`);
  equal(up.seq, ws.seq, 'upgraded half-way: heard exactly what the WebSocket run heard');

  step('fallback: a WebSocket constructor that throws -> polling, and no upgrade (it throws again)');
  {
    let built = 0;
    const Throwing = class {
      constructor() {
        built++;
        throw new Error('no WebSockets here');
      }
    };
    const c = await client('throwing', { WebSocket: Throwing });
    const d = await client('plain', {});
    equal([c.transport, d.transport], ['polling', 'websocket'], 'transports');
    equal(await c.join(fbRoom), { ok: true }, 'join over polling');
    equal(await d.join(fbRoom), { ok: true }, 'd joins');
    equal(await c.emitWithAck('chat message', { room: fbRoom, text: 'from polling' }), { ok: true }, 'acked over polling');
    d.emit('chat message', { room: fbRoom, text: 'to polling' });
    await heard(c, 2);
    await heard(d, 2);
    equal(c.chat.map((m) => m.text), ['from polling', 'to polling'], 'c heard');
    equal(d.chat.map((m) => m.text), ['from polling', 'to polling'], 'd heard');
    equal([built, c.transport, c.upgrades.length, c.errors.length], [2, 'polling', 0, 0], 'tried a WebSocket to connect and to upgrade; stays on polling, silently');
    c.disconnect();
    d.disconnect();
  }

  step('fallback: a WebSocket that closes before opening (GET /ws says 426) -> polling, chatting');
  {
    const Failing = class {
      binaryType = 'arraybuffer';
      onopen = null;
      onmessage = null;
      onclose = null;
      onerror = null;
      constructor() {
        queueMicrotask(() => this.onclose?.({ code: 1006, reason: '', wasClean: false }));
      }
      send() {}
      close() {}
    };
    const c = await client('failing', { WebSocket: Failing });
    equal(c.transport, 'polling', 'on polling');
    equal(await c.join(fb2Room), { ok: true }, 'join');
    c.emit('chat message', { room: fb2Room, text: 'still chatting' });
    await heard(c, 1);
    equal(c.chat.map((m) => m.text), ['still chatting'], 'heard its own message');
    c.disconnect();
  }

  step('heartbeat over polling: pings come in polls, pongs go out in posts, the connection stays');
  {
    const f = countingFetch();
    const c = await client('heartbeat', { transports: ['polling'], fetch: f.fetch });
    // The hub pings every second here: wait for three pongs (bounded by the script's watchdog).
    await new Promise((resolve) => {
      const again = () => (f.stats.pongs >= 3 ? resolve() : setTimeout(again, 50));
      again();
    });
    equal([c.connected, c.transport, c.disconnects], [true, 'polling', []], 'still connected over polling');
    c.emit('chat message', { room: c.id, text: 'after the pings' });
    await next(c, 'chat message', (m) => m.text === 'after the pings');
    c.disconnect();
  }

  step('a refused token over polling: connect_error 401, fatal');
  {
    const c = connect(url, { token: 'wrong', transports: ['polling'] });
    const [info] = await next(c, 'connect_error');
    equal([info.status, info.fatal, c.state], [401, true, 'closed'], `refusal ${JSON.stringify(info)}`);
  }
}, 60000);
