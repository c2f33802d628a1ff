//! Any `--upstream` value: no panic, and a parsed spec is a fixed point (its own spec
//! parses to it again, and its cluster name is no longer than the input).
#![no_main]

use libfuzzer_sys::fuzz_target;
use xds_shim::model::upstream::Upstream;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(upstream) = text.parse::<Upstream>() {
        let again: Upstream = upstream.spec().parse().expect("its own spec parses");
        assert_eq!(again, upstream);
        assert!(upstream.cluster_name().len() <= text.len() + 1);
    }
});
