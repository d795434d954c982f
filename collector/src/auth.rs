//! Who may use the API: roles, API tokens and the `[api]` config section.
//!
//! A token is 32 random bytes shown once as `wst_<base64url>` ([`Token::generate`]); the config
//! keeps only its SHA-256 (`[[api.tokens]] name, role, sha256`). SHA-256 without salt or
//! stretching is enough for a high-entropy random token (there is nothing to guess); lookups
//! compare every configured hash in constant time. Roles are ordered `viewer < operator <
//! admin`: a route asks for one role and any higher role passes. The route → role table is next
//! to the router (`api::ROUTES`); the middleware that applies it is `api::access`.

use std::collections::HashSet;
use std::net::SocketAddr;

use base64::Engine as _;
use serde::Deserialize;
use subtle::ConstantTimeEq as _;
use watchstand_shared::config::Problems;
use watchstand_shared::secrets::Secret;

/// Prefix of every token, so a leaked one is recognisable (secret scanners, grep).
pub const TOKEN_PREFIX: &str = "wst_";

/// What an identity may do. Ordered: a higher role may do everything a lower one may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Every read.
    Viewer,
    /// Reads, acknowledge and resolve incidents (later: approve runbook steps, start runbooks
    /// and drills).
    Operator,
    /// Everything, including the audit log.
    Admin,
}

impl Role {
    /// Lower-case name as in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "{other:?} is not a role; use viewer, operator or admin"
            )),
        }
    }
}

/// Who is making a request, put into the request's extensions by the API middleware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's name, or `anonymous` on an open (loopback, token-less) API.
    pub name: String,
    /// What it may do.
    pub role: Role,
}

/// The actor name of requests without a token (open API, or refused as 401).
pub const ANONYMOUS: &str = "anonymous";

/// A freshly generated token: the secret (shown once) and what goes into the config.
#[derive(Debug)]
pub struct Token {
    /// `wst_<base64url of 32 random bytes>`.
    pub secret: Secret,
    /// Its SHA-256, lower-case hex.
    pub sha256_hex: String,
}

impl Token {
    /// A new random token (32 bytes from the OS's generator).
    pub fn generate() -> Self {
        use rand::RngCore as _;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let secret = format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        let sha256_hex = hex(&sha256(secret.as_bytes()));
        Self {
            secret: Secret::new(secret),
            sha256_hex,
        }
    }

    /// The `[[api.tokens]]` lines to paste into the collector config.
    pub fn config_lines(&self, name: &str, role: Role) -> String {
        format!(
            "[[api.tokens]]\nname = {name:?}\nrole = \"{role}\"\nsha256 = \"{}\"\n",
            self.sha256_hex
        )
    }
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// `[[api.tokens]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    /// Who holds it (shown in incident timelines and the audit log).
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    /// SHA-256 of the token, hex (from `watchstand-collector token create`).
    pub sha256: String,
}

/// `[api]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiSection {
    /// Serve `/metrics` without a token (for Prometheus).
    #[serde(default)]
    pub public_metrics: bool,
    /// The tokens that may use the API.
    #[serde(default)]
    pub tokens: Vec<RawToken>,
    /// PEM certificate chain: serve the API over TLS (with `tls_key`).
    #[serde(default)]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<std::path::PathBuf>,
}

/// One configured token.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenEntry {
    /// Its holder's name.
    pub name: String,
    /// Its role.
    pub role: Role,
    sha256: [u8; 32],
}

impl std::fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEntry")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The validated `[api]` section: who may use the API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiAccess {
    /// Configured tokens; none means the API is open (allowed only on a loopback listen
    /// address).
    pub tokens: Vec<TokenEntry>,
    /// `/metrics` needs no token.
    pub public_metrics: bool,
    /// Serve over TLS with these files.
    pub tls: Option<crate::api::tls::TlsFiles>,
}

