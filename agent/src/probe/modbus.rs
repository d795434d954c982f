//! The `modbus` probe kind (probe stage of probe → scheduler → outbox → publisher → mqtt): reads
//! registers, coils or discrete inputs of a Modbus TCP device (PLC, meter, gateway) and judges
//! each value by a range rule; the values are published as the result's metrics.
//!
//! - **Connect per check**: every check opens a connection, reads once and closes it. Many
//!   gateways accept one client at a time; a kept connection would lock out the SCADA system
//!   between checks, and a fresh one shows a dead listener at once. The cost is a TCP handshake
//!   per interval.
//! - A value is up inside `up = [min, max]`, degraded inside `degraded = [min, max]`, down
//!   otherwise; with no `up` every value read counts as up. The rule applies to each value
//!   read; the probe's state is the worst of them, its text names the first value that is not
//!   up. Values that need different ranges go in separate probes.
//! - 32-bit types take two registers; `word_order = "big"` (default) means the high word comes
//!   first, `"little"` the low word (bytes within a register are always big-endian, as Modbus
//!   sends them).

use std::time::Instant;

use serde::Deserialize;
use tokio_modbus::client::{Client as _, Reader as _};
use tokio_modbus::Slave;
use watchstand_shared::config::{Duration, Problems};
use watchstand_shared::wire::v1::result::MAX_METRICS;
use watchstand_shared::wire::v1::ProbeMetric;

use super::tcp::split_address;
use super::{Check, Observation};

/// The wire name of this kind.
pub const KIND: &str = "modbus";

/// Most registers one read may ask for (Modbus: 125 per request).
pub const MAX_REGISTERS: u16 = 125;

/// What to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModbusFunction {
    /// Function 3: holding registers.
    HoldingRegisters,
    /// Function 4: input registers.
    InputRegisters,
    /// Function 1: coils (0/1).
    Coils,
    /// Function 2: discrete inputs (0/1).
    DiscreteInputs,
}

impl ModbusFunction {
    fn is_bits(self) -> bool {
        matches!(self, ModbusFunction::Coils | ModbusFunction::DiscreteInputs)
    }

    /// The prefix of default metric names (`hr100`, `ir7`, `co3`, `di12`).
    fn short(self) -> &'static str {
        match self {
            ModbusFunction::HoldingRegisters => "hr",
            ModbusFunction::InputRegisters => "ir",
            ModbusFunction::Coils => "co",
            ModbusFunction::DiscreteInputs => "di",
        }
    }
}

/// How registers are read as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    /// One register, unsigned.
    #[default]
    U16,
    /// One register, two's complement.
    I16,
    /// Two registers, unsigned.
    U32,
    /// Two registers, two's complement.
    I32,
    /// Two registers, IEEE 754 single precision.
    F32,
}

impl DataType {
    /// Registers per value.
    pub fn width(self) -> u16 {
        match self {
            DataType::U16 | DataType::I16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
        }
    }
}

/// Order of the two registers of a 32-bit value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WordOrder {
    /// High word first (Modicon convention).
    #[default]
    Big,
    /// Low word first.
    Little,
}

/// A `kind = "modbus"` probe as written in TOML.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusProbeConfig {
    /// Probe id, unique within the agent.
    pub id: String,
    /// `host:port` of the Modbus TCP server (usually port 502).
    pub address: String,
    /// How often to check.
    pub interval: Duration,
    /// Hard timeout of one check (connect and read); shorter than `interval`.
    pub timeout: Duration,
    /// Unit (slave) id, default 1; gateways route by it.
    #[serde(default = "default_unit")]
    pub unit: u8,
    /// What to read.
    pub function: ModbusFunction,
    /// First register / coil address (0-based, as on the wire).
    pub register: u16,
    /// How many values to read (default 1).
    #[serde(default = "default_count")]
    pub count: u16,
    /// How registers are read as numbers (default `u16`); not for coils or discrete inputs.
    #[serde(default)]
    pub data_type: Option<DataType>,
    /// Order of the registers of a 32-bit value (default `big`).
    #[serde(default)]
    pub word_order: WordOrder,
    /// Metric names, one per value (default `hr100`, `hr101`, … by function and address).
    #[serde(default)]
    pub names: Vec<String>,
    /// Values in `[min, max]` are up.
    #[serde(default)]
    pub up: Option<[f64; 2]>,
    /// Values outside `up` but in `[min, max]` are degraded; others are down.
    #[serde(default)]
    pub degraded: Option<[f64; 2]>,
}

const fn default_unit() -> u8 {
    1
}
const fn default_count() -> u16 {
    1
}

fn check_range(key: &str, range: Option<[f64; 2]>, problems: &mut Problems) {
    if let Some([min, max]) = range {
        if !min.is_finite() || !max.is_finite() || min > max {
            problems.push(
                key,
                format!("[{min}, {max}] is not a range [min, max] with min <= max"),
            );
        }
    }
}

impl ModbusProbeConfig {
    fn data_type(&self) -> DataType {
        self.data_type.unwrap_or_default()
    }

