//! The config loader: any text as a config file. It must never panic nor
//! hang (a secret's `file:` is read up to 4 KiB); what it refuses names at
//! least one problem; what it accepts renders as the `/config` view.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match config::from_yaml(text) {
        Ok(cfg) => {
            let _ = config::view::render(&cfg).to_string();
        }
        Err(problems) => {
            assert!(!problems.0.is_empty(), "a refusal names at least one problem");
            let _ = problems.to_string();
        }
    }
});
