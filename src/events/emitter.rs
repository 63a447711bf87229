//! The emitter: a table from event names to ordered lists of registrations, behind one mutex that is
//! never held while a listener (or the logger) runs.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};

use super::error::UnhandledError;
use super::key::{Callback, EventKey};
use super::listener::{Listener, ListenerEvent, ListenerId};
use super::name::{ErrorMonitor, EventName};

/// Node's `EventEmitter`, for events named by strings whose listeners receive a `&T`.
///
/// Listeners run synchronously, on the thread that calls [`emit`](Self::emit), in registration
/// order, over the list as it was when `emit` started: one removed during the emit still runs in it,
/// one added during the emit waits for the next. Listeners may call anything on the emitter
/// (`on`, `off`, `emit`, ...) re-entrantly, from any thread: the emitter's table is behind a mutex
/// that is released before any listener runs. `EventEmitter<T>` is `Send + Sync` for every `T`
/// (the payload itself never leaves the thread that emits it); share it with an `Arc`. A listener
/// that holds an `Arc` of its own emitter keeps it alive (a cycle): hold a `Weak` there if the
/// emitter should be dropped.
///
/// Where each behaviour comes from in Node, and what differs, is in the [module docs](super).
///
/// # Example
///
/// ```
/// use ringwire::events::EventEmitter;
///
/// let emitter: EventEmitter<String> = EventEmitter::new();
/// let id = emitter.on("message", |msg| println!("received: {msg}"));
/// assert!(emitter.emit("message", "hello".to_string())?);
///
/// emitter.off("message", id);
/// assert!(!emitter.emit("message", "nobody hears this".to_string())?);
///
/// // An "error" event nobody listens to comes back to the caller.
/// let err = emitter.emit("error", "disk full".to_string()).unwrap_err();
/// assert_eq!(err.to_string(), r#"Unhandled error. ("disk full")"#);
/// # Ok::<(), ringwire::events::UnhandledError<String>>(())
/// ```
pub struct EventEmitter<T = ()> {
    inner: Arc<Inner<T>>,
}

/// How [`EventEmitter::register`] adds a listener: the four ways Node has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Registration {
    /// At the end, until removed: `emitter.on` / `addListener`.
    On,
    /// At the end, removed before its first call: `emitter.once`.
    Once,
    /// At the front, until removed: `emitter.prependListener`.
    Prepend,
    /// At the front, removed before its first call: `emitter.prependOnceListener`.
    PrependOnce,
}

impl Registration {
    fn once(self) -> bool {
        matches!(self, Registration::Once | Registration::PrependOnce)
    }

    fn prepend(self) -> bool {
        matches!(self, Registration::Prepend | Registration::PrependOnce)
    }
}

/// One registration as [`EventEmitter::raw_listeners`] shows it: Node's raw listener, which for a
/// `once` registration is the wrapper around the listener rather than the listener itself.
pub struct RawListener<A> {
    listener: Listener<A>,
    /// For a `once` registration: marks it fired and removes it from its emitter (if both are still
    /// there); true when this call fired it.
    fire: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
}

impl<A> RawListener<A> {
    /// Whether this is a `once` registration (Node: the raw listener is a wrapper whose `.listener`
    /// is the function given to `once`).
    pub fn is_once(&self) -> bool {
        self.fire.is_some()
    }

    /// The listener (Node's `wrapper.listener` for a `once` registration, the listener itself
    /// otherwise).
    pub fn listener(&self) -> &Listener<A> {
        &self.listener
    }

    /// The listener's id.
    pub fn id(&self) -> ListenerId {
        self.listener.id()
    }

    /// Calls it as the emitter would: a `once` registration that has not fired yet is removed from
    /// its emitter (firing `RemoveListener`) and then calls the listener; one that has already fired
    /// does nothing. Any other registration just calls the listener. As calling Node's raw listener.
    pub fn call(&self, arg: &A) {
        if self.fire.as_ref().map_or(true, |fire| fire()) {
            self.listener.call(arg)
        }
    }
}

impl<A> Clone for RawListener<A> {
    fn clone(&self) -> Self {
        RawListener { listener: self.listener.clone(), fire: self.fire.clone() }
    }
}

impl<A> fmt::Debug for RawListener<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawListener").field("id", &self.id()).field("once", &self.is_once()).finish()
    }
}

