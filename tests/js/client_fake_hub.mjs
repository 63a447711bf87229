// The hub's JavaScript client (src/hub/assets/client.js) against a scripted fake hub (the `ws` package):
// what the real hub does not do on demand — asking the client for acknowledgements, sending malformed
// frames, staying silent (timeouts, the ping watchdog), refusing the handshake with 401/403/503 — and
// reconnection: the backoff with an injected random source, which endings are retried and which never
// are, the bounded send buffer and its in-order flush, no duplicate delivery across reconnections, the
// recovery offsets and the reconnect URL that carries them.
//
// node --experimental-websocket tests/js/client_fake_hub.mjs
import http from 'node:http';
import { WebSocketServer } from 'ws';
import { CLIENT_URL, check, equal, next, rejection, run, step, thrown } from './lib.mjs';

const { connect: connectAny, decodeFrame, encodeFrame, FrameError, HubError, reconnectDelay } = await import(CLIENT_URL);
// This fake hub speaks WebSocket only (no /poll): the client's polling fallback is tested against the real
// hub (hub_polling_node.mjs).
const connect = (url, options = {}) => connectAny(url, { transports: ['websocket'], ...options });

/** One accepted WebSocket on the fake hub's side. */
class FakeConn {
  constructor(ws, url) {
    this.ws = ws;
    this.url = url;
    this.inbox = [];
    this.waiters = [];
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: String(reason) })));
    ws.on('message', (data, isBinary) => {
      check(isBinary, 'the client sends binary messages only');
      this.inbox.push(decodeFrame(data));
      this.#wake();
    });
  }
  #wake() {
    for (const w of [...this.waiters]) {
      const i = this.inbox.findIndex(w.pred);
      if (i >= 0) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(this.inbox.splice(i, 1)[0]);
      }
    }
  }
  /** The first frame received (now or later) that satisfies `pred`; removed from the inbox. */
  frame(pred = () => true) {
    return new Promise((resolve) => {
      this.waiters.push({ pred, resolve });
      this.#wake();
    });
  }
  /** The next frame, which must be the first one still unread. */
  async nextFrame() {
    return this.frame(() => true);
  }
  send(name, value) {
    this.ws.send(encodeFrame(name, value === undefined ? '' : JSON.stringify(value)));
  }
  raw(bytes) {
    this.ws.send(bytes, { binary: true });
  }
  hello(fields = {}) {
    this.send('ringwire:hello', { id: 'conn-1', pingInterval: 100000, pingTimeout: 100000, maxMessage: 1048576, ...fields });
  }
}

