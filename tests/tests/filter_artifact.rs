//! The release filter stays reasonably small: Envoy loads one copy per
//! worker. It is built for speed (opt-level 3), so the cap is 1 MB.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dnslb_tests::stack::filter_wasm;

/// The budget from the data-plane issue; `just build` reports the actual size.
const MAX_WASM_BYTES: u64 = 1024 * 1024;

#[test]
fn release_wasm_is_under_1_mb() {
    let path = filter_wasm();
    let size = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `just build`)", path.display()))
        .len();
    assert!(size < MAX_WASM_BYTES, "{} is {size} bytes", path.display());
}
