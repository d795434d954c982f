//! Fuzz target `config`: agent and collector config parsing and validation, and the small
//! text parsers config values go through.
//!
//! The input, as UTF-8 (lossily), is loaded as an agent config (`load_config_str`) and as a
//! collector config (`from_str` + `validate`). Each line of the text, and each `"quoted"` piece
//! of a line, is then fed to `Duration`, `Window`, `parse_weekday`, `parse_hh_mm` and `parse_rfc3339_ms`.
//!
//! Checked: nothing panics; every error has a non-empty message, and a validation error lists
//! at least one problem, each with a key and a message; a parsed `Duration` or `Window`
//! re-parses from its `Display` to the same value; a parsed time of day is below 24:00.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use watchstand_collector::sla::maintenance::{parse_hh_mm, parse_rfc3339_ms, parse_weekday};
use watchstand_collector::sla::Window;
use watchstand_shared::config::{ConfigErrors, Duration, LoadError};

fn check_config_errors(what: &str, e: &ConfigErrors) {
    assert!(
        !e.errors.is_empty(),
        "{what}: invalid, but no problem listed"
    );
    for problem in &e.errors {
        assert!(
            !problem.key.is_empty(),
            "{what}: a problem without a key: {problem:?}"
        );
        assert!(
            !problem.message.is_empty(),
            "{what}: a problem without a message: {problem:?}"
        );
    }
    assert!(!e.to_string().is_empty(), "{what}: empty message");
}

fn check_load_error(what: &str, e: &LoadError) {
    match e {
        LoadError::Parse { message, .. } => {
            assert!(!message.is_empty(), "{what}: parse error without a message")
        }
        LoadError::Invalid(errors) => check_config_errors(what, errors),
        _ => {}
    }
    assert!(!e.to_string().is_empty(), "{what}: empty message");
}

fn small_parsers(text: &str) {
    match text.parse::<Duration>() {
        Ok(d) => {
            let shown = d.to_string();
            let back: Duration = shown.parse().unwrap_or_else(|e| {
                panic!("Duration {text:?} shows as {shown:?}, which fails: {e}")
            });
            assert_eq!(back, d, "Duration {text:?} shows as {shown:?}");
        }
        Err(e) => assert!(
            !e.to_string().is_empty(),
            "empty Duration error for {text:?}"
        ),
    }
    match text.parse::<Window>() {
        Ok(w) => {
            let shown = w.to_string();
            let back: Window = shown
                .parse()
                .unwrap_or_else(|e| panic!("Window {text:?} shows as {shown:?}, which fails: {e}"));
            assert_eq!(back, w, "Window {text:?} shows as {shown:?}");
        }
        Err(e) => assert!(!e.to_string().is_empty(), "empty Window error for {text:?}"),
    }
    if let Err(e) = parse_weekday(text) {
        assert!(
            !e.to_string().is_empty(),
            "empty weekday error for {text:?}"
        );
    }
    match parse_hh_mm(text) {
        Ok(minute) => assert!(minute < 24 * 60, "{text:?} gave minute {minute}"),
        Err(e) => assert!(!e.to_string().is_empty(), "empty time error for {text:?}"),
    }
    if let Err(e) = parse_rfc3339_ms(text) {
        assert!(
            !e.to_string().is_empty(),
            "empty timestamp error for {text:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let origin = Path::new("fuzz.toml");

    if let Err(e) = watchstand_agent::load_config_str(&text, origin) {
        check_load_error("agent", &e);
    }

    match watchstand_collector::config::from_str(&text, origin) {
        Ok(raw) => {
            if let Err(e) = watchstand_collector::config::validate(raw, origin, Path::new("/base"))
            {
                check_config_errors("collector", &e);
            }
        }
        Err(e) => check_load_error("collector", &e),
    }

    // Lines rather than the whole text: the parsers trim, so a one-line text is covered by its
    // line, and formatting a long text into five error messages would only slow the fuzzer.
    if text.is_empty() {
        small_parsers(&text);
    }
    for line in text.lines() {
        small_parsers(line);
        // Values inside TOML lines such as `interval = "10s"`.
        for quoted in line.split('"').skip(1).step_by(2) {
            small_parsers(quoted);
        }
    }
});
