/**
 * The `ringwire hub` client: named events over one WebSocket (or HTTP long-polling where WebSockets do
 * not get through), with rooms and acknowledgements, in the style of socket.io's client, reconnection
 * included. An ES module with no dependencies; it runs in browsers and in Node.js 20+ (`node
 * --experimental-websocket`, or pass `{WebSocket}`). The wire protocol (v1) is the hub's: every message
 * is one binary ringwire frame carrying one event (over polling, several frames to an HTTP body).
 *
 * ```js
 * import { connect } from './client.js';
 * const hub = connect('http://127.0.0.1:8080', { token: 'T' }); // or connect() on the hub's own page
 * hub.on('connect', ({ recovered }) => console.log('connected as', hub.id, recovered ? '(recovered)' : ''));
 * hub.on('connect_error', ({ status, reason, fatal }) => console.log('refused', status, reason));
 * hub.on('disconnect', ({ code, reason }) => console.log('gone', code, reason));
 * hub.on('reconnect_attempt', ({ attempt, delay }) => console.log(`attempt ${attempt} in ${delay} ms`));
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
 *   - `options.connectTimeout` (ms, default 20000): how long one attempt waits for the hub's
 *     `ringwire:hello`.
 *   - Reconnection, socket.io's options and defaults: `reconnection` (true), `reconnectionDelay` (1000
 *     ms), `reconnectionDelayMax` (5000 ms), `randomizationFactor` (0.5), `reconnectionAttempts`
 *     (Infinity). The delay before attempt k + 1 (k = 0, 1, ...) is `reconnectDelay(k, random(), options)`
 *     (below); `options.random` (default `Math.random`) is the source of `r`, values in [0, 1).
 *   - `options.sendBuffer` (default 1000): events kept while not connected, at most.
 *   - `options.autoConnect` (default true), `options.WebSocket`, `options.fetch`: implementations to use
 *     instead of the global ones (tests; `fetch` also carries long-polling).
 *   - `options.transports` (socket.io's name; default `['websocket', 'polling']`): the first one listed
 *     is tried first. `'websocket'` first: a WebSocket to `/ws`; when it cannot be built (no
 *     implementation, the constructor throws) or fails before the hub's hello (it closes or errors before
 *     opening and `GET /ws` does not answer 401, 403 or 503; or it opens and closes before the hello),
 *     the same attempt goes on with long-polling, if listed. `'polling'` first (or alone): long-polling
 *     from the start; `['polling']` never builds a WebSocket. Long-polling: `GET /poll?token=..[&sid=..
 *     &offset=..]` opens (its body is the hello, with the polling session's `pid`), then one `GET
 *     /poll?pid=..` at a time brings frames and one `POST /poll?pid=..` at a time carries the frames sent
 *     meanwhile (batched, in order). The same events, acks, rooms, heartbeats (pongs go in posts),
 *     offsets and reconnection rules as a WebSocket: a `ringwire:close` frame `{code, reason}` in a poll
 *     is the close with that code, a 410 (session gone) or a failed post is 1006. A poll whose HTTP
 *     connection breaks is made again if the hub still has the session (an empty post says so).
 *     `disconnect()` on polling posts a `ringwire:close` frame (HTTP has no close frame), and the hub
 *     ends the connection and its session as for a WebSocket close 1000.
 *     The HTTP requests use the platform's connection pool: after a network fault that left a pooled
 *     keep-alive connection silently dead, a request sent on it is only given up with the attempt
 *     (`connectTimeout`) or the heartbeat (`pingInterval + pingTimeout`).
 *   - `options.upgrade` (socket.io's name; default true): once connected by polling (and when
 *     `transports` lists `'websocket'`), the client opens a WebSocket to `/ws?token=..&pid=..`; when it
 *     opens, no more posts are sent (the one in flight is answered first, and frames a post could not
 *     deliver because the hub had already moved the session are sent again), the poll in flight returns
 *     and its frames are handled, then what the WebSocket brought, and sends go on the WebSocket: nothing
 *     lost, duplicated or reordered. A WebSocket that fails before that leaves the connection on polling,
 *     silently (a 410 then means the hub had moved the session: 1006, and the client reconnects).
 * - `client.connect()`: opens the connection if it is not open (after a `disconnect` too, by hand);
 *   while waiting to reconnect, makes the attempt now.
 * - `client.disconnect()` (alias `close()`): closes with 1000 and stops reconnecting (the hub ends the
 *   session: it is not recoverable); `disconnect` fires if it was connected; pending acknowledgements
 *   and buffered events are dropped (their promises reject).
 * - `client.on(name, fn)`, `client.once(name, fn)`, `client.off(name?, fn?)`: listeners, kept across
 *   reconnections (each event reaches each listener once). `off(name)` removes every listener of `name`,
 *   `off()` every listener.
 * - `client.emit(name, value)`: sends event `name` with `value` as its JSON body (`undefined` = empty
 *   body). Names are 1..=255 bytes of UTF-8 and neither start with `ringwire:` nor are one of the local
 *   events below. While not connected (before the first hello, or disconnected and about to reconnect)
 *   events wait in a buffer of at most `sendBuffer` and go out in order after the next hello (after the
 *   re-joins, when the session was not recovered). Throws (`TypeError`, `RangeError`, `Error`) for a bad
 *   name, a value JSON can't encode, a message over the hub's `maxMessage`; `HubError` with `code
 *   'EBUFFERFULL'` when the buffer is full; `err.code === 'ENOTCONN'` when the client is closed for good
 *   (or not started).
 * - `client.emitWithAck(name, value, {timeout}?)` → Promise of the hub's reply. Rejects (never throws)
 *   with `err.code`: `'ETIMEDOUT'` when no reply arrived in time (the timeout runs while the request
 *   waits in the buffer too; a request that times out there is never sent; `timeout: Infinity` waits for
 *   ever), `'EDISCONNECTED'` when the connection it was sent on ends first (a reply cannot follow on
 *   another) or the client closes for good, or the error `emit` would throw. Either way the pending entry
 *   is freed (`client.pendingAcks` counts them).
 * - `client.join(room, {timeout}?)`, `client.leave(room, {timeout}?)` → Promise of `{ok: true}`; rejects
 *   with `err.code === 'EREFUSED'` (and `err.reply`) when the hub answers `{ok: false, error}`, or as
 *   `emitWithAck` does. Room names are 1..=255 bytes of UTF-8. Joined rooms are joined again after a
 *   reconnection that did not recover the session (a refused re-join is reported via `error`).
 * - Read-only: `client.id` (the hub's connection id, from `ringwire:hello`; undefined when not
 *   connected), `client.connected`, `client.state` (`'idle' | 'connecting' | 'open' | 'connected' |
 *   'reconnecting' | 'closed'`; `'reconnecting'`: waiting out the delay before the next attempt, which
 *   is then `'connecting'` again), `client.rooms` (array: the connection's own room, when connected, plus
 *   those joined), `client.hello` (the last hello: `{id, pingInterval, pingTimeout, maxMessage,
 *   recovered}`, plus `sid` and `offset` from a hub with recovery; over polling also `pid`),
 *   `client.pendingAcks`, `client.buffered` (events waiting in the buffer), `client.connectAttempts`
 *   (WebSockets and polling sessions opened so far, upgrades not counted), `client.url` (the WebSocket
 *   URL), `client.transport` (`'websocket' | 'polling'`: what carries the connection or the attempt;
 *   undefined when idle or closed).
 *
 * Reconnection. After a connection or an attempt ends by itself the client tries again after the
 * backoff delay, until it connects or has made `reconnectionAttempts` attempts. Never after: its own
 * `disconnect()`, a 401/403 refusal (`fatal`), close code 4002 (disconnected by the server) or 4003
 * (replaced by a newer connection of the same session). With a hub that runs with recovery, the hello
 * carries a session id and the client tracks the offsets of the events it receives (the hub sends them
 * as `ringwire:o:<offset>:<event>`; listeners get `<event>`); it reconnects with `?sid=..&offset=..`, and
 * if the hub still has the session the hello says `recovered: true`: same id, same rooms, and the events
 * missed meanwhile arrive right after it, in order, once. Otherwise the session is new: a new id, and
 * the client joins its rooms again.
 *
 * Local events (never sent or received over the wire):
 * - `connect` `{recovered}`: the hub's `ringwire:hello` arrived (after every (re)connection); `client.id`
 *   is set. `recovered`: this connection resumed the previous one's session.
 * - `disconnect` `{code, reason, wasClean, local}`: the connection ended after `connect`. `local` is
 *   true when this side ended it (`disconnect()`: 1000; no ping from the hub for pingInterval +
 *   pingTimeout: 4000 "ping timeout"). The hub's codes: 1001 shutting down, 1002 malformed frame,
 *   1003 text message, 1008 policy, 1009 message too big, 1011 internal, 4000 ping timeout,
 *   4001 send queue full, 4002 disconnected by the server, 4003 replaced; 1006: the connection dropped.
 *   When the client will reconnect, `client.state` is already `'reconnecting'` in this listener.
 * - `connect_error` `{status, reason, fatal, code?}`: an attempt never got to `connect`. When the
 *   WebSocket closes before opening, the client asks `GET /ws?token=..` over plain HTTP why: `status` is
 *   that answer's (401 wrong or missing token, 403 origin not allowed, 503 hub full; 0 when the hub did
 *   not answer or a browser hid the answer) and `reason` its text. `fatal` is true for 401 and 403 (and
 *   when there is no usable WebSocket implementation or URL): such a refusal is final and never retried.
 *   Status 101 means the WebSocket opened but closed before the hello (`code` is its close code). Over
 *   long-polling (and after a WebSocket that fell back to it) `status` is the answer to `GET /poll`'s
 *   opening request (401, 403, 503, ...; 0 when the hub did not answer).
 * - `reconnect_attempt` `{attempt, delay}`: attempt number `attempt` (1, 2, ...) is scheduled, `delay` ms
 *   from now.
 * - `reconnect` `{attempt, recovered}`: attempt `attempt` connected (fires just before its `connect`).
 * - `upgrade` `{transport: 'websocket'}`: a connection made by long-polling now runs on a WebSocket
 *   (`client.transport` says so already); not a new connection: no `connect`, same id, rooms, acks.
 * - `reconnect_failed` `{attempts}`: `reconnectionAttempts` attempts failed; the client is closed (a
 *   later `connect()` starts over, resuming the session if the hub still has it).
 * - `error` `Error`: something that arrived was not acceptable, reported instead of thrown; the
 *   connection stays open. `err.name` is `FrameError` (bytes that are not a valid frame, a text message,
 *   a body that is not JSON; `err.code === 'EBADFRAME'`), `ProtocolError` (a valid frame the protocol
 *   does not allow here; `'EPROTO'`) or `HubError` (the hub's `ringwire:error`; `err.code` is the
 *   hub's code). With no `error` listener they go to `console.error`.
 *
 * An event the hub sends in acknowledgement form reaches its listeners with one more argument, `ack`:
 * `ack(reply)` sends the reply (once; later calls do nothing; after the connection it came on ended,
 * nothing). A listener that throws does not stop the others; the exception is rethrown on its own (an
 * uncaught exception in Node.js, the console in a page).
 *
 * Also exported: `encodeFrame(name, body)` and `decodeFrame(bytes)` (the frame codec),
 * `reconnectDelay(k, r, options?)` (the backoff: `ms = reconnectionDelay * 2^k`; `deviation =
 * floor(r * randomizationFactor * ms)`; down by it when `floor(r * 10)` is even, up when odd; at most
 * `reconnectionDelayMax`) and the error classes `FrameError`, `ProtocolError`, `HubError`.
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
const OFFSET_PREFIX = 'ringwire:o:';
const OFFSET_NAME = /^ringwire:o:([0-9]{1,20}):(.+)$/s;
/** socket.io's reconnection defaults. */
const RECONNECTION = Object.freeze({
  reconnectionDelay: 1000,
  reconnectionDelayMax: 5000,
  randomizationFactor: 0.5,
  reconnectionAttempts: Infinity,
});
const DEFAULT_SEND_BUFFER = 1000;
/** Close codes after which the client never reconnects: kicked by the server, replaced. */
const FINAL_CODES = new Set([4002, 4003]);
/** Events this client raises itself; the wire may not carry them. */
const LOCAL_EVENTS = new Set([
  'connect',
  'connect_error',
  'disconnect',
  'error',
  'reconnect',
  'reconnect_attempt',
  'reconnect_failed',
  'upgrade',
]);

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

