/**
 * The `ringwire hub` client: named events over one WebSocket, with rooms and acknowledgements, in the
 * style of socket.io's client. An ES module with no dependencies; it runs in browsers and in Node.js 20+
 * (`node --experimental-websocket`, or pass `{WebSocket}`). The wire protocol (v1) is the hub's:
 * every message is one binary ringwire frame carrying one event.
 *
 * ```js
 * import { connect } from './client.js';
 * const hub = connect('http://127.0.0.1:8080', { token: 'T' }); // or connect() on the hub's own page
 * hub.on('connect', () => console.log('connected as', hub.id));
 * hub.on('connect_error', ({ status, reason, fatal }) => console.log('refused', status, reason));
 * hub.on('disconnect', ({ code, reason }) => console.log('gone', code, reason));
 * hub.on('error', (err) => console.warn(err));             // bad frames, the hub's complaints
 * hub.on('chat message', (msg) => console.log(msg.from, msg.text));
 * hub.on('question', (value, ack) => ack({ answer: 42 }));  // the hub asked for an acknowledgement
 * await hub.join('lobby');                                  // {ok: true}, or rejects with the refusal
 * hub.emit('chat message', { room: 'lobby', text: 'hi' });
 * const reply = await hub.emitWithAck('chat message', { room: 'lobby', text: 'hi' }, { timeout: 5000 });
 * hub.disconnect();
 * ```
 *
 * API
 * - `connect(url?, options?)` → a `HubClient`, already connecting. `new HubClient(url, options)` is the
 *   same with `autoConnect: true` by default.
 *   - `url`: the hub (`http://host:port`, `ws://host:port/ws`, ...). `http(s)` becomes `ws(s)`; a URL
 *     with no path gets `/ws`. Relative URLs resolve against the page; no URL at all means this page's
 *     hub (`/ws` of `location`).
 *   - `options.token`: sent as `?token=` (a browser's WebSocket cannot set an Authorization header).
 *   - `options.ackTimeout` (ms, default 10000): the default timeout of `emitWithAck`, `join`, `leave`.
 *   - `options.connectTimeout` (ms, default 20000): how long to wait for the hub's `ringwire:hello`.
 *   - `options.autoConnect` (default true), `options.WebSocket`, `options.fetch`: implementations to use
 *     instead of the global ones (tests).
 *   - `options.reconnection`: must be false or absent. Reconnection is not implemented yet: the client
 *     never retries on its own (see `reconnectHook`).
 * - `client.connect()`: opens the connection if it is not open (after a `disconnect` too, by hand).
 * - `client.disconnect()` (alias `close()`): closes with 1000; `disconnect` fires if it was connected,
 *   pending acknowledgements reject.
 * - `client.on(name, fn)`, `client.once(name, fn)`, `client.off(name?, fn?)`: listeners. `off(name)`
 *   removes every listener of `name`, `off()` every listener.
 * - `client.emit(name, value)`: sends event `name` with `value` as its JSON body (`undefined` = empty
 *   body). Names are 1..=255 bytes of UTF-8 and neither start with `ringwire:` nor are one of the local
 *   events below. Before the hub's hello, events are queued and sent once connected. Throws
 *   (`TypeError`, `RangeError`, `Error`) for a bad name, a value JSON can't encode, a message over the
 *   hub's `maxMessage`, or a client that is not connected or connecting.
 * - `client.emitWithAck(name, value, {timeout}?)` → Promise of the hub's reply. Rejects (never throws)
 *   with `err.code`: `'ETIMEDOUT'` when no reply arrived in time (`timeout: Infinity` waits for ever),
 *   `'EDISCONNECTED'` when the connection ends first, or the error `emit` would throw. Either way the
 *   pending entry is freed (`client.pendingAcks` counts them).
 * - `client.join(room, {timeout}?)`, `client.leave(room, {timeout}?)` → Promise of `{ok: true}`; rejects
 *   with `err.code === 'EREFUSED'` (and `err.reply`) when the hub answers `{ok: false, error}`, or as
 *   `emitWithAck` does. Room names are 1..=255 bytes of UTF-8.
 * - Read-only: `client.id` (the hub's connection id, from `ringwire:hello`; undefined when not
 *   connected), `client.connected`, `client.state` (`'idle' | 'connecting' | 'open' | 'connected' |
 *   'closed'`), `client.rooms` (array: the connection's own room plus those joined), `client.hello`
 *   (the hello body: `{id, pingInterval, pingTimeout, maxMessage}`), `client.pendingAcks`,
 *   `client.connectAttempts` (WebSockets opened so far), `client.url`.
 *
 * Local events (never sent or received over the wire):
 * - `connect` (no argument): the hub's `ringwire:hello` arrived; `client.id` is set.
 * - `disconnect` `{code, reason, wasClean, local}`: the connection ended after `connect`. `local` is
 *   true when this side ended it (`disconnect()`: 1000; no ping from the hub for pingInterval +
 *   pingTimeout: 4000 "ping timeout"). The hub's codes: 1001 shutting down, 1002 malformed frame,
 *   1003 text message, 1008 policy, 1009 message too big, 1011 internal, 4000 ping timeout,
 *   4001 send queue full, 4002 disconnected by the server.
 * - `connect_error` `{status, reason, fatal, code?}`: the connection never got to `connect`. When the
 *   WebSocket closes before opening, the client asks `GET /ws?token=..` over plain HTTP why: `status` is
 *   that answer's (401 wrong or missing token, 403 origin not allowed, 503 hub full; 0 when the hub did
 *   not answer or a browser hid the answer) and `reason` its text. `fatal` is true for 401 and 403: such
 *   a refusal is final and must never be retried. Status 101 means the WebSocket opened but closed before
 *   the hello (`code` is its close code).
 * - `error` `Error`: something that arrived was not acceptable, reported instead of thrown; the
 *   connection stays open. `err.name` is `FrameError` (bytes that are not a valid frame, a text message,
 *   a body that is not JSON; `err.code === 'EBADFRAME'`), `ProtocolError` (a valid frame the protocol
 *   does not allow here; `'EPROTO'`) or `HubError` (the hub's `ringwire:error`; `err.code` is the
 *   hub's code). With no `error` listener they go to `console.error`.
 *
 * An event the hub sends in acknowledgement form reaches its listeners with one more argument, `ack`:
 * `ack(reply)` sends the reply (once; later calls do nothing). A listener that throws does not stop the
 * others; the exception is rethrown on its own (an uncaught exception in Node.js, the console in a page).
 *
 * Also exported: `encodeFrame(name, body)` and `decodeFrame(bytes)` (the frame codec) and the error
 * classes `FrameError`, `ProtocolError`, `HubError`.
 *
 * @module ringwire-hub-client
 */

