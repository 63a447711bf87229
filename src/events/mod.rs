//! Named events in one process: [`EventEmitter`], Node.js's `events.EventEmitter` in Rust (feature
//! `events`).
//!
//! ```
//! use ringwire::events::EventEmitter;
//!
//! let emitter: EventEmitter<String> = EventEmitter::new();
//! emitter.on("message", |msg| println!("received: {msg}"));
//! emitter.emit("message", "Hello, EventEmitter!".to_string())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A leaf layer: it uses no other part of the crate (ARCHITECTURE.md, "Layers").
//!
//! # Node's API, in Rust
//!
//! | Node | here |
//! |---|---|
//! | `new EventEmitter()` | [`EventEmitter::<T>::new()`](EventEmitter::new): events carry a `T`, listeners get `&T` |
//! | `on` / `addListener`, `once`, `prependListener`, `prependOnceListener` | same names, snake case; each returns the new listener's [`ListenerId`] |
//! | the same function passed to `on` twice | [`Listener`] (a shared function with an id) and [`EventEmitter::register`] |
//! | `off` / `removeListener(name, f)` | [`off`](EventEmitter::off)`(name, id)`: removes the most recently added registration of that listener |
//! | `removeAllListeners([name])` | [`remove_all_listeners`](EventEmitter::remove_all_listeners)`(Option<EventName>)` |
//! | `listeners`, `rawListeners` | [`listeners`](EventEmitter::listeners) (`Vec<Listener>`), [`raw_listeners`](EventEmitter::raw_listeners) (`Vec<RawListener>`, which tells `once` wrappers apart) |
//! | `listenerCount(name[, f])` | [`listener_count`](EventEmitter::listener_count)`(name, Option<ListenerId>)` |
//! | `eventNames()` | [`event_names`](EventEmitter::event_names) (`Vec<EventName>`, in Node's order) |
//! | `setMaxListeners`, `getMaxListeners` | same, snake case |
//! | `EventEmitter.defaultMaxListeners` | [`default_max_listeners`] / [`set_default_max_listeners`] |
//! | `emit(name, payload)` returning whether anyone listened | [`emit`](EventEmitter::emit)`(name, payload) -> Result<bool, UnhandledError<T>>` |
//! | `'newListener'`, `'removeListener'` events | keys [`NewListener`], [`RemoveListener`]: their listeners get a [`ListenerEvent`] (name and listener id) |
//! | `events.errorMonitor` | key [`ErrorMonitor`] |
//!
//! The special keys work with every method (`on(NewListener, ..)`, `once(RemoveListener, ..)`,
//! `listener_count(ErrorMonitor, None)`, ...): [`EventKey`] gives each key the argument type its
//! listeners take. A user event called `"newListener"` is an ordinary string event here.
//!
//! # Semantics (Node's, point by point)
//!
//! * `emit` calls the listeners synchronously, on the calling thread, in registration order, over a
//!   snapshot of the list taken when it starts: a listener removed during the emit still runs in it,
//!   one added during the emit waits for the next emit.
//! * A `once` listener is removed before it is called (and `RemoveListener` fires then), so an emit
//!   from inside it does not reach it again; a `once` registration runs at most once even when nested
//!   emits hold it in several snapshots.
//! * `NewListener` fires before the listener is inserted (its listeners don't see it in
//!   `listeners()` yet), `RemoveListener` after the removal, and only when something was removed.
//! * `remove_all_listeners(None)` removes the other events first, in `event_names` order, each
//!   event's listeners last first, then the `RemoveListener` listeners (which see those removals and
//!   each other's), then clears the table.
//! * `emit("error", payload)` with no `"error"` listener returns `Err(UnhandledError { payload })`,
//!   whose message is Node's `Unhandled error. (<payload>)` (the payload as `Debug` prints it). The
//!   [`ErrorMonitor`] listeners run before the `"error"` listeners, and even when there are none:
//!   they don't count as handling it.
//! * Max listeners: 10 by default ([`default_max_listeners`], settable for the whole process); an
//!   emitter's own [`set_max_listeners`](EventEmitter::set_max_listeners) wins; 0 means unlimited.
//!   Adding a listener beyond the limit logs one warning per event name per emitter through the
//!   `log` facade (`log::warn!`, target `ringwire::events`), worded as Node's
//!   `MaxListenersExceededWarning`: `MaxListenersExceededWarning: Possible EventEmitter memory leak
//!   detected. 11 foo listeners added to [EventEmitter]. MaxListeners is 10. Use
//!   emitter.set_max_listeners() to increase limit`. Never an error: the listener is added.
//! * A listener that panics: the panic propagates out of `emit` and the later listeners of that emit
//!   don't run (Node lets a listener's exception escape `emit`). No lock is held while listeners run,
//!   so nothing is poisoned and the emitter stays fully usable.
//!
//! # Threads
//!
//! `EventEmitter<T>` is `Send + Sync` and listeners are `Fn(&A) + Send + Sync`; share the emitter with
//! an `Arc`. The table is behind a mutex that is never held while a listener (or the logger) runs, so
//! listeners may call `on`, `off`, `emit`, ... on their own emitter, from any thread. Listeners run on
//! the thread that emits; emits from two threads run concurrently.
//!
//! # Where this differs from Node
//!
//! * Listener identity is a [`ListenerId`], not the function: `on(name, closure)` makes a new
//!   listener each time; register one [`Listener`] several times with [`EventEmitter::register`].
//!   `RemoveListener` always reports the listener's id (Node sometimes passes its `once` wrapper).
//! * An `Error` payload is wrapped in `UnhandledError` like any other (Node throws it as it is).
//! * Node's warning flag lives on the listener array and is lost when the array shrinks to one
//!   listener, so Node can warn again for the same event; here the warning is given once per event
//!   name for the emitter's life.
//! * Not ported: `captureRejections` and promise-returning listeners, the static helpers
//!   (`events.once`, `events.on`, `getEventListeners`, `setMaxListeners(n, ...targets)`), `EventTarget`.

mod emitter;
mod error;
mod key;
mod listener;
mod name;

use std::sync::{Mutex, PoisonError};

pub use emitter::{EventEmitter, RawListener, Registration};
pub use error::UnhandledError;
#[doc(hidden)]
pub use key::Callback;
pub use key::EventKey;
pub use listener::{Listener, ListenerEvent, ListenerId};
pub use name::{ErrorMonitor, EventName, NewListener, RemoveListener};

/// The limit an emitter starts with: 10, as Node's `EventEmitter.defaultMaxListeners`.
pub const DEFAULT_MAX_LISTENERS: usize = 10;

/// The process-wide default, read whenever an emitter without its own limit checks.
static DEFAULT_MAX: Mutex<usize> = Mutex::new(DEFAULT_MAX_LISTENERS);

/// The limit of every emitter that has not called
/// [`set_max_listeners`](EventEmitter::set_max_listeners) (read at each check, so a change applies to
/// existing emitters too). As Node's `EventEmitter.defaultMaxListeners`.
pub fn default_max_listeners() -> usize {
    *DEFAULT_MAX.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sets [`default_max_listeners`] for the whole process (0: unlimited). As assigning Node's
/// `EventEmitter.defaultMaxListeners`.
pub fn set_default_max_listeners(n: usize) {
    *DEFAULT_MAX.lock().unwrap_or_else(PoisonError::into_inner) = n;
}