/**
 * The hub's `ringwire:error`: a non-fatal complaint about something this client sent (`code` is the
 * hub's); also thrown by `emit` with `code 'EBUFFERFULL'` when the send buffer is full.
 */
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

function atLeast0(value, what) {
  if (typeof value !== 'number' || !(value >= 0)) throw new RangeError(`${what} must be a number >= 0`);
  return value;
}

/**
 * socket.io's reconnection backoff: the delay in ms before attempt `k + 1` (k = 0 for the first),
 * given a random draw `r` in [0, 1). `ms = reconnectionDelay * 2^k`; `deviation = floor(r *
 * randomizationFactor * ms)`; `ms - deviation` when `floor(r * 10)` is even, `ms + deviation` when odd;
 * at most `reconnectionDelayMax`; a whole number of ms.
 * @param {number} k
 * @param {number} r
 * @param {{reconnectionDelay?: number, reconnectionDelayMax?: number, randomizationFactor?: number}} [options]
 * @returns {number}
 */
export function reconnectDelay(k, r, options = {}) {
  const delay = options.reconnectionDelay ?? RECONNECTION.reconnectionDelay;
  const max = options.reconnectionDelayMax ?? RECONNECTION.reconnectionDelayMax;
  const factor = options.randomizationFactor ?? RECONNECTION.randomizationFactor;
  // 2^k is capped (socket.io's overflows to Infinity, then NaN, after about a thousand attempts).
  let ms = delay * 2 ** Math.min(Math.max(0, k), 60);
  if (factor > 0) {
    const deviation = Math.floor(r * factor * ms);
    ms = (Math.floor(r * 10) & 1) === 0 ? ms - deviation : ms + deviation;
  }
  return Math.max(0, Math.floor(Math.min(ms, max)));
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
  // The long-polling endpoint: `/poll` next to `/ws` (a hub under a prefix, `/x/ws`, polls `/x/poll`).
  const poll = new URL(probe.href);
  poll.pathname = /\/ws$/.test(poll.pathname) ? poll.pathname.replace(/ws$/, 'poll') : '/poll';
  return { ws: u.href, probe: probe.href, poll: poll.href };
}