class FakeHub {
  constructor() {
    this.upgrades = 0;
    this.gets = 0;
    this.refuse = null; // {status, text}
    this.conns = [];
    this.waiting = [];
    this.wss = new WebSocketServer({ noServer: true });
    this.server = http.createServer((req, res) => {
      this.gets++;
      const r = this.refuse ?? { status: 426, text: 'not a WebSocket upgrade request' };
      res.writeHead(r.status, { 'content-type': 'text/plain' }).end(`${r.text}\n`);
    });
    this.server.on('upgrade', (req, socket, head) => {
      this.upgrades++;
      if (this.refuse) {
        const body = `${this.refuse.text}\n`;
        socket.end(`HTTP/1.1 ${this.refuse.status} Refused\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
        return;
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        const c = new FakeConn(ws, req.url);
        const w = this.waiting.shift();
        if (w) w(c);
        else this.conns.push(c);
      });
    });
  }
  listen() {
    return new Promise((resolve) => this.server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${this.server.address().port}`)));
  }
  connection() {
    const c = this.conns.shift();
    return c ? Promise.resolve(c) : new Promise((resolve) => this.waiting.push(resolve));
  }
}

/** Collects a client's `error` reports. */
function errors(client) {
  const list = [];
  client.on('error', (e) => list.push(e));
  return list;
}

/** A connected client and its fake-hub side. */
async function connected(hub, url, fields, options = {}) {
  const client = connect(url, { token: 'T', ...options });
  const errs = errors(client);
  const conn = await hub.connection();
  const connect_ = next(client, 'connect');
  conn.hello(fields);
  await connect_;
  return { client, conn, errs };
}

/** Sends `tick` from the fake hub and waits for it: everything the hub sent before has been handled. */
async function sync(client, conn, n) {
  const got = next(client, 'tick', (v) => v === n);
  conn.send('tick', n);
  await got;
}

run(async () => {
  const hub = new FakeHub();
  const url = await hub.listen();

  step('connect: the token in the URL, events emitted before the hello are queued, hello sets id and rooms');
  const client = connect(url, { token: 'T' });
  const errs = errors(client);
  equal(client.state, 'connecting', 'state right after connect()');
  check(client.id === undefined, 'no id before the hello');
  client.emit('early', { n: 1 });
  const conn = await hub.connection();
  equal(conn.url, '/ws?token=T', 'the WebSocket request path');
  const connected1 = next(client, 'connect');
  conn.hello({ id: 'conn-1', maxMessage: 300 });
  await connected1;
  equal(client.id, 'conn-1', 'id');
  check(client.connected, 'connected');
  equal(client.rooms, ['conn-1'], 'rooms: its own');
  equal(client.hello, { id: 'conn-1', pingInterval: 100000, pingTimeout: 100000, maxMessage: 300, recovered: false }, 'hello');
  equal(await conn.nextFrame(), { name: 'early', value: { n: 1 } }, 'the queued event, sent after the hello');

  step('ringwire:ping is answered with an empty ringwire:pong');
  conn.send('ringwire:ping');
  equal(await conn.nextFrame(), { name: 'ringwire:pong', value: undefined }, 'pong');

  step('the hub asks for an acknowledgement: the listener gets ack(), and one reply goes back under the same name');
  client.on('ask', (value, ack) => {
    check(typeof ack === 'function', 'a request gets an ack callback');
    ack({ answer: value.q + 1 });
    ack('a second reply is not sent');
  });
  const askName = 'ringwire:ack:0123456789abcdef.7:ask';
  conn.send(askName, { q: 41 });
  equal(await conn.nextFrame(), { name: askName, value: { answer: 42 } }, 'the reply');
  client.emit('after', 1);
  equal(await conn.nextFrame(), { name: 'after', value: 1 }, 'the next frame (no second reply)');
  client.on('plain', (...args) => client.emit('plain args', args.length));
  conn.send('plain', 'x');
  equal(await conn.nextFrame(), { name: 'plain args', value: 1 }, 'a plain event has no ack argument');

  step('emitWithAck: the request name, the reply resolves it, the entry is freed');
  const asked = client.emitWithAck('question', { x: 1 });
  equal(client.pendingAcks, 1, 'pending while unanswered');
  const req = await conn.nextFrame();
  const m = /^ringwire:ack:([0-9a-f]{16})\.([0-9]+):question$/.exec(req.name);
  check(m, `request name ${req.name}`);
  const token = m[1];
  equal(req.value, { x: 1 }, 'request body');
  conn.send(req.name, { ok: true });
  equal(await asked, { ok: true }, 'reply');
  equal(client.pendingAcks, 0, 'freed after the reply');

  step('a reply to an unknown id is dropped silently');
  conn.send(`ringwire:ack:${token}.999:question`, 'stray');
  await sync(client, conn, 1);
  equal(errs.length, 0, 'no error for a stray reply');

  step('emitWithAck times out when the hub never answers; the late reply is dropped');
  const silent = client.emitWithAck('silence', 1, { timeout: 50 });
  const silentReq = await conn.nextFrame();
  const timedOut = await rejection(silent, 'emitWithAck to a silent hub');
  equal(timedOut.code, 'ETIMEDOUT', 'timeout code');
  equal(client.pendingAcks, 0, 'freed after the timeout');
  conn.send(silentReq.name, { ok: true });
  await sync(client, conn, 2);
  equal(errs.length, 0, 'no error for a late reply');

  step('join and leave in ack form; a refusal rejects with EREFUSED');
  const joining = client.join('A');
  const joinReq = await conn.nextFrame();
  check(joinReq.name.startsWith(`ringwire:ack:${token}.`) && joinReq.name.endsWith(':ringwire:join'), `join request ${joinReq.name}`);
  equal(joinReq.value, 'A', 'join body: the room name');
  conn.send(joinReq.name, { ok: true });
  equal(await joining, { ok: true }, 'join reply');
  equal(client.rooms.sort(), ['A', 'conn-1'], 'rooms after join');
  const joiningB = client.join('B');
  const joinB = await conn.nextFrame();
  conn.send(joinB.name, { ok: false, error: 'no such luck' });
  const refused = await rejection(joiningB, 'a refused join');
  equal([refused.code, refused.reply], ['EREFUSED', { ok: false, error: 'no such luck' }], 'refusal');
  check(refused.message.includes('no such luck'), `refusal message: ${refused.message}`);
  const leaving = client.leave('A');
  const leaveReq = await conn.nextFrame();
  check(leaveReq.name.endsWith(':ringwire:leave'), `leave request ${leaveReq.name}`);
  conn.send(leaveReq.name, { ok: true });
  await leaving;
  equal(client.rooms, ['conn-1'], 'rooms after leave');

  step('what the client refuses to send');
  check(thrown(() => client.emit('ringwire:join', 'A'), 'reserved') instanceof TypeError, 'reserved prefix');
  check(thrown(() => client.emit('connect'), 'local') instanceof TypeError, 'a local event');
  check(thrown(() => client.emit(''), 'empty') instanceof TypeError, 'an empty name');
  check(thrown(() => client.emit('n'.repeat(256)), 'long') instanceof RangeError, 'a 256-byte name');
  check(thrown(() => client.emit('f', () => 1), 'function') instanceof TypeError, 'a value without JSON');
  const big = thrown(() => client.emit('big', 'x'.repeat(300)), 'oversize');
  check(big instanceof RangeError && big.message.includes('limit of 300'), `over maxMessage: ${big.message}`);
  check((await rejection(client.emitWithAck('big', 'x'.repeat(300)), 'oversize ack')) instanceof RangeError, 'emitWithAck over maxMessage');
  check((await rejection(client.emitWithAck('ringwire:x', 1), 'reserved ack')) instanceof TypeError, 'emitWithAck reserved');
  check((await rejection(client.join(''), 'empty room')) instanceof RangeError, 'join of an empty room name');
  equal(client.pendingAcks, 0, 'nothing pending after refused sends');
  client.emit('still fine', 1);
  equal(await conn.nextFrame(), { name: 'still fine', value: 1 }, 'the connection is still usable');

  step('bad frames from the hub are reported via `error`, not thrown; the connection stays up');
  const frame = (len, kind, flags, n, ...rest) => {
    const b = Buffer.alloc(8);
    b.writeUInt32LE(len, 0);
    b[4] = kind;
    b[5] = flags;
    b.writeUInt16LE(n, 6);
    return Buffer.concat([b, Buffer.from(rest.flat())]);
  };
  const bad = [
    ['shorter than the header', Buffer.from([1, 0, 0, 0, 1])],
    ['len mismatch', frame(10, 1, 0, 1, [0x61, 0x62, 0x63])],
    ['kind 2', frame(1, 2, 0, 1, [0x61])],
    ['flags 1', frame(1, 1, 1, 1, [0x61])],
    ['name length 0', frame(1, 1, 0, 0, [0x61])],
    ['name length > len', frame(2, 1, 0, 3, [0x61, 0x62])],
    ['name not UTF-8', frame(1, 1, 0, 1, [0xff])],
    ['body not JSON', frame(9, 1, 0, 1, [0x61], [...Buffer.from('not json')])],
    ['body not UTF-8', frame(3, 1, 0, 1, [0x61], [0x22, 0xff])],
  ];
  let tick = 10;
  for (const [label, bytes] of bad) {
    const before = errs.length;
    conn.raw(bytes);
    await sync(client, conn, tick++);
    equal(errs.length - before, 1, `one error for ${label}`);
    const e = errs.at(-1);
    check(e instanceof FrameError && e.code === 'EBADFRAME', `${label}: ${e?.name} ${e?.message}`);
    console.log(`  ${label}: ${e.message}`);
  }
  {
    const before = errs.length;
    conn.ws.send('a text message');
    await sync(client, conn, tick++);
    equal(errs.length - before, 1, 'one error for a text message');
    check(errs.at(-1) instanceof FrameError, `text message: ${errs.at(-1)?.message}`);
  }

  step('valid frames the protocol does not allow are reported as ProtocolError; ringwire:error as HubError');
  let connects = 0;
  client.on('connect', () => connects++);
  const protocol = [
    ['a local event name', 'connect', undefined],
    ['an unknown reserved event', 'ringwire:surprise', 1],
    ['a malformed ack name', 'ringwire:ack:xyz', 1],
    ['an ack request for a reserved event', 'ringwire:ack:0123456789abcdef.1:ringwire:hello', 1],
    ['a second hello', 'ringwire:hello', { id: 'other' }],
  ];
  for (const [label, name, value] of protocol) {
    const before = errs.length;
    conn.send(name, value);
    await sync(client, conn, tick++);
    equal(errs.length - before, 1, `one error for ${label}`);
    equal(errs.at(-1).name, 'ProtocolError', `${label}: ${errs.at(-1).message}`);
  }
  equal(connects, 0, 'no connect listener ran');
  equal(client.id, 'conn-1', 'the id is unchanged');
  conn.send('ringwire:error', { code: 'not_member', message: 'not in room A' });
  await sync(client, conn, tick++);
  equal([errs.at(-1).name, errs.at(-1).code, errs.at(-1).message], ['HubError', 'not_member', 'not in room A'], 'HubError');

  step('listeners: once, off, a throwing listener does not stop the others');
  let onceCount = 0;
  client.once('o', () => onceCount++);
  conn.send('o');
  conn.send('o');
  await sync(client, conn, tick++);
  equal(onceCount, 1, 'once');
  const offed = () => check(false, 'a removed listener ran');
  client.on('gone', offed).off('gone', offed);
  conn.send('gone');
  await sync(client, conn, tick++);
  const boom = new Error('a listener threw');
  const uncaught = new Promise((resolve) => process.once('uncaughtException', resolve));
  let second = 0;
  client.on('boom', () => {
    throw boom;
  });
  client.on('boom', () => second++);
  conn.send('boom');
  check((await uncaught) === boom, 'the exception is rethrown on its own');
  equal(second, 1, 'the next listener ran');

  step('the hub closes with 4002: disconnect with code and reason, pending acks reject, emit throws');
  const pending = client.emitWithAck('pending', 1);
  await conn.nextFrame();
  const gone = next(client, 'disconnect');
  conn.ws.close(4002, 'disconnected by the server');
  const [info] = await gone;
  equal(info, { code: 4002, reason: 'disconnected by the server', wasClean: true, local: false }, 'disconnect info');
  equal((await rejection(pending, 'pending at disconnect')).code, 'EDISCONNECTED', 'pending rejects');
  equal(client.pendingAcks, 0, 'freed at disconnect');
  equal([client.state, client.id, client.connected], ['closed', undefined, false], 'closed');
  equal(thrown(() => client.emit('late', 1), 'emit when closed').code, 'ENOTCONN', 'emit when closed');
  equal(client.connectAttempts, 1, 'no reconnection (4002 is final)');

  step('disconnect() from the client: 1000, local, pending rejects');
  {
    const { client: c, conn: s } = await connected(hub, url);
    const p = c.emitWithAck('pending', 1, { timeout: Infinity });
    await s.nextFrame();
    let info2;
    c.on('disconnect', (i) => (info2 = i));
    c.disconnect();
    equal(info2, { code: 1000, reason: 'client disconnect', wasClean: true, local: true }, 'disconnect fires at once');
    equal((await rejection(p, 'pending at disconnect()')).code, 'EDISCONNECTED', 'pending rejects');
    equal((await s.closed).code, 1000, 'the hub sees close 1000');
  }

  step('no ping for pingInterval + pingTimeout: the client closes with 4000 "ping timeout", then reconnects');
  {
    const fast = { reconnectionDelay: 1, reconnectionDelayMax: 5 };
    const { client: c, conn: s } = await connected(hub, url, { pingInterval: 40, pingTimeout: 40 }, fast);
    const attempt = next(c, 'reconnect_attempt');
    const [i] = await next(c, 'disconnect');
    equal(i, { code: 4000, reason: 'ping timeout', wasClean: false, local: true }, 'disconnect info');
    equal(c.state, 'reconnecting', 'reconnecting after a ping timeout');
    equal(await s.closed, { code: 4000, reason: 'ping timeout' }, 'the hub sees 4000');
    equal((await attempt)[0].attempt, 1, 'reconnect_attempt 1');
    const s2 = await hub.connection();
    const back = next(c, 'connect');
    s2.hello({ id: 'conn-2' });
    equal((await back)[0], { recovered: false }, 'connected again');
    c.disconnect();
  }

  step('an event before the hello is reported and dropped');
  {
    const c = connect(url);
    const e = errors(c);
    let early = 0;
    c.on('early', () => early++);
    const s = await hub.connection();
    equal(s.url, '/ws', 'no token: none in the URL');
    s.send('early', 1);
    const ok = next(c, 'connect');
    s.hello();
    await ok;
    await sync(c, s, 1);
    equal([early, e.length, e[0]?.name], [0, 1, 'ProtocolError'], 'early event dropped and reported');
    c.disconnect();
  }

  step('the WebSocket opens but closes before the hello: connect_error with status 101 and the code, retried');
  {
    const c = connect(url, { token: 'T' });
    const s = await hub.connection();
    const err = next(c, 'connect_error');
    const attempt = next(c, 'reconnect_attempt');
    s.ws.close(1008, 'policy');
    const [i] = await err;
    equal(i, { status: 101, code: 1008, reason: 'policy', fatal: false }, 'connect_error');
    const [a] = await attempt;
    equal(a.attempt, 1, 'a reconnection is scheduled');
    c.disconnect(); // before its delay (0.5..1.5 s) ends: nothing more is tried
    equal([c.state, c.connectAttempts], ['closed', 1], 'given up by hand');
  }

  step('handshake refusals: 401 and 403 are fatal connect_errors with the hub\'s reason, asked once, never retried');
  for (const [status, text] of [[401, 'missing or wrong token'], [403, 'origin not allowed']]) {
    hub.refuse = { status, text };
    const [u0, g0] = [hub.upgrades, hub.gets];
    const c = connect(url, { token: 'wrong' });
    let connects2 = 0;
    c.on('connect', () => connects2++);
    let attempts = 0;
    c.on('reconnect_attempt', () => attempts++);
    const [i] = await next(c, 'connect_error');
    equal(i, { status, reason: text, fatal: true }, `connect_error for ${status}`);
    equal([hub.upgrades - u0, hub.gets - g0, c.connectAttempts, c.state, connects2, attempts], [1, 1, 1, 'closed', 0, 0], 'one try, one probe');
  }
  step('a 503 refusal is retried: with the hub open again, the next attempt connects');
  hub.refuse = { status: 503, text: 'too many connections' };
  {
    const c = connect(url, { token: 'T', reconnectionDelay: 1, reconnectionDelayMax: 5 });
    const [i] = await next(c, 'connect_error');
    equal(i, { status: 503, reason: 'too many connections', fatal: false }, 'connect_error for 503');
    hub.refuse = null;
    const reconnected = next(c, 'reconnect');
    const s = await hub.connection();
    const ok = next(c, 'connect');
    s.hello();
    equal((await ok)[0], { recovered: false }, 'connect');
    check((await reconnected)[0].attempt >= 1, 'reconnect fired');
    c.disconnect();
  }
  hub.refuse = null;
  {
    // The 401/403 clients above are closed: a fresh client's whole round trip later, no new attempts.
    const before = hub.upgrades;
    const { client: c, conn: s } = await connected(hub, url);
    c.emit('ping me', 1);
    await s.nextFrame();
    equal(hub.upgrades - before, 1, 'only the fresh client connected since');
    c.disconnect();
  }

  step('an unreachable hub: connect_error with status 0');
  {
    const closedServer = http.createServer();
    await new Promise((r) => closedServer.listen(0, '127.0.0.1', r));
    const port = closedServer.address().port;
    await new Promise((r) => closedServer.close(r));
    const c = connect(`http://127.0.0.1:${port}`, { token: 'T' });
    const [i] = await next(c, 'connect_error');
    check(i.status === 0 && i.fatal === false && i.reason.length > 0, `connect_error ${JSON.stringify(i)}`);
    equal(c.state, 'reconnecting', 'a network error is retried');
    console.log(`  ${i.reason}`);
    c.disconnect();
  }

  step('URLs: http -> ws and /ws when there is no path');
  equal(connect('http://127.0.0.1:1', { token: 'a b', autoConnect: false }).url, 'ws://127.0.0.1:1/ws?token=a+b', 'http URL');
  equal(new (await import(CLIENT_URL)).HubClient('wss://h/x/ws', { autoConnect: false }).url, 'wss://h/x/ws', 'wss URL kept');

  // ---- reconnection ------------------------------------------------------------------------------

  step('reconnectDelay: socket.io\'s formula, exactly, with the defaults (1000 ms, max 5000, factor 0.5)');
  // floor(r * 10) even: down by floor(r * 0.5 * ms); odd: up by it; then at most 5000.
  const table = [
    [0, 0, 1000],
    [0, 0.05, 975], // floor(0.5) = 0, even: 1000 - floor(25)
    [0, 0.15, 1075], // floor(1.5) = 1, odd: 1000 + 75
    [0, 0.5, 1250], // floor(5) = 5, odd: 1000 + 250
    [0, 0.6, 700], // floor(6) = 6, even: 1000 - 300
    [0, 0.99, 1495], // 9, odd: 1000 + floor(495)
    [1, 0.05, 1950], // 2000 - 50
    [1, 0.99, 2990], // 2000 + 990
    [2, 0.05, 3900],
    [2, 0.99, 5000], // 4000 + 1980 = 5980, capped
    [3, 0, 5000], // 8000, capped
    [3, 0.45, 5000], // 8000 - 1800 = 6200, capped
    [30, 0.3, 5000],
    [5000, 0.7, 5000], // no overflow to NaN after many attempts
  ];
  for (const [k, r, want] of table) equal(reconnectDelay(k, r), want, `reconnectDelay(${k}, ${r})`);
  for (let k = 0; k < 8; k++) {
    const ms = 1000 * 2 ** k;
    for (let i = 0; i < 1000; i++) {
      const d = reconnectDelay(k, i / 1000);
      check(Number.isInteger(d) && d >= Math.min(Math.floor(ms * 0.5), 5000) && d <= Math.min(ms * 1.5, 5000), `k=${k} r=${i / 1000}: ${d} ms outside the envelope`);
    }
  }
  equal(reconnectDelay(2, 0.99, { reconnectionDelay: 20, reconnectionDelayMax: 10000, randomizationFactor: 0 }), 80, 'factor 0: no jitter');

  step('the client draws from the injected random source: the delays of attempts 1..5, then reconnect_failed');
  {
    const h = new FakeHub();
    const u = await h.listen();
    h.refuse = { status: 503, text: 'too many connections' };
    const draws = [0, 0.05, 0.99, 0.15, 0.99, 0.5];
    let drawn = 0;
    const c = connect(u, {
      token: 'T',
      reconnectionDelay: 20,
      reconnectionDelayMax: 200,
      reconnectionAttempts: 5,
      random: () => draws[drawn++],
    });
    const attempts = [];
    const errors503 = [];
    c.on('reconnect_attempt', (a) => attempts.push(a));
    c.on('connect_error', (i) => errors503.push(i.status));
    const [failed] = await next(c, 'reconnect_failed');
    // 20 * 2^k, k = 0..4: 20 (r 0); 40 - floor(0.05*0.5*40 = 1) = 39; 80 + floor(39.6) = 119;
    // 160 + floor(12) = 172; 320 + floor(158.4) = 478 -> capped at 200.
    equal(attempts, [
      { attempt: 1, delay: 20 },
      { attempt: 2, delay: 39 },
      { attempt: 3, delay: 119 },
      { attempt: 4, delay: 172 },
      { attempt: 5, delay: 200 },
    ], 'reconnect_attempt events');
    equal(failed, { attempts: 5 }, 'reconnect_failed');
    equal([drawn, errors503, c.connectAttempts, h.upgrades, c.state], [5, [503, 503, 503, 503, 503, 503], 6, 6, 'closed'], 'one draw per attempt; 1 + 5 tries');
    equal(thrown(() => c.emit('x', 1), 'emit after reconnect_failed').code, 'ENOTCONN', 'closed after giving up');
    // connect() by hand starts over (attempt 1 again).
    h.refuse = null;
    const ok = next(c, 'connect');
    c.connect();
    const s = await h.connection();
    s.hello();
    equal((await ok)[0], { recovered: false }, 'connect() after reconnect_failed');
    c.disconnect();
    h.server.close();
  }

  step('which endings are retried: 1006 (dropped), 1001, 4000, 4001, 1011, 1000, 1008; never: 4002, 4003, disconnect()');
  {
    const h = new FakeHub();
    const u = await h.listen();
    const fast = { reconnectionDelay: 1, reconnectionDelayMax: 5 };
    const { client: c, conn: s0 } = await connected(h, u, {}, fast);
    let conn = s0;
    const log = [];
    for (const ev of ['connect', 'disconnect', 'reconnect_attempt', 'reconnect']) c.on(ev, (i) => log.push([ev, i]));
    for (const code of [1006, 1001, 4000, 4001, 1011, 1000, 1008]) {
      log.length = 0;
      const back = next(c, 'connect');
      if (code === 1006) conn.ws.terminate(); // no close frame: TCP just ends
      else conn.ws.close(code, `bye ${code}`);
      conn = await h.connection();
      conn.hello({ id: `after-${code}` });
      await back;
      equal(log.map(([ev, i]) => (ev === 'disconnect' ? [ev, i.code, i.local] : ev === 'reconnect_attempt' ? [ev, i.attempt] : [ev, i])), [
        ['disconnect', code, false],
        ['reconnect_attempt', 1],
        ['reconnect', { attempt: 1, recovered: false }],
        ['connect', { recovered: false }],
      ], `close ${code}: the events`);
      equal(c.id, `after-${code}`, `close ${code}: connected again`);
    }
    for (const code of [4002, 4003]) {
      log.length = 0;
      const before = c.connectAttempts;
      const gone = next(c, 'disconnect');
      conn.ws.close(code, `final ${code}`);
      const [i] = await gone;
      equal([i.code, c.state, c.connectAttempts - before], [code, 'closed', 0], `close ${code}: closed for good`);
      equal(log.map(([ev]) => ev), ['disconnect'], `close ${code}: no reconnect_attempt`);
      // Still nothing after the hub had time for a full round trip with another client.
      const { client: d, conn: ds } = await connected(h, u);
      await sync(d, ds, 1);
      d.disconnect();
      equal([c.state, c.connectAttempts - before, h.conns.length], ['closed', 0, 0], `close ${code}: no attempt since`);
      // Connect by hand for the next round.
      const ok = next(c, 'connect');
      c.connect();
      conn = await h.connection();
      conn.hello({ id: `manual-${code}` });
      await ok;
    }
    log.length = 0;
    c.disconnect();
    equal([c.state, log.map(([ev, i]) => [ev, i.code])], ['closed', [['disconnect', 1000]]], 'disconnect(): no reconnection');
    equal((await conn.closed).code, 1000, 'the hub sees 1000');
    h.server.close();
  }

  step('connect() while waiting to reconnect attempts at once; a 401 on a later attempt is final; disconnect() drops the buffer');
  {
    const h = new FakeHub();
    const u = await h.listen();
    const { client: c, conn: s0 } = await connected(h, u, { id: 'k1' }, { reconnectionDelay: 600000, reconnectionDelayMax: 600000 });
    let attempt = next(c, 'reconnect_attempt');
    s0.ws.terminate();
    const [a] = await attempt;
    check(a.delay >= 300000, `a long delay: ${a.delay} ms`);
    equal(c.state, 'reconnecting', 'waiting');
    const ok = next(c, 'connect');
    c.connect();
    const s1 = await h.connection();
    s1.hello({ id: 'k2' });
    await ok;
    equal(c.id, 'k2', 'reconnected without waiting out the delay');
    // A token that stopped working: the next attempt is refused with 401, and that is final.
    h.refuse = { status: 401, text: 'missing or wrong token' };
    attempt = next(c, 'reconnect_attempt');
    s1.ws.terminate();
    await attempt;
    const pending = c.emitWithAck('buffered', 1, { timeout: Infinity });
    c.emit('buffered too', 2);
    equal([c.buffered, c.pendingAcks], [2, 1], 'buffered while away');
    const refused = next(c, 'connect_error');
    c.connect();
    const [r] = await refused;
    equal([r.status, r.fatal, c.state], [401, true, 'closed'], 'a 401 on a reconnection attempt is final');
    equal((await rejection(pending, 'a buffered request at the refusal')).code, 'EDISCONNECTED', 'the buffered request rejects');
    equal([c.buffered, c.pendingAcks, c.rooms], [0, 0, []], 'buffer, pending and rooms dropped');
    h.refuse = null;
    // disconnect() while waiting: the buffer is dropped too.
    const d = connect(u, { token: 'T', reconnectionDelay: 600000, reconnectionDelayMax: 600000 });
    const ds = await h.connection();
    const dok = next(d, 'connect');
    ds.hello({ id: 'k3' });
    await dok;
    const dattempt = next(d, 'reconnect_attempt');
    ds.ws.terminate();
    await dattempt;
    const dp = d.emitWithAck('buffered', 1, { timeout: Infinity });
    d.disconnect();
    equal((await rejection(dp, 'a buffered request at disconnect()')).code, 'EDISCONNECTED', 'rejects');
    equal([d.state, d.buffered, d.pendingAcks, d.connectAttempts], ['closed', 0, 0, 1], 'closed, nothing left, no attempt made');
    h.server.close();
  }

  step('the send buffer: bounded (EBUFFERFULL), acks keep their timeout there, flushed in order after the re-joins');
  {
    const h = new FakeHub();
    const u = await h.listen();
    const opts = { reconnectionDelay: 1, reconnectionDelayMax: 5, sendBuffer: 4 };
    const { client: c, conn: s0 } = await connected(h, u, { id: 'first' }, opts);
    const joining = c.join('R');
    const jr = await s0.nextFrame();
    s0.send(jr.name, { ok: true });
    await joining;
    const onWire = c.emitWithAck('on the wire', 1, { timeout: Infinity });
    await s0.nextFrame();
    const back = next(c, 'reconnect_attempt');
    s0.ws.terminate();
    await back;
    equal((await rejection(onWire, 'a request sent before the drop')).code, 'EDISCONNECTED', 'a request already sent rejects');
    // The next attempt's WebSocket opens, but the fake hub holds its hello: still buffering.
    const s1 = await h.connection();
    c.emit('n', 1);
    const q = c.emitWithAck('q', 'asked while down', { timeout: Infinity });
    const lost = c.emitWithAck('lost', 'times out in the buffer', { timeout: 30 });
    c.emit('n', 2);
    equal(c.buffered, 4, 'four buffered');
    const full = thrown(() => c.emit('n', 3), 'a fifth while the buffer holds four');
    check(full instanceof HubError && full.code === 'EBUFFERFULL', `EBUFFERFULL: ${full?.name} ${full?.code} ${full?.message}`);
    console.log(`  ${full.message}`);
    const fullAck = await rejection(c.emitWithAck('q', 'no room'), 'emitWithAck with a full buffer');
    equal(fullAck.code, 'EBUFFERFULL', 'emitWithAck rejects with EBUFFERFULL');
    equal((await rejection(lost, 'an ack timing out in the buffer')).code, 'ETIMEDOUT', 'the timeout runs in the buffer');
    equal(c.buffered, 3, 'the timed-out request left the buffer');
    c.emit('n', 3);
    equal(c.rooms, ['R'], 'rooms while disconnected: the joined ones');
    const ok = next(c, 'connect');
    s1.hello({ id: 'second' }); // not recovered: a new id
    equal((await ok)[0], { recovered: false }, 'connect');
    equal(c.rooms, ['second', 'R'], 'rooms: the new own room and R');
    const rejoin = await s1.nextFrame();
    check(/^ringwire:ack:[0-9a-f]{16}\.[0-9]+:ringwire:join$/.test(rejoin.name) && rejoin.value === 'R', `first: the re-join, ${JSON.stringify(rejoin)}`);
    s1.send(rejoin.name, { ok: true });
    equal(await s1.nextFrame(), { name: 'n', value: 1 }, 'then n 1');
    const qf = await s1.nextFrame();
    check(qf.name.endsWith(':q') && qf.value === 'asked while down', `then the buffered request: ${JSON.stringify(qf)}`);
    equal(await s1.nextFrame(), { name: 'n', value: 2 }, 'then n 2');
    equal(await s1.nextFrame(), { name: 'n', value: 3 }, 'then n 3 (the timed-out one never went)');
    s1.send(qf.name, 'answered');
    equal(await q, 'answered', 'the buffered request is answered on the new connection');
    c.emit('n', 4);
    equal(await s1.nextFrame(), { name: 'n', value: 4 }, 'then what is sent after the hello');
    equal([c.buffered, c.pendingAcks], [0, 0], 'nothing left');
    // A refused re-join is reported and the room forgotten.
    const errs2 = errors(c);
    const again = next(c, 'connect');
    s1.ws.terminate();
    const s2 = await h.connection();
    s2.hello({ id: 'third' });
    await again;
    const rj = await s2.nextFrame();
    s2.send(rj.name, { ok: false, error: 'room closed' });
    await sync(c, s2, 1);
    equal([errs2.length, errs2[0]?.code, c.rooms], [1, 'EREFUSED', ['third']], 'a refused re-join');
    // Closed for good: the buffer is dropped, its requests reject.
    c.disconnect();
    equal(thrown(() => c.emit('n', 5), 'emit when closed').code, 'ENOTCONN', 'closed');
    h.server.close();
  }

  step('no duplicate delivery: one listener, 10 drops and reconnections, one message -> delivered once');
  {
    const h = new FakeHub();
    const u = await h.listen();
    const { client: c, conn: s0 } = await connected(h, u, { id: 'd0' }, { reconnectionDelay: 1, reconnectionDelayMax: 2 });
    const got = [];
    c.on('msg', (v) => got.push(v));
    const counts = { connect: 0, disconnect: 0, reconnect: 0 };
    for (const ev of Object.keys(counts)) c.on(ev, () => counts[ev]++);
    let conn = s0;
    for (let i = 1; i <= 10; i++) {
      const back = next(c, 'connect');
      conn.ws.terminate();
      conn = await h.connection();
      conn.hello({ id: `d${i}` });
      await back;
    }
    conn.send('msg', 'once');
    await sync(c, conn, 1);
    equal(got, ['once'], 'delivered once');
    equal(counts, { connect: 10, disconnect: 10, reconnect: 10 }, 'one connect, disconnect and reconnect per reconnection');
    equal(c.connectAttempts, 11, '11 WebSockets');
    c.disconnect();
    h.server.close();
  }

  step('recovery: ringwire:o:<offset>:<event> delivered as <event>, the highest offset sent back as ?sid=..&offset=..');
  {
    const h = new FakeHub();
    const u = await h.listen();
    const fast = { reconnectionDelay: 1, reconnectionDelayMax: 2 };
    const { client: c, conn: s0, errs: e } = await connected(h, u, { id: 'r1', sid: 'a'.repeat(32), offset: 5, recovered: false }, fast);
    equal(c.hello, { id: 'r1', pingInterval: 100000, pingTimeout: 100000, maxMessage: 1048576, recovered: false, sid: 'a'.repeat(32), offset: 5 }, 'hello with a session');
    const joining = c.join('R');
    const jr = await s0.nextFrame();
    s0.send(jr.name, { ok: true });
    await joining;
    const chat = [];
    c.on('chat', (v) => chat.push(v));
    s0.send('ringwire:o:6:chat', { n: 6 });
    s0.send('chat', { n: 'volatile' }); // no offset
    s0.send('ringwire:o:9:chat', { n: 9 });
    s0.send('ringwire:o:7:chat', { n: 7 }); // lower: delivered, but 9 stays the highest
    s0.send('ringwire:o:x:chat', 1); // malformed
    s0.send('ringwire:o:10:ringwire:hello', 1); // not an event the hub may send
    await sync(c, s0, 1);
    equal(chat, [{ n: 6 }, { n: 'volatile' }, { n: 9 }, { n: 7 }], 'delivered under the inner name');
    equal(e.map((x) => x.name), ['ProtocolError', 'ProtocolError'], 'the malformed ones are reported');
    let back = next(c, 'connect');
    s0.ws.terminate();
    const s1 = await h.connection();
    equal(s1.url, `/ws?token=T&sid=${'a'.repeat(32)}&offset=10`, 'the reconnect URL: sid and the highest offset (10 counted)');
    s1.hello({ id: 'r1', sid: 'a'.repeat(32), offset: 10, recovered: true });
    s1.send('ringwire:o:11:chat', { n: 11 }); // the replay, right after the hello
    equal((await back)[0], { recovered: true }, 'connect {recovered: true}');
    equal([c.id, c.rooms], ['r1', ['r1', 'R']], 'same id, same rooms');
    c.emit('first after', 1);
    equal(await s1.nextFrame(), { name: 'first after', value: 1 }, 'recovered: no re-join sent');
    await sync(c, s1, 2);
    equal(chat.at(-1), { n: 11 }, 'the replayed event');
    back = next(c, 'connect');
    s1.ws.close(1011, 'internal');
    const s2 = await h.connection();
    equal(s2.url, `/ws?token=T&sid=${'a'.repeat(32)}&offset=11`, 'the next reconnect URL');
    s2.hello({ id: 'r2', sid: 'b'.repeat(32), offset: 20, recovered: false }); // the hub lost the session
    equal((await back)[0], { recovered: false }, 'not recovered');
    const rj = await s2.nextFrame();
    check(rj.name.endsWith(':ringwire:join') && rj.value === 'R', `re-join ${JSON.stringify(rj)}`);
    s2.send(rj.name, { ok: true });
    back = next(c, 'connect');
    s2.ws.terminate();
    const s3 = await h.connection();
    equal(s3.url, `/ws?token=T&sid=${'b'.repeat(32)}&offset=20`, 'the new session, from its hello\'s offset');
    s3.hello({ id: 'r3' }); // a hub without recovery: no session any more
    await back;
    back = next(c, 'connect');
    (await s3.nextFrame()); // its re-join
    s3.ws.terminate();
    const s4 = await h.connection();
    equal(s4.url, '/ws?token=T', 'no session: no sid or offset');
    s4.hello({ id: 'r4', recovered: true }); // recovered without having asked: reported, taken as new
    equal((await back)[0], { recovered: false }, 'an unasked recovery is not one');
    check(e.some((x) => x.name === 'ProtocolError' && /no session was asked/.test(x.message)), 'reported');
    c.disconnect();
    h.server.close();
  }

  hub.wss.close();
  hub.server.close();
}, 60000);