struct Inner<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    /// Each event with at least one registration (a name whose last registration goes is removed, as
    /// Node deletes the key: it comes back at the end of `event_names` when re-added).
    events: HashMap<EventName, Bucket<T>>,
    /// Insertion stamp for the next new key (orders `event_names`).
    next_seq: u64,
    /// This emitter's limit (`set_max_listeners`); `None`: the module default at the time of the check.
    max: Option<usize>,
    /// The events the max-listeners warning was given for (once each, for the emitter's life).
    warned: HashSet<EventName>,
}

struct Bucket<T> {
    seq: u64,
    entries: Vec<Arc<Registered<T>>>,
}

/// One registration. The same `Arc` sits in the table and in every snapshot taken of it, so a `once`
/// registration fires at most once even when nested emits hold it in several snapshots (Node's
/// `state.fired`).
struct Registered<T> {
    callback: Callback<T>,
    once: bool,
    fired: OnceLock<()>,
}

impl<T: 'static> Default for EventEmitter<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: 'static> fmt::Debug for EventEmitter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts: Vec<(EventName, usize)> =
            self.event_names().into_iter().map(|n| (n.clone(), self.listener_count(n, None))).collect();
        f.debug_struct("EventEmitter")
            .field("listeners", &counts)
            .field("max_listeners", &self.get_max_listeners())
            .finish()
    }
}

