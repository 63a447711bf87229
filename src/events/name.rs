//! Event names: strings, plus the three names Node spells specially (`'newListener'`,
//! `'removeListener'`, the `events.errorMonitor` symbol), which here carry their own types.

use std::fmt;
use std::sync::Arc;

/// The name of an event, as a key of an emitter's table: what [`EventEmitter::event_names`] returns
/// and what [`off`](super::EventEmitter::off), [`listener_count`](super::EventEmitter::listener_count) and
/// [`remove_all_listeners`](super::EventEmitter::remove_all_listeners) accept (`"foo".into()`).
///
/// Node keys its events by strings and symbols. Here a user event is a string ([`EventName::Name`]);
/// the three keys the emitter itself gives a meaning to are variants of their own, so that a user
/// event called `"newListener"` is just a string and never collides with them:
/// [`EventName::NewListener`] and [`EventName::RemoveListener`] (Node's `'newListener'` and
/// `'removeListener'`, whose listeners receive a [`ListenerEvent`] instead of the payload) and
/// [`EventName::ErrorMonitor`] (Node's `events.errorMonitor` symbol).
///
/// [`EventEmitter::event_names`]: super::EventEmitter::event_names
/// [`ListenerEvent`]: super::ListenerEvent
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EventName {
    /// A user event, named by any string (`""`, `"__proto__"` and `"toString"` included: names are
    /// plain map keys, as they are in Node).
    Name(Arc<str>),
    /// Node's `'newListener'`: fired before a listener is added. Register with [`NewListener`].
    NewListener,
    /// Node's `'removeListener'`: fired after a listener is removed. Register with [`RemoveListener`].
    RemoveListener,
    /// Node's `events.errorMonitor`: runs before the `"error"` listeners. Register with
    /// [`ErrorMonitor`].
    ErrorMonitor,
}

impl EventName {
    /// The string of a user event; `None` for the three special keys.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            EventName::Name(s) => Some(s),
            _ => None,
        }
    }

    /// Where `event_names` puts this key, as a JavaScript object orders its own keys (Node returns
    /// `Reflect.ownKeys(this._events)`): first the names that are array indices (`"0"`, `"7"`,
    /// `"4294967294"`: canonical decimal, below 2^32 - 1), by value; then every other string, in
    /// insertion order (`'newListener'` and `'removeListener'` are strings in Node); then symbols
    /// (the error monitor). Returns (class, index within the class; 0 when insertion order decides).
    pub(super) fn order(&self) -> (u8, u32) {
        match self {
            EventName::Name(s) => match array_index(s) {
                Some(i) => (0, i),
                None => (1, 0),
            },
            EventName::NewListener | EventName::RemoveListener => (1, 0),
            EventName::ErrorMonitor => (2, 0),
        }
    }
}

/// `Some(i)` when `s` is an ECMAScript array index: the canonical decimal form of an integer from 0
/// to 2^32 - 2 (no sign, no leading zero).
fn array_index(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 10 || !b.iter().all(u8::is_ascii_digit) || (b[0] == b'0' && b.len() > 1) {
        return None;
    }
    // 2^32 - 1 itself is not an index (it is the largest array length).
    let v: u64 = s.parse().ok()?;
    (v < u64::from(u32::MAX)).then_some(v as u32)
}

/// As Node's `String(name)`: the string itself, `newListener`, `removeListener`, and
/// `Symbol(events.errorMonitor)` (the form Node's max-listeners warning prints).
impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventName::Name(s) => f.write_str(s),
            EventName::NewListener => f.write_str("newListener"),
            EventName::RemoveListener => f.write_str("removeListener"),
            EventName::ErrorMonitor => f.write_str("Symbol(events.errorMonitor)"),
        }
    }
}

impl From<&str> for EventName {
    fn from(s: &str) -> Self {
        EventName::Name(s.into())
    }
}

impl From<&String> for EventName {
    fn from(s: &String) -> Self {
        EventName::Name(s.as_str().into())
    }
}

impl From<String> for EventName {
    fn from(s: String) -> Self {
        EventName::Name(s.into())
    }
}

impl From<Arc<str>> for EventName {
    fn from(s: Arc<str>) -> Self {
        EventName::Name(s)
    }
}

impl From<&EventName> for EventName {
    fn from(n: &EventName) -> Self {
        n.clone()
    }
}

impl From<NewListener> for EventName {
    fn from(_: NewListener) -> Self {
        EventName::NewListener
    }
}

impl From<RemoveListener> for EventName {
    fn from(_: RemoveListener) -> Self {
        EventName::RemoveListener
    }
}

impl From<ErrorMonitor> for EventName {
    fn from(_: ErrorMonitor) -> Self {
        EventName::ErrorMonitor
    }
}

/// A user event's name compares equal to its string; the special keys to no string.
impl PartialEq<str> for EventName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == Some(other)
    }
}

impl PartialEq<&str> for EventName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == Some(*other)
    }
}

/// The key of Node's `'newListener'` event: `emitter.on(NewListener, |ev: &ListenerEvent| ..)` is
/// Node's `emitter.on('newListener', (name, listener) => ..)`. Fired before each listener is added
/// (this one included), with the name and [`ListenerId`](super::ListenerId) of the listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct NewListener;

/// The key of Node's `'removeListener'` event: fired after a listener was removed (by `off`, by
/// `remove_all_listeners`, or because a `once` listener is about to run), with its name and id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct RemoveListener;

/// The key of Node's `events.errorMonitor`: its listeners receive the payload of every `"error"`
/// event before the `"error"` listeners do, and do not count as handling it (with no `"error"`
/// listener, `emit` still returns [`UnhandledError`](super::UnhandledError)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ErrorMonitor;
