//! The instruction counts of the cost variants (callgrind), next to their twins.

use std::fmt::Write as _;

use super::super::{
    cost::Family,
    instructions::{Count, LOAD},
};

/// (variant, its twin, count ratio) for every variant with a twin that both counted.
fn ratios(counts: &[Count]) -> Vec<(&Count, &Count, f64)> {
    counts
        .iter()
        .filter_map(|v| {
            let twin = counts.iter().find(|t| Some(t.spec.key) == v.spec.twin)?;
            Some((v, twin, v.per_request()? / twin.per_request()?))
        })
        .collect()
}

pub(super) fn summary(md: &mut String, counts: &[Count]) {
    let recommended: Vec<String> = ratios(counts)
        .into_iter()
        .filter(|(v, ..)| v.spec.family == Family::Dnslb)
        .map(|(v, twin, r)| format!("{} {r:.3}× {}", v.spec.label, twin.spec.label))
        .collect();
    if !recommended.is_empty() {
        let _ = writeln!(
            md,
            "- Instructions Envoy executes per request (callgrind; unlike req/s, the same from \
             one run to the next): {}.",
            recommended.join("; ")
        );
    }
}

pub(super) fn section(md: &mut String, counts: &Result<Vec<Count>, String>) {
    let _ = writeln!(md, "### Instructions per request\n");
    let counts = match counts {
        Ok(counts) => counts,
        Err(e) => {
            let _ = writeln!(md, "Not measured: {e}\n");
            return;
        }
    };
    let _ = writeln!(
        md,
        "Every variant once more, its Envoy under valgrind's callgrind with instrumentation \
         on only while wrk (`{} thread, {} connections, {} s`) runs against it: the \
         instructions the whole Envoy process executed, divided by the requests wrk \
         completed. This count does not move with the machine's load, so its ratio to the \
         twin is the cost of the dnslb path without the noise of the req/s table; \
         1 / ratio is the throughput ratio an Envoy that saturates its CPU would show. It \
         counts work, not time (cache misses are not in it).\n",
        LOAD.threads,
        LOAD.connections,
        LOAD.duration.as_secs()
    );
    let _ = writeln!(
        md,
        "| variant | requests counted | instructions per request | ratio to its twin | 1 / ratio |\n|---|---|---|---|---|"
    );
    let ratios = ratios(counts);
    for count in counts {
        let ratio = ratios.iter().find(|(v, ..)| v.spec.key == count.spec.key);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            count.spec.label,
            count.requests,
            count
                .per_request()
                .map_or("n/a".into(), |n| format!("{n:.0}")),
            ratio.map_or("—".into(), |(_, t, r)| format!(
                "{r:.3} (vs {})",
                t.spec.label
            )),
            ratio.map_or("—".into(), |(.., r)| format!("{:.3}", 1.0 / r)),
        );
    }
    let _ = writeln!(md);
}
