//! The `dns` probe kind (probe stage of probe → scheduler → outbox → publisher → mqtt): one
//! query per check, sent straight to a server (no cache, no resolver library in between) and
//! judged by its answer.
//!
//! The query is built and parsed with `hickory-proto` and sent over UDP (recursion desired,
//! EDNS payload 1232); a truncated answer is asked again over TCP. The server is `server` or,
//! when unset, the first `nameserver` of `/etc/resolv.conf`, read at each check (so a changed
//! resolver is seen); `search` and `ndots` do not apply: the name is always absolute. One UDP
//! retransmission is sent at half the timeout.
//!
//! Up: the answer holds at least one record of the type asked, every `expect` value is among
//! them (names compared without case and trailing dot) and, with `contains`, one of them holds
//! the text. NXDOMAIN, SERVFAIL, REFUSED (any error code), an empty answer and silence are down
//! with the reason. Up but slower than `degraded_after` is degraded.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration as StdDuration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use watchstand_shared::config::{Duration, Problems};

use super::{Check, Observation, ProbeError};

/// The wire name of this kind.
pub const KIND: &str = "dns";

/// Where the system resolver's servers are listed.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Largest UDP answer asked for (EDNS), the size DNS flag day 2020 settled on.
const EDNS_PAYLOAD: u16 = 1232;

/// The record types a probe may ask for, as listed in errors.
pub const RECORD_TYPES: [&str; 11] = [
    "A", "AAAA", "CAA", "CNAME", "HTTPS", "MX", "NS", "PTR", "SOA", "SRV", "TXT",
];

/// A `kind = "dns"` probe as written in TOML.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "RawDnsProbeConfig")]
pub struct DnsProbeConfig {
    /// Probe id, unique within the agent.
    pub id: String,
    /// The name asked for; for `PTR`, an IP address is turned into its reverse name.
    pub name: String,
    /// Record type (default `A`).
    pub record_type: String,
    /// `ip:port` (or `ip`, port 53) of the server; unset: the system resolver.
    pub server: Option<String>,
    /// How often to check.
    pub interval: Duration,
    /// Hard timeout of one check; shorter than `interval`.
    pub timeout: Duration,
    /// Each of these values must be among the answers.
    pub expect: Option<Vec<String>>,
    /// One answer must contain this text.
    pub contains: Option<String>,
    /// Up but slower than this is `degraded`.
    pub degraded_after: Option<Duration>,
    /// What is probed, as reported: `name TYPE` and ` @server` when one is set.
    target: String,
}

/// The TOML shape of [`DnsProbeConfig`] (which adds the derived target).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDnsProbeConfig {
    id: String,
    name: String,
    #[serde(default = "default_record_type")]
    record_type: String,
    #[serde(default)]
    server: Option<String>,
    interval: Duration,
    timeout: Duration,
    #[serde(default)]
    expect: Option<Vec<String>>,
    #[serde(default)]
    contains: Option<String>,
    #[serde(default)]
    degraded_after: Option<Duration>,
}

fn default_record_type() -> String {
    "A".to_owned()
}

impl From<RawDnsProbeConfig> for DnsProbeConfig {
    fn from(r: RawDnsProbeConfig) -> Self {
        let mut c = Self::new(&r.id, &r.name, &r.record_type, r.server.as_deref());
        c.interval = r.interval;
        c.timeout = r.timeout;
        c.expect = r.expect;
        c.contains = r.contains;
        c.degraded_after = r.degraded_after;
        c
    }
}

