//! Any text as a config file: stage 1 and stage 2 never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_config::RawConfig;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(raw) = RawConfig::parse("fuzz.toml", text) {
            let _ = raw.build(&|_: &str| Some("127.0.0.1:1".to_owned()));
        }
    }
});
