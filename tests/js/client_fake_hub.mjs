// The hub's JavaScript client (src/hub/assets/client.js) against a scripted fake hub (the `ws` package):
// what the real hub does not do on demand — asking the client for acknowledgements, sending malformed
// frames, staying silent (timeouts, the ping watchdog), refusing the handshake with 401/403/503.
//
// node --experimental-websocket tests/js/client_fake_hub.mjs
import http from 'node:http';
import { WebSocketServer } from 'ws';
import { CLIENT_URL, check, equal, next, rejection, run, step, thrown } from './lib.mjs';

const { connect, decodeFrame, encodeFrame, FrameError } = await import(CLIENT_URL);

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
async function connected(hub, url, fields) {
  const client = connect(url, { token: 'T' });
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
  equal(client.hello, { id: 'conn-1', pingInterval: 100000, pingTimeout: 100000, maxMessage: 300 }, 'hello');
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
  equal(client.connectAttempts, 1, 'no reconnection');

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

  step('no ping for pingInterval + pingTimeout: the client closes with 4000 "ping timeout"');
  {
    const { client: c, conn: s } = await connected(hub, url, { pingInterval: 40, pingTimeout: 40 });
    const [i] = await next(c, 'disconnect');
    equal(i, { code: 4000, reason: 'ping timeout', wasClean: false, local: true }, 'disconnect info');
    equal(await s.closed, { code: 4000, reason: 'ping timeout' }, 'the hub sees 4000');
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

  step('the WebSocket opens but closes before the hello: connect_error with status 101 and the code');
  {
    const c = connect(url, { token: 'T' });
    const s = await hub.connection();
    const err = next(c, 'connect_error');
    s.ws.close(1008, 'policy');
    const [i] = await err;
    equal(i, { status: 101, code: 1008, reason: 'policy', fatal: false }, 'connect_error');
  }

  step('handshake refusals: 401 and 403 are fatal connect_errors with the hub\'s reason, asked once, never retried');
  for (const [status, text] of [[401, 'missing or wrong token'], [403, 'origin not allowed']]) {
    hub.refuse = { status, text };
    const [u0, g0] = [hub.upgrades, hub.gets];
    const c = connect(url, { token: 'wrong' });
    let connects2 = 0;
    c.on('connect', () => connects2++);
    const [i] = await next(c, 'connect_error');
    equal(i, { status, reason: text, fatal: true }, `connect_error for ${status}`);
    equal([hub.upgrades - u0, hub.gets - g0, c.connectAttempts, c.state, connects2], [1, 1, 1, 'closed', 0], 'one try, one probe');
  }
  hub.refuse = { status: 503, text: 'too many connections' };
  {
    const c = connect(url, { token: 'T' });
    const [i] = await next(c, 'connect_error');
    equal(i, { status: 503, reason: 'too many connections', fatal: false }, 'connect_error for 503');
  }
  hub.refuse = null;
  {
    // The refused clients above are closed: a fresh client's whole round trip later, no new attempts.
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
    console.log(`  ${i.reason}`);
  }

  step('URLs: http -> ws and /ws when there is no path');
  equal(connect('http://127.0.0.1:1', { token: 'a b', autoConnect: false }).url, 'ws://127.0.0.1:1/ws?token=a+b', 'http URL');
  equal(new (await import(CLIENT_URL)).HubClient('wss://h/x/ws', { autoConnect: false }).url, 'wss://h/x/ws', 'wss URL kept');

  hub.wss.close();
  hub.server.close();
}, 60000);
