//! Capacity planning: what the agents' host samples say about the future. Ingest stores the
//! raw samples (`store::trees::CAPACITY`); [`rollup`] keeps 5-minute and hourly rollups of
//! them, recounted from the raw samples; [`forecast`] is the arithmetic (daily aggregation,
//! step detection, Theil–Sen with an interval, the projected crossing); [`settings`] holds the
//! `[capacity]` config (thresholds, retention, horizon, incidents); [`report`] the typed views
//! the API and CLI show; [`cli`] the `capacity` subcommand's API clients; [`incidents`] the
//! threshold and forecast rules the engine task judges.

pub mod cli;
pub mod forecast;
pub mod incidents;
pub mod report;
pub mod rollup;
pub mod settings;

pub use forecast::{forecast, Aggregate, Forecast, ForecastInput, Outcome};
pub use settings::{CapacitySettings, RawCapacitySection};
