//! Availability from stored measurements: loads the probe observations and lost-data spans of a
//! service from the store and hands them to the pure SLA arithmetic in [`crate::sla`].

use crate::config::Service;
use crate::sla::{self, ProbeInput, SlaReport, Span};
use crate::store::{Store, StoreError};

/// Longest interval a stored result may carry; bounds how far before `from` we look.
const MAX_HOLD_LOOKBACK_MS: u64 = 2 * watchstand_shared::wire::v1::result::MAX_INTERVAL_MS;

/// The probe inputs of `service` over `span`.
///
/// # Errors
/// Store failure.
pub fn probe_inputs(
    store: &Store,
    service: &Service,
    span: Span,
) -> Result<Vec<ProbeInput>, StoreError> {
    let mut inputs = Vec::with_capacity(service.probes.len());
    for p in &service.probes {
        let observations = store
            .observations(&p.agent, &p.probe, span.from_ms, span.to_ms)?
            .into_iter()
            .filter(|r| r.observed_ms + MAX_HOLD_LOOKBACK_MS >= span.from_ms)
            .map(|r| r.observation())
            .collect();
        let lost = store
            .gaps(&p.agent, span.from_ms, span.to_ms)?
            .into_iter()
            .map(|g| Span {
                from_ms: g.from_ms,
                to_ms: g.to_ms,
            })
            .collect();
        inputs.push(ProbeInput { observations, lost });
    }
    Ok(inputs)
}

/// The SLA report of `service` over `span`.
///
/// # Errors
/// Store failure.
pub fn service_report(
    store: &Store,
    service: &Service,
    span: Span,
) -> Result<SlaReport, StoreError> {
    let inputs = probe_inputs(store, service, span)?;
    Ok(sla::report(&service.sla, &inputs, &[], span))
}
