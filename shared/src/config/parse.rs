//! Parse-level checking of a config file: every unknown key, bad value, bad duration and missing
//! key of a file whose TOML parses is reported in one run, each with its key path, its line and
//! a hint — not only the first serde error.
//!
//! How: the document is deserialized into the target type with `serde_path_to_error`. Each
//! failure is pinned to the key it is about (for errors that lose their path, such as those
//! inside a `kind`-tagged enum, by removing one key at a time until the failure goes away),
//! recorded, and then taken out of the way — a bad key is removed, a missing one is filled with
//! a placeholder — and deserialization repeats, at most [`MAX_ROUNDS`] times. Problems that only
//! follow from an earlier fix (a removed required key now "missing") are not reported. Lines come
//! from the spans of `toml::de::DeTable`.

use std::path::Path;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};
use toml::{Table, Value};

use super::{ConfigError, ConfigErrors, LoadError};

/// Most deserialization rounds per file (each round finds one problem).
pub const MAX_ROUNDS: usize = 100;

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// The first failure of one deserialization: where serde was and what it said.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fault {
    path: Vec<Seg>,
    message: String,
}

/// Parses `text` as TOML into `T`, reporting every parse-level problem at once.
///
/// A TOML syntax error is reported alone (nothing after it can be trusted); problems of shape
/// (unknown key, wrong type, bad enum value or duration, missing key) all together as
/// [`LoadError::Invalid`], each with its key path and line, in file order.
///
/// # Errors
/// The syntax error, or every shape problem found.
pub fn from_toml<T: DeserializeOwned>(text: &str, origin: &Path) -> Result<T, LoadError> {
    let original: Table = toml::from_str(text).map_err(|e| LoadError::parse(origin, e))?;
    let mut doc = original.clone();
    let mut found: Vec<(Vec<Seg>, String)> = Vec::new();
    // Keys this pass removed or filled in: problems at or under them are consequences.
    let mut touched: Vec<Vec<Seg>> = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let fault = match deserialize::<T>(&doc) {
            Ok(value) if found.is_empty() => return Ok(value),
            Ok(_) => break,
            Err(fault) => fault,
        };
        let at = locate::<T>(&doc, &fault);
        let consequence = touched.iter().any(|t| at.starts_with(t));
        if !consequence {
            found.push((at.clone(), hint(&fault.message)));
        }
        let fixed = if fault.message.starts_with("missing field `") {
            fill::<T>(&mut doc, &at)
        } else {
            remove(&mut doc, &at)
        };
        if !fixed {
            break;
        }
        // A bad tag of a `kind`-tagged table: its other keys were checked against a variant
        // that is not the one meant, so their problems are not reported.
        if is_tag::<T>(&doc, &at, &fault.message) {
            touched.push(at[..at.len() - 1].to_vec());
        }
        touched.push(at);
    }
    if found.is_empty() {
        // Out of rounds before a problem could be pinned down: serde's own answer.
        return T::deserialize(original).map_err(|e| LoadError::parse(origin, e));
    }
    let spans = DeTable::parse(text).ok();
    let mut errors: Vec<ConfigError> = found
        .into_iter()
        .map(|(path, message)| {
            let line = spans
                .as_ref()
                .and_then(|root| line_of(text, root.get_ref(), &path));
            let mut e = ConfigError::new(display_path(&original, &path), message);
            e.line = line;
            e
        })
        .collect();
    errors.sort_by_key(|e| e.line.unwrap_or(0));
    Err(LoadError::Invalid(ConfigErrors {
        origin: origin.to_owned(),
        errors,
    }))
}

/// The value, or the first failure with its path.
fn deserialize<T: DeserializeOwned>(doc: &Table) -> Result<T, Fault> {
    match serde_path_to_error::deserialize::<_, T>(doc.clone()) {
        Ok(value) => Ok(value),
        Err(e) => {
            let path = e
                .path()
                .iter()
                .filter_map(|s| match s {
                    serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
                    serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
                    _ => None,
                })
                .collect();
            Err(Fault {
                path,
                message: e.into_inner().message().trim_end().to_owned(),
            })
        }
    }
}

fn first_fault<T: DeserializeOwned>(doc: &Table) -> Option<Fault> {
    deserialize::<T>(doc).err()
}

/// The text between `prefix` and the next backtick, when `message` starts with `prefix`.
fn quoted_after<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next()
}

/// The key path a fault is about.
fn locate<T: DeserializeOwned>(doc: &Table, fault: &Fault) -> Vec<Seg> {
    let mut at = fault.path.clone();
    for prefix in ["missing field `", "unknown field `"] {
        if let Some(key) = quoted_after(&fault.message, prefix) {
            let key = Seg::Key(key.to_owned());
            if at.last() != Some(&key) {
                at.push(key);
            }
            return at;
        }
    }
    match get(doc, &at) {
        Some(Value::Table(_)) | None if at.is_empty() => culprit::<T>(doc, fault).unwrap_or(at),
        Some(Value::Table(_)) => culprit::<T>(doc, fault).unwrap_or(at),
        _ => {
            // A bad array element is a problem of the array's key.
            while matches!(at.last(), Some(Seg::Index(_))) && at.len() > 1 {
                at.pop();
            }
            at
        }
    }
}

