//! The error `emit("error", ..)` returns when nobody listens for `"error"`.

use std::fmt;

/// `emit("error", payload)` found no `"error"` listener: the Rust form of the exception Node's
/// `emit` throws then (`ERR_UNHANDLED_ERROR`). The payload comes back in [`payload`](Self::payload)
/// (Node's `err.context`).
///
/// Its message has Node's shape, `Unhandled error. (<payload>)`, with the payload as `Debug` prints
/// it where Node prints `util.inspect(payload)`: `Unhandled error. ("disk full")` for a `String`,
/// `Unhandled error. (())` for an emitter whose events carry nothing (`T = ()` plays the part of
/// Node's `undefined`: `emit('error')` gives `Unhandled error. (undefined)`). When the payload's
/// `Debug` fails, the type's name stands in for it, as Node falls back to `String(payload)` when
/// `inspect` throws. Node throws an `Error` payload itself rather than wrapping it; here it is always
/// wrapped, and [`into_payload`](Self::into_payload) gives it back.
///
/// `Display` and `Error` are written out rather than derived with thiserror: its derive infers the
/// `T: Debug` bound only from fields named in the message, and this message formats the payload
/// through the fallback above; the bound belongs on these two impls, not on the struct (and so on
/// every `emit`).
#[derive(Clone, PartialEq, Eq)]
pub struct UnhandledError<T> {
    /// The payload of the unhandled `"error"` event.
    pub payload: T,
}

impl<T> UnhandledError<T> {
    /// The payload of the unhandled `"error"` event.
    pub fn into_payload(self) -> T {
        self.payload
    }
}

impl<T: fmt::Debug> fmt::Debug for UnhandledError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnhandledError").field("payload", &ShowPayload(&self.payload)).finish()
    }
}

impl<T: fmt::Debug> fmt::Display for UnhandledError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Unhandled error. ({})", ShowPayload(&self.payload))
    }
}

impl<T: fmt::Debug> std::error::Error for UnhandledError<T> {}

/// The payload's `Debug`, or its type's name when that fails.
struct ShowPayload<'a, T>(&'a T);

impl<T: fmt::Debug> fmt::Display for ShowPayload<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        let mut shown = String::new();
        match write!(shown, "{:?}", self.0) {
            Ok(()) => f.write_str(&shown),
            Err(_) => write!(f, "[{}]", std::any::type_name::<T>()),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for ShowPayload<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