impl<T: 'static> EventEmitter<T> {
    /// An emitter with no listeners, whose limit follows [`default_max_listeners`](super::default_max_listeners)
    /// until [`set_max_listeners`](Self::set_max_listeners) is called. As Node's `new EventEmitter()`.
    pub fn new() -> Self {
        EventEmitter {
            inner: Arc::new(Inner {
                state: Mutex::new(State { events: HashMap::new(), next_seq: 0, max: None, warned: HashSet::new() }),
            }),
        }
    }

    /// Adds `listener` at the end of `name`'s list and returns its id. As Node's `emitter.on`:
    /// `NewListener` fires first (before the listener is in the list), then the listener is added
    /// (no check for duplicates: a listener added twice runs twice), then the max-listeners check
    /// runs (one `log::warn!` per event name per emitter past the limit).
    ///
    /// `name` is a string for a user event (the listener gets `&T`), [`ErrorMonitor`] (gets `&T`),
    /// or [`NewListener`](super::NewListener) / [`RemoveListener`](super::RemoveListener) (gets
    /// `&ListenerEvent`): see [`EventKey`].
    pub fn on<K: EventKey<T>>(&self, name: K, listener: impl Fn(&K::Arg) + Send + Sync + 'static) -> ListenerId {
        self.register(name, &Listener::new(listener), Registration::On)
    }

    /// The same as [`on`](Self::on) (Node's `emitter.addListener` is an alias of `emitter.on`).
    pub fn add_listener<K: EventKey<T>>(
        &self,
        name: K,
        listener: impl Fn(&K::Arg) + Send + Sync + 'static,
    ) -> ListenerId {
        self.on(name, listener)
    }

    /// Adds `listener` at the end of `name`'s list, to be removed before its first call: the next
    /// emit of `name` removes it (firing `RemoveListener`), then calls it. As Node's `emitter.once`.
    pub fn once<K: EventKey<T>>(&self, name: K, listener: impl Fn(&K::Arg) + Send + Sync + 'static) -> ListenerId {
        self.register(name, &Listener::new(listener), Registration::Once)
    }

    /// Adds `listener` at the front of `name`'s list. As Node's `emitter.prependListener`.
    pub fn prepend_listener<K: EventKey<T>>(
        &self,
        name: K,
        listener: impl Fn(&K::Arg) + Send + Sync + 'static,
    ) -> ListenerId {
        self.register(name, &Listener::new(listener), Registration::Prepend)
    }

    /// Adds `listener` at the front of `name`'s list, to be removed before its first call. As Node's
    /// `emitter.prependOnceListener`.
    pub fn prepend_once_listener<K: EventKey<T>>(
        &self,
        name: K,
        listener: impl Fn(&K::Arg) + Send + Sync + 'static,
    ) -> ListenerId {
        self.register(name, &Listener::new(listener), Registration::PrependOnce)
    }

    /// Adds an existing [`Listener`] (one made with [`Listener::new`] or taken from
    /// [`listeners`](Self::listeners)), keeping its id: this is how one listener is registered several
    /// times, under one name or several, as Node programs pass the same function to `on` again.
    /// `how` picks `on`, `once`, `prepend_listener` or `prepend_once_listener`; everything else is as
    /// [`on`](Self::on). Returns the listener's id.
    pub fn register<K: EventKey<T>>(&self, name: K, listener: &Listener<K::Arg>, how: Registration) -> ListenerId {
        let name = name.into_event_name();
        let id = listener.id();
        self.inner.emit_meta(EventName::NewListener, ListenerEvent::new(name.clone(), id));
        let entry =
            Arc::new(Registered { callback: K::wrap(listener.clone()), once: how.once(), fired: OnceLock::new() });
        let warning = {
            let mut guard = self.inner.lock();
            let state = &mut *guard;
            let limit = state.max.unwrap_or_else(super::default_max_listeners);
            let bucket = match state.events.entry(name.clone()) {
                Entry::Occupied(bucket) => bucket.into_mut(),
                Entry::Vacant(slot) => {
                    state.next_seq += 1;
                    slot.insert(Bucket { seq: state.next_seq, entries: Vec::new() })
                }
            };
            if how.prepend() {
                bucket.entries.insert(0, entry);
            } else {
                bucket.entries.push(entry);
            }
            let count = bucket.entries.len();
            (limit > 0 && count > limit && state.warned.insert(name.clone())).then_some((count, limit))
        };
        if let Some((count, limit)) = warning {
            // Outside the lock: a logger is user code too.
            log::warn!(
                target: "ringwire::events",
                "MaxListenersExceededWarning: Possible EventEmitter memory leak detected. {count} {name} listeners \
                 added to [EventEmitter]. MaxListeners is {limit}. Use emitter.set_max_listeners() to increase limit"
            );
        }
        id
    }

    /// Removes one registration of listener `id` from `name`'s list: the most recently added one (a
    /// `once` registration matches too). Then, if it removed one and `RemoveListener` has listeners,
    /// fires it. Returns whether it removed one. As Node's `emitter.removeListener` / `off`: an emit
    /// already running still calls the removed listener (it works on a snapshot).
    pub fn off(&self, name: impl Into<EventName>, id: ListenerId) -> bool {
        let name = name.into();
        let removed = {
            let mut state = self.inner.lock();
            state.take(&name, |entries| entries.iter().rposition(|e| e.callback.id() == id))
        };
        if removed.is_some() {
            self.inner.emit_meta(EventName::RemoveListener, ListenerEvent::new(name, id));
        }
        removed.is_some()
    }

    /// The same as [`off`](Self::off) (Node's `emitter.off` is an alias of `removeListener`).
    pub fn remove_listener(&self, name: impl Into<EventName>, id: ListenerId) -> bool {
        self.off(name, id)
    }

    /// Removes every listener of `name`, or of every event with `None`. As Node's
    /// `emitter.removeAllListeners([eventName])`:
    ///
    /// * With no `RemoveListener` listener, the lists are dropped at once (nothing fires).
    /// * Otherwise each registration is removed one by one, last first, each firing `RemoveListener`.
    ///   With `None`, the events are taken in [`event_names`](Self::event_names) order, the
    ///   `RemoveListener` listeners last (so they see every other removal, and each other's, last
    ///   first), and then the table is cleared: listeners added meanwhile are dropped too.
    pub fn remove_all_listeners(&self, name: Option<EventName>) {
        let notify = self.inner.lock().events.contains_key(&EventName::RemoveListener);
        match name {
            Some(name) if !notify => {
                self.inner.lock().events.remove(&name);
            }
            Some(name) => self.inner.remove_each(&name),
            None if !notify => self.inner.lock().events.clear(),
            None => {
                for name in self.event_names() {
                    if name != EventName::RemoveListener {
                        self.inner.remove_each(&name);
                    }
                }
                self.inner.remove_each(&EventName::RemoveListener);
                self.inner.lock().events.clear();
            }
        }
    }

    /// Sets this emitter's limit; 0 means no limit. Wins over the module default from now on. As
    /// Node's `emitter.setMaxListeners(n)` (`usize::MAX` works too, as `Infinity` does in Node).
    pub fn set_max_listeners(&self, n: usize) {
        self.inner.lock().max = Some(n);
    }

    /// This emitter's limit: its own if set, otherwise the module default now. As Node's
    /// `emitter.getMaxListeners()`.
    pub fn get_max_listeners(&self) -> usize {
        let own = self.inner.lock().max;
        own.unwrap_or_else(super::default_max_listeners)
    }

    /// The listeners of `name`, in call order (for `once` registrations the listener, not the
    /// wrapper). A copy: later changes to the emitter don't show in it. As Node's `emitter.listeners`.
    pub fn listeners<K: EventKey<T>>(&self, name: K) -> Vec<Listener<K::Arg>> {
        let name = name.into_event_name();
        self.inner.snapshot(&name).iter().filter_map(|e| K::unwrap(&e.callback).cloned()).collect()
    }

    /// The registrations of `name`, in call order, showing which are `once` wrappers. As Node's
    /// `emitter.rawListeners`: calling a `once` wrapper ([`RawListener::call`]) removes it.
    pub fn raw_listeners<K: EventKey<T>>(&self, name: K) -> Vec<RawListener<K::Arg>> {
        let name = name.into_event_name();
        self.inner
            .snapshot(&name)
            .into_iter()
            .filter_map(|entry| {
                let listener = K::unwrap(&entry.callback)?.clone();
                let fire = entry.once.then(|| {
                    let emitter = Arc::downgrade(&self.inner);
                    let name = name.clone();
                    Arc::new(move || Inner::fire(&emitter, &name, &entry)) as Arc<dyn Fn() -> bool + Send + Sync>
                });
                Some(RawListener { listener, fire })
            })
            .collect()
    }

    /// How many registrations `name` has; with `Some(id)`, how many of them are of that listener
    /// (`once` registrations included). As Node's `emitter.listenerCount(eventName[, listener])`.
    pub fn listener_count(&self, name: impl Into<EventName>, listener: Option<ListenerId>) -> usize {
        let name = name.into();
        let state = self.inner.lock();
        let Some(bucket) = state.events.get(&name) else { return 0 };
        match listener {
            None => bucket.entries.len(),
            Some(id) => bucket.entries.iter().filter(|e| e.callback.id() == id).count(),
        }
    }

    /// The events that have listeners, in Node's order (`Reflect.ownKeys` of its table): names that
    /// are array indices (`"2"`, `"10"`) first, by value; then the other strings and `NewListener` /
    /// `RemoveListener`, in the order their first listener was added (a name whose listeners all went
    /// and came back counts from its return); then `ErrorMonitor`. As Node's `emitter.eventNames()`.
    pub fn event_names(&self) -> Vec<EventName> {
        let state = self.inner.lock();
        let mut keyed: Vec<((u8, u32), u64, &EventName)> =
            state.events.iter().map(|(name, bucket)| (name.order(), bucket.seq, name)).collect();
        keyed.sort_unstable_by_key(|&(order, seq, _)| (order, seq));
        keyed.into_iter().map(|(_, _, name)| name.clone()).collect()
    }

    /// Calls every listener of `name` with `&payload`, synchronously, in order, over the list as it
    /// was when the emit started; returns `Ok(true)` if there was any, `Ok(false)` if none. As Node's
    /// `emitter.emit(eventName, payload)`.
    ///
    /// `"error"` is special, as in Node: the [`ErrorMonitor`] listeners run first; then, if there is
    /// no `"error"` listener, the payload comes back as `Err(UnhandledError)` (Node throws
    /// `ERR_UNHANDLED_ERROR`), monitors or not. No other name ever returns `Err`.
    ///
    /// # Panics
    ///
    /// A listener's panic propagates out of `emit` (Node lets a listener's exception escape `emit`):
    /// the listeners after it in that emit do not run, and a `once` listener that panicked stays
    /// removed. The emitter holds no lock while listeners run, so it stays fully usable.
    pub fn emit<K: EventKey<T, Arg = T>>(&self, name: K, payload: T) -> Result<bool, UnhandledError<T>> {
        let name = name.into_event_name();
        if name == "error" {
            let monitors = self.inner.snapshot(&EventName::ErrorMonitor);
            self.inner.run(&EventName::ErrorMonitor, monitors, &payload, <ErrorMonitor as EventKey<T>>::unwrap);
            // Looked up after the monitors ran: one of them may have added an "error" listener (Node
            // reads `events.error` after calling them too).
            let handlers = self.inner.snapshot(&name);
            if handlers.is_empty() {
                return Err(UnhandledError { payload });
            }
            return Ok(self.inner.run(&name, handlers, &payload, K::unwrap));
        }
        let entries = self.inner.snapshot(&name);
        Ok(self.inner.run(&name, entries, &payload, K::unwrap))
    }
}