    /// Registers (or bits) one check reads.
    fn quantity(&self) -> u32 {
        if self.function.is_bits() {
            u32::from(self.count)
        } else {
            u32::from(self.count) * u32::from(self.data_type().width())
        }
    }

    /// Kind-specific checks; `key` is the probe's place in the file.
    pub fn validate(&self, key: &str, problems: &mut Problems) {
        if split_address(&self.address).is_none() {
            problems.push(
                format!("{key}.address"),
                format!(
                    "address {:?} is not host:port (Modbus TCP is usually port 502)",
                    self.address
                ),
            );
        }
        if self.function.is_bits() && self.data_type.is_some() {
            problems.push(
                format!("{key}.data_type"),
                "applies to registers only; coils and discrete inputs read as 0 or 1",
            );
        }
        let max_count = (MAX_METRICS as u32).min(if self.function.is_bits() {
            u32::from(MAX_REGISTERS)
        } else {
            u32::from(MAX_REGISTERS / self.data_type().width())
        });
        if self.count == 0 || u32::from(self.count) > max_count {
            problems.push(
                format!("{key}.count"),
                format!("{} is outside 1..={max_count}", self.count),
            );
        } else if u32::from(self.register) + self.quantity() > 65_536 {
            problems.push(
                format!("{key}.register"),
                format!(
                    "{} + {} values runs past address 65535",
                    self.register, self.count
                ),
            );
        }
        if !self.names.is_empty() && self.names.len() != usize::from(self.count) {
            problems.push(
                format!("{key}.names"),
                format!(
                    "has {} names for count = {}; give one per value or none",
                    self.names.len(),
                    self.count
                ),
            );
        }
        for name in &self.names {
            if ProbeMetric::new(name.clone(), 0.0).problem().is_some() {
                problems.push(
                    format!("{key}.names"),
                    format!("{name:?} is not a metric name (1-64 bytes, no control characters)"),
                );
            }
        }
        check_range(&format!("{key}.up"), self.up, problems);
        check_range(&format!("{key}.degraded"), self.degraded, problems);
        if self.degraded.is_some() && self.up.is_none() {
            problems.push(
                format!("{key}.degraded"),
                "needs an up range (values outside both are down)",
            );
        }
    }
}

/// A runnable Modbus TCP probe.
#[derive(Debug)]
pub struct ModbusProbe {
    address: String,
    unit: u8,
    function: ModbusFunction,
    register: u16,
    quantity: u16,
    data_type: DataType,
    word_order: WordOrder,
    names: Vec<String>,
    up: Option<[f64; 2]>,
    degraded: Option<[f64; 2]>,
}

impl ModbusProbe {
    /// The runtime probe of a validated config.
    pub fn build(config: &ModbusProbeConfig) -> Self {
        let data_type = config.data_type();
        let step = if config.function.is_bits() {
            1
        } else {
            data_type.width()
        };
        let names = if config.names.is_empty() {
            (0..config.count)
                .map(|i| {
                    let at = u32::from(config.register) + u32::from(i) * u32::from(step);
                    format!("{}{at}", config.function.short())
                })
                .collect()
        } else {
            config.names.clone()
        };
        Self {
            address: config.address.clone(),
            unit: config.unit,
            function: config.function,
            register: config.register,
            quantity: u16::try_from(config.quantity()).unwrap_or(MAX_REGISTERS),
            data_type,
            word_order: config.word_order,
            names,
            up: config.up,
            degraded: config.degraded,
        }
    }

    /// Connects, reads once, disconnects.
    async fn read(&self) -> Result<Vec<f64>, String> {
        let addr = tokio::net::lookup_host(self.address.as_str())
            .await
            .map_err(|e| format!("resolve: {e}"))?
            .next()
            .ok_or_else(|| format!("resolve: no address for {}", self.address))?;
        let mut ctx = tokio_modbus::client::tcp::connect_slave(addr, Slave(self.unit))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (at, n) = (self.register, self.quantity);
        let values = match self.function {
            ModbusFunction::HoldingRegisters => ctx
                .read_holding_registers(at, n)
                .await
                .map(|r| r.map(|words| decode_words(&words, self.data_type, self.word_order))),
            ModbusFunction::InputRegisters => ctx
                .read_input_registers(at, n)
                .await
                .map(|r| r.map(|words| decode_words(&words, self.data_type, self.word_order))),
            ModbusFunction::Coils => ctx
                .read_coils(at, n)
                .await
                .map(|r| r.map(|bits| decode_bits(&bits))),
            ModbusFunction::DiscreteInputs => ctx
                .read_discrete_inputs(at, n)
                .await
                .map(|r| r.map(|bits| decode_bits(&bits))),
        };
        // Closing is a courtesy to one-client gateways; a failure to close changes nothing.
        let _closed = ctx.disconnect().await.is_ok();
        match values {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(exception)) => Err(format!("exception from unit {}: {exception}", self.unit)),
            Err(e) => Err(format!("read: {e}")),
        }
    }

    /// Judges one value: its state and, when not up, why.
    fn judge(&self, name: &str, value: f64) -> (u8, Option<String>) {
        let inside = |r: [f64; 2]| r[0] <= value && value <= r[1];
        let Some(up) = self.up else {
            return (0, None);
        };
        if inside(up) {
            return (0, None);
        }
        let up_text = format!("{name} = {value} outside up [{}, {}]", up[0], up[1]);
        match self.degraded {
            Some(d) if inside(d) => (
                1,
                Some(format!("{up_text}, in degraded [{}, {}]", d[0], d[1])),
            ),
            Some(d) => (
                2,
                Some(format!("{up_text} and degraded [{}, {}]", d[0], d[1])),
            ),
            None => (2, Some(up_text)),
        }
    }
}