const HEADER_BYTES = 8;
const KIND_DATA = 1;
const RESERVED_PREFIX = 'ringwire:';
const ACK_PREFIX = 'ringwire:ack:';
const ACK_NAME = /^ringwire:ack:([0-9a-f]{16})\.([0-9]+):(.+)$/s;
const MAX_NAME_BYTES = 255;
const MAX_ROOM_BYTES = 255;
const DEFAULT_MAX_MESSAGE = 1048576;
const DEFAULT_ACK_TIMEOUT = 10000;
const DEFAULT_CONNECT_TIMEOUT = 20000;
/** Events this client raises itself; the wire may not carry them. */
const LOCAL_EVENTS = new Set(['connect', 'connect_error', 'disconnect', 'error']);

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Bytes that are not a valid ringwire message (or not JSON where JSON is due). */
export class FrameError extends Error {
  constructor(message) {
    super(message);
    this.name = 'FrameError';
    this.code = 'EBADFRAME';
  }
}

/** A valid frame that the protocol does not allow at this point. */
export class ProtocolError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ProtocolError';
    this.code = 'EPROTO';
  }
}

/** The hub's `ringwire:error`: a non-fatal complaint about something this client sent. */
export class HubError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'HubError';
    this.code = code;
  }
}

function withCode(err, code, extra) {
  err.code = code;
  return Object.assign(err, extra);
}

/**
 * One ringwire event frame: the 8-byte header (len u32 LE, kind 1, flags 0, name length u16 LE), the
 * name's UTF-8 bytes, then `body` (a string, sent as UTF-8; '' for none).
 * @param {string} name
 * @param {string} [body]
 * @returns {Uint8Array}
 */
