//! The `http` probe kind (probe stage of probe → scheduler → outbox → publisher → mqtt): one
//! request per check, judged by status, body (substring and/or regex) and latency.
//!
//! Each check opens a fresh connection (no idle pool), so a listener that went away is seen at
//! once and the latency includes connect and TLS as a user would feel them. TLS certificates are
//! verified unless `tls_verify = false`.
//!
//! The probes of an agent share their HTTP clients ([`HttpClients`]: one per TLS setting; the
//! timeout is set per request). A client per probe cost about 100 KiB of heap each (200 probes:
//! +20 MiB of RSS, `bench footprint`); sharing changes nothing on the wire, as no connection is
//! pooled.

use std::collections::BTreeMap;
use std::time::Instant;

use regex::Regex;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde::Deserialize;
use watchstand_shared::config::{Duration, Problems};

use super::{Check, Observation, ProbeError};

/// The wire name of this kind.
pub const KIND: &str = "http";

/// The methods a probe may use.
pub const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"];

/// At most this much of a body is read for `body_contains` / `body_regex`.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A `kind = "http"` probe as written in TOML.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpProbeConfig {
    /// Probe id, unique within the agent.
    pub id: String,
    /// `http://` or `https://` URL.
    pub url: String,
    /// How often to check.
    pub interval: Duration,
    /// Hard timeout of one check; shorter than `interval`.
    pub timeout: Duration,
    /// Request method (default `GET`).
    #[serde(default = "default_method")]
    pub method: String,
    /// Statuses that count as up (default `[200]`).
    #[serde(default = "default_expect_status")]
    pub expect_status: Vec<u16>,
    /// The body must contain this text.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// The body must match this regex.
    #[serde(default)]
    pub body_regex: Option<String>,
    /// Up but slower than this is `degraded`.
    #[serde(default)]
    pub degraded_after: Option<Duration>,
    /// Verify TLS certificates (default true).
    #[serde(default = "default_tls_verify")]
    pub tls_verify: bool,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_method() -> String {
    "GET".to_owned()
}
fn default_expect_status() -> Vec<u16> {
    vec![200]
}
const fn default_tls_verify() -> bool {
    true
}

/// The one line of a regex error that says what is wrong (its Display spans several lines).
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("invalid");
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

impl HttpProbeConfig {
    /// Kind-specific checks; `key` is the probe's place in the file.
    pub fn validate(&self, key: &str, problems: &mut Problems) {
        match Url::parse(&self.url) {
            Ok(url) if !matches!(url.scheme(), "http" | "https") => problems.push(
                format!("{key}.url"),
                format!("url {:?} must start with http:// or https://", self.url),
            ),
            Ok(_) => {}
            Err(e) => problems.push(
                format!("{key}.url"),
                format!("url {:?} is not a URL: {e}", self.url),
            ),
        }
        if !METHODS.contains(&self.method.as_str()) {
            problems.push(
                format!("{key}.method"),
                format!(
                    "method {:?} is not one of {}",
                    self.method,
                    METHODS.join(", ")
                ),
            );
        }
        if self.expect_status.is_empty() {
            problems.push(
                format!("{key}.expect_status"),
                "must list at least one status",
            );
        }
        for status in &self.expect_status {
            if !(100..=599).contains(status) {
                problems.push(
                    format!("{key}.expect_status"),
                    format!("{status} is not an HTTP status (100-599)"),
                );
            }
        }
        if let Some(re) = &self.body_regex {
            if let Err(e) = Regex::new(re) {
                problems.push(
                    format!("{key}.body_regex"),
                    format!("regex {re:?} does not compile: {}", regex_reason(&e)),
                );
            }
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
        for (name, value) in &self.headers {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                problems.push(
                    format!("{key}.headers"),
                    format!("{name:?} is not a valid header name"),
                );
            } else if HeaderValue::from_str(value).is_err() {
                problems.push(
                    format!("{key}.headers.{name}"),
                    "value is not a valid header value (visible ASCII only)",
                );
            }
        }
    }
}

/// The HTTP clients the probes of one agent share: one per `tls_verify` setting, built on first
/// use. No idle connection is kept (`pool_max_idle_per_host(0)`), so sharing a client shares
/// its TLS configuration and resolver, never a connection.
#[derive(Debug, Default)]
pub struct HttpClients {
    built: std::sync::Mutex<Vec<(bool, reqwest::Client)>>,
}

