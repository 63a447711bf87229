//! The seed's EventEmitter snippet in Rust: listen for `message`, emit it once.
//!
//! ```sh
//! cargo run --example event_emitter --features events
//! ```
//!
//! Prints `接收到消息: Hello, EventEmitter!`. The Node original:
//!
//! ```js
//! const EventEmitter = require('events');
//! class MyEmitter extends EventEmitter {}
//! const myEmitter = new MyEmitter();
//! myEmitter.on('message', (msg) => { console.log(`接收到消息: ${msg}`); });
//! myEmitter.emit('message', 'Hello, EventEmitter!');
//! ```

use ringwire::events::EventEmitter;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let my_emitter: EventEmitter<String> = EventEmitter::new();

    // 监听事件 (listen)
    my_emitter.on("message", |msg| println!("接收到消息: {msg}"));

    // 触发事件 (emit)
    my_emitter.emit("message", "Hello, EventEmitter!".to_string())?;
    Ok(())
}
