//! Any authority: no panic, and a parsed upstream is a fixed point of
//! normalization (parsing its own cluster name gives it back).
#![no_main]

use dnslb_filter::authority::{parse, split_absolute_form};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Some(upstream)) = parse(text) {
        assert_eq!(parse(&upstream.cluster), Ok(Some(upstream.clone())));
        assert!(upstream.cluster.len() <= text.len());
    }
    if let Some((authority, path)) = split_absolute_form(text) {
        assert!(path.starts_with('/'));
        assert!(text.contains(authority));
    }
});