/// Registers as numbers of `data_type`.
pub fn decode_words(words: &[u16], data_type: DataType, order: WordOrder) -> Vec<f64> {
    if data_type.width() == 1 {
        return words
            .iter()
            .map(|w| match data_type {
                DataType::I16 => f64::from(*w as i16),
                _ => f64::from(*w),
            })
            .collect();
    }
    words
        .chunks_exact(2)
        .map(|pair| {
            let (hi, lo) = match order {
                WordOrder::Big => (pair[0], pair[1]),
                WordOrder::Little => (pair[1], pair[0]),
            };
            let bits = (u32::from(hi) << 16) | u32::from(lo);
            match data_type {
                DataType::I32 => f64::from(bits as i32),
                DataType::F32 => f64::from(f32::from_bits(bits)),
                _ => f64::from(bits),
            }
        })
        .collect()
}

fn decode_bits(bits: &[bool]) -> Vec<f64> {
    bits.iter().map(|b| if *b { 1.0 } else { 0.0 }).collect()
}

impl Check for ModbusProbe {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn target(&self) -> &str {
        &self.address
    }

    async fn check(&self) -> Observation {
        let start = Instant::now();
        let values = match self.read().await {
            Ok(v) => v,
            Err(e) => return Observation::down(start.elapsed(), e),
        };
        let latency = start.elapsed();
        let (mut worst, mut reason) = (0u8, None);
        let mut metrics = Vec::with_capacity(values.len());
        for (name, value) in self.names.iter().zip(values) {
            let (state, why) = self.judge(name, value);
            if state > worst {
                worst = state;
                reason = why;
            }
            // A NaN in an f32 register cannot travel (JSON has no NaN); it is judged, not sent.
            if value.is_finite() {
                metrics.push(ProbeMetric::new(name.clone(), value));
            } else if worst < 2 {
                worst = 2;
                reason = Some(format!("{name} is not a number ({value})"));
            }
        }
        let observation = match (worst, reason) {
            (0, _) => Observation::up(latency),
            (1, Some(r)) => Observation::degraded(latency, r),
            (_, r) => Observation::down(latency, r.unwrap_or_default()),
        };
        observation.with_metrics(metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_decode_by_type_and_word_order() {
        assert_eq!(
            decode_words(&[65535, 1], DataType::I16, WordOrder::Big),
            [-1.0, 1.0]
        );
        assert_eq!(
            decode_words(&[0x0001, 0x0002], DataType::U32, WordOrder::Big),
            [65538.0]
        );
        assert_eq!(
            decode_words(&[0x0002, 0x0001], DataType::U32, WordOrder::Little),
            [65538.0]
        );
        assert_eq!(
            decode_words(&[0xffff, 0xfffe], DataType::I32, WordOrder::Big),
            [-2.0]
        );
        let bits = 21.5f32.to_bits();
        let (hi, lo) = ((bits >> 16) as u16, bits as u16);
        assert_eq!(
            decode_words(&[hi, lo], DataType::F32, WordOrder::Big),
            [21.5]
        );
        assert_eq!(
            decode_words(&[lo, hi], DataType::F32, WordOrder::Little),
            [21.5]
        );
    }

    #[test]
    fn bad_settings_are_refused_naming_the_key() {
        let got = crate::testutil::probe_problems(
            r#"
id = "plc"
kind = "modbus"
address = "plc.local"
interval = "10s"
timeout = "2s"
function = "coils"
register = 65535
count = 2
data_type = "f32"
names = ["a"]
up = [5.0, 1.0]
"#,
        );
        assert_eq!(
            got,
            [
                "probes[id=\"plc\"].address: address \"plc.local\" is not host:port (Modbus TCP is usually port 502)",
                "probes[id=\"plc\"].data_type: applies to registers only; coils and discrete inputs read as 0 or 1",
                "probes[id=\"plc\"].register: 65535 + 2 values runs past address 65535",
                "probes[id=\"plc\"].names: has 1 names for count = 2; give one per value or none",
                "probes[id=\"plc\"].up: [5, 1] is not a range [min, max] with min <= max",
            ]
        );
        let got = crate::testutil::probe_problems(
            r#"
id = "plc"
kind = "modbus"
address = "127.0.0.1:502"
interval = "10s"
timeout = "2s"
function = "holding_registers"
register = 0
count = 63
data_type = "u32"
degraded = [0.0, 1.0]
"#,
        );
        assert_eq!(
            got,
            [
                "probes[id=\"plc\"].count: 63 is outside 1..=32",
                "probes[id=\"plc\"].degraded: needs an up range (values outside both are down)",
            ]
        );
    }
}