/// Finds the key of the table at `fault.path` whose removal makes `fault` go away.
fn culprit<T: DeserializeOwned>(doc: &Table, fault: &Fault) -> Option<Vec<Seg>> {
    let table = match get(doc, &fault.path) {
        Some(Value::Table(t)) => t.clone(),
        None if fault.path.is_empty() => doc.clone(),
        _ => return None,
    };
    // Keys whose removal only turns the fault into "missing field `key`": the culprit is among
    // them when it is a required key (or an enum's tag is).
    let mut required = Vec::new();
    for key in table.keys() {
        let mut path = fault.path.clone();
        path.push(Seg::Key(key.clone()));
        let mut trial = doc.clone();
        remove(&mut trial, &path);
        match first_fault::<T>(&trial) {
            Some(f) if f == *fault => {}
            Some(f)
                if f.path == fault.path
                    && quoted_after(&f.message, "missing field `") == Some(key) =>
            {
                required.push(path);
            }
            _ => return Some(path),
        }
    }
    let mentioned = required.iter().find(|p| {
        get(doc, p).is_some_and(|v| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            !text.is_empty() && fault.message.contains(&text)
        })
    });
    mentioned.or_else(|| required.first()).cloned()
}

/// The variants an "unknown variant" message lists.
fn variants(message: &str) -> Vec<String> {
    let Some((_, expected)) = message.split_once("expected ") else {
        return Vec::new();
    };
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Whether the key at `at` with an unknown variant is the tag of its table: the table's other
/// keys are judged differently depending on the variant.
fn is_tag<T: DeserializeOwned>(doc: &Table, at: &[Seg], message: &str) -> bool {
    if !message.starts_with("unknown variant") || at.is_empty() {
        return false;
    }
    let outcomes: Vec<Option<Vec<Seg>>> = variants(message)
        .into_iter()
        .take(2)
        .map(|v| {
            let mut trial = doc.clone();
            set(&mut trial, at, Value::String(v));
            first_fault::<T>(&trial).map(|f| locate::<T>(&trial, &f))
        })
        .collect();
    outcomes.len() == 2 && outcomes[0] != outcomes[1]
}

/// Placeholders tried for a missing key, in order.
fn placeholders() -> Vec<Value> {
    vec![
        Value::String("0s".into()),
        Value::Integer(0),
        Value::Float(0.0),
        Value::Boolean(false),
        Value::Array(Vec::new()),
        Value::Table(Table::new()),
    ]
}

/// Fills the missing key `at` with the first placeholder the type accepts there.
fn fill<T: DeserializeOwned>(doc: &mut Table, at: &[Seg]) -> bool {
    let mut candidates = placeholders();
    let mut i = 0;
    while i < candidates.len() && i < 16 {
        let mut trial = doc.clone();
        if !set(&mut trial, at, candidates[i].clone()) {
            return false;
        }
        match first_fault::<T>(&trial) {
            None => {
                *doc = trial;
                return true;
            }
            Some(f) => {
                if locate::<T>(&trial, &f) != at {
                    *doc = trial;
                    return true;
                }
                // An enum: its message names the variants; try the first.
                if let Some(v) = f
                    .message
                    .split("expected one of `")
                    .nth(1)
                    .or_else(|| f.message.split("expected `").nth(1))
                    .and_then(|rest| rest.split('`').next())
                {
                    let v = Value::String(v.to_owned());
                    if !candidates.contains(&v) {
                        candidates.push(v);
                    }
                }
            }
        }
        i += 1;
    }
    false
}

fn get<'d>(doc: &'d Table, path: &[Seg]) -> Option<&'d Value> {
    let (first, rest) = path.split_first()?;
    let Seg::Key(k) = first else { return None };
    let mut v = doc.get(k)?;
    for seg in rest {
        v = match (seg, v) {
            (Seg::Key(k), Value::Table(t)) => t.get(k)?,
            (Seg::Index(i), Value::Array(a)) => a.get(*i)?,
            _ => return None,
        };
    }
    Some(v)
}

/// The table holding the last step of `path`.
fn parent_table<'d>(doc: &'d mut Table, path: &[Seg]) -> Option<(&'d mut Table, String)> {
    let (last, init) = path.split_last()?;
    let Seg::Key(key) = last else { return None };
    let mut table = doc;
    let mut iter = init.iter().peekable();
    while let Some(seg) = iter.next() {
        let Seg::Key(k) = seg else { return None };
        let mut v = table.get_mut(k)?;
        while let Some(Seg::Index(i)) = iter.peek() {
            let Value::Array(a) = v else { return None };
            v = a.get_mut(*i)?;
            iter.next();
        }
        let Value::Table(t) = v else { return None };
        table = t;
    }
    Some((table, key.clone()))
}

