//! Input: one browser WebSocket text frame, answered by the session's frame parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|text: &str| {
    let frame = coindcx_hub::session::answer("e", text);
    // The reply is always a JSON object of type `pong` or `error`.
    let reply: Value = serde_json::from_str(&frame).expect("reply is JSON");
    let kind = reply["type"].as_str().expect("reply has a type");
    assert!(kind == "pong" || kind == "error", "{kind}");
    assert_eq!(reply["epoch"], "e");
});