impl DnsProbeConfig {
    /// A probe of `name`/`record_type` against `server` (or the system resolver), every 10 s
    /// with a 2 s timeout and no value checks.
    pub fn new(id: &str, name: &str, record_type: &str, server: Option<&str>) -> Self {
        let mut target = format!("{name} {}", record_type.to_ascii_uppercase());
        if let Some(s) = server {
            target.push_str(&format!(" @{s}"));
        }
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            record_type: record_type.to_owned(),
            server: server.map(str::to_owned),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            expect: None,
            contains: None,
            degraded_after: None,
            target,
        }
    }

    /// What is probed, as reported in results.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Kind-specific checks; `key` is the probe's place in the file.
    pub fn validate(&self, key: &str, problems: &mut Problems) {
        let record_type = parse_record_type(&self.record_type);
        if record_type.is_none() {
            problems.push(
                format!("{key}.record_type"),
                format!(
                    "record_type {:?} is not one of {}",
                    self.record_type,
                    RECORD_TYPES.join(", ")
                ),
            );
        }
        if self.name.trim().is_empty() {
            problems.push(format!("{key}.name"), "must not be empty");
        } else if let Err(e) = query_name(&self.name, record_type.unwrap_or(RecordType::A)) {
            problems.push(format!("{key}.name"), e);
        }
        if let Some(server) = &self.server {
            if parse_server(server).is_none() {
                problems.push(
                    format!("{key}.server"),
                    format!("server {server:?} is not ip:port or ip (IPv6 as [::1]:53)"),
                );
            }
        }
        if let Some(expect) = &self.expect {
            if expect.is_empty() {
                problems.push(format!("{key}.expect"), "must list at least one value");
            }
            if expect.iter().any(|v| v.trim().is_empty()) {
                problems.push(format!("{key}.expect"), "values must not be empty");
            }
        }
        if self.contains.as_deref().is_some_and(str::is_empty) {
            problems.push(format!("{key}.contains"), "must not be empty");
        }
        if let Some(limit) = self.degraded_after {
            if limit.as_millis() == 0 {
                problems.push(format!("{key}.degraded_after"), "must be longer than 0s");
            } else if limit >= self.timeout {
                problems.push(
                    format!("{key}.degraded_after"),
                    format!("{limit} must be shorter than timeout {}", self.timeout),
                );
            }
        }
    }
}

/// The record type of a config value (any case); `None` when it is not one a probe may ask.
fn parse_record_type(text: &str) -> Option<RecordType> {
    let upper = text.to_ascii_uppercase();
    if !RECORD_TYPES.contains(&upper.as_str()) {
        return None;
    }
    RecordType::from_str(&upper).ok()
}

/// The absolute name asked for: `PTR` of an IP address asks for its reverse name.
fn query_name(name: &str, record_type: RecordType) -> Result<Name, String> {
    if record_type == RecordType::PTR {
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(Name::from(ip));
        }
    }
    let mut parsed =
        Name::from_utf8(name).map_err(|e| format!("name {name:?} is not a domain name: {e}"))?;
    parsed.set_fqdn(true);
    Ok(parsed)
}

/// `ip:port`, `[v6]:port` or a bare IP (port 53).
fn parse_server(text: &str) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return (addr.port() != 0).then_some(addr);
    }
    text.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, 53))
}

/// The first `nameserver` of a resolv.conf text (IPv6 zone ids are not supported).
pub fn first_nameserver(resolv_conf: &str) -> Option<SocketAddr> {
    resolv_conf.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("nameserver"))
            .then(|| words.next())
            .flatten()
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

/// The server of the system resolver.
fn system_server(path: &Path) -> Result<SocketAddr, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("system resolver: cannot read {}: {e}", path.display()))?;
    first_nameserver(&text)
        .ok_or_else(|| format!("system resolver: no nameserver in {}", path.display()))
}

/// A runnable DNS probe.
#[derive(Debug)]
pub struct DnsProbe {
    target: String,
    name: Name,
    record_type: RecordType,
    server: Option<SocketAddr>,
    timeout: StdDuration,
    expect: Vec<String>,
    contains: Option<String>,
    degraded_after: Option<StdDuration>,
}

impl DnsProbe {
    /// The runtime probe of a validated config.
    ///
    /// # Errors
    /// A value validation should have refused.
    pub fn build(config: &DnsProbeConfig) -> Result<Self, ProbeError> {
        let invalid = |what: String| ProbeError::Invalid {
            id: config.id.clone(),
            what,
        };
        let record_type = parse_record_type(&config.record_type)
            .ok_or_else(|| invalid(format!("record_type {:?}", config.record_type)))?;
        let name = query_name(&config.name, record_type).map_err(invalid)?;
        let server = config
            .server
            .as_deref()
            .map(|s| parse_server(s).ok_or_else(|| invalid(format!("server {s:?}"))))
            .transpose()?;
        Ok(Self {
            target: config.target.clone(),
            name,
            record_type,
            server,
            timeout: config.timeout.get(),
            expect: config.expect.clone().unwrap_or_default(),
            contains: config.contains.clone(),
            degraded_after: config.degraded_after.map(|d| d.get()),
        })
    }

