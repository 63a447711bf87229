// The hub's JavaScript client (src/hub/assets/client.js) in Node.js against a real `ringwire hub`:
// hello, rooms, chat messages to a room and to all, presence, acknowledgements, refusals (401 for a wrong
// or missing token, 403 for a foreign Origin), server pushes, leaving.
//
// node --experimental-websocket tests/js/hub_node.mjs http://127.0.0.1:PORT TOKEN
// (the hub runs with --token TOKEN --notify-every N)
import { CLIENT_URL, check, equal, next, rejection, run, step, thrown } from './lib.mjs';

const { connect } = await import(CLIENT_URL);
const [url, token] = process.argv.slice(2);
if (!url || !token) {
  console.error('usage: hub_node.mjs URL TOKEN');
  process.exit(2);
}

/** A connected client, with what it hears collected. */
async function client(name) {
  const c = connect(url, { token });
  c.label = name;
  c.chat = [];
  c.errors = [];
  c.presence = [];
  c.on('chat message', (m) => c.chat.push(m));
  c.on('presence', (p) => c.presence.push(p));
  c.on('error', (e) => c.errors.push(e));
  const refused = next(c, 'connect_error');
  const ok = await Promise.race([next(c, 'connect').then(() => true), refused.then(([i]) => i)]);
  check(ok === true, `${name} connects: ${JSON.stringify(ok)}`);
  return c;
}

/** The next chat message `c` receives (or has received) whose text is `text`. */
function chatFrom(c, text) {
  const seen = c.chat.find((m) => m.text === text);
  return seen ? Promise.resolve(seen) : next(c, 'chat message', (m) => m.text === text).then(([m]) => m);
}

/** A fetch and a WebSocket that send an Origin header (Node's WebSocket accepts headers; browsers set it). */
function withOrigin(origin) {
  const WS = class extends WebSocket {
    constructor(u) {
      super(u, { headers: { Origin: origin } });
    }
  };
  const f = (u, init = {}) => fetch(u, { ...init, headers: { ...init.headers, Origin: origin } });
  return { WebSocket: WS, fetch: f };
}

