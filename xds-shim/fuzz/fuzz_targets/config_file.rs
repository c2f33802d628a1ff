//! Any `--config` text: no panic; what parses yields upstreams whose specs parse back to
//! themselves, and the effective configuration renders.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xds_shim::config::file::{parse, upstreams};
use xds_shim::model::upstream::Upstream;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = parse(text) else {
        return;
    };
    if let Ok(list) = upstreams(&file) {
        for (upstream, _settings) in list {
            let again: Upstream = upstream.spec().parse().expect("a parsed spec parses again");
            assert_eq!(again, upstream);
        }
    }
});