    fn query(&self) -> Result<(u16, Vec<u8>), String> {
        let mut message = Message::query();
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(self.name.clone(), self.record_type));
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        message.set_edns(edns);
        let bytes = message
            .to_vec()
            .map_err(|e| format!("cannot encode the query: {e}"))?;
        Ok((message.metadata.id, bytes))
    }

    /// Whether `reply` answers query `id` for our name and type.
    fn is_our_reply(&self, id: u16, reply: &Message) -> bool {
        reply.metadata.id == id
            && reply.metadata.message_type == MessageType::Response
            && reply
                .queries
                .first()
                .is_none_or(|q| q.query_type() == self.record_type && *q.name() == self.name)
    }

    /// Sends the query over UDP (one retransmission at half of `wait`) and returns the first
    /// reply to it.
    async fn ask_udp(
        &self,
        server: SocketAddr,
        id: u16,
        query: &[u8],
        wait: StdDuration,
    ) -> Result<Message, String> {
        let local: SocketAddr = if server.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local)
            .await
            .map_err(|e| format!("udp socket: {e}"))?;
        // Connected: the kernel passes on only datagrams from the server.
        socket
            .connect(server)
            .await
            .map_err(|e| format!("udp connect {server}: {e}"))?;
        let deadline = tokio::time::Instant::now() + wait;
        let resend_at = tokio::time::Instant::now() + wait / 2;
        let mut resent = false;
        socket
            .send(query)
            .await
            .map_err(|e| format!("send to {server}: {e}"))?;
        let mut buf = vec![0_u8; usize::from(EDNS_PAYLOAD).max(4096)];
        loop {
            let until = if resent { deadline } else { resend_at };
            match tokio::time::timeout_at(until, socket.recv(&mut buf)).await {
                Ok(Ok(n)) => {
                    // Anything that does not parse or answers another query is ignored.
                    if let Ok(reply) = Message::from_vec(&buf[..n]) {
                        if self.is_our_reply(id, &reply) {
                            return Ok(reply);
                        }
                    }
                }
                Ok(Err(e)) => return Err(format!("receive from {server}: {e}")),
                Err(_) if !resent => {
                    resent = true;
                    socket
                        .send(query)
                        .await
                        .map_err(|e| format!("send to {server}: {e}"))?;
                }
                Err(_) => return Err(format!("no answer from {server} within {}", Duration(wait))),
            }
        }
    }

    /// Asks over TCP (after a truncated UDP answer).
    async fn ask_tcp(&self, server: SocketAddr, id: u16, query: &[u8]) -> Result<Message, String> {
        let mut stream = TcpStream::connect(server)
            .await
            .map_err(|e| format!("tcp connect {server}: {e}"))?;
        let len = u16::try_from(query.len()).map_err(|_| "query too long".to_owned())?;
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(query);
        stream
            .write_all(&framed)
            .await
            .map_err(|e| format!("tcp send to {server}: {e}"))?;
        let n = stream
            .read_u16()
            .await
            .map_err(|e| format!("tcp receive from {server}: {e}"))?;
        let mut buf = vec![0_u8; usize::from(n)];
        stream
            .read_exact(&mut buf)
            .await
            .map_err(|e| format!("tcp receive from {server}: {e}"))?;
        let reply =
            Message::from_vec(&buf).map_err(|e| format!("bad answer from {server}: {e}"))?;
        if !self.is_our_reply(id, &reply) {
            return Err(format!("{server} answered another query over tcp"));
        }
        Ok(reply)
    }

    async fn ask(&self) -> Result<Message, String> {
        let server = match self.server {
            Some(s) => s,
            None => system_server(Path::new(RESOLV_CONF))?,
        };
        let (id, query) = self.query()?;
        // Give up a little before the scheduler's hard timeout, so the reason names the server.
        let wait = self.timeout.saturating_sub(
            (self.timeout / 20).clamp(StdDuration::from_millis(1), StdDuration::from_millis(50)),
        );
        let reply = self.ask_udp(server, id, &query, wait).await?;
        if reply.metadata.truncation {
            return self.ask_tcp(server, id, &query).await;
        }
        Ok(reply)
    }

    /// Judges a reply; `Err` carries the reason it is down.
    pub fn judge(&self, reply: &Message) -> Result<Vec<String>, String> {
        let code = reply.metadata.response_code;
        let name = self.name.to_utf8();
        let name = name.trim_end_matches('.');
        match code {
            ResponseCode::NoError => {}
            ResponseCode::NXDomain => return Err(format!("NXDOMAIN: {name} does not exist")),
            ResponseCode::ServFail => {
                return Err(format!("SERVFAIL: the server failed to answer for {name}"))
            }
            ResponseCode::Refused => return Err(format!("REFUSED: the server refused {name}")),
            other => return Err(format!("{}: no answer for {name}", rcode_name(other))),
        }
        let values: Vec<String> = reply
            .answers
            .iter()
            .filter(|r| r.record_type() == self.record_type)
            .map(|r| value_text(&r.data))
            .collect();
        if values.is_empty() {
            return Err(format!("no {} record for {name}", self.record_type));
        }
        for want in &self.expect {
            if !values.iter().any(|v| same_value(v, want)) {
                return Err(format!(
                    "{want:?} not among the answers {}",
                    short_list(&values)
                ));
            }
        }
        if let Some(needle) = &self.contains {
            if !values.iter().any(|v| v.contains(needle.as_str())) {
                return Err(format!(
                    "no answer contains {needle:?}: {}",
                    short_list(&values)
                ));
            }
        }
        Ok(values)
    }
}

