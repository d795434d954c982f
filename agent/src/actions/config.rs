//! The `[commands]` section and `[[actions]]`: raw serde types mirroring the TOML, and the pure
//! validation that turns them into [`CommandSettings`] (every problem reported with its key path).
//!
//! ```toml
//! [commands]
//! public_key = "base64 of the collector's Ed25519 public key"
//! clock_skew = "30s"                 # allowance both ways on issued_ms / expires_ms
//! refusal_acks_per_second = 50       # refusals answered on cmd/ack beyond this are only counted
//!
//! [[actions]]
//! id = "promote"
//! kind = "exec"                      # argv, no shell; {name} is replaced by a checked argument
//! argv = ["/usr/local/bin/promote", "--role", "{role}"]
//! timeout = "30s"
//! [actions.args.role]
//! allowed = ["primary", "standby"]   # or: regex = "[a-z]{1,16}" (anchored: the whole value)
//! ```

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use watchstand_shared::command::PublicKey;
use watchstand_shared::config::{Duration, Problems};

use super::args::ArgRule;
use super::template::Template;

/// `[commands]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandsSection {
    /// The collector's public key, standard base64 (from `watchstand-collector keys generate`).
    pub public_key: String,
    /// Clock difference allowed between collector and agent, both ways.
    #[serde(default = "default_clock_skew")]
    pub clock_skew: Duration,
    /// Refusals answered on `cmd/ack` per second (also the burst); more are logged and counted
    /// but not answered, so a flood of bad commands cannot flood the broker.
    #[serde(default = "default_refusal_acks_per_second")]
    pub refusal_acks_per_second: u32,
}

const fn default_clock_skew() -> Duration {
    Duration::from_secs(30)
}
const fn default_refusal_acks_per_second() -> u32 {
    50
}

/// Longest `commands.clock_skew`.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(600);
/// Longest action timeout.
pub const MAX_ACTION_TIMEOUT: Duration = Duration::from_secs(3_600);

/// One `[[actions]]` entry, tagged by `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ActionConfig {
    /// Run a program (no shell): `argv[0]` is the program, `{name}` placeholders take arguments.
    Exec(ExecActionConfig),
    /// Send an HTTP request; `{name}` placeholders in the URL take percent-encoded arguments.
    Http(HttpActionConfig),
}

/// `kind = "exec"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecActionConfig {
    /// Action id, as commands name it.
    pub id: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Hard limit; the process is killed when it passes.
    pub timeout: Duration,
    /// The arguments a command may (and must) pass, each with its rule.
    #[serde(default)]
    pub args: BTreeMap<String, ArgRuleConfig>,
}

/// `kind = "http"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpActionConfig {
    /// Action id, as commands name it.
    pub id: String,
    /// Method (default POST).
    #[serde(default = "default_method")]
    pub method: String,
    /// URL (`http://` or `https://`).
    pub url: String,
    /// Hard limit; the request is dropped when it passes.
    pub timeout: Duration,
    /// The arguments a command may (and must) pass, each with its rule.
    #[serde(default)]
    pub args: BTreeMap<String, ArgRuleConfig>,
}

impl ActionConfig {
    /// The action id.
    pub fn id(&self) -> &str {
        match self {
            ActionConfig::Exec(e) => &e.id,
            ActionConfig::Http(h) => &h.id,
        }
    }

    fn timeout(&self) -> Duration {
        match self {
            ActionConfig::Exec(e) => e.timeout,
            ActionConfig::Http(h) => h.timeout,
        }
    }

    fn args(&self) -> &BTreeMap<String, ArgRuleConfig> {
        match self {
            ActionConfig::Exec(e) => &e.args,
            ActionConfig::Http(h) => &h.args,
        }
    }
}

fn default_method() -> String {
    "POST".to_owned()
}

/// `[actions.args.NAME]`: exactly one of `allowed` or `regex`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgRuleConfig {
    /// The values accepted.
    #[serde(default)]
    pub allowed: Option<Vec<String>>,
    /// A regex the whole value must match.
    #[serde(default)]
    pub regex: Option<String>,
}

