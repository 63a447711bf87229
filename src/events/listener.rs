//! Listener identity: a listener is a shared function with an id a Rust program can hold and
//! compare, as a Node program holds and compares the function itself.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use super::name::EventName;

/// The identity of a [`Listener`]: what `on` and its kin return, and what `off` and
/// `listener_count` take. Copy, comparable, unique within the process (never reused).
///
/// Every call of `on(name, closure)` makes a new listener with a new id. Registering one listener
/// several times (Node's `ee.on('x', f); ee.on('x', f)`) goes through a [`Listener`] value and
/// [`EventEmitter::register`](super::EventEmitter::register); all those registrations share its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(u64);

/// The next id. A mutex, not an atomic: this module stands outside the crate's atomics facade
/// (ARCHITECTURE.md, "Layers"), and a listener is created far less often than it is called.
static NEXT_ID: Mutex<u64> = Mutex::new(0);

impl ListenerId {
    fn next() -> Self {
        let mut next = NEXT_ID.lock().unwrap_or_else(PoisonError::into_inner);
        *next += 1;
        ListenerId(*next)
    }
}

/// A listener for events whose listeners receive `&A`: a shared `Fn(&A) + Send + Sync` and its
/// [`ListenerId`]. Cloning keeps the identity (as passing a function around does in Node);
/// [`Listener::new`] makes a new one.
pub struct Listener<A> {
    id: ListenerId,
    f: Arc<dyn Fn(&A) + Send + Sync>,
}

impl<A> Listener<A> {
    /// A new listener, with a new id.
    pub fn new(f: impl Fn(&A) + Send + Sync + 'static) -> Self {
        Listener { id: ListenerId::next(), f: Arc::new(f) }
    }

    /// Its identity.
    pub fn id(&self) -> ListenerId {
        self.id
    }

    /// Calls the function (what Node's `listener(...args)` does: no emitter involved).
    pub fn call(&self, arg: &A) {
        (self.f)(arg)
    }
}

impl<A> Clone for Listener<A> {
    fn clone(&self) -> Self {
        Listener { id: self.id, f: Arc::clone(&self.f) }
    }
}

impl<A> fmt::Debug for Listener<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener").field("id", &self.id).finish_non_exhaustive()
    }
}

/// What the listeners of [`NewListener`](super::NewListener) and
/// [`RemoveListener`](super::RemoveListener) receive: Node's `(eventName, listener)` arguments, with
/// the listener given by its id. For a `once` registration it is the id of the listener itself, never
/// of a wrapper (Node passes the wrapper in some `'removeListener'` cases; a Rust program has no
/// handle on it).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerEvent {
    /// The event the listener is being added to, or was removed from.
    pub name: EventName,
    /// The listener.
    pub id: ListenerId,
}

impl ListenerEvent {
    pub(super) fn new(name: EventName, id: ListenerId) -> Self {
        ListenerEvent { name, id }
    }
}