/// The upper-case name of a response code (`NOTIMP`, `FORMERR`, …).
fn rcode_name(code: ResponseCode) -> String {
    format!("{code:?}").to_ascii_uppercase()
}

/// A record's value as compared and reported: addresses as written, names without the
/// trailing dot, MX as `pref name`, SRV as `prio weight port name`, TXT strings joined.
fn value_text(data: &RData) -> String {
    let name = |n: &Name| n.to_utf8().trim_end_matches('.').to_owned();
    match data {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        RData::CNAME(n) => name(&n.0),
        RData::NS(n) => name(&n.0),
        RData::PTR(n) => name(&n.0),
        RData::MX(mx) => format!("{} {}", mx.preference, name(&mx.exchange)),
        RData::SRV(srv) => format!(
            "{} {} {} {}",
            srv.priority,
            srv.weight,
            srv.port,
            name(&srv.target)
        ),
        RData::TXT(txt) => txt
            .txt_data
            .iter()
            .map(|s| String::from_utf8_lossy(s))
            .collect::<String>(),
        other => other.to_string(),
    }
}

/// Whether an answer equals an expected value: exact, or as names (no case, no trailing dot).
fn same_value(answer: &str, want: &str) -> bool {
    answer == want || answer.eq_ignore_ascii_case(want.trim_end_matches('.'))
}