/// A validated action.
#[derive(Debug, Clone)]
pub struct Action {
    /// Its id.
    pub id: String,
    /// What it runs.
    pub kind: ActionKind,
    /// Hard limit.
    pub timeout: std::time::Duration,
    /// Argument rules by name.
    pub args: BTreeMap<String, ArgRule>,
}

/// A validated action kind.
#[derive(Debug, Clone)]
pub enum ActionKind {
    /// Program and argument templates.
    Exec {
        /// One template per argv element.
        argv: Vec<Template>,
    },
    /// Method and URL template.
    Http {
        /// Method.
        method: reqwest::Method,
        /// URL template.
        url: Template,
    },
}

/// `[commands]` plus the actions, validated.
#[derive(Debug, Clone)]
pub struct CommandSettings {
    /// The collector's key.
    pub public_key: PublicKey,
    /// Clock skew allowance.
    pub clock_skew: std::time::Duration,
    /// Refusal acks per second (and burst).
    pub refusal_acks_per_second: u32,
    /// Declared actions by id (empty: every command is refused with `no_actions`).
    pub actions: HashMap<String, Action>,
}

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

/// Validates `[commands]` and `[[actions]]`; `None` when neither is present (the agent then
/// does not subscribe to its `cmd` topic at all).
pub fn validate(
    commands: Option<&CommandsSection>,
    actions: &[ActionConfig],
    problems: &mut Problems,
) -> Option<CommandSettings> {
    let Some(c) = commands else {
        if !actions.is_empty() {
            problems.push(
                "commands.public_key",
                "[[actions]] are declared but [commands] public_key is missing (the collector's key from `watchstand-collector keys generate`)",
            );
        }
        return None;
    };
    let public_key = match PublicKey::from_base64(&c.public_key) {
        Ok(k) => Some(k),
        Err(e) => {
            problems.push("commands.public_key", e.to_string());
            None
        }
    };
    if c.clock_skew > MAX_CLOCK_SKEW {
        problems.push(
            "commands.clock_skew",
            format!("{} is too long; use at most {MAX_CLOCK_SKEW}", c.clock_skew),
        );
    }
    if c.refusal_acks_per_second == 0 {
        problems.push("commands.refusal_acks_per_second", "must be at least 1");
    }
    let mut by_id = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for (i, a) in actions.iter().enumerate() {
        let id = a.id();
        let duplicate = seen.contains(id);
        let key = if watchstand_shared::topic::validate_id(id).is_ok() && !duplicate {
            format!("actions[id={id:?}]")
        } else {
            format!("actions[{i}]")
        };
        problems.check_id(&format!("{key}.id"), id);
        if duplicate {
            problems.push(format!("{key}.id"), format!("duplicate action id {id:?}"));
        }
        seen.insert(id.to_owned());
        if let Some(action) = validate_action(&key, a, problems) {
            by_id.entry(id.to_owned()).or_insert(action);
        }
    }
    Some(CommandSettings {
        public_key: public_key?,
        clock_skew: c.clock_skew.get(),
        refusal_acks_per_second: c.refusal_acks_per_second,
        actions: by_id,
    })
}