/// What a presented bearer token turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    /// No tokens are configured: everyone is an anonymous admin (loopback only).
    Open,
    /// A configured token.
    Known(Identity),
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token that matches none configured.
    Invalid,
}

impl ApiAccess {
    /// True when no tokens are configured.
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Who `bearer` (the value after `Bearer `, if any) is. Every configured hash is compared,
    /// in constant time, whatever matches.
    pub fn authenticate(&self, bearer: Option<&str>) -> Authentication {
        if self.is_open() {
            return Authentication::Open;
        }
        let Some(token) = bearer else {
            return Authentication::Missing;
        };
        let presented = sha256(token.as_bytes());
        let mut found = None;
        for entry in &self.tokens {
            if bool::from(entry.sha256.ct_eq(&presented)) {
                found = Some(entry);
            }
        }
        match found {
            Some(e) => Authentication::Known(Identity {
                name: e.name.clone(),
                role: e.role,
            }),
            None => Authentication::Invalid,
        }
    }

    /// One line for `check`: open or the tokens by name and role (never hashes), whether
    /// `/metrics` is public and the API is HTTPS.
    pub fn summary(&self) -> String {
        let mut text = if self.is_open() {
            "open, no [[api.tokens]] (allowed on a loopback address only)".to_owned()
        } else {
            let names: Vec<String> = self
                .tokens
                .iter()
                .map(|t| format!("{} {}", t.name, t.role))
                .collect();
            format!("{} token(s): {}", self.tokens.len(), names.join(", "))
        };
        if self.public_metrics {
            text.push_str(" · /metrics public");
        }
        if self.tls.is_some() {
            text.push_str(" · HTTPS");
        }
        text
    }

    /// An access list of `(name, role, token)` for tests and the demo.
    pub fn with_tokens<'a>(tokens: impl IntoIterator<Item = (&'a str, Role, &'a str)>) -> Self {
        Self {
            tokens: tokens
                .into_iter()
                .map(|(name, role, token)| TokenEntry {
                    name: name.to_owned(),
                    role,
                    sha256: sha256(token.as_bytes()),
                })
                .collect(),
            public_metrics: false,
            tls: None,
        }
    }
}