/// The first answers, for an error text.
fn short_list(values: &[String]) -> String {
    const SHOWN: usize = 4;
    let mut text = values
        .iter()
        .take(SHOWN)
        .map(|v| format!("{v:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if values.len() > SHOWN {
        text.push_str(&format!(" and {} more", values.len() - SHOWN));
    }
    format!("[{text}]")
}

impl Check for DnsProbe {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn check(&self) -> Observation {
        let start = Instant::now();
        let reply = match self.ask().await {
            Ok(r) => r,
            Err(e) => return Observation::down(start.elapsed(), e),
        };
        let latency = start.elapsed();
        match self.judge(&reply) {
            Ok(_) => Observation::up(latency).with_threshold(self.degraded_after),
            Err(reason) => Observation::down(latency, reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Probe, ProbeConfig};
    use hickory_proto::rr::rdata::{A, MX, TXT};
    use hickory_proto::rr::Record;
    use watchstand_shared::wire::v1::ProbeState;

    fn probe(c: &DnsProbeConfig) -> DnsProbe {
        DnsProbe::build(c).unwrap()
    }

    fn reply(p: &DnsProbe, code: ResponseCode, answers: Vec<RData>) -> Message {
        let mut m = Message::error_msg(7, hickory_proto::op::OpCode::Query, code);
        m.add_query(Query::query(p.name.clone(), p.record_type));
        for a in answers {
            m.answers.push(Record::from_rdata(p.name.clone(), 60, a));
        }
        m
    }

    #[test]
    fn answers_are_judged_by_code_presence_expect_and_contains() {
        let mut c = DnsProbeConfig::new("dns", "svc.example", "a", Some("127.0.0.1:5353"));
        assert_eq!(c.target(), "svc.example A @127.0.0.1:5353");
        c.expect = Some(vec!["10.0.0.1".into()]);
        let p = probe(&c);
        let ok = reply(
            &p,
            ResponseCode::NoError,
            vec![RData::A(A::new(10, 0, 0, 1))],
        );
        assert_eq!(p.judge(&ok), Ok(vec!["10.0.0.1".to_owned()]));
        let other = reply(
            &p,
            ResponseCode::NoError,
            vec![RData::A(A::new(10, 0, 0, 2))],
        );
        assert_eq!(
            p.judge(&other),
            Err("\"10.0.0.1\" not among the answers [\"10.0.0.2\"]".to_owned())
        );
        let empty = reply(&p, ResponseCode::NoError, vec![]);
        assert_eq!(
            p.judge(&empty),
            Err("no A record for svc.example".to_owned())
        );
        for (code, text) in [
            (
                ResponseCode::NXDomain,
                "NXDOMAIN: svc.example does not exist",
            ),
            (
                ResponseCode::ServFail,
                "SERVFAIL: the server failed to answer for svc.example",
            ),
            (
                ResponseCode::Refused,
                "REFUSED: the server refused svc.example",
            ),
            (ResponseCode::NotImp, "NOTIMP: no answer for svc.example"),
        ] {
            assert_eq!(p.judge(&reply(&p, code, vec![])), Err(text.to_owned()));
        }
    }

    #[test]
    fn mx_and_txt_values_compare_as_written() {
        let mut c = DnsProbeConfig::new("mx", "example.org", "MX", None);
        c.expect = Some(vec!["10 Mail.Example.org.".into()]);
        let p = probe(&c);
        let exchange = Name::from_utf8("mail.example.org.").unwrap();
        let r = reply(
            &p,
            ResponseCode::NoError,
            vec![RData::MX(MX::new(10, exchange))],
        );
        assert!(p.judge(&r).is_ok(), "{:?}", p.judge(&r));

        let mut c = DnsProbeConfig::new("spf", "example.org", "TXT", None);
        c.contains = Some("v=spf1".into());
        let p = probe(&c);
        let r = reply(
            &p,
            ResponseCode::NoError,
            vec![RData::TXT(TXT::new(vec!["v=spf1 ".into(), "-all".into()]))],
        );
        assert_eq!(p.judge(&r), Ok(vec!["v=spf1 -all".to_owned()]));
        let r = reply(
            &p,
            ResponseCode::NoError,
            vec![RData::TXT(TXT::new(vec!["hello".into()]))],
        );
        assert_eq!(
            p.judge(&r),
            Err("no answer contains \"v=spf1\": [\"hello\"]".to_owned())
        );
    }

    #[test]
    fn ptr_of_an_address_asks_for_the_reverse_name() {
        let p = probe(&DnsProbeConfig::new("rev", "127.0.0.1", "PTR", None));
        assert_eq!(p.name.to_utf8(), "1.0.0.127.in-addr.arpa.");
    }

    #[test]
    fn the_first_nameserver_of_resolv_conf_is_used() {
        let text = "# generated\nsearch lan\nnameserver 10.1.2.3\nnameserver ::1\n";
        assert_eq!(first_nameserver(text), Some("10.1.2.3:53".parse().unwrap()));
        assert_eq!(
            first_nameserver("nameserver fe80::1%eth0\nnameserver ::1"),
            Some("[::1]:53".parse().unwrap())
        );
        assert_eq!(first_nameserver("search lan\n"), None);
    }

    #[test]
    fn config_problems_name_the_key() {
        let mut c = DnsProbeConfig::new("d", "bad name..", "AXFR", Some("dns.local:53"));
        c.expect = Some(vec![]);
        c.contains = Some(String::new());
        c.degraded_after = Some(Duration::from_secs(2));
        let mut problems = Problems::default();
        c.validate("probes[id=\"d\"]", &mut problems);
        let text: Vec<String> = problems
            .finish(Path::new("agent.toml"), ())
            .unwrap_err()
            .errors
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            text[0],
            "probes[id=\"d\"].record_type: record_type \"AXFR\" is not one of A, AAAA, CAA, CNAME, HTTPS, MX, NS, PTR, SOA, SRV, TXT"
        );
        assert!(
            text[1]
                .starts_with("probes[id=\"d\"].name: name \"bad name..\" is not a domain name: "),
            "{text:?}"
        );
        assert_eq!(
            text[2..],
            [
                "probes[id=\"d\"].server: server \"dns.local:53\" is not ip:port or ip (IPv6 as [::1]:53)",
                "probes[id=\"d\"].expect: must list at least one value",
                "probes[id=\"d\"].contains: must not be empty",
                "probes[id=\"d\"].degraded_after: 2s must be shorter than timeout 2s",
            ]
        );
    }

    #[tokio::test]
    async fn a_silent_server_is_down_naming_it() {
        // A bound UDP socket that never answers.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap().to_string();
        let mut c = DnsProbeConfig::new("dns", "svc.example", "A", Some(&addr));
        c.timeout = Duration::from_millis(300);
        let o = Probe::build(&ProbeConfig::Dns(c)).unwrap().check().await;
        assert_eq!(o.state, ProbeState::Down);
        let error = o.error.unwrap();
        assert!(
            error == format!("no answer from {addr} within 285ms")
                || error == "timed out after 300ms",
            "{error}"
        );
    }
}