const TRANSPORTS = ['websocket', 'polling'];
const POLL_CLOSE = 'ringwire:close';

/** Splits a poll's body into its frames (each says its length), each as its own ArrayBuffer. */
function splitFrames(buffer) {
  const bytes = new Uint8Array(buffer);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = [];
  let at = 0;
  while (at < bytes.length) {
    const rest = bytes.length - at;
    if (rest < HEADER_BYTES) throw new FrameError(`a poll ends with ${rest} bytes, less than a frame header`);
    const len = view.getUint32(at, true);
    if (len > rest - HEADER_BYTES) throw new FrameError(`a frame of ${len} bytes in a poll that has ${rest - HEADER_BYTES} left`);
    out.push(bytes.slice(at, at + HEADER_BYTES + len).buffer);
    at += HEADER_BYTES + len;
  }
  return out;
}

function concatFrames(frames) {
  if (frames.length === 1) return frames[0];
  const out = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  let at = 0;
  for (const f of frames) {
    out.set(f, at);
    at += f.length;
  }
  return out;
}

/**
 * The long-polling transport, shaped as the part of a WebSocket the client uses (`onopen`, `onmessage`
 * with `{data}`, `onclose` with `{code, reason, wasClean}`, `send`, `close`): `GET /poll?token=..` opens
 * (its body holds the hello, whose `pid` names the session), then one `GET /poll?pid=P` at a time
 * brings frames and one `POST /poll?pid=P` at a time carries the frames sent meanwhile, in order. A
 * `ringwire:close` frame in a poll is the close; a 410 means the session is gone (1006). Closed before
 * opening, `onclose` also has `status` (the opening GET's HTTP status, 0 for no answer) and `text`.
 */
class PollingSocket {
  binaryType = 'arraybuffer';
  onopen = null;
  onmessage = null;
  onclose = null;
  onerror = null;
  /** The polling session's id (from the hello), once open. */
  pid = undefined;
  #fetch;
  #pollUrl = null;
  #opened = false;
  #closed = false;
  #abort = new AbortController();
  /** Frames sent while a POST is in flight (or sends are paused), batched into the next POST. */
  #queue = [];
  /** The POST in flight (a promise settled when it is answered), or null. */
  #posting = null;
  #sendsPaused = false;
  #stopPolls = false;
  /** Set by the client while an upgrade's WebSocket is being opened: a 410 then means "moved there". */
  upgrading = false;
  /** The hub answered 410 during an upgrade: this transport can no longer carry the connection. */
  #gone = false;
  #looping = false;
  /** Settled when the poll loop has stopped (after delivering the frames of its last poll). */
  #loopDone;
  #loopEnd;