/// Checks `[api]` against the API's listen address: every token well-formed, names and hashes
/// unique, tokens present unless `listen` is a loopback address, TLS files both or neither
/// (resolved against `base`). Pure.
pub fn validate(
    raw: &RawApiSection,
    listen: Option<SocketAddr>,
    base: &std::path::Path,
    p: &mut Problems,
) -> ApiAccess {
    let mut names = HashSet::new();
    let mut hashes = HashSet::new();
    let mut tokens = Vec::new();
    for (i, t) in raw.tokens.iter().enumerate() {
        let key = format!("api.tokens[{i}]");
        p.check_id(&format!("{key}.name"), &t.name);
        if !names.insert(t.name.as_str()) {
            p.push(
                format!("{key}.name"),
                format!("{:?} is used by another token", t.name),
            );
        }
        let role = t
            .role
            .parse::<Role>()
            .map_err(|m| p.push(format!("{key}.role"), m))
            .ok();
        let hash = parse_hex32(&t.sha256.to_ascii_lowercase());
        match hash {
            None => p.push(
                format!("{key}.sha256"),
                "is not 64 hex digits (the SHA-256 printed by `watchstand-collector token create`)",
            ),
            Some(h) if !hashes.insert(h) => p.push(
                format!("{key}.sha256"),
                "is the hash of another token: every holder needs their own token",
            ),
            Some(_) => {}
        }
        if let (Some(role), Some(sha256)) = (role, hash) {
            tokens.push(TokenEntry {
                name: t.name.clone(),
                role,
                sha256,
            });
        }
    }
    if let Some(listen) = listen {
        if raw.tokens.is_empty() && !listen.ip().is_loopback() {
            p.push(
                "api.tokens",
                format!(
                    "none configured while collector.listen {listen} is not a loopback address: \
                     the API would be open to the network; add [[api.tokens]] (make one with \
                     `watchstand-collector token create --name NAME --role admin`) or listen on \
                     127.0.0.1"
                ),
            );
        }
    }
    let tls = match (&raw.tls_cert, &raw.tls_key) {
        (Some(cert), Some(key)) => Some(crate::api::tls::TlsFiles {
            cert: base.join(cert),
            key: base.join(key),
        }),
        (None, None) => None,
        (Some(_), None) => {
            p.push("api.tls_key", "is missing: tls_cert needs its key");
            None
        }
        (None, Some(_)) => {
            p.push("api.tls_cert", "is missing: tls_key needs its certificate");
            None
        }
    };
    ApiAccess {
        tokens,
        public_metrics: raw.public_metrics,
        tls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_authenticates_by_its_hash_and_others_do_not() {
        let t = Token::generate();
        assert!(t.secret.expose().starts_with(TOKEN_PREFIX));
        assert_eq!(t.secret.expose().len(), TOKEN_PREFIX.len() + 43);
        let raw = RawApiSection {
            public_metrics: false,
            tls_cert: None,
            tls_key: None,
            tokens: vec![RawToken {
                name: "ana".into(),
                role: "operator".into(),
                sha256: t.sha256_hex.clone(),
            }],
        };
        let mut p = Problems::default();
        let access = validate(
            &raw,
            "0.0.0.0:8088".parse().ok(),
            std::path::Path::new("/"),
            &mut p,
        );
        assert!(p.is_empty());
        assert_eq!(
            access.authenticate(Some(t.secret.expose())),
            Authentication::Known(Identity {
                name: "ana".into(),
                role: Role::Operator
            })
        );
        assert_eq!(
            access.authenticate(Some("wst_nope")),
            Authentication::Invalid
        );
        assert_eq!(access.authenticate(None), Authentication::Missing);
        assert!(!format!("{access:?}").contains(&t.sha256_hex[..16]));
        assert_eq!(access.summary(), "1 token(s): ana operator");
        assert_ne!(Token::generate().secret, t.secret);
    }

    #[test]
    fn roles_are_ordered_viewer_operator_admin() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
    }

    #[test]
    fn api_section_problems_name_their_keys() {
        let good = Token::generate().sha256_hex;
        let raw = RawApiSection {
            public_metrics: false,
            tls_cert: Some("c.pem".into()),
            tls_key: None,
            tokens: vec![
                RawToken {
                    name: "ana".into(),
                    role: "root".into(),
                    sha256: "abc".into(),
                },
                RawToken {
                    name: "ana".into(),
                    role: "admin".into(),
                    sha256: good.clone(),
                },
                RawToken {
                    name: "bo".into(),
                    role: "viewer".into(),
                    sha256: good,
                },
            ],
        };
        let mut p = Problems::default();
        validate(
            &raw,
            "127.0.0.1:1".parse().ok(),
            std::path::Path::new("/"),
            &mut p,
        );
        let text = p
            .finish(std::path::Path::new("c.toml"), ())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        for expected in [
            "api.tokens[0].role: \"root\" is not a role; use viewer, operator or admin",
            "api.tokens[0].sha256: is not 64 hex digits",
            "api.tokens[1].name: \"ana\" is used by another token",
            "api.tokens[2].sha256: is the hash of another token",
            "api.tls_key: is missing: tls_cert needs its key",
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
    }

    #[test]
    fn no_tokens_is_allowed_only_on_loopback() {
        let raw = RawApiSection::default();
        for (listen, ok) in [
            ("127.0.0.1:8088", true),
            ("[::1]:8088", true),
            ("0.0.0.0:8088", false),
            ("10.1.2.3:8088", false),
        ] {
            let mut p = Problems::default();
            let access = validate(&raw, listen.parse().ok(), std::path::Path::new("/"), &mut p);
            assert_eq!(p.is_empty(), ok, "{listen}");
            assert!(access.is_open());
        }
    }
}
