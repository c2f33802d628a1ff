//! The release filter stays small: Envoy loads one copy per worker.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dnslb_tests::stack::filter_wasm;

/// The budget from the filter issue; `just build` reports the actual size.
const MAX_WASM_BYTES: u64 = 400 * 1024;

#[test]
fn release_wasm_is_under_400_kb() {
    let path = filter_wasm();
    let size = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `just build`)", path.display()))
        .len();
    assert!(size < MAX_WASM_BYTES, "{} is {size} bytes", path.display());
}