run(async () => {
  step('three clients connect and get distinct ids in ringwire:hello');
  const a1 = await client('a1');
  const a2 = await client('a2');
  const b1 = await client('b1');
  for (const c of [a1, a2, b1]) {
    check(typeof c.id === 'string' && c.id.length > 0, `${c.label} id ${c.id}`);
    const h = c.hello;
    check(h.pingInterval > 0 && h.pingTimeout > 0 && h.maxMessage > 0, `${c.label} hello ${JSON.stringify(h)}`);
    equal(c.rooms, [c.id], `${c.label} is in its own room`);
  }
  check(new Set([a1.id, a2.id, b1.id]).size === 3, 'ids are distinct');
  console.log(`  ids: a1=${a1.id} a2=${a2.id} b1=${b1.id}; hello ${JSON.stringify(a1.hello)}`);

  step('join: a1 and a2 in room A, b1 in room B; a1 hears a2 join (presence)');
  equal(await a1.join('A'), { ok: true }, 'a1 joins A');
  const presence = next(a1, 'presence', (p) => p?.id === a2.id);
  equal(await a2.join('A'), { ok: true }, 'a2 joins A');
  equal(await b1.join('B'), { ok: true }, 'b1 joins B');
  equal((await presence)[0], { room: 'A', id: a2.id, event: 'join' }, 'presence on join');
  equal(a1.rooms.sort(), ['A', a1.id].sort(), 'a1 rooms');

  step('a1 sends to room A with an ack: {ok:true}; a2 and a1 get it with from and at');
  const text = `hello room A ${Date.now()}`;
  const before = Date.now();
  equal(await a1.emitWithAck('chat message', { room: 'A', text }), { ok: true }, 'ack of an acked chat message');
  const got = await chatFrom(a2, text);
  equal([got.room, got.text, got.from], ['A', text, a1.id], 'what a2 got');
  check(Number.isSafeInteger(got.at) && got.at >= before - 60000, `at is unix ms: ${got.at}`);
  const own = await chatFrom(a1, text);
  equal(own.from, a1.id, 'the sender, a member, gets its own message');

  step('b1 (room B only) does not get it: a later message to everyone reaches b1 first');
  const marker = `marker for everyone ${Date.now()}`;
  a1.emit('chat message', { room: null, text: marker });
  const m = await chatFrom(b1, marker);
  equal([m.room, m.from], [null, a1.id], 'the broadcast');
  equal(b1.chat.filter((x) => x.text === text).length, 0, 'b1 never got the room-A message');
  await chatFrom(a2, marker);

  step('a message to a room the sender is not in: ack {ok:false}, and a ringwire:error for it, acked or not');
  const hubErrors = () => b1.errors.filter((e) => e.name === 'HubError');
  const reply = await b1.emitWithAck('chat message', { room: 'A', text: 'not a member' });
  check(reply?.ok === false && typeof reply.error === 'string', `reply ${JSON.stringify(reply)}`);
  b1.emit('chat message', { room: 'A', text: 'not a member either' });
  // The hub handles b1's messages in order: when the reply to a later one arrives, the complaints about
  // the two before have arrived too.
  equal(await b1.emitWithAck('chat message', { room: 'B', text: 'in B' }), { ok: true }, 'a later message');
  equal(hubErrors().length, 2, 'one ringwire:error for each refused message');
  const [hubErr] = hubErrors();
  check(typeof hubErr.code === 'string' && hubErr.message.length > 0, `ringwire:error ${hubErr.code}: ${hubErr.message}`);
  console.log(`  reply ${JSON.stringify(reply)}; ringwire:error ${hubErr.code}: ${hubErr.message}`);
  b1.errors.length = 0;
  const marker2 = `second marker ${Date.now()}`;
  a1.emit('chat message', { room: 'A', text: marker2 });
  await chatFrom(a2, marker2);
  equal(a2.chat.filter((x) => x.text.startsWith('not a member')).length, 0, 'the refused messages reached nobody in A');

  step('leave: a2 leaves A (a1 hears it); A messages no longer reach a2');
  const left = next(a1, 'presence', (p) => p?.id === a2.id && p?.event === 'leave');
  equal(await a2.leave('A'), { ok: true }, 'a2 leaves A');
  equal((await left)[0], { room: 'A', id: a2.id, event: 'leave' }, 'presence on leave');
  equal(a2.rooms, [a2.id], 'a2 rooms after leave');
  const afterLeave = `after a2 left ${Date.now()}`;
  a1.emit('chat message', { room: 'A', text: afterLeave });
  const marker3 = `third marker ${Date.now()}`;
  a1.emit('chat message', { text: marker3 }); // room absent: to all
  await chatFrom(a2, marker3);
  equal(a2.chat.filter((x) => x.text === afterLeave).length, 0, 'a2 did not get the A message after leaving');

  step('the own room cannot be left; an empty room name is refused before sending');
  const own2 = await rejection(a1.leave(a1.id), 'leaving the own room');
  check(own2.code === 'EREFUSED', `leave own room: ${own2.code} ${own2.message}`);
  check((await rejection(a1.join(''), 'empty room')) instanceof RangeError, 'empty room name');

  step('server push: a notification with text and at');
  const [note] = await next(a2, 'notification');
  check(typeof note?.text === 'string' && Number.isSafeInteger(note?.at), `notification ${JSON.stringify(note)}`);

  step('a pending emitWithAck rejects at disconnect() and is freed');
  const pending = b1.emitWithAck('chat message', { room: 'B', text: 'sent, then gone' });
  const gone = next(b1, 'disconnect');
  b1.disconnect();
  equal((await gone)[0], { code: 1000, reason: 'client disconnect', wasClean: true, local: true }, 'disconnect info');
  equal((await rejection(pending, 'pending at disconnect')).code, 'EDISCONNECTED', 'rejected');
  equal(b1.pendingAcks, 0, 'freed');
  equal(thrown(() => b1.emit('chat message', { text: 'x' }), 'emit after disconnect').code, 'ENOTCONN', 'emit after disconnect');

  step('a wrong token and a missing token: connect_error 401, fatal, one attempt, no retry');
  const refusedClients = [];
  for (const [label, opts] of [['wrong token', { token: `${token}-wrong` }], ['no token', {}]]) {
    const c = connect(url, opts);
    let connects = 0;
    c.on('connect', () => connects++);
    const [info] = await next(c, 'connect_error');
    equal([info.status, info.fatal], [401, true], `${label}: ${JSON.stringify(info)}`);
    check(info.reason.length > 0, `${label}: a reason`);
    console.log(`  ${label}: ${info.status} ${info.reason}`);
    equal([c.connectAttempts, c.state, connects], [1, 'closed', 0], `${label}: one attempt, closed`);
    refusedClients.push(c);
  }

  step('a foreign Origin: connect_error 403, fatal');
  {
    const c = connect(url, { token, ...withOrigin('http://evil.example') });
    const [info] = await next(c, 'connect_error');
    equal([info.status, info.fatal], [403, true], `foreign origin: ${JSON.stringify(info)}`);
    console.log(`  foreign origin: ${info.status} ${info.reason}`);
    refusedClients.push(c);
    const same = new URL(url).origin;
    const d = connect(url, { token, ...withOrigin(same) });
    const ok = await Promise.race([next(d, 'connect').then(() => 'connect'), next(d, 'connect_error').then(([i]) => JSON.stringify(i))]);
    equal(ok, 'connect', `the hub's own origin ${same} is allowed`);
    d.disconnect();
  }

  step('still no retry from the refused clients after another full round trip');
  equal(await a1.emitWithAck('chat message', { room: 'A', text: 'round trip' }), { ok: true }, 'round trip');
  for (const c of refusedClients) equal([c.connectAttempts, c.state], [1, 'closed'], 'refused client untouched');

  step('no errors reported that were not expected');
  for (const c of [a1, a2]) equal(c.errors.map((e) => `${e.name}: ${e.message}`), [], `${c.label} errors`);
  for (const c of [a1, a2, b1]) equal(c.presence.filter((p) => p?.id === c.id), [], `${c.label} is not told of its own joins and leaves`);
  a1.disconnect();
  a2.disconnect();
}, 60000);