fn remove(doc: &mut Table, path: &[Seg]) -> bool {
    parent_table(doc, path).is_some_and(|(t, k)| t.remove(&k).is_some())
}

fn set(doc: &mut Table, path: &[Seg], value: Value) -> bool {
    parent_table(doc, path).is_some_and(|(t, k)| {
        t.insert(k, value);
        true
    })
}

/// `probes[id="web"].timeout`: array elements named by their `id` when they have one, as the
/// semantic checks name them.
fn display_path(doc: &Table, path: &[Seg]) -> String {
    let mut out = String::new();
    for (n, seg) in path.iter().enumerate() {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => {
                let id = match get(doc, &path[..=n]) {
                    Some(Value::Table(t)) => t.get("id").and_then(Value::as_str),
                    _ => None,
                };
                match id {
                    Some(id) if !id.is_empty() => out.push_str(&format!("[id={id:?}]")),
                    _ => out.push_str(&format!("[{i}]")),
                }
            }
        }
    }
    out
}

/// 1-based line of the key at `path`, or of the nearest enclosing table that exists.
fn line_of(text: &str, root: &DeTable<'_>, path: &[Seg]) -> Option<usize> {
    let mut best: Option<usize> = None;
    let mut table = Some(root);
    let mut value: Option<&DeValue<'_>> = None;
    for seg in path {
        let found = match (seg, table, value) {
            (Seg::Key(k), Some(t), _) => t
                .get_key_value(k.as_str())
                .map(|(key, v)| (key.span().start, v)),
            (Seg::Index(i), _, Some(v)) => v.get(*i).map(|e| (e.span().start, e)),
            _ => None,
        };
        let Some((start, v)) = found else { break };
        best = Some(start);
        value = Some(v.get_ref());
        table = v.get_ref().as_table();
    }
    best.map(|start| text.get(..start).map_or(1, |s| s.matches('\n').count() + 1))
}

/// Serde's wording, in the words of a config file, with a hint where one helps.
fn hint(message: &str) -> String {
    if let Some(key) = quoted_after(message, "missing field `") {
        return format!("required key `{key}` is missing");
    }
    if let Some(key) = quoted_after(message, "unknown field `") {
        let expected = message
            .split_once(", expected ")
            .map(|(_, e)| format!("; expected {e}"))
            .unwrap_or_default();
        return format!("unknown key `{key}`{expected}");
    }
    message.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        name: String,
        every: crate::config::Duration,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        inner: Inner,
        #[serde(default)]
        ports: Vec<u16>,
        #[serde(default)]
        items: Vec<Inner>,
    }

    fn problems(text: &str) -> Vec<String> {
        match from_toml::<Doc>(text, Path::new("t.toml")) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .to_string()
                .lines()
                .skip(1)
                .map(|l| l.trim().to_owned())
                .collect(),
        }
    }

    #[test]
    fn a_valid_document_deserializes_as_serde_would() {
        let doc: Doc = from_toml(
            "[inner]\nname = \"a\"\nevery = \"5s\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(doc.inner.every, crate::config::Duration::from_secs(5));
    }

    #[test]
    fn consequences_of_a_fix_are_not_reported() {
        let cases: &[(&str, &[&str])] = &[
            // A missing section: one problem, not one per key inside it.
            ("ports = [1]\n", &["t.toml: inner: required key `inner` is missing"]),
            // A bad required value: not also "missing" once removed.
            (
                "[inner]\nname = \"a\"\nevery = 5\n",
                &["t.toml:3: inner.every: invalid type: integer `5`, expected a string"],
            ),
            // A bad array element is a problem of the array's key.
            (
                "ports = [1, \"x\"]\n[inner]\nname = \"a\"\nevery = \"1s\"\n",
                &["t.toml:1: ports: invalid type: string \"x\", expected u16"],
            ),
            // Elements without an id are named by index; each element's problems are found.
            (
                "[inner]\nname = \"a\"\nevery = \"1s\"\n[[items]]\nname = \"x\"\n[[items]]\nevery = \"1 s\"\n",
                &[
                    "t.toml:4: items[0].every: required key `every` is missing",
                    "t.toml:6: items[1].name: required key `name` is missing",
                    "t.toml:7: items[1].every: invalid duration \"1 s\": missing unit; expected a duration like 500ms, 10s, 5m, 1h",
                ],
            ),
        ];
        for (text, want) in cases {
            assert_eq!(problems(text), *want, "{text}");
        }
    }
}