fn validate_action(key: &str, a: &ActionConfig, problems: &mut Problems) -> Option<Action> {
    let before = problems.len();
    let timeout = a.timeout();
    if timeout.get().is_zero() {
        problems.push(format!("{key}.timeout"), "must be longer than 0s");
    } else if timeout > MAX_ACTION_TIMEOUT {
        problems.push(
            format!("{key}.timeout"),
            format!("{timeout} is too long; use at most {MAX_ACTION_TIMEOUT}"),
        );
    }
    let mut args = BTreeMap::new();
    for (name, rule) in a.args() {
        let arg_key = format!("{key}.args.{name}");
        if watchstand_shared::topic::validate_id(name).is_err() {
            problems.push(
                arg_key.clone(),
                format!("argument name {name:?} must match [A-Za-z0-9_.-]{{1,64}}"),
            );
        }
        match ArgRule::build(rule) {
            Ok(r) => {
                args.insert(name.clone(), r);
            }
            Err(e) => problems.push(arg_key, e),
        }
    }
    let mut used = Vec::new();
    let kind = match a {
        ActionConfig::Exec(ExecActionConfig { argv, .. }) => {
            if argv.first().is_none_or(|p| p.is_empty()) {
                problems.push(format!("{key}.argv"), "must name a program in argv[0]");
            }
            let mut templates = Vec::new();
            for (j, arg) in argv.iter().enumerate() {
                match Template::parse(arg) {
                    Ok(t) => {
                        if j == 0 && !t.names().is_empty() {
                            problems.push(
                                format!("{key}.argv[0]"),
                                "the program must be fixed, not an argument placeholder",
                            );
                        }
                        used.extend(t.names().iter().cloned());
                        templates.push(t);
                    }
                    Err(e) => problems.push(format!("{key}.argv[{j}]"), e),
                }
            }
            ActionKind::Exec { argv: templates }
        }
        ActionConfig::Http(HttpActionConfig { method, url, .. }) => {
            let m = method.to_ascii_uppercase();
            if !METHODS.contains(&m.as_str()) {
                problems.push(
                    format!("{key}.method"),
                    format!("method {method:?} is not one of {}", METHODS.join(", ")),
                );
            }
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                problems.push(
                    format!("{key}.url"),
                    format!("url {url:?} must start with http:// or https://"),
                );
            }
            let url = match Template::parse(url) {
                Ok(t) => {
                    used.extend(t.names().iter().cloned());
                    t
                }
                Err(e) => {
                    problems.push(format!("{key}.url"), e);
                    Template::default()
                }
            };
            ActionKind::Http {
                method: reqwest::Method::from_bytes(m.as_bytes()).unwrap_or(reqwest::Method::POST),
                url,
            }
        }
    };
    for name in &used {
        if !a.args().contains_key(name) {
            problems.push(
                format!("{key}.args"),
                format!("placeholder {{{name}}} has no [actions.args.{name}] rule"),
            );
        }
    }
    for name in a.args().keys() {
        if !used.contains(name) {
            problems.push(
                format!("{key}.args.{name}"),
                "is declared but no placeholder uses it",
            );
        }
    }
    (problems.len() == before).then(|| Action {
        id: a.id().to_owned(),
        kind,
        timeout: timeout.get(),
        args,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use watchstand_shared::config::LoadError;

    const BASE: &str = r#"
[agent]
site = "lab"
id = "db-2"
data_dir = "./data"
"#;
    const KEY: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

    fn problems(tail: &str) -> Vec<String> {
        match crate::config::from_str(&format!("{BASE}{tail}"), Path::new("agent.toml")) {
            Ok(_) => Vec::new(),
            Err(LoadError::Invalid(e)) => e.errors.iter().map(ToString::to_string).collect(),
            Err(other) => vec![other.to_string()],
        }
    }

    #[test]
    fn a_full_commands_section_validates() {
        let text = format!(
            r#"{BASE}
[commands]
public_key = "{KEY}"
clock_skew = "10s"

[[actions]]
id = "promote"
kind = "exec"
argv = ["/usr/local/bin/promote", "--role={{role}}"]
timeout = "30s"
[actions.args.role]
allowed = ["primary", "standby"]

[[actions]]
id = "flip"
kind = "http"
url = "http://127.0.0.1:9000/flip?to={{to}}"
timeout = "5s"
[actions.args.to]
regex = "[a-z]{{1,16}}"
"#
        );
        let c = crate::config::from_str(&text, Path::new("agent.toml")).unwrap();
        let s = c.commands.unwrap();
        assert_eq!(s.clock_skew, std::time::Duration::from_secs(10));
        assert_eq!(s.refusal_acks_per_second, 50);
        assert_eq!(s.actions.len(), 2);
        assert_eq!(s.public_key.key_id(), "ed25519:21fe31dfa154a261");
    }

    #[test]
    fn without_commands_nothing_is_accepted_and_with_no_actions_commands_are_refused() {
        let c = crate::config::from_str(BASE, Path::new("agent.toml")).unwrap();
        assert!(c.commands.is_none());
        let c = crate::config::from_str(
            &format!("{BASE}[commands]\npublic_key = \"{KEY}\"\n"),
            Path::new("agent.toml"),
        )
        .unwrap();
        assert!(c.commands.unwrap().actions.is_empty());
    }

    #[test]
    fn each_commands_problem_has_its_exact_message() {
        let cmd = format!("[commands]\npublic_key = \"{KEY}\"\n");
        let exec = |extra: &str| {
            format!("{cmd}\n[[actions]]\nid = \"a\"\nkind = \"exec\"\nargv = [\"/bin/true\", \"{{x}}\"]\ntimeout = \"1s\"\n{extra}")
        };
        let cases: Vec<(String, Vec<&str>)> = vec![
            (
                "[[actions]]\nid = \"a\"\nkind = \"exec\"\nargv = [\"/bin/true\"]\ntimeout = \"1s\"\n".into(),
                vec!["commands.public_key: [[actions]] are declared but [commands] public_key is missing (the collector's key from `watchstand-collector keys generate`)"],
            ),
            (
                "[commands]\npublic_key = \"AAAA\"\n".into(),
                vec!["commands.public_key: \"AAAA\" is 3 bytes; an Ed25519 public key is 32"],
            ),
            (
                format!("[commands]\npublic_key = \"{KEY}\"\nclock_skew = \"1h\"\nrefusal_acks_per_second = 0\n"),
                vec![
                    "commands.clock_skew: 1h is too long; use at most 10m",
                    "commands.refusal_acks_per_second: must be at least 1",
                ],
            ),
            (
                exec(""),
                vec!["actions[id=\"a\"].args: placeholder {x} has no [actions.args.x] rule"],
            ),
            (
                exec("[actions.args.x]\nallowed = [\"1\"]\n[actions.args.y]\nregex = \"(\"\n"),
                vec![
                    "actions[id=\"a\"].args.y: regex \"(\" does not compile: unclosed group",
                    "actions[id=\"a\"].args.y: is declared but no placeholder uses it",
                ],
            ),
            (
                exec("[actions.args.x]\n"),
                vec!["actions[id=\"a\"].args.x: needs a rule: allowed = [..] or regex = \"..\""],
            ),
            (
                format!("{cmd}[[actions]]\nid = \"a b\"\nkind = \"exec\"\nargv = []\ntimeout = \"0s\"\n"),
                vec![
                    "actions[0].id: id \"a b\" contains ' '; only letters, digits, '_', '.' and '-' are allowed",
                    "actions[0].timeout: must be longer than 0s",
                    "actions[0].argv: must name a program in argv[0]",
                ],
            ),
            (
                format!("{cmd}[[actions]]\nid = \"a\"\nkind = \"exec\"\nargv = [\"{{p}}\"]\ntimeout = \"2h\"\n[actions.args.p]\nallowed = [\"/bin/sh\"]\n"),
                vec![
                    "actions[id=\"a\"].timeout: 2h is too long; use at most 1h",
                    "actions[id=\"a\"].argv[0]: the program must be fixed, not an argument placeholder",
                ],
            ),
            (
                format!("{cmd}[[actions]]\nid = \"h\"\nkind = \"http\"\nmethod = \"BREW\"\nurl = \"ftp://x/{{y\"\ntimeout = \"1s\"\n"),
                vec![
                    "actions[id=\"h\"].method: method \"BREW\" is not one of GET, POST, PUT, DELETE, PATCH",
                    "actions[id=\"h\"].url: url \"ftp://x/{y\" must start with http:// or https://",
                    "actions[id=\"h\"].url: \"ftp://x/{y\" has an unclosed {",
                ],
            ),
            (
                format!("{cmd}[[actions]]\nid = \"a\"\nkind = \"exec\"\nargv = [\"/bin/true\"]\ntimeout = \"1s\"\n[[actions]]\nid = \"a\"\nkind = \"exec\"\nargv = [\"/bin/false\"]\ntimeout = \"1s\"\n"),
                vec!["actions[1].id: duplicate action id \"a\""],
            ),
        ];
        for (tail, want) in cases {
            assert_eq!(problems(&tail), want, "\n{tail}");
        }
    }
}
