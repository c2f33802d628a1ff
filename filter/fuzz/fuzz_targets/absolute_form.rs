//! Any byte stream in any chunking: no panic, nothing lost or invented for
//! streams without absolute-form dns+/srv+ targets.
#![no_main]

use dnslb_filter::absolute_form::{AbsoluteFormRewriter, Fed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let mut rewriter = AbsoluteFormRewriter::default();
    let mut out = Vec::new();
    let chunks: Vec<&[u8]> = stream.chunks(step).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        match rewriter.feed(chunk, i + 1 == chunks.len()) {
            Fed::Unchanged => out.extend_from_slice(chunk),
            Fed::Replaced(bytes) => out.extend_from_slice(&bytes),
        }
    }
    let lower = stream.to_ascii_lowercase();
    if !lower.windows(4).any(|w| w == b"dns+" || w == b"srv+") {
        assert_eq!(out, stream);
    }
});
