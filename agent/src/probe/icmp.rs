//! The `icmp` probe kind (probe stage of probe → scheduler → outbox → publisher → mqtt): `count`
//! echo requests per check, `interval_between` apart, judged by loss and round-trip time.
//!
//! Each check opens its own socket, connected to the target (the kernel then passes on only
//! packets from it): first an unprivileged ICMP datagram socket (`SOCK_DGRAM` + `IPPROTO_ICMP`,
//! allowed when the agent's group is inside `net.ipv4.ping_group_range`; the kernel picks the
//! echo identifier and delivers only this socket's replies), else a raw socket (needs
//! `CAP_NET_RAW`; replies are matched by identifier and sequence). When neither opens, the check
//! is down with an error naming both ways to allow it.
//!
//! The reported latency is the **median** round-trip time of the replies (robust to one slow
//! reply; the text also gives min / max); with every request lost it is the time waited. Rules:
//! all lost → down; loss above `max_loss_pct` (default 0: any loss) or median RTT above
//! `max_rtt` → degraded; else up. Replies still missing a little before the timeout count as
//! lost. The text (loss and RTTs) is sent with every state; so are the metrics `loss_pct` and,
//! when a reply came back, `rtt_min_ms`, `rtt_median_ms`, `rtt_max_ms`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration as StdDuration, Instant};

use serde::Deserialize;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use watchstand_shared::config::{Duration, Problems};
use watchstand_shared::wire::v1::{ProbeMetric, ProbeState};

use super::{short_error, Check, Observation};

/// The wire name of this kind.
pub const KIND: &str = "icmp";

/// Most echo requests in one check.
pub const MAX_COUNT: u32 = 100;
/// Shortest gap between two requests of a check.
pub const MIN_INTERVAL_BETWEEN: Duration = Duration::from_millis(10);

/// Bytes of payload after the 8-byte ICMP header.
const PAYLOAD: usize = 16;

/// A `kind = "icmp"` probe as written in TOML.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcmpProbeConfig {
    /// Probe id, unique within the agent.
    pub id: String,
    /// IP address or host name (resolved at each check).
    pub host: String,
    /// How often to check.
    pub interval: Duration,
    /// Hard timeout of one check; shorter than `interval`.
    pub timeout: Duration,
    /// Echo requests per check (default 3).
    #[serde(default = "default_count")]
    pub count: u32,
    /// Gap between two requests (default 200ms).
    #[serde(default = "default_interval_between")]
    pub interval_between: Duration,
    /// Loss above this percentage is degraded (default 0: any loss).
    #[serde(default)]
    pub max_loss_pct: f64,
    /// A median round trip above this is degraded.
    #[serde(default)]
    pub max_rtt: Option<Duration>,
}

const fn default_count() -> u32 {
    3
}
const fn default_interval_between() -> Duration {
    Duration::from_millis(200)
}

impl IcmpProbeConfig {
    /// A probe of `host` with the defaults, every 10 s with a 2 s timeout.
    pub fn new(id: &str, host: &str) -> Self {
        Self {
            id: id.to_owned(),
            host: host.to_owned(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            count: default_count(),
            interval_between: default_interval_between(),
            max_loss_pct: 0.0,
            max_rtt: None,
        }
    }

    /// Kind-specific checks; `key` is the probe's place in the file.
    pub fn validate(&self, key: &str, problems: &mut Problems) {
        let host = self.host.trim();
        if host.is_empty() || host != self.host || host.contains(char::is_whitespace) {
            problems.push(
                format!("{key}.host"),
                format!("host {:?} is not an IP address or host name", self.host),
            );
        }
        if self.count == 0 || self.count > MAX_COUNT {
            problems.push(
                format!("{key}.count"),
                format!("{} is outside 1..={MAX_COUNT}", self.count),
            );
        }
        if self.interval_between < MIN_INTERVAL_BETWEEN {
            problems.push(
                format!("{key}.interval_between"),
                format!(
                    "{} is too short; use at least {MIN_INTERVAL_BETWEEN}",
                    self.interval_between
                ),
            );
        } else if self.count > 1 {
            let sending = self.interval_between.get() * (self.count - 1);
            if sending >= self.timeout.get() {
                problems.push(
                    format!("{key}.interval_between"),
                    format!(
                        "{} requests {} apart take {}, not shorter than timeout {}",
                        self.count,
                        self.interval_between,
                        Duration(sending),
                        self.timeout
                    ),
                );
            }
        }
        if !(0.0..100.0).contains(&self.max_loss_pct) {
            problems.push(
                format!("{key}.max_loss_pct"),
                format!(
                    "{} is outside 0 to under 100 (all lost is down anyway)",
                    self.max_loss_pct
                ),
            );
        }
        if let Some(limit) = self.max_rtt {
            if limit.as_millis() == 0 {
                problems.push(format!("{key}.max_rtt"), "must be longer than 0s");
            } else if limit >= self.timeout {
                problems.push(
                    format!("{key}.max_rtt"),
                    format!("{limit} must be shorter than timeout {}", self.timeout),
                );
            }
        }
    }
}

/// A runnable ICMP echo probe.
#[derive(Debug)]
pub struct IcmpProbe {
    host: String,
    count: u16,
    interval_between: StdDuration,
    timeout: StdDuration,
    max_loss_pct: f64,
    max_rtt: Option<StdDuration>,
}

/// How the echo socket was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Unprivileged datagram socket: no IP header, the kernel owns the identifier.
    Datagram,
    /// Raw socket (CAP_NET_RAW): IPv4 replies carry the IP header; match the identifier.
    Raw,
}

