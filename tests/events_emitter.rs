//! `ringwire::events::EventEmitter` against Node.js's own tests: each test here is named after the file
//! of Node's `test/parallel/test-event-emitter-*.js` whose edge cases it ports (`modify_in_emit` is
//! `test-event-emitter-modify-in-emit.js`), with Node 20's behaviour as the reference; the last two
//! (`listener_panics`, `between_threads`) cover what is Rust's own: panics and threads.
//!
//! Node listeners are functions compared by identity; here a listener that a test must name again
//! (to remove or count it, or to compare what `'newListener'` reported) is a `Listener` made first and
//! added with `register`, or the `ListenerId` that `on` returned.

use ringwire::events::{
    default_max_listeners, set_default_max_listeners, ErrorMonitor, EventEmitter, EventName, Listener, ListenerEvent,
    ListenerId, NewListener, Registration, RemoveListener, UnhandledError, DEFAULT_MAX_LISTENERS,
};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, Once, OnceLock, PoisonError};
use std::time::Duration;

/// Every test runs under a watchdog that fails it as a hang after this long (a listener that
/// re-enters the emitter would deadlock there if a lock were held while it runs).
const TEST_LIMIT: Duration = Duration::from_secs(60);

fn watched(f: impl FnOnce() + Send + 'static) {
    ringwire_testkit::watchdog(TEST_LIMIT, f)
}

/// What listeners saw, in order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn push(&self, s: impl Into<String>) {
        self.0.lock().unwrap().push(s.into());
    }
    fn get(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    fn count(&self, s: &str) -> usize {
        self.0.lock().unwrap().iter().filter(|x| *x == s).count()
    }
}

fn ids<A>(listeners: Vec<Listener<A>>) -> Vec<ListenerId> {
    listeners.iter().map(Listener::id).collect()
}

/// The process-wide default limit is shared by every test of this binary (they run in parallel):
/// those that read or change it hold this lock, and put it back to 10.
fn defaults() -> MutexGuard<'static, ()> {
    static DEFAULTS: Mutex<()> = Mutex::new(());
    let guard = DEFAULTS.lock().unwrap_or_else(PoisonError::into_inner);
    set_default_max_listeners(DEFAULT_MAX_LISTENERS);
    guard
}

/// A `log` logger for this test binary that records every message, so that tests can count the
/// max-listeners warnings (Node's tests listen for `process.on('warning')`).
struct Recorder;

static RECORDS: Mutex<Vec<(log::Level, String, String)>> = Mutex::new(Vec::new());

impl log::Log for Recorder {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let entry = (record.level(), record.target().to_string(), record.args().to_string());
        RECORDS.lock().unwrap_or_else(PoisonError::into_inner).push(entry);
    }
    fn flush(&self) {}
}

fn install_logger() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&Recorder).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// The warnings logged so far for event `name` (tests use names no other test uses).
fn warnings_for(name: &str) -> Vec<String> {
    let needle = format!(" {name} listeners added to ");
    RECORDS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|(_, _, msg)| msg.contains(&needle))
        .map(|(level, target, msg)| {
            assert_eq!(*level, log::Level::Warn);
            assert_eq!(target, "ringwire::events");
            msg.clone()
        })
        .collect()
}

#[test]
fn add_listeners() {
    watched(|| {
        // 'newListener' reports each addition (name and listener) before the listener is in the list.
        let ee = Arc::new(EventEmitter::<(&'static str, &'static str)>::new());
        let reported = Arc::new(Mutex::new(Vec::<(EventName, ListenerId)>::new()));
        let r = Arc::clone(&reported);
        ee.on(NewListener, move |ev: &ListenerEvent| {
            if ev.name != EventName::NewListener {
                r.lock().unwrap().push((ev.name.clone(), ev.id));
            }
        });
        let hello_calls = Seen::default();
        let calls = hello_calls.clone();
        let hello = Listener::new(move |&(a, b): &(&str, &str)| {
            assert_eq!((a, b), ("a", "b"));
            calls.push("hello");
        });
        let weak = Arc::downgrade(&ee);
        let hello_id = hello.id();
        ee.once(NewListener, move |ev| {
            assert_eq!(ev.name, "hello");
            assert_eq!(ev.id, hello_id);
            assert!(weak.upgrade().unwrap().listeners("hello").is_empty(), "not inserted yet");
        });
        ee.register("hello", &hello, Registration::On);
        let foo = ee.once("foo", |_| panic!("foo is never emitted"));
        assert_eq!(*reported.lock().unwrap(), [("hello".into(), hello.id()), ("foo".into(), foo)]);
        assert_eq!(ee.emit("hello", ("a", "b")), Ok(true));
        assert_eq!(hello_calls.get(), ["hello"]);

        // setMaxListeners(0) is accepted.
        EventEmitter::<()>::new().set_max_listeners(0);

        // A listener added by a 'newListener' listener lands before the one being added.
        let ee = Arc::new(EventEmitter::<()>::new());
        let listen1 = Listener::new(|_: &()| {});
        let listen2 = Listener::new(|_: &()| {});
        let weak = Arc::downgrade(&ee);
        let l2 = listen2.clone();
        ee.once(NewListener, move |_| {
            let ee = weak.upgrade().unwrap();
            assert!(ee.listeners("hello").is_empty());
            let weak = weak.clone();
            ee.once(NewListener, move |_| assert!(weak.upgrade().unwrap().listeners("hello").is_empty()));
            ee.register("hello", &l2, Registration::On);
        });
        ee.register("hello", &listen1, Registration::On);
        assert_eq!(ids(ee.listeners("hello")), [listen2.id(), listen1.id()]);

        // A 'newListener' listener sees the count before each kind of insert (Node: 0, 1; and its
        // own registration is reported to the listeners already there).
        let ee = Arc::new(EventEmitter::<()>::new());
        let counts = Seen::default();
        let (c, weak) = (counts.clone(), Arc::downgrade(&ee));
        ee.on(NewListener, move |ev| {
            let n = weak.upgrade().unwrap().listener_count(ev.name.clone(), None);
            c.push(format!("{} {n}", ev.name));
        });
        ee.once("a", |_| {});
        ee.prepend_listener("a", |_| {});
        ee.on(NewListener, |_| {});
        assert_eq!(counts.get(), ["a 0", "a 1", "newListener 1"]);
    })
}