impl<T> State<T> {
    /// Removes the registration at the index `find` picks, dropping the event's key when it was the
    /// last; returns it.
    fn take(
        &mut self,
        name: &EventName,
        find: impl FnOnce(&[Arc<Registered<T>>]) -> Option<usize>,
    ) -> Option<Arc<Registered<T>>> {
        let bucket = self.events.get_mut(name)?;
        let entry = bucket.entries.remove(find(&bucket.entries)?);
        if bucket.entries.is_empty() {
            self.events.remove(name);
        }
        Some(entry)
    }
}

impl<T: 'static> Inner<T> {
    /// The table. Nothing panics while it is held (no user code runs under it), so a poisoned lock
    /// can't hold a half-made change; recover rather than spread a panic.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `name`'s registrations now (cheap: `Arc` clones).
    fn snapshot(&self, name: &EventName) -> Vec<Arc<Registered<T>>> {
        self.lock().events.get(name).map(|b| b.entries.clone()).unwrap_or_default()
    }

    /// Calls the listeners of a snapshot in order; true if it was not empty. A `once` registration is
    /// fired (at most once, whichever snapshot reaches it first) and removed before its call.
    fn run<A>(
        &self,
        name: &EventName,
        entries: Vec<Arc<Registered<T>>>,
        arg: &A,
        unwrap: fn(&Callback<T>) -> Option<&Listener<A>>,
    ) -> bool {
        let any = !entries.is_empty();
        for entry in entries {
            if entry.once && !self.fire_entry(name, &entry) {
                continue;
            }
            // Always Some: the variant follows from the name the entry is stored under.
            if let Some(listener) = unwrap(&entry.callback) {
                listener.call(arg);
            }
        }
        any
    }

    /// Marks a `once` registration fired and removes it (firing `RemoveListener` if it was still
    /// there); false if it had already fired. Node's `onceWrapper`.
    fn fire_entry(&self, name: &EventName, entry: &Arc<Registered<T>>) -> bool {
        if entry.fired.set(()).is_err() {
            return false;
        }
        let removed = self.lock().take(name, |entries| entries.iter().rposition(|e| Arc::ptr_eq(e, entry)));
        if removed.is_some() {
            self.emit_meta(EventName::RemoveListener, ListenerEvent::new(name.clone(), entry.callback.id()));
        }
        true
    }

    /// [`fire_entry`](Self::fire_entry) through a raw listener, whose emitter may be gone.
    fn fire(emitter: &Weak<Self>, name: &EventName, entry: &Arc<Registered<T>>) -> bool {
        match emitter.upgrade() {
            Some(inner) => inner.fire_entry(name, entry),
            None => entry.fired.set(()).is_ok(),
        }
    }

    /// Removes `name`'s registrations one by one, last first, firing `RemoveListener` for each (Node's
    /// `removeAllListeners(type)` with a `'removeListener'` listener present). Registrations added
    /// meanwhile stay.
    fn remove_each(&self, name: &EventName) {
        for entry in self.snapshot(name).iter().rev() {
            let removed = self.lock().take(name, |entries| entries.iter().rposition(|e| Arc::ptr_eq(e, entry)));
            if removed.is_some() {
                self.emit_meta(EventName::RemoveListener, ListenerEvent::new(name.clone(), entry.callback.id()));
            }
        }
    }

    /// Fires `NewListener` or `RemoveListener`.
    fn emit_meta(&self, name: EventName, event: ListenerEvent) {
        let entries = self.snapshot(&name);
        if !entries.is_empty() {
            self.run(&name, entries, &event, <super::NewListener as EventKey<T>>::unwrap);
        }
    }
}
