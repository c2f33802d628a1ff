//! Fakes the unit tests share.

use dnslb_filter::members::Member;

use crate::gauges::SetGauges;

/// A member of weight 1 at SRV level 0, not draining.
pub fn member(address: &str) -> Member {
    Member {
        address: address.into(),
        weight: 1,
        priority: 0,
        draining: false,
    }
}

/// Envoy's gauges, recorded as (id, label, value).
#[derive(Default)]
pub struct FakeGauges(pub Vec<(usize, String, u64)>);

impl SetGauges for FakeGauges {
    fn set_gauge(&mut self, id: usize, label: &str, value: u64) -> bool {
        self.0.push((id, label.into(), value));
        true
    }
}
