// The socket.io reference server of `ringwire bench`'s fan-out rows (cli/src/bench/fanout.rs): the same
// chat behaviour as `ringwire hub`'s `chat message` handler, written as a socket.io user would write it,
// WebSocket transport only. `ringwire bench` runs it as `node tests/js/socketio_fanout_server.mjs` and
// drives it with the same Rust load generator as the hub (raw Engine.IO v4 / Socket.IO v5 frames).
//
//   C->S  `join` ROOM            (ack form: the reply is {ok: true})
//   C->S  `chat message` {room, text}
//   S->C  `chat message` {room, text, from: sender id, at: unix ms}   to every member of `room`
//
// As in the hub, the sender must be in the room (else a `chat error` event and {ok: false} if acked).
// Unlike the hub, no `presence` events on join: they are set-up traffic, never measured, and would only
// slow the set-up of the 1,000-client rooms.
//
// Usage: node socketio_fanout_server.mjs [PORT [REDIS_URL CHANNEL]]   (PORT 0 or none: any free port).
// With REDIS_URL (redis://host:port) the server joins the others started with the same URL and CHANNEL
// through `@socket.io/redis-adapter` (socket.io's own scale-out over Redis pub/sub; the bench's
// `socket.io-2-redis` rows: two such servers, clients split between them). Prints exactly one line on
// stdout once listening (and, with Redis, once the adapter's two connections are up),
// `socket.io: listening on http://127.0.0.1:PORT`, and runs until killed.
import { createServer } from 'node:http';
import { Server } from 'socket.io';

const port = Number(process.argv[2] ?? 0);
const redisUrl = process.argv[3];
const channel = process.argv[4] ?? 'socket.io';
const http = createServer();
const io = new Server(http, {
  // WebSocket only: no HTTP long-polling and no upgrade dance (the bench client opens the WebSocket at
  // /socket.io/?EIO=4&transport=websocket directly).
  transports: ['websocket'],
  // Not serving /socket.io/socket.io.js: nothing here loads it.
  serveClient: false,
  // socket.io's default already (no permessage-deflate); stated because compression would change what
  // is measured. The bench client does not offer it either.
  perMessageDeflate: false,
});

io.on('connection', (socket) => {
  socket.on('join', (room, ack) => {
    if (typeof room !== 'string' || room.length === 0 || room.length > 255) {
      if (typeof ack === 'function') ack({ ok: false, error: 'the room is a string of 1 to 255 characters' });
      return;
    }
    socket.join(room);
    if (typeof ack === 'function') ack({ ok: true });
  });
  socket.on('chat message', (msg, ack) => {
    const room = msg?.room ?? null;
    const out = { room, text: msg?.text, from: socket.id, at: Date.now() };
    if (room !== null && !socket.rooms.has(room)) {
      const error = `not in room ${JSON.stringify(room)}: join it first`;
      if (typeof ack === 'function') ack({ ok: false, error });
      socket.emit('chat error', { code: 'chat_refused', message: error });
      return;
    }
    if (room === null) io.emit('chat message', out);
    else io.to(room).emit('chat message', out);
    if (typeof ack === 'function') ack({ ok: true });
  });
});

if (redisUrl !== undefined) {
  // As @socket.io/redis-adapter's README: one client to publish, a duplicate to subscribe.
  const { createAdapter } = await import('@socket.io/redis-adapter');
  const { createClient } = await import('redis');
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  pub.on('error', (e) => console.error(`redis: ${e}`));
  sub.on('error', (e) => console.error(`redis: ${e}`));
  await Promise.all([pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub, { key: channel }));
}

http.listen(port, '127.0.0.1', () => {
  console.log(`socket.io: listening on http://127.0.0.1:${http.address().port}`);
});
