//! The seed corpus of the `config` fuzz target, run as an ordinary test so that CI exercises it
//! without running the fuzzer (see `fuzz/README.md`).
//!
//! Every file under `fuzz/seeds/config/` goes through what the fuzz target calls: the agent's
//! `load_config_str`, the collector's `config::from_str` + `config::validate`, and the small
//! parsers (`Duration`, `Window`, weekday, `HH:MM`, RFC 3339) on each line and each quoted
//! value. None may panic; every error must list its problems with a key and a message.
//! Files are also checked by name: `agent*` must be a valid agent config, `collector*` a valid
//! collector config. Any other name (such as `crash-*`, a minimised fuzzer find) only has to
//! be handled without a panic.
//!
//! To add a regression: copy the (minimised) input from `fuzz/artifacts/config/` into
//! `fuzz/seeds/config/` with a descriptive name; this test then runs it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use watchstand_collector::sla::maintenance::{parse_hh_mm, parse_rfc3339_ms, parse_weekday};
use watchstand_collector::sla::Window;
use watchstand_shared::config::{ConfigErrors, Duration, LoadError};

fn seed_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files
}

fn check_config_errors(e: &ConfigErrors) {
    assert!(!e.errors.is_empty(), "invalid, but no problem listed");
    for problem in &e.errors {
        assert!(
            !problem.key.is_empty(),
            "a problem without a key: {problem:?}"
        );
        assert!(
            !problem.message.is_empty(),
            "a problem without a message: {problem:?}"
        );
    }
}

fn check_load_error(e: &LoadError) {
    match e {
        LoadError::Parse { message, .. } => assert!(!message.is_empty(), "parse error, no text"),
        LoadError::Invalid(errors) => check_config_errors(errors),
        _ => {}
    }
    assert!(!e.to_string().is_empty());
}

fn small_parsers(text: &str) {
    if let Ok(d) = text.parse::<Duration>() {
        assert_eq!(d.to_string().parse::<Duration>().ok(), Some(d), "{text:?}");
    }
    if let Ok(w) = text.parse::<Window>() {
        assert_eq!(w.to_string().parse::<Window>().ok(), Some(w), "{text:?}");
    }
    if let Ok(minute) = parse_hh_mm(text) {
        assert!(minute < 24 * 60, "{text:?} gave minute {minute}");
    }
    let errors = [
        text.parse::<Duration>().err().map(|e| e.to_string()),
        text.parse::<Window>().err().map(|e| e.to_string()),
        parse_weekday(text).err().map(|e| e.to_string()),
        parse_hh_mm(text).err().map(|e| e.to_string()),
        parse_rfc3339_ms(text).err().map(|e| e.to_string()),
    ];
    for message in errors.into_iter().flatten() {
        assert!(!message.is_empty(), "empty error for {text:?}");
    }
}

fn check_seed(name: &str, text: &str) {
    let origin = Path::new("fuzz.toml");
    let agent = watchstand_agent::load_config_str(text, origin);
    if let Err(e) = &agent {
        check_load_error(e);
    }
    let collector = match watchstand_collector::config::from_str(text, origin) {
        Ok(raw) => {
            watchstand_collector::config::validate(raw, origin, Path::new("/base")).map_err(|e| {
                check_config_errors(&e);
                e.to_string()
            })
        }
        Err(e) => {
            check_load_error(&e);
            Err(e.to_string())
        }
    };
    if name.starts_with("agent") {
        if let Err(e) = &agent {
            panic!("{name} is not a valid agent config: {e}");
        }
    }
    if name.starts_with("collector") {
        if let Err(e) = &collector {
            panic!("{name} is not a valid collector config: {e}");
        }
    }
    for line in text.lines() {
        small_parsers(line);
        for quoted in line.split('"').skip(1).step_by(2) {
            small_parsers(quoted);
        }
    }
}

#[test]
fn every_config_seed_is_handled_without_a_panic() {
    let mut failures = Vec::new();
    for path in seed_files() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let data = std::fs::read(&path).expect("read seed");
        let text = String::from_utf8_lossy(&data);
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check_seed(&name, &text))) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(format!("{name}: {message}"));
        }
    }
    assert!(
        failures.is_empty(),
        "seeds failed:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_shipped_configs_are_handled_without_a_panic() {
    // The seeds hold copies of these; the current files may have moved on since.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for shipped in ["configs/agent.toml", "configs/collector.toml"] {
        let text = std::fs::read_to_string(root.join(shipped)).expect(shipped);
        check_seed(shipped, &text);
    }
}