#[test]
fn check_listener_leaks() {
    watched(|| {
        install_logger();
        let _defaults = defaults();
        let noop = |_: &()| {};

        // The default limit: 10.
        let e = EventEmitter::<()>::new();
        for _ in 0..10 {
            e.on("leaks/default", noop);
        }
        assert!(warnings_for("leaks/default").is_empty());
        e.on("leaks/default", noop);
        assert_eq!(warnings_for("leaks/default").len(), 1);

        // The error monitor (Node's symbol case).
        e.set_max_listeners(1);
        e.on(ErrorMonitor, noop);
        assert!(warnings_for("Symbol(events.errorMonitor)").is_empty());
        e.on(ErrorMonitor, noop);
        assert_eq!(warnings_for("Symbol(events.errorMonitor)").len(), 1);

        // A specific limit.
        e.set_max_listeners(5);
        for _ in 0..5 {
            e.on("leaks/specific", noop);
        }
        assert!(warnings_for("leaks/specific").is_empty());
        e.on("leaks/specific", noop);
        assert_eq!(warnings_for("leaks/specific").len(), 1);

        // Only one.
        e.set_max_listeners(1);
        e.on("leaks/only one", noop);
        assert!(warnings_for("leaks/only one").is_empty());
        e.on("leaks/only one", noop);
        assert_eq!(warnings_for("leaks/only one").len(), 1);

        // 0: unlimited.
        e.set_max_listeners(0);
        for _ in 0..1000 {
            e.on("leaks/unlimited", noop);
        }
        assert!(warnings_for("leaks/unlimited").is_empty());

        // The process-wide default, read at each check (also by emitters that exist already).
        set_default_max_listeners(42);
        let e = EventEmitter::<()>::new();
        let existing = EventEmitter::<()>::new();
        for _ in 0..42 {
            e.on("leaks/fortytwo", noop);
        }
        assert!(warnings_for("leaks/fortytwo").is_empty());
        e.on("leaks/fortytwo", noop);
        assert_eq!(warnings_for("leaks/fortytwo").len(), 1);
        set_default_max_listeners(44);
        for _ in 0..44 {
            existing.on("leaks/fortyfour", noop);
        }
        assert!(warnings_for("leaks/fortyfour").is_empty());
        existing.on("leaks/fortyfour", noop);
        assert_eq!(warnings_for("leaks/fortyfour").len(), 1);

        // But an emitter's own limit wins over the default.
        set_default_max_listeners(42);
        let e = EventEmitter::<()>::new();
        e.set_max_listeners(1);
        e.on("leaks/uno", noop);
        assert!(warnings_for("leaks/uno").is_empty());
        e.on("leaks/uno", noop);
        assert_eq!(warnings_for("leaks/uno").len(), 1);
        set_default_max_listeners(DEFAULT_MAX_LISTENERS);
    })
}

#[test]
fn error_monitor() {
    watched(|| {
        let ee = EventEmitter::<String>::new();
        let seen = Seen::default();
        let s = seen.clone();
        ee.on(ErrorMonitor, move |e: &String| s.push(format!("monitor {e}")));

        // No "error" listener: the monitor runs, and the error is still unhandled.
        let err = ee.emit("error", "MyError".to_string()).unwrap_err();
        assert_eq!(err.payload, "MyError");
        assert_eq!(seen.get(), ["monitor MyError"]);

        // With an "error" listener: the monitor runs first.
        let s = seen.clone();
        ee.once("error", move |e| s.push(format!("error {e}")));
        assert_eq!(ee.emit("error", "MyError".to_string()), Ok(true));
        assert_eq!(seen.get(), ["monitor MyError", "monitor MyError", "error MyError"]);

        // Only "error" events reach the monitor.
        let s = seen.clone();
        ee.on("aEvent", move |_| s.push("aEvent"));
        assert_eq!(ee.emit("aEvent", String::new()), Ok(true));
        assert_eq!(seen.count("monitor MyError"), 2);
        assert!(ee.emit("error", "again".to_string()).is_err(), "the once listener is gone");
        assert_eq!(seen.count("monitor again"), 1);

        // The monitor is a key like the others.
        assert_eq!(ee.listener_count(ErrorMonitor, None), 1);
        assert_eq!(ee.event_names(), ["aEvent".into(), EventName::ErrorMonitor]);

        // "error" listeners are looked up after the monitors ran (Node reads `events.error` then).
        let ee = Arc::new(EventEmitter::<String>::new());
        let weak = Arc::downgrade(&ee);
        let seen = Seen::default();
        let s = seen.clone();
        ee.on(ErrorMonitor, move |_| {
            let s = s.clone();
            weak.upgrade().unwrap().on("error", move |e| s.push(format!("handled {e}")));
        });
        assert_eq!(ee.emit("error", "boom".to_string()), Ok(true));
        assert_eq!(seen.get(), ["handled boom"]);
    })
}