export function encodeFrame(name, body = '') {
  const n = utf8.encode(name);
  const b = utf8.encode(body);
  if (n.length < 1 || n.length > 0xffff) {
    throw new RangeError(`an event name is 1..=65535 bytes of UTF-8, not ${n.length}`);
  }
  const len = n.length + b.length;
  const out = new Uint8Array(HEADER_BYTES + len);
  const view = new DataView(out.buffer);
  view.setUint32(0, len, true);
  out[4] = KIND_DATA;
  out[5] = 0;
  view.setUint16(6, n.length, true);
  out.set(n, HEADER_BYTES);
  out.set(b, HEADER_BYTES + n.length);
  return out;
}

/**
 * Parses one WebSocket message. Throws `FrameError` when it is not exactly one valid event frame or its
 * body is not JSON.
 * @param {ArrayBuffer | ArrayBufferView} data
 * @returns {{name: string, value: any}} `value` is undefined for an empty body.
 */
export function decodeFrame(data) {
  let bytes;
  if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
  else if (ArrayBuffer.isView(data)) bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  else throw new FrameError(`a ${typeof data} message where a binary one was due`);
  if (bytes.length < HEADER_BYTES) {
    throw new FrameError(`message of ${bytes.length} bytes is shorter than the 8-byte header`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const len = view.getUint32(0, true);
  if (len !== bytes.length - HEADER_BYTES) {
    throw new FrameError(`header says ${len} bytes follow it, the message has ${bytes.length - HEADER_BYTES}`);
  }
  if (bytes[4] !== KIND_DATA) throw new FrameError(`frame kind ${bytes[4]}, not 1`);
  if (bytes[5] !== 0) throw new FrameError(`frame flags ${bytes[5]}, not 0`);
  const n = view.getUint16(6, true);
  if (n === 0) throw new FrameError('frame carries no event name (name length 0)');
  if (n > len) throw new FrameError(`name length ${n} exceeds the frame's ${len} bytes`);
  let name;
  let body;
  try {
    name = strictUtf8.decode(bytes.subarray(HEADER_BYTES, HEADER_BYTES + n));
  } catch {
    throw new FrameError('event name is not UTF-8');
  }
  try {
    body = strictUtf8.decode(bytes.subarray(HEADER_BYTES + n));
  } catch {
    throw new FrameError(`body of "${name}" is not UTF-8`);
  }
  if (body.length === 0) return { name, value: undefined };
  try {
    return { name, value: JSON.parse(body) };
  } catch (e) {
    throw new FrameError(`body of "${name}" is not JSON: ${e.message}`);
  }
}

function encodeBody(value) {
  if (value === undefined) return '';
  const s = JSON.stringify(value);
  if (s === undefined) throw new TypeError(`a ${typeof value} has no JSON form`);
  return s;
}

function checkEventName(name) {
  if (typeof name !== 'string' || name.length === 0) throw new TypeError('an event name is a non-empty string');
  if (name.startsWith(RESERVED_PREFIX)) throw new TypeError(`"${name}": names starting with ringwire: are reserved`);
  if (LOCAL_EVENTS.has(name)) throw new TypeError(`"${name}" is a local event; it cannot be sent`);
  const bytes = utf8.encode(name).length;
  if (bytes > MAX_NAME_BYTES) throw new RangeError(`an event name is at most ${MAX_NAME_BYTES} bytes, not ${bytes}`);
}

function checkRoom(room) {
  if (typeof room !== 'string') throw new TypeError('a room name is a string');
  const bytes = utf8.encode(room).length;
  if (bytes < 1 || bytes > MAX_ROOM_BYTES) throw new RangeError(`a room name is 1..=${MAX_ROOM_BYTES} bytes, not ${bytes}`);
}

function randomToken() {
  const b = new Uint8Array(8);
  if (globalThis.crypto?.getRandomValues) globalThis.crypto.getRandomValues(b);
  else for (let i = 0; i < b.length; i++) b[i] = Math.floor(Math.random() * 256);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function positive(value, what) {
  if (typeof value !== 'number' || !(value > 0)) throw new RangeError(`${what} must be a positive number of ms`);
  return value;
}

/** The WebSocket URL, and the plain HTTP URL asked when its handshake fails. */
function hubUrls(url, token) {
  const base = globalThis.location?.href;
  if (url === undefined && base === undefined) throw new TypeError('connect() needs a URL outside a page');
  const u = new URL(url === undefined ? '/ws' : String(url), base);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  else if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new TypeError(`not a hub URL: ${u.href}`);
  if (u.pathname === '' || u.pathname === '/') u.pathname = '/ws';
  if (token !== undefined && token !== null) u.searchParams.set('token', String(token));
  u.hash = '';
  const probe = new URL(u.href);
  probe.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
  return { ws: u.href, probe: probe.href };
}

function rethrowLater(err) {
  setTimeout(() => {
    throw err;
  }, 0);
}

export class HubClient {
  #urls;
  #opts;
  #listeners = new Map();
  #state = 'idle';
  #ws = null;
  #generation = 0;
  #hello = undefined;
  #rooms = new Set();
  #ackToken = '';
  #ackSeq = 0;
  /** ack name -> {resolve, reject, timer} */
  #pending = new Map();
  /** frames emitted before the hello */
  #queue = [];
  #connectTimer = null;
  #livenessTimer = null;
  #attempts = 0;

  /**
   * @param {string | URL} [url]
   * @param {{token?: string, ackTimeout?: number, connectTimeout?: number, autoConnect?: boolean,
   *          reconnection?: false, WebSocket?: any, fetch?: any}} [options]
   */
  constructor(url, options = {}) {
    if (options.reconnection) throw new Error('reconnection is not implemented yet: leave `reconnection` out');
    this.#opts = {
      ackTimeout: positive(options.ackTimeout ?? DEFAULT_ACK_TIMEOUT, 'ackTimeout'),
      connectTimeout: positive(options.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT, 'connectTimeout'),
      WebSocket: options.WebSocket,
      fetch: options.fetch,
    };
    this.#urls = hubUrls(url, options.token);
    if (options.autoConnect ?? true) this.connect();
  }

  /** The WebSocket URL (with the token). */
  get url() {
    return this.#urls.ws;
  }
  get id() {
    return this.#state === 'connected' ? this.#hello.id : undefined;
  }
  get connected() {
    return this.#state === 'connected';
  }
  get state() {
    return this.#state;
  }
  get hello() {
    return this.#hello;
  }
  get rooms() {
    return [...this.#rooms];
  }
  get pendingAcks() {
    return this.#pending.size;
  }
  get connectAttempts() {
    return this.#attempts;
  }

  // ---- listeners ---------------------------------------------------------------------------------

  on(name, fn) {
    if (typeof fn !== 'function') throw new TypeError('a listener is a function');
    let list = this.#listeners.get(name);
    if (!list) this.#listeners.set(name, (list = []));
    list.push(fn);
    return this;
  }

  once(name, fn) {
    if (typeof fn !== 'function') throw new TypeError('a listener is a function');
    const wrapper = (...args) => {
      this.off(name, wrapper);
      return fn.apply(this, args);
    };
    wrapper.listener = fn;
    return this.on(name, wrapper);
  }

  off(name, fn) {
    if (name === undefined) {
      this.#listeners.clear();
      return this;
    }
    const list = this.#listeners.get(name);
    if (!list) return this;
    if (fn === undefined) {
      this.#listeners.delete(name);
      return this;
    }
    for (let i = list.length - 1; i >= 0; i--) {
      if (list[i] === fn || list[i].listener === fn) {
        list.splice(i, 1);
        break;
      }
    }
    if (list.length === 0) this.#listeners.delete(name);
    return this;
  }

  /** Calls `name`'s listeners with `args`; a throwing listener does not stop the rest. */
  #dispatch(name, args) {
    const list = this.#listeners.get(name);
    if (!list || list.length === 0) return false;
    for (const fn of [...list]) {
      try {
        fn.apply(this, args);
      } catch (e) {
        rethrowLater(e);
      }
    }
    return true;
  }

  #report(err) {
    if (!this.#dispatch('error', [err])) console.error('ringwire hub client:', err);
  }

  // ---- sending -----------------------------------------------------------------------------------

  emit(name, value) {
    checkEventName(name);
    this.#send(name, encodeBody(value));
    return this;
  }

  emitWithAck(name, value, options) {
    try {
      checkEventName(name);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#request(name, value, options);
  }

  async join(room, options) {
    checkRoom(room);
    const reply = await this.#request('ringwire:join', room, options);
    if (reply?.ok !== true) throw this.#refusal('join', room, reply);
    this.#rooms.add(room);
    return reply;
  }

  async leave(room, options) {
    checkRoom(room);
    const reply = await this.#request('ringwire:leave', room, options);
    if (reply?.ok !== true) throw this.#refusal('leave', room, reply);
    this.#rooms.delete(room);
    return reply;
  }

  #refusal(what, room, reply) {
    const why = typeof reply?.error === 'string' ? reply.error : `unexpected reply ${JSON.stringify(reply)}`;
    return withCode(new Error(`${what} "${room}" refused: ${why}`), 'EREFUSED', { reply });
  }

  #request(event, value, options = {}) {
    return new Promise((resolve, reject) => {
      const timeout = options.timeout ?? this.#opts.ackTimeout;
      positive(timeout, 'timeout');
      const name = `${ACK_PREFIX}${this.#ackToken}.${this.#ackSeq++}:${event}`;
      this.#send(name, encodeBody(value)); // a throw here rejects: nothing is pending yet
      const entry = { resolve, reject, timer: null };
      if (Number.isFinite(timeout)) {
        entry.timer = setTimeout(() => {
          this.#pending.delete(name);
          reject(withCode(new Error(`no acknowledgement of "${event}" within ${timeout} ms`), 'ETIMEDOUT'));
        }, timeout);
      }
      this.#pending.set(name, entry);
    });
  }

  #send(name, body) {
    if (this.#state === 'idle' || this.#state === 'closed') {
      throw withCode(new Error(`not connected: "${name}" was not sent`), 'ENOTCONN');
    }
    const frame = encodeFrame(name, body);
    const max = this.#hello?.maxMessage ?? DEFAULT_MAX_MESSAGE;
    if (frame.length > max) {
      throw new RangeError(`message of ${frame.length} bytes exceeds the hub's limit of ${max}`);
    }
    if (this.#state === 'connected') this.#ws.send(frame);
    else this.#queue.push(frame);
  }

  // ---- connection --------------------------------------------------------------------------------

  connect() {
    if (this.#state !== 'idle' && this.#state !== 'closed') return this;
    const generation = ++this.#generation;
    this.#state = 'connecting';
    this.#hello = undefined;
    this.#ackToken = randomToken();
    this.#ackSeq = 0;
    const WS = this.#opts.WebSocket ?? globalThis.WebSocket;
    let ws;
    try {
      if (typeof WS !== 'function') {
        throw new Error('no WebSocket implementation (Node.js 20: run with --experimental-websocket, or pass {WebSocket})');
      }
      this.#attempts++;
      ws = new WS(this.#urls.ws);
    } catch (e) {
      // Reported after this call returns, so that listeners added right after connect() hear it.
      queueMicrotask(() => {
        if (generation === this.#generation) this.#finish('connect_error', { status: 0, reason: e.message, fatal: false });
      });
      return this;
    }
    ws.binaryType = 'arraybuffer';
    this.#ws = ws;
    ws.onopen = () => {
      if (ws === this.#ws && this.#state === 'connecting') this.#state = 'open';
    };
    ws.onmessage = (ev) => {
      if (ws === this.#ws) this.#onMessage(ev.data);
    };
    ws.onclose = (ev) => {
      if (ws === this.#ws) this.#onClose(ev, generation);
    };
    ws.onerror = () => {
      // After an error a close event follows, and it says what there is to know; except that Node.js 20's
      // WebSocket, refused during the handshake, reports the error and never closes: fail here then.
      if (ws === this.#ws && this.#state === 'connecting') {
        this.#abort(1000, 'handshake failed');
        this.#probe(generation, 1006);
      }
    };
    this.#connectTimer = setTimeout(() => {
      this.#abort(1000, 'connect timeout');
      this.#finish('connect_error', {
        status: 0,
        reason: `no ringwire:hello within ${this.#opts.connectTimeout} ms`,
        fatal: false,
      });
    }, this.#opts.connectTimeout);
    return this;
  }

  disconnect() {
    const was = this.#state;
    if (was === 'idle' || was === 'closed') return this;
    this.#abort(1000, 'client disconnect');
    if (was === 'connected') {
      this.#finish('disconnect', { code: 1000, reason: 'client disconnect', wasClean: true, local: true });
    } else {
      this.#finish(null, null); // given up before connecting: nothing to report
    }
    return this;
  }

  close() {
    return this.disconnect();
  }

  /**
   * Reconnection hook. Called once after every `disconnect` and `connect_error`, with the event's name
   * and its info (`info.fatal`: a 401/403 refusal that must never be retried). Reconnection with
   * backoff is a later issue; it goes here. For now the client never reconnects on its own.
   * @param {'disconnect' | 'connect_error'} _event
   * @param {object} _info
   */
  reconnectHook(_event, _info) {}

  /** Closes the WebSocket (if any) without waiting for its close event, and stops the timers. */
  #abort(code, reason) {
    const ws = this.#ws;
    this.#detach();
    if (ws) {
      try {
        ws.close(code, reason);
      } catch {
        // already closing
      }
    }
  }

  #detach() {
    const ws = this.#ws;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.onerror = () => {};
    }
    this.#ws = null;
    clearTimeout(this.#connectTimer);
    clearTimeout(this.#livenessTimer);
    this.#connectTimer = this.#livenessTimer = null;
  }

  /** The end of a connection or of an attempt: every pending request rejects, then `event` fires. */
  #finish(event, info) {
    this.#detach();
    this.#generation++;
    this.#state = 'closed';
    this.#rooms.clear();
    this.#queue = [];
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    const why = info ? `${info.code ?? info.status} ${info.reason}`.trim() : 'client disconnect';
    for (const p of pending) {
      clearTimeout(p.timer);
      p.reject(withCode(new Error(`disconnected before the acknowledgement (${why})`), 'EDISCONNECTED'));
    }
    if (event) {
      this.#dispatch(event, [info]);
      this.reconnectHook(event, info);
    }
  }

  #onClose(ev, generation) {
    const code = ev.code;
    const reason = ev.reason ?? '';
    if (this.#state === 'connected') {
      this.#finish('disconnect', { code, reason, wasClean: !!ev.wasClean, local: false });
    } else if (this.#state === 'open') {
      this.#finish('connect_error', {
        status: 101,
        code,
        reason: reason || `the connection closed before ringwire:hello (code ${code})`,
        fatal: false,
      });
    } else {
      // Closed before opening: the handshake was refused or the hub is unreachable. Ask over HTTP why.
      this.#detach();
      this.#probe(generation, code);
    }
  }

  async #probe(generation, code) {
    const fetchImpl = this.#opts.fetch ?? globalThis.fetch;
    let status = 0;
    let text = '';
    try {
      if (typeof fetchImpl !== 'function') throw new Error('no fetch to ask why');
      const signal = AbortSignal.timeout?.(this.#opts.connectTimeout);
      const res = await fetchImpl(this.#urls.probe, { cache: 'no-store', signal });
      status = res.status;
      text = (await res.text()).trim().slice(0, 300) || res.statusText || '';
    } catch (e) {
      text = `the hub did not answer over HTTP (${e.message})`;
    }
    if (generation !== this.#generation || this.#state !== 'connecting') return; // given up meanwhile
    const fatal = status === 401 || status === 403;
    let reason = text;
    if (status !== 0 && !fatal && status !== 503) {
      reason = `WebSocket handshake failed (close code ${code}); GET /ws answers ${status}: ${text}`;
    } else if (status === 0) {
      reason = `WebSocket handshake failed (close code ${code}); ${text || 'no answer over HTTP'}`;
    }
    this.#finish('connect_error', { status, reason, fatal });
  }

  #startLiveness() {
    clearTimeout(this.#livenessTimer);
    const { pingInterval, pingTimeout } = this.#hello;
    this.#livenessTimer = setTimeout(() => {
      this.#abort(4000, 'ping timeout');
      this.#finish('disconnect', { code: 4000, reason: 'ping timeout', wasClean: false, local: true });
    }, pingInterval + pingTimeout);
  }

  // ---- receiving ---------------------------------------------------------------------------------

  #onMessage(data) {
    if (typeof data === 'string') {
      this.#report(new FrameError(`a text message (${data.length} characters); the hub sends binary ones`));
      return;
    }
    let frame;
    try {
      frame = decodeFrame(data);
    } catch (e) {
      this.#report(e instanceof FrameError ? e : new FrameError(String(e?.message ?? e)));
      return;
    }
    const { name, value } = frame;
    if (name === 'ringwire:hello') {
      this.#onHello(value);
      return;
    }
    if (this.#state !== 'connected') {
      this.#report(new ProtocolError(`"${name}" arrived before ringwire:hello; dropped`));
      return;
    }
    if (name === 'ringwire:ping') {
      this.#startLiveness();
      this.#ws.send(encodeFrame('ringwire:pong'));
    } else if (name === 'ringwire:error') {
      const code = typeof value?.code === 'string' ? value.code : 'unknown';
      const message = typeof value?.message === 'string' ? value.message : JSON.stringify(value);
      this.#report(new HubError(code, message));
    } else if (name.startsWith(ACK_PREFIX)) {
      this.#onAck(name, value);
    } else if (name.startsWith(RESERVED_PREFIX)) {
      this.#report(new ProtocolError(`unknown reserved event "${name}"; dropped`));
    } else if (LOCAL_EVENTS.has(name)) {
      this.#report(new ProtocolError(`the hub sent "${name}", a local event name; dropped`));
    } else {
      this.#dispatch(name, [value]);
    }
  }

  #onHello(value) {
    if (this.#state === 'connected') {
      this.#report(new ProtocolError('a second ringwire:hello; ignored'));
      return;
    }
    const id = value?.id;
    if (typeof id !== 'string' || id.length === 0) {
      this.#report(new ProtocolError(`ringwire:hello without an id: ${JSON.stringify(value)}`));
      return;
    }
    const num = (key, fallback) => {
      const v = value[key];
      if (v === undefined) return fallback;
      if (!Number.isSafeInteger(v) || v <= 0) {
        this.#report(new ProtocolError(`ringwire:hello: ${key} ${JSON.stringify(v)} is not a positive integer`));
        return fallback;
      }
      return v;
    };
    this.#hello = Object.freeze({
      id,
      pingInterval: num('pingInterval', 25000),
      pingTimeout: num('pingTimeout', 20000),
      maxMessage: num('maxMessage', DEFAULT_MAX_MESSAGE),
    });
    clearTimeout(this.#connectTimer);
    this.#connectTimer = null;
    this.#state = 'connected';
    this.#rooms = new Set([id]);
    this.#startLiveness();
    const queued = this.#queue;
    this.#queue = [];
    for (const frame of queued) {
      if (frame.length > this.#hello.maxMessage) {
        this.#report(new RangeError(`a queued message of ${frame.length} bytes exceeds the hub's limit of ${this.#hello.maxMessage}; dropped`));
      } else {
        this.#ws.send(frame);
      }
    }
    this.#dispatch('connect', []);
  }

  #onAck(name, value) {
    const m = ACK_NAME.exec(name);
    if (!m) {
      this.#report(new ProtocolError(`malformed acknowledgement name "${name}"; dropped`));
      return;
    }
    const [, token, , event] = m;
    if (token === this.#ackToken) {
      // A reply to one of ours; one for an unknown or expired id is dropped.
      const entry = this.#pending.get(name);
      if (!entry) return;
      this.#pending.delete(name);
      clearTimeout(entry.timer);
      entry.resolve(value);
      return;
    }
    // The hub asks: dispatch with an ack callback that replies under the same name, once.
    if (event.startsWith(RESERVED_PREFIX) || LOCAL_EVENTS.has(event)) {
      this.#report(new ProtocolError(`acknowledgement request for "${event}", which the hub may not send; dropped`));
      return;
    }
    const ws = this.#ws;
    let answered = false;
    const ack = (reply) => {
      if (answered) return;
      const frame = encodeFrame(name, encodeBody(reply)); // a value JSON can't encode throws here
      answered = true;
      if (ws === this.#ws && this.#state === 'connected') ws.send(frame); // else that connection is gone
    };
    this.#dispatch(event, [value, ack]);
  }
}

/**
 * Connects to a hub: `new HubClient(url, options)`, already connecting.
 * @param {string | URL} [url]
 * @param {object} [options]
 * @returns {HubClient}
 */
export function connect(url, options = {}) {
  return new HubClient(url, { ...options, autoConnect: true });
}