impl HttpClients {
    /// The client for `tls_verify`.
    ///
    /// # Errors
    /// reqwest cannot build a client (TLS roots, resolver).
    pub fn get(&self, tls_verify: bool) -> Result<reqwest::Client, reqwest::Error> {
        let mut built = self
            .built
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, client)) = built.iter().find(|(v, _)| *v == tls_verify) {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder()
            // A fresh connection per check: a dead listener must not hide behind a pooled one.
            .pool_max_idle_per_host(0)
            .tls_danger_accept_invalid_certs(!tls_verify)
            .user_agent(concat!("watchstand-agent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        built.push((tls_verify, client.clone()));
        Ok(client)
    }
}

/// A runnable HTTP probe.
#[derive(Debug)]
pub struct HttpProbe {
    client: reqwest::Client,
    /// Timeout of the whole request (connect included); the scheduler's hard timeout is the
    /// same.
    timeout: std::time::Duration,
    url: Url,
    /// The URL as configured, reported as the target.
    target: String,
    method: Method,
    headers: HeaderMap,
    expect_status: Vec<u16>,
    body_contains: Option<String>,
    body_regex: Option<Regex>,
    degraded_after: Option<std::time::Duration>,
}

impl HttpProbe {
    /// Takes its client from `clients` and compiles the checks of a validated config.
    ///
    /// # Errors
    /// The HTTP client cannot be built, or a value validation should have refused.
    pub fn build(config: &HttpProbeConfig, clients: &HttpClients) -> Result<Self, ProbeError> {
        let invalid = |what: String| ProbeError::Invalid {
            id: config.id.clone(),
            what,
        };
        let url = Url::parse(&config.url).map_err(|e| invalid(format!("url: {e}")))?;
        let method = Method::from_bytes(config.method.as_bytes())
            .map_err(|e| invalid(format!("method: {e}")))?;
        let body_regex = config
            .body_regex
            .as_deref()
            .map(Regex::new)
            .transpose()
            .map_err(|e| invalid(format!("body_regex: {}", regex_reason(&e))))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| invalid(format!("header {name:?}: {e}")))?;
            let value =
                HeaderValue::from_str(value).map_err(|e| invalid(format!("header {name}: {e}")))?;
            headers.insert(name, value);
        }
        let client = clients
            .get(config.tls_verify)
            .map_err(|source| ProbeError::HttpClient {
                id: config.id.clone(),
                source,
            })?;
        Ok(Self {
            client,
            timeout: config.timeout.get(),
            url,
            target: config.url.clone(),
            method,
            headers,
            expect_status: config.expect_status.clone(),
            body_contains: config.body_contains.clone(),
            body_regex,
            degraded_after: config.degraded_after.map(|d| d.get()),
        })
    }

    fn needs_body(&self) -> bool {
        self.body_contains.is_some() || self.body_regex.is_some()
    }

    /// Reads at most [`MAX_BODY_BYTES`] of the body.
    async fn read_body(mut response: reqwest::Response) -> Result<String, reqwest::Error> {
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            let room = MAX_BODY_BYTES - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_BODY_BYTES {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// Judges the body; `Err` carries the reason it is wrong.
    fn judge_body(&self, body: &str) -> Result<(), String> {
        if let Some(needle) = &self.body_contains {
            if !body.contains(needle.as_str()) {
                return Err(format!("body does not contain {needle:?}"));
            }
        }
        if let Some(re) = &self.body_regex {
            if !re.is_match(body) {
                return Err(format!("body does not match /{}/", re.as_str()));
            }
        }
        Ok(())
    }
}

/// A short description of a request failure: what failed, then the innermost cause, which is
/// the part that says why (e.g. `connect: Connection refused (os error 111)`).
fn describe(e: &reqwest::Error) -> String {
    let stage = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_redirect() {
        "redirect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    let mut inner: &dyn std::error::Error = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    format!("{stage}: {inner}")
}

impl Check for HttpProbe {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn check(&self) -> Observation {
        let start = Instant::now();
        let request = self
            .client
            .request(self.method.clone(), self.url.clone())
            .timeout(self.timeout)
            .headers(self.headers.clone());
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Observation::down(start.elapsed(), describe(&e)),
        };
        let status = response.status().as_u16();
        if !self.expect_status.contains(&status) {
            return Observation::down(
                start.elapsed(),
                format!("status {status}, expected {:?}", self.expect_status),
            );
        }
        if self.needs_body() {
            let body = match Self::read_body(response).await {
                Ok(b) => b,
                Err(e) => return Observation::down(start.elapsed(), describe(&e)),
            };
            if let Err(reason) = self.judge_body(&body) {
                return Observation::down(start.elapsed(), reason);
            }
        }
        Observation::up(start.elapsed()).with_threshold(self.degraded_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Probe, ProbeConfig};
    use crate::testutil::{http_target, Reply};
    use watchstand_shared::wire::v1::ProbeState;

    fn config(url: String) -> HttpProbeConfig {
        HttpProbeConfig {
            id: "web".into(),
            url,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            method: default_method(),
            expect_status: default_expect_status(),
            body_contains: None,
            body_regex: None,
            degraded_after: None,
            tls_verify: true,
            headers: BTreeMap::new(),
        }
    }

    async fn check(c: HttpProbeConfig) -> Observation {
        Probe::build(&ProbeConfig::Http(c)).unwrap().check().await
    }

    #[tokio::test]
    async fn a_healthy_endpoint_with_the_expected_body_is_up() {
        let target = http_target(Reply::ok("ingest ok")).await;
        let mut c = config(target.url("/health"));
        c.body_contains = Some("ingest".into());
        c.body_regex = Some("^ingest \\w+$".into());
        let o = check(c).await;
        assert_eq!(o.state, ProbeState::Up, "{o:?}");
        assert_eq!(o.error, None);
        assert!(o.latency > std::time::Duration::ZERO);
    }

    #[tokio::test]
    async fn a_refused_connection_is_down_with_a_short_reason() {
        let url = format!("http://{}/", crate::testutil::closed_port().await);
        let o = check(config(url)).await;
        assert_eq!(o.state, ProbeState::Down);
        let error = o.error.unwrap();
        assert!(error.starts_with("connect: "), "{error}");
        assert!(error.chars().count() <= crate::probe::MAX_ERROR_CHARS);
    }

    #[tokio::test]
    async fn an_unexpected_status_is_down_and_names_the_status() {
        let target = http_target(Reply::status(503, "maintenance")).await;
        let o = check(config(target.url("/"))).await;
        assert_eq!(o.state, ProbeState::Down);
        assert_eq!(o.error.as_deref(), Some("status 503, expected [200]"));
    }

    #[tokio::test]
    async fn a_listed_non_200_status_counts_as_up() {
        let target = http_target(Reply::status(204, "")).await;
        let mut c = config(target.url("/"));
        c.expect_status = vec![200, 204];
        assert_eq!(check(c).await.state, ProbeState::Up);
    }

    #[tokio::test]
    async fn a_body_without_the_expected_text_is_down() {
        let target = http_target(Reply::ok("all good")).await;
        let mut c = config(target.url("/"));
        c.body_contains = Some("ingest".into());
        let o = check(c).await;
        assert_eq!(o.state, ProbeState::Down);
        assert_eq!(o.error.as_deref(), Some("body does not contain \"ingest\""));

        let mut c = config(target.url("/"));
        c.body_regex = Some("^ingest".into());
        let o = check(c).await;
        assert_eq!(o.error.as_deref(), Some("body does not match /^ingest/"));
    }

    #[tokio::test]
    async fn a_slow_answer_over_degraded_after_is_degraded() {
        let target =
            http_target(Reply::ok("ok").after(std::time::Duration::from_millis(150))).await;
        let mut c = config(target.url("/"));
        c.degraded_after = Some(Duration::from_millis(50));
        let o = check(c).await;
        assert_eq!(o.state, ProbeState::Degraded, "{o:?}");
        assert!(o.error.unwrap().starts_with("slow: "));
    }

    #[tokio::test]
    async fn a_check_that_outlives_its_timeout_is_down_with_latency_equal_to_the_timeout() {
        let target = http_target(Reply::ok("late").after(std::time::Duration::from_secs(5))).await;
        let mut c = config(target.url("/"));
        c.timeout = Duration::from_millis(200);
        let o = check(c).await;
        assert_eq!(o.state, ProbeState::Down);
        // Either the hard timeout or reqwest's own (set to the same value) fires first.
        assert!(o.latency >= std::time::Duration::from_millis(200), "{o:?}");
        assert!(o.latency < std::time::Duration::from_secs(2), "{o:?}");
        let error = o.error.unwrap();
        assert!(
            error == "timed out after 200ms" || error.starts_with("timeout: "),
            "{error}"
        );
    }

    #[tokio::test]
    async fn configured_method_and_headers_are_sent() {
        let target = http_target(Reply::ok("ok")).await;
        let mut c = config(target.url("/x"));
        c.method = "POST".into();
        c.headers.insert("X-Probe".into(), "watchstand".into());
        assert_eq!(check(c).await.state, ProbeState::Up);
        let seen = target.requests();
        assert_eq!(seen.len(), 1);
        assert!(seen[0].starts_with("POST /x HTTP/1.1"), "{}", seen[0]);
        assert!(
            seen[0].to_ascii_lowercase().contains("x-probe: watchstand"),
            "{}",
            seen[0]
        );
    }
}