  constructor(openUrl, pollUrl, fetchImpl) {
    // Called unbound: a browser's fetch refuses another `this` ("Illegal invocation").
    this.#fetch = (u, init) => fetchImpl(u, init);
    this.#loopDone = new Promise((resolve) => {
      this.#loopEnd = resolve;
    });
    this.#start(openUrl, pollUrl);
  }

  async #start(openUrl, pollBase) {
    let res;
    let body;
    try {
      res = await this.#fetch(openUrl, { cache: 'no-store', signal: this.#abort.signal });
      body = res.ok ? await res.arrayBuffer() : (await res.text()).trim().slice(0, 300) || res.statusText || '';
    } catch (e) {
      this.#end({ code: 1006, reason: `the hub did not answer over HTTP (${e?.message ?? e})`, status: 0 });
      return;
    }
    if (this.#closed) return;
    if (!res.ok) {
      this.#end({ code: 1006, reason: body, status: res.status, text: body });
      return;
    }
    let frames;
    let pid;
    try {
      frames = splitFrames(body);
      const hello = frames.length > 0 ? decodeFrame(frames[0]) : null;
      if (hello?.name !== 'ringwire:hello') throw new FrameError('the opening poll does not start with ringwire:hello');
      pid = hello.value?.pid;
      if (typeof pid !== 'string' || pid.length === 0) throw new FrameError('the hello of a poll has no pid');
    } catch (e) {
      this.#end({ code: 1002, reason: e.message, status: res.status });
      return;
    }
    this.pid = pid;
    const u = new URL(pollBase);
    u.search = '';
    u.searchParams.set('pid', pid);
    this.#pollUrl = u.href;
    this.#opened = true;
    this.onopen?.({});
    this.#deliver(frames);
    this.#loop();
  }

  /** Hands frames to `onmessage` in order; a `ringwire:close` frame ends the connection. */
  #deliver(frames) {
    for (const data of frames) {
      if (this.#closed) return;
      const n = new DataView(data).getUint16(6, true);
      if (n === POLL_CLOSE.length && data.byteLength >= HEADER_BYTES + n) {
        let frame = null;
        try {
          frame = decodeFrame(data);
        } catch {
          // not a valid frame: onmessage reports it
        }
        if (frame?.name === POLL_CLOSE) {
          const code = Number.isInteger(frame.value?.code) ? frame.value.code : 1006;
          const reason = typeof frame.value?.reason === 'string' ? frame.value.reason : '';
          this.#end({ code, reason, wasClean: true });
          return;
        }
      }
      this.onmessage?.({ data });
    }
  }

  async #loop() {
    this.#looping = true;
    while (!this.#closed && !this.#stopPolls) {
      let res;
      let body;
      try {
        res = await this.#fetch(this.#pollUrl, { cache: 'no-store', signal: this.#abort.signal });
        body = res.status === 200 ? await res.arrayBuffer() : await res.text();
      } catch (e) {
        if (this.#closed || this.#stopPolls) break; // (an upgrade takes over: its WebSocket says the rest)
        // The HTTP connection broke under the poll. If the hub still has the session (an empty POST
        // says so), poll again; else the connection is lost.
        if (await this.#alive()) continue;
        this.#end({ code: 1006, reason: `a poll failed: ${e?.message ?? e}` });
        break;
      }
      if (this.#closed) break;
      if (res.status === 410 && (this.#stopPolls || this.upgrading)) {
        // The session moved to the upgrade's WebSocket (it may not have opened here yet).
        this.#gone = true;
        break;
      }
      if (res.status !== 200) {
        this.#end({ code: 1006, reason: `a poll was answered ${res.status}: ${String(body).trim()}` });
        break;
      }
      let frames;
      try {
        frames = splitFrames(body);
      } catch (e) {
        this.#end({ code: 1002, reason: e.message });
        break;
      }
      this.#deliver(frames);
    }
    this.#looping = false;
    this.#loopEnd();
  }

  async #alive() {
    try {
      const res = await this.#fetch(this.#pollUrl, { method: 'POST', body: new Uint8Array(0), cache: 'no-store', signal: this.#abort.signal });
      await res.arrayBuffer();
      return res.status === 200 && !this.#closed;
    } catch {
      return false;
    }
  }

  send(frame) {
    if (this.#closed) return;
    this.#queue.push(frame);
    this.#pump();
  }

  /** One POST at a time: what is queued when it is answered goes in the next one, in order. */
  #pump() {
    if (this.#posting || this.#sendsPaused || this.#closed || !this.#opened || this.#queue.length === 0) return;
    const parts = this.#queue;
    const body = concatFrames(parts);
    this.#queue = [];
    this.#posting = (async () => {
      try {
        const res = await this.#fetch(this.#pollUrl, { method: 'POST', body, cache: 'no-store', signal: this.#abort.signal });
        await res.arrayBuffer();
        if (res.status === 410 && this.upgrading) {
          // The hub moved the session onto the upgrade's WebSocket before this side saw it open: these
          // frames were not taken; they go first on the WebSocket.
          this.#queue = parts.concat(this.#queue);
          this.#sendsPaused = true;
          this.#gone = true;
        }
        // Else not 200: the hub closed the connection (a malformed or too big frame, or it was
        // closing); the next poll brings the close with its code.
      } catch (e) {
        // Whether the hub got the frames is unknown: as a WebSocket that drops, the connection is lost.
        if (!this.#closed) this.#end({ code: 1006, reason: `a post failed: ${e?.message ?? e}` });
      }
      this.#posting = null;
      this.#pump();
    })();
  }

  /** Upgrade: no more POSTs; resolves once the POST in flight (if any) is answered. */
  async pauseSends() {
    this.#sendsPaused = true;
    while (this.#posting) await this.#posting;
  }

  /** Upgrade: the frames sent since the sends were paused, in order (they go on the WebSocket). */
  takeQueue() {
    const rest = this.#queue;
    this.#queue = [];
    return rest;
  }

  /** Upgrade: no more polls; resolves once the poll in flight has returned and its frames were delivered. */
  stopPolling() {
    this.#stopPolls = true;
    return this.#loopDone;
  }

  get closed() {
    return this.#closed;
  }

  /**
   * The upgrade's WebSocket failed before the switch: polling goes on (sends and polls resume), unless
   * the hub already moved the session (a 410 seen; else the next poll's 410 says so): then the
   * connection is lost (1006).
   */
  upgradeFailed() {
    this.upgrading = false;
    if (this.#gone) {
      this.#end({ code: 1006, reason: 'the polling session moved to a WebSocket that failed' });
      return;
    }
    this.#sendsPaused = false;
    this.#stopPolls = false;
    if (!this.#looping && !this.#closed) {
      this.#loopDone = new Promise((resolve) => {
        this.#loopEnd = resolve;
      });
      this.#loop();
    }
    this.#pump();
  }

  /** Stops everything, without an `onclose` (the client detached first). With code 1000 (the
   * application's `disconnect()`) the hub is told with a posted `ringwire:close` frame, sent without
   * waiting for the answer, so that it ends the session as for a WebSocket close 1000; otherwise (a
   * transport being dropped) it is not told. */
  close(code, reason = '') {
    if (this.#closed) return;
    if (code === 1000 && this.#opened && this.#pollUrl) {
      try {
        const body = encodeFrame(POLL_CLOSE, JSON.stringify({ code, reason }));
        this.#fetch(this.#pollUrl, { method: 'POST', body, cache: 'no-store', keepalive: true }).catch(() => {});
      } catch {
        // the hub ends the connection at its next missed pong instead
      }
    }
    this.#closed = true;
    this.#abort.abort();
    this.#loopEnd();
  }

  #end(info) {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort();
    this.#loopEnd();
    this.onclose?.({ wasClean: false, ...info, opened: this.#opened });
  }
}

function checkTransports(list) {
  if (!Array.isArray(list) || list.length === 0 || !list.every((t) => TRANSPORTS.includes(t))) {
    throw new TypeError(`transports is a non-empty array of ${TRANSPORTS.map((t) => `'${t}'`).join(', ')}`);
  }
  return [...list];
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
  /** Bumped whenever a WebSocket or an attempt is given up: callbacks of older ones do nothing. */
  #generation = 0;
  #hello = undefined;
  /** The rooms joined (not the own one); kept across reconnections, joined again when not recovered. */
  #joined = new Set();
  /** This client's ack token, the same across reconnections (the names of buffered requests keep it). */
  #ackToken = randomToken();
  #ackSeq = 0;
  /** ack name -> {resolve, reject, timer, item}; `item` is the buffer entry while not yet sent. */
  #pending = new Map();
  /** `{frame}` entries emitted while not connected, sent in order after the next hello. */
  #buffer = [];
  #connectTimer = null;
  #livenessTimer = null;
  #reconnectTimer = null;
  #attempts = 0;
  /** Reconnection attempts since the last connection (0: none). */
  #retry = 0;
  /** Recovery: the session id (from the last hello) and the highest offset received (a BigInt). */
  #sid = undefined;
  #offset = undefined;
  /** 'websocket' | 'polling' (what carries the connection or the attempt), undefined when none. */
  #transport = undefined;
  /** The WebSocket of an upgrade in progress (connected by polling), or null. */
  #upgrading = null;

  /**
   * @param {string | URL} [url]
   * @param {{token?: string, ackTimeout?: number, connectTimeout?: number, autoConnect?: boolean,
   *          reconnection?: boolean, reconnectionDelay?: number, reconnectionDelayMax?: number,
   *          randomizationFactor?: number, reconnectionAttempts?: number, random?: () => number,
   *          sendBuffer?: number, WebSocket?: any, fetch?: any}} [options]
   */
  constructor(url, options = {}) {
    const random = options.random ?? Math.random;
    if (typeof random !== 'function') throw new TypeError('random is a function returning numbers in [0, 1)');
    const factor = options.randomizationFactor ?? RECONNECTION.randomizationFactor;
    if (typeof factor !== 'number' || !(factor >= 0 && factor <= 1)) {
      throw new RangeError('randomizationFactor must be a number in [0, 1]');
    }
    const attempts = options.reconnectionAttempts ?? RECONNECTION.reconnectionAttempts;
    if (typeof attempts !== 'number' || !(attempts >= 0) || (Number.isFinite(attempts) && !Number.isInteger(attempts))) {
      throw new RangeError('reconnectionAttempts must be a whole number >= 0, or Infinity');
    }
    const sendBuffer = options.sendBuffer ?? DEFAULT_SEND_BUFFER;
    if (!Number.isInteger(sendBuffer) || sendBuffer < 0) throw new RangeError('sendBuffer must be a whole number >= 0');
    this.#opts = {
      ackTimeout: positive(options.ackTimeout ?? DEFAULT_ACK_TIMEOUT, 'ackTimeout'),
      connectTimeout: positive(options.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT, 'connectTimeout'),
      reconnection: options.reconnection ?? true,
      reconnectionDelay: atLeast0(options.reconnectionDelay ?? RECONNECTION.reconnectionDelay, 'reconnectionDelay'),
      reconnectionDelayMax: atLeast0(
        options.reconnectionDelayMax ?? RECONNECTION.reconnectionDelayMax,
        'reconnectionDelayMax',
      ),
      randomizationFactor: factor,
      reconnectionAttempts: attempts,
      random,
      sendBuffer,
      WebSocket: options.WebSocket,
      fetch: options.fetch,
      transports: checkTransports(options.transports ?? TRANSPORTS),
      upgrade: options.upgrade ?? true,
    };
    this.#urls = hubUrls(url, options.token);
    if (options.autoConnect ?? true) this.connect();
  }

  /** The WebSocket URL (with the token; a reconnection adds the session's `sid` and `offset`). */
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
    const own = this.id;
    return own === undefined ? [...this.#joined] : [...new Set([own, ...this.#joined])];
  }
  get pendingAcks() {
    return this.#pending.size;
  }
  get buffered() {
    return this.#buffer.length;
  }
  get connectAttempts() {
    return this.#attempts;
  }
  /** 'websocket' or 'polling': what carries the connection (or the attempt); undefined before one. */
  get transport() {
    return this.#state === 'idle' || this.#state === 'closed' ? undefined : this.#transport;
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
    if (room !== this.id) this.#joined.add(room);
    return reply;
  }

  async leave(room, options) {
    checkRoom(room);
    const reply = await this.#request('ringwire:leave', room, options);
    if (reply?.ok !== true) throw this.#refusal('leave', room, reply);
    this.#joined.delete(room);
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
      const item = this.#send(name, encodeBody(value)); // a throw here rejects: nothing is pending yet
      const entry = { resolve, reject, timer: null, item };
      if (Number.isFinite(timeout)) {
        entry.timer = setTimeout(() => {
          this.#pending.delete(name);
          // Still in the buffer: it is never sent.
          if (entry.item) this.#unbuffer(entry.item);
          reject(withCode(new Error(`no acknowledgement of "${event}" within ${timeout} ms`), 'ETIMEDOUT'));
        }, timeout);
      }
      this.#pending.set(name, entry);
    });
  }

  /** Sends now when connected, else buffers; returns the buffer entry, or null when sent. */
  #send(name, body) {
    if (this.#state === 'idle' || this.#state === 'closed') {
      throw withCode(new Error(`not connected: "${name}" was not sent`), 'ENOTCONN');
    }
    const frame = encodeFrame(name, body);
    const max = this.#hello?.maxMessage ?? DEFAULT_MAX_MESSAGE;
    if (frame.length > max) {
      throw new RangeError(`message of ${frame.length} bytes exceeds the hub's limit of ${max}`);
    }
    if (this.#state === 'connected') {
      this.#ws.send(frame);
      return null;
    }
    if (this.#buffer.length >= this.#opts.sendBuffer) {
      throw new HubError(
        'EBUFFERFULL',
        `not connected and the send buffer is full (${this.#opts.sendBuffer} messages): "${name}" was not sent`,
      );
    }
    const item = { frame };
    this.#buffer.push(item);
    return item;
  }

  #unbuffer(item) {
    const i = this.#buffer.indexOf(item);
    if (i >= 0) this.#buffer.splice(i, 1);
  }

  // ---- connection --------------------------------------------------------------------------------

  connect() {
    if (this.#state === 'reconnecting') {
      clearTimeout(this.#reconnectTimer);
      this.#reconnectTimer = null;
      this.#open();
      return this;
    }
    if (this.#state !== 'idle' && this.#state !== 'closed') return this;
    this.#retry = 0;
    this.#open();
    return this;
  }

  /** The WebSocket URL of the next attempt: with the session to resume, when there is one. */
  #wsUrl() {
    return this.#withSession(this.#urls.ws);
  }

  #withSession(url) {
    if (this.#sid === undefined || this.#offset === undefined) return url;
    const u = new URL(url);
    u.searchParams.set('sid', this.#sid);
    u.searchParams.set('offset', String(this.#offset));
    return u.href;
  }

  /** One attempt: a WebSocket (when `transports` has it), else or failing that long-polling; then
   * waiting for the hello. */
  #open() {
    const generation = ++this.#generation;
    this.#state = 'connecting';
    this.#transport = undefined;
    // socket.io's order: the first transport listed is tried first.
    if (this.#opts.transports[0] === 'websocket') this.#openWebSocket(generation);
    else this.#openPolling(generation);
  }

  #armConnectTimer() {
    clearTimeout(this.#connectTimer);
    this.#connectTimer = setTimeout(() => {
      this.#abort(1000, 'connect timeout');
      this.#ended('connect_error', {
        status: 0,
        reason: `no ringwire:hello within ${this.#opts.connectTimeout} ms`,
        fatal: false,
      });
    }, this.#opts.connectTimeout);
  }

  #openWebSocket(generation) {
    const WS = this.#opts.WebSocket ?? globalThis.WebSocket;
    let ws;
    try {
      if (typeof WS !== 'function') {
        throw new Error('no WebSocket implementation (Node.js 20: run with --experimental-websocket, or pass {WebSocket})');
      }
      this.#attempts++;
      ws = new WS(this.#wsUrl());
    } catch (e) {
      if (this.#opts.transports.includes('polling')) {
        // No WebSocket here (or it refused the URL): long-polling instead.
        this.#openPolling(generation);
        return;
      }
      // Reported after this call returns, so that listeners added right after connect() hear it. No
      // WebSocket at all, or a URL it rejects: trying again would not help.
      queueMicrotask(() => {
        if (generation === this.#generation) this.#ended('connect_error', { status: 0, reason: e.message, fatal: true });
      });
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.#ws = ws;
    this.#transport = 'websocket';
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
    this.#armConnectTimer();
  }

  /** Long-polling: `GET /poll?token=..[&sid=..&offset=..]` opens, its body holds the hello. */
  #openPolling(generation) {
    const fetchImpl = this.#opts.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== 'function') {
      queueMicrotask(() => {
        if (generation === this.#generation) {
          this.#ended('connect_error', { status: 0, reason: 'no fetch implementation for long-polling', fatal: true });
        }
      });
      return;
    }
    this.#attempts++;
    const sock = new PollingSocket(this.#withSession(this.#urls.poll), this.#urls.poll, fetchImpl);
    this.#ws = sock;
    this.#transport = 'polling';
    sock.onopen = () => {
      if (sock === this.#ws && this.#state === 'connecting') this.#state = 'open';
    };
    sock.onmessage = (ev) => {
      if (sock === this.#ws) this.#onMessage(ev.data);
    };
    sock.onclose = (ev) => {
      if (sock === this.#ws) this.#onClose(ev, generation);
    };
    this.#armConnectTimer();
  }

  /**
   * Upgrade, once connected by polling: a WebSocket to `/ws?token=..&pid=P`. When it opens, no more
   * POSTs (the one in flight is answered first), the poll in flight returns and its frames are handled,
   * then the WebSocket's messages (held until then), and sends go on the WebSocket. A WebSocket that
   * fails leaves the connection on polling, silently.
   */
  #tryUpgrade() {
    const poll = this.#ws;
    if (!(poll instanceof PollingSocket) || !this.#opts.upgrade || !this.#opts.transports.includes('websocket')) return;
    const WS = this.#opts.WebSocket ?? globalThis.WebSocket;
    if (typeof WS !== 'function') return;
    const u = new URL(this.#urls.ws);
    u.searchParams.delete('sid');
    u.searchParams.delete('offset');
    u.searchParams.set('pid', poll.pid);
    let ws;
    try {
      ws = new WS(u.href);
    } catch {
      return; // stays on polling
    }
    ws.binaryType = 'arraybuffer';
    this.#upgrading = ws;
    poll.upgrading = true;
    const held = [];
    let switched = false;
    const current = () => this.#upgrading === ws && this.#ws === poll && this.#state === 'connected';
    const drop = () => {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.onerror = () => {};
      if (this.#upgrading === ws) this.#upgrading = null;
    };
    ws.onmessage = (ev) => {
      if (switched) {
        if (ws === this.#ws) this.#onMessage(ev.data);
      } else {
        held.push(ev.data);
      }
    };
    ws.onerror = () => {
      if (current()) {
        drop();
        try {
          ws.close();
        } catch {
          // not open
        }
        poll.upgradeFailed();
      }
    };
    ws.onclose = () => {
      if (!current()) return;
      drop();
      // Closed before the switch: polling goes on, unless the hub had moved the session onto it (then
      // polling sees a 410 and the connection is lost: 1006, as a WebSocket that drops).
      poll.upgradeFailed();
    };
    ws.onopen = async () => {
      if (!current()) {
        drop();
        try {
          ws.close(1000, 'not needed');
        } catch {
          // closing
        }
        return;
      }
      await poll.pauseSends();
      await poll.stopPolling();
      if (!current() || poll.closed) {
        // The connection ended meanwhile (a close frame in the last poll).
        if (this.#upgrading === ws) drop();
        try {
          ws.close(1000, 'connection ended');
        } catch {
          // closing
        }
        return;
      }
      // The switch: the WebSocket becomes the connection. The sends that waited go out on it first (after
      // everything the posts carried), and what it brought meanwhile is handled (after everything the
      // polls brought).
      const unsent = poll.takeQueue();
      poll.onopen = poll.onmessage = poll.onclose = null;
      poll.close();
      this.#upgrading = null;
      this.#ws = ws;
      this.#transport = 'websocket';
      switched = true;
      const generation = this.#generation;
      ws.onclose = (ev) => {
        if (ws === this.#ws) this.#onClose(ev, generation);
      };
      ws.onerror = () => {};
      for (const frame of unsent) ws.send(frame);
      for (const data of held) {
        if (ws !== this.#ws) return;
        this.#onMessage(data);
      }
      if (ws === this.#ws) this.#dispatch('upgrade', [{ transport: 'websocket' }]);
    };
  }

  disconnect() {
    const was = this.#state;
    if (was === 'idle' || was === 'closed') return this;
    this.#abort(1000, 'client disconnect');
    if (was === 'connected') {
      this.#closed('disconnect', { code: 1000, reason: 'client disconnect', wasClean: true, local: true });
    } else {
      this.#closed(null, null); // given up before connecting, or while waiting to reconnect
    }
    return this;
  }

  close() {
    return this.disconnect();
  }

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
    const up = this.#upgrading;
    this.#upgrading = null;
    if (up) {
      up.onopen = up.onmessage = up.onclose = null;
      up.onerror = () => {};
      try {
        up.close(1000, 'connection ended');
      } catch {
        // not open yet
      }
    }
    clearTimeout(this.#connectTimer);
    clearTimeout(this.#livenessTimer);
    clearTimeout(this.#reconnectTimer);
    this.#connectTimer = this.#livenessTimer = this.#reconnectTimer = null;
  }

  /** Rejects the pending requests: those already sent (`sentOnly`: a reply can't come on another
   * connection) or all of them (closed for good). */
  #rejectPending(info, sentOnly) {
    const why = info ? `${info.code ?? info.status ?? ''} ${info.reason ?? ''}`.trim() : 'client disconnect';
    for (const [name, p] of [...this.#pending]) {
      if (sentOnly && p.item) continue;
      this.#pending.delete(name);
      clearTimeout(p.timer);
      p.reject(withCode(new Error(`disconnected before the acknowledgement (${why})`), 'EDISCONNECTED'));
    }
  }

  /**
   * A connection or an attempt ended by itself: reconnect after the backoff delay, unless reconnection
   * is off or the end is final (a 401/403 refusal, close code 4002 or 4003).
   */
  #ended(event, info) {
    this.#detach();
    this.#generation++;
    const final = info.fatal === true || FINAL_CODES.has(info.code);
    if (!this.#opts.reconnection || final) {
      this.#closed(event, info);
      return;
    }
    this.#state = 'reconnecting';
    this.#rejectPending(info, true);
    const generation = this.#generation;
    this.#dispatch(event, [info]);
    // A listener may have called disconnect() or connect() meanwhile.
    if (generation === this.#generation && this.#state === 'reconnecting' && this.#reconnectTimer === null) {
      this.#schedule();
    }
  }

  /** Schedules the next reconnection attempt, or gives up after `reconnectionAttempts`. */
  #schedule() {
    if (this.#retry >= this.#opts.reconnectionAttempts) {
      const attempts = this.#retry;
      this.#closed('reconnect_failed', { attempts }, { keepSession: true });
      return;
    }
    const delay = reconnectDelay(this.#retry, this.#opts.random(), this.#opts);
    this.#retry++;
    const generation = this.#generation;
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = null;
      if (generation === this.#generation && this.#state === 'reconnecting') this.#open();
    }, delay);
    this.#dispatch('reconnect_attempt', [{ attempt: this.#retry, delay }]);
  }

  /**
   * Closed for good: everything pending and buffered is dropped (rejecting its promise), then `event`
   * fires. The session (its id, offset and rooms) is forgotten unless `keepSession` (out of attempts: a
   * later `connect()` may still resume it).
   */
  #closed(event, info, { keepSession = false } = {}) {
    this.#detach();
    this.#generation++;
    this.#state = 'closed';
    this.#buffer = [];
    this.#rejectPending(info, false);
    if (!keepSession) {
      this.#joined.clear();
      this.#sid = this.#offset = undefined;
    }
    if (event) this.#dispatch(event, [info]);
  }

  #onClose(ev, generation) {
    const code = ev.code;
    const reason = ev.reason ?? '';
    if (this.#state === 'connected') {
      this.#ended('disconnect', { code, reason, wasClean: !!ev.wasClean, local: false });
    } else if (this.#state === 'open' && this.#transport === 'websocket' && this.#opts.transports.includes('polling')) {
      // A WebSocket that opened but closed before the hub's hello (a proxy that cuts them): long-polling.
      this.#detach();
      this.#state = 'connecting';
      this.#openPolling(generation);
    } else if (this.#state === 'open') {
      this.#ended('connect_error', {
        status: 101,
        code,
        reason: reason || `the connection closed before ringwire:hello (code ${code})`,
        fatal: false,
      });
    } else if (ev.status !== undefined) {
      // Long-polling refused or unreachable: the opening GET's answer says why.
      const status = ev.status;
      const fatal = status === 401 || status === 403;
      const why = status === 0 || fatal || status === 503 ? reason : `GET /poll answers ${status}: ${reason}`;
      this.#ended('connect_error', { status, reason: why, fatal });
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
    if (!fatal && status !== 503 && this.#opts.transports.includes('polling')) {
      // The hub may be there, its WebSocket is not (a proxy, a network that blocks them): long-polling.
      this.#openPolling(generation);
      return;
    }
    let reason = text;
    if (status !== 0 && !fatal && status !== 503) {
      reason = `WebSocket handshake failed (close code ${code}); GET /ws answers ${status}: ${text}`;
    } else if (status === 0) {
      reason = `WebSocket handshake failed (close code ${code}); ${text || 'no answer over HTTP'}`;
    }
    this.#ended('connect_error', { status, reason, fatal });
  }

  #startLiveness() {
    clearTimeout(this.#livenessTimer);
    const { pingInterval, pingTimeout } = this.#hello;
    this.#livenessTimer = setTimeout(() => {
      this.#abort(4000, 'ping timeout');
      this.#ended('disconnect', { code: 4000, reason: 'ping timeout', wasClean: false, local: true });
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
    let { name } = frame;
    const { value } = frame;
    if (name === 'ringwire:hello') {
      this.#onHello(value);
      return;
    }
    if (this.#state !== 'connected') {
      this.#report(new ProtocolError(`"${name}" arrived before ringwire:hello; dropped`));
      return;
    }
    if (name.startsWith(OFFSET_PREFIX)) {
      // A recoverable event: remember its offset (the highest seen), deliver the event inside.
      const m = OFFSET_NAME.exec(name);
      if (!m) {
        this.#report(new ProtocolError(`malformed offset event name "${name}"; dropped`));
        return;
      }
      const offset = BigInt(m[1]);
      if (this.#offset === undefined || offset > this.#offset) this.#offset = offset;
      name = m[2];
      if (name.startsWith(RESERVED_PREFIX) || LOCAL_EVENTS.has(name)) {
        this.#report(new ProtocolError(`offset event "${name}", which the hub may not send; dropped`));
        return;
      }
      this.#dispatch(name, [value]);
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
    const asked = this.#sid !== undefined && this.#offset !== undefined;
    let recovered = value.recovered === true;
    if (recovered && !asked) {
      this.#report(new ProtocolError('ringwire:hello says recovered, but no session was asked for; taken as new'));
      recovered = false;
    }
    const hello = {
      id,
      pingInterval: num('pingInterval', 25000),
      pingTimeout: num('pingTimeout', 20000),
      maxMessage: num('maxMessage', DEFAULT_MAX_MESSAGE),
      recovered,
    };
    if (typeof value.pid === 'string') hello.pid = value.pid;
    this.#sid = undefined;
    this.#offset = undefined;
    if (value.sid !== undefined || value.offset !== undefined) {
      // The offset is a number, or a decimal string where a Number could not hold it exactly (recovery
      // across hubs: offsets are stream entry ids, beyond 2^53).
      const offsetOk = (Number.isSafeInteger(value.offset) && value.offset >= 0)
        || (typeof value.offset === 'string' && /^[0-9]{1,20}$/.test(value.offset));
      if (typeof value.sid === 'string' && value.sid.length > 0 && offsetOk) {
        hello.sid = this.#sid = value.sid;
        hello.offset = value.offset;
        this.#offset = BigInt(value.offset);
      } else {
        this.#report(new ProtocolError(`ringwire:hello: sid ${JSON.stringify(value.sid)} and offset ${JSON.stringify(value.offset)} are not a session`));
      }
    }
    this.#hello = Object.freeze(hello);
    clearTimeout(this.#connectTimer);
    this.#connectTimer = null;
    this.#state = 'connected';
    const attempt = this.#retry;
    this.#retry = 0;
    this.#startLiveness();
    this.#joined.delete(id);
    if (!recovered) {
      // A new session: join the rooms again (before the buffered events, which may be sent to them).
      for (const room of this.#joined) {
        this.#request('ringwire:join', room).then(
          (reply) => {
            if (reply?.ok === true) return;
            this.#joined.delete(room);
            const err = this.#refusal('join', room, reply);
            this.#report(withCode(new Error(`re-joining after a reconnection: ${err.message}`), 'EREFUSED', { reply }));
          },
          (e) => {
            if (e?.code !== 'EDISCONNECTED') this.#report(withCode(new Error(`re-joining "${room}": ${e.message}`), e?.code));
          },
        );
      }
    }
    const buffered = this.#buffer;
    this.#buffer = [];
    const byItem = new Map([...this.#pending].filter(([, p]) => p.item).map(([n, p]) => [p.item, [n, p]]));
    for (const item of buffered) {
      const owner = byItem.get(item);
      if (item.frame.length > hello.maxMessage) {
        const err = new RangeError(`a buffered message of ${item.frame.length} bytes exceeds the hub's limit of ${hello.maxMessage}; dropped`);
        if (owner) {
          this.#pending.delete(owner[0]);
          clearTimeout(owner[1].timer);
          owner[1].reject(err);
        } else {
          this.#report(err);
        }
        continue;
      }
      if (owner) owner[1].item = null;
      this.#ws.send(item.frame);
    }
    if (attempt > 0) this.#dispatch('reconnect', [{ attempt, recovered }]);
    if (this.#state === 'connected' && this.#hello === hello) this.#dispatch('connect', [{ recovered }]);
    if (this.#state === 'connected' && this.#hello === hello) this.#tryUpgrade();
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
    // The connection it came on (an upgrade from polling to a WebSocket keeps the connection).
    const generation = this.#generation;
    let answered = false;
    const ack = (reply) => {
      if (answered) return;
      const frame = encodeFrame(name, encodeBody(reply)); // a value JSON can't encode throws here
      answered = true;
      if (generation === this.#generation && this.#state === 'connected') this.#ws.send(frame); // else that connection is gone
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
