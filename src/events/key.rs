//! What may name an event when registering or emitting, and which argument its listeners take.

use std::sync::Arc;

use super::listener::{Listener, ListenerEvent};
use super::name::{ErrorMonitor, EventName, NewListener, RemoveListener};

/// A name that listeners can be registered under, with the type those listeners receive (`Arg`):
///
/// | key | event | listeners receive |
/// |---|---|---|
/// | `&str`, `String`, `&String`, `Arc<str>` | that user event | `&T` (the emitter's payload) |
/// | [`ErrorMonitor`] | Node's `events.errorMonitor` | `&T` |
/// | [`NewListener`] | Node's `'newListener'` | `&ListenerEvent` |
/// | [`RemoveListener`] | Node's `'removeListener'` | `&ListenerEvent` |
///
/// This is how one set of methods (`on`, `once`, `prepend_listener`, `listeners`, ...) serves both
/// the user's events and the emitter's own, as in Node, while each listener keeps a precise type.
/// Sealed: implemented only here.
pub trait EventKey<T>: sealed::Sealed {
    /// The argument this event's listeners receive (by reference).
    type Arg: 'static;

    #[doc(hidden)]
    fn into_event_name(self) -> EventName;
    #[doc(hidden)]
    fn wrap(listener: Listener<Self::Arg>) -> Callback<T>;
    #[doc(hidden)]
    fn unwrap(callback: &Callback<T>) -> Option<&Listener<Self::Arg>>;
}

/// A stored listener: for a user event (or the error monitor), or for one of the emitter's own
/// events. Which one follows from the name it is stored under (the [`EventName`] variants for the
/// meta events are not strings), so [`EventKey::unwrap`] finds the variant it expects.
#[doc(hidden)]
pub enum Callback<T> {
    Payload(Listener<T>),
    Meta(Listener<ListenerEvent>),
}

impl<T> Callback<T> {
    pub(super) fn id(&self) -> super::ListenerId {
        match self {
            Callback::Payload(l) => l.id(),
            Callback::Meta(l) => l.id(),
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for &str {}
    impl Sealed for &String {}
    impl Sealed for String {}
    impl Sealed for std::sync::Arc<str> {}
    impl Sealed for super::ErrorMonitor {}
    impl Sealed for super::NewListener {}
    impl Sealed for super::RemoveListener {}
}

macro_rules! payload_key {
    ($($ty:ty),*) => {$(
        impl<T: 'static> EventKey<T> for $ty {
            type Arg = T;
            fn into_event_name(self) -> EventName {
                EventName::from(self)
            }
            fn wrap(listener: Listener<T>) -> Callback<T> {
                Callback::Payload(listener)
            }
            fn unwrap(callback: &Callback<T>) -> Option<&Listener<T>> {
                match callback {
                    Callback::Payload(l) => Some(l),
                    Callback::Meta(_) => None,
                }
            }
        }
    )*};
}

macro_rules! meta_key {
    ($($ty:ty),*) => {$(
        impl<T: 'static> EventKey<T> for $ty {
            type Arg = ListenerEvent;
            fn into_event_name(self) -> EventName {
                EventName::from(self)
            }
            fn wrap(listener: Listener<ListenerEvent>) -> Callback<T> {
                Callback::Meta(listener)
            }
            fn unwrap(callback: &Callback<T>) -> Option<&Listener<ListenerEvent>> {
                match callback {
                    Callback::Meta(l) => Some(l),
                    Callback::Payload(_) => None,
                }
            }
        }
    )*};
}

payload_key!(&str, &String, String, Arc<str>, ErrorMonitor);
meta_key!(NewListener, RemoveListener);