/// Opens an ICMP socket for `ip`: datagram first, raw second.
fn open_socket(ip: IpAddr) -> Result<(Socket, Mode), String> {
    let (domain, protocol) = match ip {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    let dgram = match Socket::new(domain, Type::DGRAM, Some(protocol)) {
        Ok(s) => return Ok((s, Mode::Datagram)),
        Err(e) => e,
    };
    match Socket::new(domain, Type::RAW, Some(protocol)) {
        Ok(s) => Ok((s, Mode::Raw)),
        Err(raw) => Err(format!(
            "cannot open an ICMP socket: unprivileged ICMP is not allowed ({dgram}; add the \
             agent's group to sysctl net.ipv4.ping_group_range) and a raw socket needs \
             CAP_NET_RAW ({raw}; e.g. AmbientCapabilities=CAP_NET_RAW in the systemd unit)"
        )),
    }
}

/// Why connecting the socket (a route lookup) failed: a blackhole route gives `EINVAL`.
fn connect_error(ip: IpAddr, e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidInput => format!("no route to {ip} (blackhole route?): {e}"),
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => {
            format!("no route to {ip}: {e}")
        }
        _ => format!("icmp connect {ip}: {e}"),
    }
}

/// The Internet checksum (RFC 1071).
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request: type 8 (IPv4) or 128 (IPv6), with the checksum filled for IPv4 (the
/// kernel computes ICMPv6's).
pub fn echo_request(v6: bool, ident: u16, seq: u16) -> Vec<u8> {
    let mut packet = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    packet.extend_from_slice(&ident.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend((0..PAYLOAD).map(|i| b'w' + (i % 8) as u8));
    if !v6 {
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

/// The `(identifier, sequence)` of an echo reply, or `None` for any other packet. IPv4 packets
/// from a raw socket start with the IP header, which is skipped.
pub fn parse_echo_reply(packet: &[u8], v6: bool, with_ip_header: bool) -> Option<(u16, u16)> {
    let icmp = if with_ip_header && !v6 {
        let header = usize::from(packet.first()? & 0x0f) * 4;
        packet.get(header..)?
    } else {
        packet
    };
    let reply_type = if v6 { 129 } else { 0 };
    if icmp.len() < 8 || icmp[0] != reply_type || icmp[1] != 0 {
        return None;
    }
    Some((
        u16::from_be_bytes([icmp[4], icmp[5]]),
        u16::from_be_bytes([icmp[6], icmp[7]]),
    ))
}

/// What one check saw.
#[derive(Debug, Clone, PartialEq)]
pub struct EchoStats {
    /// Requests sent.
    pub sent: u16,
    /// Round-trip times of the replies.
    pub rtts: Vec<StdDuration>,
}

impl EchoStats {
    /// Lost requests in percent.
    pub fn loss_pct(&self) -> f64 {
        if self.sent == 0 {
            return 100.0;
        }
        100.0 * f64::from(self.sent - self.rtts.len() as u16) / f64::from(self.sent)
    }

    /// The median round trip (the lower middle of an even count).
    pub fn median(&self) -> Option<StdDuration> {
        let mut sorted = self.rtts.clone();
        sorted.sort();
        sorted.get(sorted.len().saturating_sub(1) / 2).copied()
    }

    /// The result's metrics: `loss_pct` always; `rtt_min_ms`, `rtt_median_ms`, `rtt_max_ms`
    /// when a reply came back.
    pub fn metrics(&self) -> Vec<ProbeMetric> {
        let metric = |name: &str, value: f64, uom: &str| ProbeMetric {
            uom: Some(uom.to_owned()),
            ..ProbeMetric::new(name, value)
        };
        let ms = |d: StdDuration| d.as_secs_f64() * 1_000.0;
        let mut out = vec![metric("loss_pct", self.loss_pct(), "%")];
        if let (Some(min), Some(median), Some(max)) = (
            self.rtts.iter().min(),
            self.median(),
            self.rtts.iter().max(),
        ) {
            out.push(metric("rtt_min_ms", ms(*min), "ms"));
            out.push(metric("rtt_median_ms", ms(median), "ms"));
            out.push(metric("rtt_max_ms", ms(*max), "ms"));
        }
        out
    }

    /// `3/3 replies, 0% loss, rtt min/median/max 0.041/0.052/0.090 ms`.
    pub fn text(&self) -> String {
        let ms = |d: StdDuration| format!("{:.3}", d.as_secs_f64() * 1_000.0);
        let head = format!(
            "{}/{} replies, {}% loss",
            self.rtts.len(),
            self.sent,
            round1(self.loss_pct())
        );
        match (
            self.rtts.iter().min(),
            self.median(),
            self.rtts.iter().max(),
        ) {
            (Some(min), Some(median), Some(max)) => format!(
                "{head}, rtt min/median/max {}/{}/{} ms",
                ms(*min),
                ms(median),
                ms(*max)
            ),
            _ => head,
        }
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

impl IcmpProbe {
    /// The runtime probe of a validated config.
    pub fn build(config: &IcmpProbeConfig) -> Self {
        Self {
            host: config.host.clone(),
            count: u16::try_from(config.count.clamp(1, MAX_COUNT)).unwrap_or(3),
            interval_between: config.interval_between.get(),
            timeout: config.timeout.get(),
            max_loss_pct: config.max_loss_pct,
            max_rtt: config.max_rtt.map(|d| d.get()),
        }
    }

    async fn resolve(&self) -> Result<IpAddr, String> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(ip);
        }
        let mut addrs = tokio::net::lookup_host((self.host.as_str(), 0))
            .await
            .map_err(|e| format!("resolve {}: {e}", self.host))?;
        addrs
            .next()
            .map(|a| a.ip())
            .ok_or_else(|| format!("resolve {}: no address", self.host))
    }

    /// Sends the requests and collects replies until all came or `wait` passed.
    async fn ping(&self, ip: IpAddr, wait: StdDuration) -> Result<EchoStats, String> {
        let (socket, mode) = open_socket(ip)?;
        let v6 = ip.is_ipv6();
        socket
            .set_nonblocking(true)
            .map_err(|e| format!("icmp socket: {e}"))?;
        socket
            .connect(&SockAddr::from(SocketAddr::new(ip, 0)))
            .map_err(|e| connect_error(ip, &e))?;
        // Driven as a tokio UDP socket: send(2) and recv(2) are all an ICMP socket needs, and
        // the conversion is safe (no raw file descriptor handling here).
        let socket = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(socket))
            .map_err(|e| format!("icmp socket: {e}"))?;
        let ident: u16 = rand::random();
        let start = tokio::time::Instant::now();
        let deadline = start + wait;
        let mut sent_at: Vec<Instant> = Vec::with_capacity(usize::from(self.count));
        let mut rtts: Vec<Option<StdDuration>> = vec![None; usize::from(self.count)];
        let mut received = 0_usize;
        let mut buf = [0_u8; 1500];
        loop {
            let next_send = (sent_at.len() < usize::from(self.count))
                .then(|| start + self.interval_between * sent_at.len() as u32);
            if next_send.is_none() && received == sent_at.len() {
                break;
            }
            let wake = next_send.map_or(deadline, |t| t.min(deadline));
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {
                    if next_send.is_some_and(|t| t <= tokio::time::Instant::now()) {
                        let seq = sent_at.len() as u16;
                        let packet = echo_request(v6, ident, seq);
                        sent_at.push(Instant::now());
                        // A failed send (no route, filtered) is a lost request, not an error.
                        if let Err(e) = socket.send(&packet).await {
                            tracing::debug!(%ip, error = %e, "ICMP echo request not sent.");
                        }
                    } else if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                }
                got = socket.recv(&mut buf) => {
                    match got {
                        Ok(n) => {
                            let Some((id, seq)) = parse_echo_reply(&buf[..n], v6, mode == Mode::Raw) else {
                                continue;
                            };
                            // The kernel rewrites the identifier of datagram sockets.
                            if mode == Mode::Raw && id != ident {
                                continue;
                            }
                            let i = usize::from(seq);
                            if let (Some(at), Some(slot)) = (sent_at.get(i), rtts.get_mut(i)) {
                                if slot.is_none() {
                                    *slot = Some(at.elapsed());
                                    received += 1;
                                }
                            }
                        }
                        // ICMP errors (unreachable) arrive as socket errors: a lost request.
                        Err(e) => tracing::debug!(%ip, error = %e, "ICMP receive error."),
                    }
                }
            }
        }
        Ok(EchoStats {
            sent: sent_at.len() as u16,
            rtts: rtts.into_iter().flatten().collect(),
        })
    }

    /// The observation of what a check saw.
    pub fn judge(&self, stats: &EchoStats, waited: StdDuration) -> Observation {
        let text = stats.text();
        let Some(median) = stats.median() else {
            return Observation::down(waited, text).with_metrics(stats.metrics());
        };
        let loss = stats.loss_pct();
        let (state, text) = if loss > self.max_loss_pct {
            (
                ProbeState::Degraded,
                format!("{text}; loss over max_loss_pct {}", self.max_loss_pct),
            )
        } else if let Some(limit) = self.max_rtt.filter(|l| median > *l) {
            (
                ProbeState::Degraded,
                format!("{text}; median rtt over max_rtt {}", Duration(limit)),
            )
        } else {
            (ProbeState::Up, text)
        };
        Observation {
            state,
            latency: median,
            error: Some(short_error(text)),
            metrics: stats.metrics(),
        }
    }
}

impl Check for IcmpProbe {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn target(&self) -> &str {
        &self.host
    }

    async fn check(&self) -> Observation {
        let start = Instant::now();
        let ip = match self.resolve().await {
            Ok(ip) => ip,
            Err(e) => return Observation::down(start.elapsed(), e),
        };
        // Stop waiting for replies a little before the scheduler's hard timeout.
        let wait = self.timeout.saturating_sub(start.elapsed()).saturating_sub(
            (self.timeout / 20).clamp(StdDuration::from_millis(1), StdDuration::from_millis(50)),
        );
        match self.ping(ip, wait).await {
            Ok(stats) => self.judge(&stats, start.elapsed()),
            Err(e) => Observation::down(start.elapsed(), e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Probe, ProbeConfig};

    fn ms(v: u64) -> StdDuration {
        StdDuration::from_millis(v)
    }

    #[test]
    fn requests_carry_a_valid_checksum_and_replies_are_parsed() {
        let p = echo_request(false, 0x1234, 7);
        assert_eq!(p.len(), 8 + PAYLOAD);
        assert_eq!(checksum(&p), 0, "a packet with its checksum sums to zero");
        // A reply as a raw socket sees it: a 20-byte IP header first.
        let mut reply = vec![0x45_u8];
        reply.extend([0_u8; 19]);
        reply.extend([0, 0, 0, 0, 0x12, 0x34, 0, 7]);
        assert_eq!(parse_echo_reply(&reply, false, true), Some((0x1234, 7)));
        assert_eq!(
            parse_echo_reply(&reply[20..], false, false),
            Some((0x1234, 7))
        );
        // The request itself (type 8) is not a reply.
        assert_eq!(parse_echo_reply(&p, false, false), None);
        assert_eq!(
            parse_echo_reply(&[129, 0, 0, 0, 0, 1, 0, 2], true, true),
            Some((1, 2))
        );
    }

    #[test]
    fn loss_and_rtt_decide_the_state() {
        let mut c = IcmpProbeConfig::new("ping", "127.0.0.1");
        c.max_loss_pct = 40.0;
        c.max_rtt = Some(Duration::from_millis(50));
        let p = IcmpProbe::build(&c);
        let all = EchoStats {
            sent: 3,
            rtts: vec![ms(3), ms(1), ms(2)],
        };
        let o = p.judge(&all, ms(5));
        assert_eq!(o.state, ProbeState::Up);
        assert_eq!(o.latency, ms(2), "the median");
        assert_eq!(
            o.error.as_deref(),
            Some("3/3 replies, 0% loss, rtt min/median/max 1.000/2.000/3.000 ms")
        );
        let one_lost = EchoStats {
            sent: 3,
            rtts: vec![ms(1), ms(2)],
        };
        assert_eq!(p.judge(&one_lost, ms(5)).state, ProbeState::Up, "33% ≤ 40%");
        let two_lost = EchoStats {
            sent: 3,
            rtts: vec![ms(1)],
        };
        let o = p.judge(&two_lost, ms(5));
        assert_eq!(o.state, ProbeState::Degraded);
        assert!(o.error.unwrap().ends_with(
            "66.7% loss, rtt min/median/max 1.000/1.000/1.000 ms; loss over max_loss_pct 40"
        ));
        let slow = EchoStats {
            sent: 3,
            rtts: vec![ms(60), ms(70), ms(1)],
        };
        let o = p.judge(&slow, ms(5));
        assert_eq!(o.state, ProbeState::Degraded);
        assert!(o.error.unwrap().ends_with("; median rtt over max_rtt 50ms"));
        let none = EchoStats {
            sent: 3,
            rtts: vec![],
        };
        let o = p.judge(&none, ms(1900));
        assert_eq!(o.state, ProbeState::Down);
        assert_eq!(o.latency, ms(1900));
        assert_eq!(o.error.as_deref(), Some("0/3 replies, 100% loss"));
    }

    #[test]
    fn loss_and_rtts_are_published_as_metrics() {
        let p = IcmpProbe::build(&IcmpProbeConfig::new("ping", "127.0.0.1"));
        let named = |o: &Observation| -> Vec<(String, f64, Option<String>)> {
            o.metrics
                .iter()
                .map(|m| (m.name.clone(), m.value, m.uom.clone()))
                .collect()
        };
        let pct = Some("%".to_owned());
        let unit = Some("ms".to_owned());
        let o = p.judge(
            &EchoStats {
                sent: 4,
                rtts: vec![ms(3), ms(1), ms(8)],
            },
            ms(9),
        );
        assert_eq!(
            named(&o),
            [
                ("loss_pct".to_owned(), 25.0, pct.clone()),
                ("rtt_min_ms".to_owned(), 1.0, unit.clone()),
                ("rtt_median_ms".to_owned(), 3.0, unit.clone()),
                ("rtt_max_ms".to_owned(), 8.0, unit),
            ]
        );
        let o = p.judge(
            &EchoStats {
                sent: 2,
                rtts: vec![],
            },
            ms(900),
        );
        assert_eq!(o.state, ProbeState::Down);
        assert_eq!(named(&o), [("loss_pct".to_owned(), 100.0, pct)]);
    }

    #[test]
    fn config_problems_name_the_key() {
        let mut c = IcmpProbeConfig::new("p", " gw ");
        c.count = 0;
        c.interval_between = Duration::from_millis(5);
        c.max_loss_pct = 100.0;
        c.max_rtt = Some(Duration::from_secs(3));
        let mut problems = Problems::default();
        c.validate("probes[id=\"p\"]", &mut problems);
        let mut c = IcmpProbeConfig::new("p", "gw");
        c.count = 20;
        c.validate("probes[id=\"q\"]", &mut problems);
        let text: Vec<String> = problems
            .finish(std::path::Path::new("agent.toml"), ())
            .unwrap_err()
            .errors
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            text,
            [
                "probes[id=\"p\"].host: host \" gw \" is not an IP address or host name",
                "probes[id=\"p\"].count: 0 is outside 1..=100",
                "probes[id=\"p\"].interval_between: 5ms is too short; use at least 10ms",
                "probes[id=\"p\"].max_loss_pct: 100 is outside 0 to under 100 (all lost is down anyway)",
                "probes[id=\"p\"].max_rtt: 3s must be shorter than timeout 2s",
                "probes[id=\"q\"].interval_between: 20 requests 200ms apart take 3s800ms, not shorter than timeout 2s",
            ]
        );
    }

    #[tokio::test]
    async fn loopback_answers_every_request() {
        let mut c = IcmpProbeConfig::new("lo", "127.0.0.1");
        c.interval_between = Duration::from_millis(20);
        let o = Probe::build(&ProbeConfig::Icmp(c)).unwrap().check().await;
        // Needs unprivileged ICMP (net.ipv4.ping_group_range) or CAP_NET_RAW (root).
        assert_eq!(o.state, ProbeState::Up, "{o:?}");
        assert!(
            o.error
                .as_deref()
                .unwrap_or_default()
                .starts_with("3/3 replies, 0% loss, rtt min/median/max "),
            "{o:?}"
        );
        assert!(o.latency < ms(100), "{o:?}");
    }

    #[tokio::test]
    async fn ipv6_loopback_answers_too() {
        if !std::path::Path::new("/proc/net/if_inet6").exists() {
            return; // No IPv6 in this kernel: nothing to ping.
        }
        let mut c = IcmpProbeConfig::new("lo6", "::1");
        c.count = 2;
        c.interval_between = Duration::from_millis(20);
        let o = Probe::build(&ProbeConfig::Icmp(c)).unwrap().check().await;
        assert_eq!(o.state, ProbeState::Up, "{o:?}");
        assert!(
            o.error
                .as_deref()
                .unwrap_or_default()
                .starts_with("2/2 replies, 0% loss"),
            "{o:?}"
        );
    }
}