/// A payload whose `Debug` fails (Node's case of an object whose `inspect` throws).
struct Uninspectable;

impl fmt::Debug for Uninspectable {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        Err(fmt::Error)
    }
}

#[test]
fn errors() {
    watched(|| {
        // With a payload: Node's `Unhandled error. (<inspect(payload)>)`, with Debug for inspect.
        let ee = EventEmitter::<String>::new();
        let err = ee.emit("error", "Accepts a string".to_string()).unwrap_err();
        assert_eq!(err.to_string(), r#"Unhandled error. ("Accepts a string")"#);
        assert_eq!(err.into_payload(), "Accepts a string");

        #[derive(Debug, PartialEq)]
        struct Payload {
            message: &'static str,
        }
        let ee = EventEmitter::<Payload>::new();
        let err = ee.emit("error", Payload { message: "Error!" }).unwrap_err();
        assert_eq!(err.to_string(), r#"Unhandled error. (Payload { message: "Error!" })"#);
        let boxed: Box<dyn std::error::Error> = Box::new(err);
        assert_eq!(boxed.to_string(), r#"Unhandled error. (Payload { message: "Error!" })"#);

        let ee = EventEmitter::<Uninspectable>::new();
        let err = ee.emit("error", Uninspectable).unwrap_err();
        assert_eq!(err.to_string(), "Unhandled error. ([events_emitter::Uninspectable])");
        assert_eq!(format!("{err:?}"), "UnhandledError { payload: [events_emitter::Uninspectable] }");

        // Without a payload (Node: `emit('error')`, "Unhandled error. (undefined)"): the unit payload.
        let ee = EventEmitter::<()>::new();
        let err: UnhandledError<()> = ee.emit("error", ()).unwrap_err();
        assert_eq!(err.to_string(), "Unhandled error. (())");

        // Handled: Ok(true), and the listener got the payload.
        let seen = Seen::default();
        let s = seen.clone();
        let ee = EventEmitter::<String>::new();
        ee.on("error", move |e| s.push(e.clone()));
        assert_eq!(ee.emit("error", "handled".to_string()), Ok(true));
        assert_eq!(seen.get(), ["handled"]);

        // No other event is ever an error.
        assert_eq!(EventEmitter::<String>::new().emit("Error", "x".into()), Ok(false));
    })
}

#[test]
fn event_names() {
    watched(|| {
        let e = EventEmitter::<()>::new();
        let m = Listener::new(|_: &()| {});
        e.on("foo", |_| {});
        assert_eq!(e.event_names(), ["foo"]);
        e.register("bar", &m, Registration::On);
        assert_eq!(e.event_names(), ["foo", "bar"]);
        e.off("bar", m.id());
        assert_eq!(e.event_names(), ["foo"]);
        e.register(ErrorMonitor, &m, Registration::On);
        assert_eq!(e.event_names(), ["foo".into(), EventName::ErrorMonitor]);
        e.off(ErrorMonitor, m.id());
        assert_eq!(e.event_names(), ["foo"]);

        // The order of a JavaScript object's keys, which Node returns (checked against Node 20):
        // array indices by value, then strings by insertion, then symbols; a key that goes and comes
        // back counts from its return.
        let e = EventEmitter::<()>::new();
        let b = e.on("b", |_| {});
        e.on(ErrorMonitor, |_| {});
        e.on("10", |_| {});
        e.on(NewListener, |_| {});
        for name in ["2", "01", "4294967295", "4294967294", "a"] {
            e.on(name, |_| {});
        }
        let expected = |last: &[&str]| {
            let mut v: Vec<EventName> = ["2", "10", "4294967294"].map(EventName::from).into();
            v.extend(last.iter().map(|n| if *n == "newListener" { EventName::NewListener } else { (*n).into() }));
            v.push(EventName::ErrorMonitor);
            v
        };
        assert_eq!(e.event_names(), expected(&["b", "newListener", "01", "4294967295", "a"]));
        e.off("b", b);
        e.on("b", |_| {});
        assert_eq!(e.event_names(), expected(&["newListener", "01", "4294967295", "a", "b"]));
    })
}

#[test]
fn get_max_listeners() {
    watched(|| {
        let _defaults = defaults();
        let emitter = EventEmitter::<()>::new();
        assert_eq!(emitter.get_max_listeners(), default_max_listeners());
        assert_eq!(default_max_listeners(), 10);
        emitter.set_max_listeners(0);
        assert_eq!(emitter.get_max_listeners(), 0);
        emitter.set_max_listeners(3);
        assert_eq!(emitter.get_max_listeners(), 3);
        emitter.set_max_listeners(usize::MAX);
        assert_eq!(emitter.get_max_listeners(), usize::MAX);

        // The default is read when asked, by emitters without a limit of their own.
        let other = EventEmitter::<()>::new();
        set_default_max_listeners(2);
        assert_eq!(other.get_max_listeners(), 2);
        assert_eq!(emitter.get_max_listeners(), usize::MAX);
        set_default_max_listeners(DEFAULT_MAX_LISTENERS);
    })
}

#[test]
fn listener_count() {
    watched(|| {
        let emitter = EventEmitter::<()>::new();
        emitter.on("foo", |_| {});
        emitter.on("foo", |_| {});
        emitter.on("baz", |_| {});
        emitter.on("123", |_| {});
        assert_eq!(emitter.listener_count("foo", None), 2);
        assert_eq!(emitter.listener_count("bar", None), 0);
        assert_eq!(emitter.listener_count("baz", None), 1);
        assert_eq!(emitter.listener_count("123", None), 1);

        // With a listener: its registrations, `once` ones included.
        let handler = Listener::new(|_: &()| {});
        emitter.register("foo", &handler, Registration::On);
        emitter.register("foo", &handler, Registration::Once);
        emitter.register("foo", &handler, Registration::PrependOnce);
        assert_eq!(emitter.listener_count("foo", None), 5);
        assert_eq!(emitter.listener_count("foo", Some(handler.id())), 3);
        assert_eq!(emitter.listener_count("baz", Some(handler.id())), 0);
        assert_eq!(emitter.listener_count("nothing", Some(handler.id())), 0);
    })
}

#[test]
fn listeners() {
    watched(|| {
        let listener = Listener::new(|_: &()| {});
        let listener2 = Listener::new(|_: &()| {});

        let ee = EventEmitter::<()>::new();
        ee.register("foo", &listener, Registration::On);
        let copy = ee.listeners("foo");
        assert_eq!(ids(copy.clone()), [listener.id()]);
        ee.remove_all_listeners(Some("foo".into()));
        assert!(ee.listeners("foo").is_empty());
        assert_eq!(ids(copy), [listener.id()], "an earlier copy does not change");

        let ee = EventEmitter::<()>::new();
        ee.register("foo", &listener, Registration::On);
        let copy = ee.listeners("foo");
        ee.register("foo", &listener2, Registration::On);
        assert_eq!(ids(ee.listeners("foo")), [listener.id(), listener2.id()]);
        assert_eq!(ids(copy), [listener.id()]);

        // listeners() shows the listener inside a once wrapper; raw_listeners() the wrapper.
        let calls = Seen::default();
        let c = calls.clone();
        let once = Listener::new(move |_: &()| c.push("once"));
        let ee = EventEmitter::<()>::new();
        ee.register("foo", &once, Registration::Once);
        ee.register("foo", &listener2, Registration::On);
        assert_eq!(ids(ee.listeners("foo")), [once.id(), listener2.id()]);
        let raw = ee.raw_listeners("foo");
        assert_eq!(raw.len(), 2);
        assert!(raw[0].is_once() && !raw[1].is_once());
        assert_eq!((raw[0].id(), raw[1].listener().id()), (once.id(), listener2.id()));

        // Calling the listener inside the wrapper does not remove it; calling the wrapper does.
        raw[0].listener().call(&());
        assert_eq!(ee.raw_listeners("foo").len(), 2);
        raw[0].call(&());
        assert_eq!(ids(ee.listeners("foo")), [listener2.id()]);
        raw[0].call(&());
        assert_eq!(ee.emit("foo", ()), Ok(true));
        assert_eq!(calls.get(), ["once", "once"], "the wrapper ran its listener once");

        // listeners() of a name nobody uses creates nothing.
        let ee = EventEmitter::<()>::new();
        assert!(ee.listeners("nothing").is_empty() && ee.raw_listeners(NewListener).is_empty());
        assert!(ee.event_names().is_empty());
    })
}

#[test]
fn max_listeners_warning() {
    watched(|| {
        install_logger();
        let e = EventEmitter::<()>::new();
        e.set_max_listeners(1);
        e.on("event-type", |_| {});
        assert!(warnings_for("event-type").is_empty());
        e.on("event-type", |_| {}); // past the limit: warns
        e.on("event-type", |_| {}); // only once
        assert_eq!(
            warnings_for("event-type"),
            ["MaxListenersExceededWarning: Possible EventEmitter memory leak detected. 2 event-type listeners \
              added to [EventEmitter]. MaxListeners is 1. Use emitter.set_max_listeners() to increase limit"]
        );
        // Never an error: they were all added.
        assert_eq!(e.listener_count("event-type", None), 3);
    })
}

#[test]
fn max_listeners_warning_only_once() {
    watched(|| {
        install_logger();
        let _defaults = defaults();
        let e = EventEmitter::<()>::new();
        for _ in 0..30 {
            e.on("only-once", |_| {});
            e.prepend_listener("only-once", |_| {});
        }
        assert_eq!(warnings_for("only-once").len(), 1);
        assert!(warnings_for("only-once")[0]
            .contains(" 11 only-once listeners added to [EventEmitter]. MaxListeners is 10."));

        // Once per event name per emitter: for the emitter's life (Node can warn again once an
        // event's list has shrunk to one listener and grown again; see the module docs).
        e.remove_all_listeners(Some("only-once".into()));
        for _ in 0..30 {
            e.once("only-once", |_| {});
        }
        assert_eq!(warnings_for("only-once").len(), 1);

        // Another emitter warns for itself.
        let other = EventEmitter::<()>::new();
        for _ in 0..11 {
            other.on("only-once", |_| {});
        }
        assert_eq!(warnings_for("only-once").len(), 2);
    })
}

#[test]
fn modify_in_emit() {
    watched(|| {
        let e = Arc::new(EventEmitter::<()>::new());
        let called = Seen::default();
        // [callback1, callback2, callback3], known to each of them once all three exist.
        let cbs: Arc<OnceLock<[Listener<()>; 3]>> = Arc::new(OnceLock::new());
        let make = |i: usize| {
            let (e, called, cbs) = (Arc::downgrade(&e), called.clone(), Arc::clone(&cbs));
            Listener::new(move |_: &()| {
                let (e, cbs) = (e.upgrade().unwrap(), cbs.get().unwrap());
                called.push(format!("callback{}", i + 1));
                if i == 0 {
                    e.register("foo", &cbs[1], Registration::On);
                    e.register("foo", &cbs[2], Registration::On);
                }
                e.off("foo", cbs[i].id());
            })
        };
        let made = [make(0), make(1), make(2)];
        let _ = cbs.set(made.clone());
        let [callback1, callback2, callback3] = made;

        e.register("foo", &callback1, Registration::On);
        assert_eq!(e.listener_count("foo", None), 1);
        assert_eq!(e.emit("foo", ()), Ok(true));
        assert_eq!(e.listener_count("foo", None), 2);
        assert_eq!(called.get(), ["callback1"], "added during the emit: not called in it");
        assert_eq!(e.emit("foo", ()), Ok(true));
        assert_eq!(e.listener_count("foo", None), 0);
        assert_eq!(called.get(), ["callback1", "callback2", "callback3"]);
        assert_eq!(e.emit("foo", ()), Ok(false));
        assert_eq!(called.get(), ["callback1", "callback2", "callback3"]);

        e.register("foo", &callback1, Registration::On);
        e.register("foo", &callback2, Registration::On);
        assert_eq!(e.listener_count("foo", None), 2);
        e.remove_all_listeners(Some("foo".into()));
        assert_eq!(e.listener_count("foo", None), 0);

        // Removing listeners during an emit still lets the emit reach all of them.
        let before = called.get().len();
        e.register("foo", &callback2, Registration::On);
        e.register("foo", &callback3, Registration::On);
        assert_eq!(e.listener_count("foo", None), 2);
        assert_eq!(e.emit("foo", ()), Ok(true));
        assert_eq!(called.get()[before..], ["callback2", "callback3"]);
        assert_eq!(e.listener_count("foo", None), 0);
    })
}

#[test]
fn once() {
    watched(|| {
        let e = Arc::new(EventEmitter::<(&'static str, &'static str)>::new());
        let seen = Seen::default();
        let s = seen.clone();
        e.once("hello", move |_| s.push("hello"));
        for _ in 0..4 {
            e.emit("hello", ("a", "b")).unwrap();
        }
        assert_eq!(seen.get(), ["hello"]);

        // Removed before it fires: never called.
        let remove = e.once("foo", |_| panic!("once->foo should not be emitted"));
        assert!(e.off("foo", remove));
        assert_eq!(e.emit("foo", ("", "")), Ok(false));

        // Removed before it is called, so an emit from inside does not reach it again; and the
        // second once listener, reached by the inner emit first, is not called again by the outer.
        let (weak, s) = (Arc::downgrade(&e), seen.clone());
        e.once("e", move |_| {
            s.push("e1");
            weak.upgrade().unwrap().emit("e", ("", "")).unwrap();
        });
        let s = seen.clone();
        e.once("e", move |_| s.push("e2"));
        assert_eq!(e.emit("e", ("", "")), Ok(true));
        assert_eq!(seen.get(), ["hello", "e1", "e2"]);

        // 'removeListener' fires when a once listener fires, before its call, with its id.
        let e = Arc::new(EventEmitter::<()>::new());
        let seen = Seen::default();
        let (s, weak) = (seen.clone(), Arc::downgrade(&e));
        e.on(RemoveListener, move |ev| {
            let left = weak.upgrade().unwrap().listener_count(ev.name.clone(), None);
            s.push(format!("removed {} ({left} left)", ev.name));
        });
        let s = seen.clone();
        let id = e.once("x", move |_| s.push("x called"));
        let s = seen.clone();
        e.on(RemoveListener, move |ev| s.push(format!("removed id {}", ev.id == id)));
        e.emit("x", ()).unwrap();
        assert_eq!(seen.get(), ["removed x (0 left)", "removed id true", "x called"]);

        // A once listener removed during an emit that already holds it still runs in that emit
        // (snapshot), once (checked against Node 20: [first, f, first]).
        let e = Arc::new(EventEmitter::<()>::new());
        let seen = Seen::default();
        let f = Listener::new({
            let s = seen.clone();
            move |_: &()| s.push("f")
        });
        let (s, weak, f_id) = (seen.clone(), Arc::downgrade(&e), f.id());
        e.on("x", move |_| {
            s.push("first");
            weak.upgrade().unwrap().off("x", f_id);
        });
        e.register("x", &f, Registration::Once);
        e.emit("x", ()).unwrap();
        e.emit("x", ()).unwrap();
        assert_eq!(seen.get(), ["first", "f", "first"]);
    })
}

#[test]
fn prepend() {
    watched(|| {
        let my_ee = EventEmitter::<()>::new();
        let m = Arc::new(Mutex::new(0));
        let seen = Seen::default();
        let (mm, s) = (Arc::clone(&m), seen.clone());
        my_ee.on("foo", move |_| {
            assert_eq!(*mm.lock().unwrap(), 2);
            s.push("last");
        });
        let (mm, s) = (Arc::clone(&m), seen.clone());
        my_ee.prepend_listener("foo", move |_| {
            let mut m = mm.lock().unwrap();
            assert_eq!(*m, 1);
            *m += 1;
            s.push("second");
        });
        let (mm, s) = (Arc::clone(&m), seen.clone());
        my_ee.prepend_once_listener("foo", move |_| {
            let mut m = mm.lock().unwrap();
            assert_eq!(*m, 0);
            *m += 1;
            s.push("first");
        });
        my_ee.emit("foo", ()).unwrap();
        assert_eq!(seen.get(), ["first", "second", "last"]);
        assert_eq!(my_ee.listener_count("foo", None), 2, "the prepended once listener is gone");
    })
}

#[test]
fn remove_all_listeners() {
    watched(|| {
        let noop = Listener::new(|_: &()| panic!("must not be called"));

        // Per event: a 'removeListener' for each, last first; the other events stay.
        let ee = Arc::new(EventEmitter::<()>::new());
        ee.register("foo", &noop, Registration::On);
        ee.register("bar", &noop, Registration::On);
        ee.register("baz", &noop, Registration::On);
        ee.register("baz", &noop, Registration::On);
        let (foo, bar, baz) = (ee.listeners("foo"), ee.listeners("bar"), ee.listeners("baz"));
        let seen = Seen::default();
        let s = seen.clone();
        ee.on(RemoveListener, move |ev| {
            assert_eq!(ev.id, noop.id());
            s.push(ev.name.to_string());
        });
        ee.remove_all_listeners(Some("bar".into()));
        ee.remove_all_listeners(Some("baz".into()));
        assert_eq!(seen.get(), ["bar", "baz", "baz"]);
        assert_eq!(ee.listener_count("foo", None), 1);
        assert!(ee.listeners("bar").is_empty() && ee.listeners("baz").is_empty());
        assert_eq!((foo.len(), bar.len(), baz.len()), (1, 1, 2), "earlier copies are unchanged");

        // All events: the 'removeListener' listeners go last (LIFO), each seeing the others go.
        let ee = EventEmitter::<()>::new();
        ee.on("foo", |_| panic!("must not be called"));
        ee.on("bar", |_| panic!("must not be called"));
        let seen = Seen::default();
        let s = seen.clone();
        ee.on(RemoveListener, move |ev| s.push(format!("A {}", ev.name)));
        let s = seen.clone();
        ee.on(RemoveListener, move |ev| s.push(format!("B {}", ev.name)));
        ee.remove_all_listeners(None);
        assert_eq!(seen.get(), ["A foo", "B foo", "A bar", "B bar", "A removeListener"]);
        assert!(ee.event_names().is_empty());

        // A name without listeners, with a 'removeListener' listener present: nothing happens.
        let ee = EventEmitter::<()>::new();
        ee.on(RemoveListener, |_| panic!("must not be called"));
        ee.remove_all_listeners(Some("foo".into()));

        // Each 'removeListener' call sees the list one shorter.
        let ee = Arc::new(EventEmitter::<()>::new());
        let expect_length = Arc::new(Mutex::new(2));
        let (weak, len) = (Arc::downgrade(&ee), Arc::clone(&expect_length));
        ee.on(RemoveListener, move |_| {
            let mut len = len.lock().unwrap();
            assert_eq!(weak.upgrade().unwrap().listener_count("baz", None), *len);
            *len = len.wrapping_sub(1);
        });
        for _ in 0..3 {
            ee.on("baz", |_| panic!("must not be called"));
        }
        ee.remove_all_listeners(Some("baz".into()));
        assert_eq!(ee.listener_count("baz", None), 0);
        assert_eq!(*expect_length.lock().unwrap(), usize::MAX, "called three times");

        // Without any listener at all.
        EventEmitter::<()>::new().remove_all_listeners(None);

        // The error monitor (Node's symbol case) is reported like any event.
        let ee = EventEmitter::<()>::new();
        let id = ee.on(ErrorMonitor, |_| panic!("must not be called"));
        let seen = Seen::default();
        let s = seen.clone();
        ee.on(RemoveListener, move |ev| s.push(format!("{:?} {}", ev.name, ev.id == id)));
        ee.remove_all_listeners(None);
        assert_eq!(seen.get(), ["ErrorMonitor true"]);

        // Listeners added meanwhile: dropped by the final clear of remove_all_listeners(None), kept by
        // remove_all_listeners(Some(..)) (checked against Node 20).
        let ee = Arc::new(EventEmitter::<()>::new());
        ee.on("a", |_| {});
        let weak = Arc::downgrade(&ee);
        ee.on(RemoveListener, move |ev| {
            if ev.name == "a" {
                weak.upgrade().unwrap().on("late", |_| {});
            }
        });
        ee.remove_all_listeners(None);
        assert!(ee.event_names().is_empty());
        let g = Arc::new(EventEmitter::<()>::new());
        g.on("a", |_| {});
        g.on("b", |_| {});
        let weak = Arc::downgrade(&g);
        g.on(RemoveListener, move |ev| {
            if ev.name == "b" {
                weak.upgrade().unwrap().on("a", |_| {});
            }
        });
        g.remove_all_listeners(Some("b".into()));
        assert_eq!(g.event_names(), ["a".into(), EventName::RemoveListener]);
        assert_eq!(g.listener_count("a", None), 2);
    })
}

#[test]
fn remove_listeners() {
    watched(|| {
        let calls = Seen::default();
        let named = |name: &'static str| {
            let c = calls.clone();
            Listener::new(move |_: &()| c.push(name))
        };
        let (listener1, listener2) = (named("listener1"), named("listener2"));

        let ee = Arc::new(EventEmitter::<()>::new());
        ee.register("hello", &listener1, Registration::On);
        let (weak, id1, id2) = (Arc::downgrade(&ee), listener1.id(), listener2.id());
        ee.once(RemoveListener, move |ev| {
            assert_eq!((ev.name.clone(), ev.id), ("hello".into(), id1));
            assert!(weak.upgrade().unwrap().listeners("hello").is_empty());
        });
        assert!(ee.off("hello", id1));
        assert!(ee.listeners("hello").is_empty());

        let ee = Arc::new(EventEmitter::<()>::new());
        ee.register("hello", &listener1, Registration::On);
        ee.register("hello", &listener2, Registration::On);
        let weak = Arc::downgrade(&ee);
        ee.once(RemoveListener, move |ev| {
            assert_eq!((ev.name.clone(), ev.id), ("hello".into(), id1));
            assert_eq!(ids(weak.upgrade().unwrap().listeners("hello")), [id2]);
        });
        assert!(ee.remove_listener("hello", id1));
        assert_eq!(ids(ee.listeners("hello")), [id2]);
        let weak = Arc::downgrade(&ee);
        ee.once(RemoveListener, move |ev| {
            assert_eq!(ev.id, id2);
            assert!(weak.upgrade().unwrap().listeners("hello").is_empty());
        });
        assert!(ee.off("hello", id2));
        assert!(ee.listeners("hello").is_empty());

        // Removing what is not there: no 'removeListener'.
        let ee = EventEmitter::<()>::new();
        ee.on(RemoveListener, |_| panic!("nothing was removed"));
        ee.register("hello", &listener1, Registration::On);
        assert!(!ee.off("nope", id1));
        assert!(!ee.off("hello", id2));

        // A listener removed during an emit still runs in it (the emit works on a snapshot).
        let ee = Arc::new(EventEmitter::<()>::new());
        let listener4 = named("listener4");
        let (weak, id4, c) = (Arc::downgrade(&ee), listener4.id(), calls.clone());
        ee.on("hello", move |_| {
            c.push("listener3");
            weak.upgrade().unwrap().off("hello", id4);
        });
        ee.register("hello", &listener4, Registration::On);
        ee.emit("hello", ()).unwrap();
        ee.emit("hello", ()).unwrap();
        assert_eq!((calls.count("listener3"), calls.count("listener4")), (2, 1));

        // A 'removeListener' listener that removes and emits more.
        let ee = Arc::new(EventEmitter::<()>::new());
        let remove1 = Listener::new(|_: &()| panic!("remove1 should not have been called"));
        let remove2 = Listener::new(|_: &()| panic!("remove2 should not have been called"));
        let (weak, r1, r2, c) = (Arc::downgrade(&ee), remove1.id(), remove2.id(), calls.clone());
        ee.on(RemoveListener, move |ev| {
            c.push("removeListener");
            if ev.id != r1 {
                return;
            }
            let ee = weak.upgrade().unwrap();
            ee.off("quux", r2);
            ee.emit("quux", ()).unwrap();
        });
        ee.register("quux", &remove1, Registration::On);
        ee.register("quux", &remove2, Registration::On);
        ee.off("quux", r1);
        assert_eq!(calls.count("removeListener"), 2);

        // The most recently added registration of the listener goes (checked against Node 20).
        let ee = EventEmitter::<()>::new();
        let other = ee.on("x", |_| {});
        ee.register("x", &listener1, Registration::Prepend);
        ee.register("x", &listener1, Registration::On);
        ee.off("x", id1);
        assert_eq!(ids(ee.listeners("x")), [id1, other]);
        let ee = EventEmitter::<()>::new();
        ee.register("x", &listener1, Registration::Once);
        ee.register("x", &listener1, Registration::On);
        ee.off("x", id1);
        let raw = ee.raw_listeners("x");
        assert_eq!((raw.len(), raw[0].is_once()), (1, true));
        ee.off("x", id1);
        assert!(ee.raw_listeners("x").is_empty(), "a once registration matches too");

        // A once listener's 'removeListener' carries the listener's id.
        let ee = EventEmitter::<()>::new();
        ee.register("hello", &listener1, Registration::Once);
        let seen = Seen::default();
        let s = seen.clone();
        ee.on(RemoveListener, move |ev| s.push(format!("{} {}", ev.name, ev.id == id1)));
        ee.emit("hello", ()).unwrap();
        assert_eq!(seen.get(), ["hello true"]);

        // The last 'removeListener' listener removing itself is not reported (none is left).
        let ee = EventEmitter::<()>::new();
        let rl = ee.on(RemoveListener, |_| panic!("nothing to report"));
        assert!(ee.off(RemoveListener, rl));
    })
}

#[test]
fn set_max_listeners_side_effects() {
    watched(|| {
        let e = EventEmitter::<()>::new();
        e.set_max_listeners(42);
        assert!(e.event_names().is_empty());
    })
}

#[test]
fn special_event_names() {
    watched(|| {
        let ee = EventEmitter::<i32>::new();
        let handler = Listener::new(|_: &i32| {});
        assert!(ee.event_names().is_empty());
        for name in ["__proto__", "__defineGetter__", "toString", "hasOwnProperty", "constructor", ""] {
            assert_eq!(ee.listener_count(name, None), 0);
            ee.register(name, &handler, Registration::On);
        }
        assert_eq!(
            ee.event_names(),
            ["__proto__", "__defineGetter__", "toString", "hasOwnProperty", "constructor", ""]
        );
        for name in ["__proto__", "__defineGetter__", "toString", "hasOwnProperty", "constructor", ""] {
            assert_eq!(ids(ee.listeners(name)), [handler.id()]);
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        ee.on("__proto__", move |v| s.lock().unwrap().push(*v));
        assert_eq!(ee.emit("__proto__", 1), Ok(true));
        assert_eq!(*seen.lock().unwrap(), [1]);

        // The strings Node's emitter gives a meaning to are ordinary user events here: the meta events
        // have keys of their own.
        let ee = EventEmitter::<i32>::new();
        let s = Arc::clone(&seen);
        ee.on("newListener", move |v| s.lock().unwrap().push(*v));
        ee.on("removeListener", |_| panic!("a user event nobody emits"));
        ee.on("x", |_| {});
        assert_eq!(ee.emit("newListener", 2), Ok(true));
        assert_eq!(*seen.lock().unwrap(), [1, 2], "adding 'x' did not call the \"newListener\" listener");
        assert_eq!(ee.listener_count(NewListener, None), 0);
        assert_ne!(EventName::from("newListener"), EventName::NewListener);
    })
}

#[test]
fn listener_panics() {
    watched(|| {
        let ee = Arc::new(EventEmitter::<()>::new());
        let seen = Seen::default();
        let s = seen.clone();
        ee.on("x", move |_| s.push("before"));
        ee.once("x", |_| panic!("listener failed"));
        let s = seen.clone();
        ee.on("x", move |_| s.push("after"));

        // As a Node exception: out of emit, skipping the listeners after it.
        let caught = catch_unwind(AssertUnwindSafe(|| ee.emit("x", ())));
        let message = *caught.unwrap_err().downcast::<&str>().unwrap();
        assert_eq!(message, "listener failed");
        assert_eq!(seen.get(), ["before"]);

        // The emitter is fully usable: the once listener was removed before its call.
        assert_eq!(ee.listener_count("x", None), 2);
        assert_eq!(ee.emit("x", ()), Ok(true));
        assert_eq!(seen.get(), ["before", "before", "after"]);
        let id = ee.on("y", |_| {});
        assert!(ee.off("y", id));
        ee.remove_all_listeners(None);
        assert!(ee.event_names().is_empty());

        // A 'newListener' listener that panics: the listener is not added (Node: `on` throws before
        // the insert).
        let ee = EventEmitter::<()>::new();
        ee.once(NewListener, |_| panic!("refused"));
        assert!(catch_unwind(AssertUnwindSafe(|| ee.on("z", |_| {}))).is_err());
        assert_eq!(ee.listener_count("z", None), 0);
        ee.on("z", |_| {});
        assert_eq!(ee.listener_count("z", None), 1);

        // A panic on another thread poisons nothing here.
        let ee = Arc::new(EventEmitter::<()>::new());
        ee.on("boom", |_| panic!("on another thread"));
        let e2 = Arc::clone(&ee);
        assert!(std::thread::spawn(move || e2.emit("boom", ())).join().is_err());
        let seen = Seen::default();
        let s = seen.clone();
        ee.on("ok", move |_| s.push("ok"));
        assert_eq!(ee.emit("ok", ()), Ok(true));
        assert_eq!(seen.get(), ["ok"]);
    })
}

#[test]
fn between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<EventEmitter<String>>();
    send_sync::<EventEmitter<std::rc::Rc<u8>>>(); // the payload never crosses threads through it
    send_sync::<Listener<String>>();

    watched(|| {
        const THREADS: usize = 4;
        const EMITS: usize = 1000;
        let ee = Arc::new(EventEmitter::<usize>::new());
        let total = Arc::new(Mutex::new(0usize));
        let t = Arc::clone(&total);
        ee.on("tick", move |n| *t.lock().unwrap() += n);
        // A listener that re-enters the emitter from whichever thread emits.
        let weak = Arc::downgrade(&ee);
        ee.on("tick", move |_| {
            let ee = weak.upgrade().unwrap();
            let id = ee.on("scratch", |_| {});
            ee.emit("scratch", 0).unwrap();
            assert!(ee.off("scratch", id));
        });
        let onces = Arc::new(Mutex::new(0usize));
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                let (ee, onces) = (Arc::clone(&ee), Arc::clone(&onces));
                std::thread::spawn(move || {
                    let o = Arc::clone(&onces);
                    ee.once("once", move |_| *o.lock().unwrap() += 1);
                    for _ in 0..EMITS {
                        assert_eq!(ee.emit("tick", 1), Ok(true));
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(*total.lock().unwrap(), THREADS * EMITS);
        assert_eq!(ee.listener_count("scratch", None), 0);
        // Each thread's once listener runs exactly once, whichever emit reaches it.
        assert_eq!(ee.listener_count("once", None), THREADS);
        let emitters: Vec<_> = (0..THREADS)
            .map(|_| {
                let ee = Arc::clone(&ee);
                std::thread::spawn(move || ee.emit("once", 0).unwrap())
            })
            .collect();
        for e in emitters {
            e.join().unwrap();
        }
        assert_eq!(*onces.lock().unwrap(), THREADS);
        assert_eq!(ee.listener_count("once", None), 0);
    })
}
