//! Argument rules: each declared argument has an allowed list or a regex that the whole value
//! must match. A command must pass exactly the declared arguments; anything else is refused
//! (`argument_refused`). Values never reach a shell (exec runs argv directly), but the rules are
//! the operator's statement of what may be passed, so a value outside them is not run at all.

use std::collections::BTreeMap;

use super::config::ArgRuleConfig;

/// A checked rule.
#[derive(Debug, Clone)]
pub enum ArgRule {
    /// One of these values, exactly.
    Allowed(Vec<String>),
    /// The whole value matches (the pattern is anchored as `^(?:…)$`).
    Regex(regex::Regex),
}

impl ArgRule {
    /// Builds a rule from its config.
    ///
    /// # Errors
    /// Neither or both of `allowed` and `regex`, an empty list, or a regex that does not compile.
    pub fn build(config: &ArgRuleConfig) -> Result<Self, String> {
        match (&config.allowed, &config.regex) {
            (Some(_), Some(_)) => Err("set either allowed or regex, not both".into()),
            (None, None) => Err("needs a rule: allowed = [..] or regex = \"..\"".into()),
            (Some(list), None) if list.is_empty() => {
                Err("allowed must list at least one value".into())
            }
            (Some(list), None) => Ok(ArgRule::Allowed(list.clone())),
            (None, Some(re)) => regex::Regex::new(&format!("^(?:{re})$"))
                .map(ArgRule::Regex)
                .map_err(|e| {
                    let first = e.to_string();
                    let reason = first
                        .lines()
                        .last()
                        .unwrap_or("")
                        .trim_start_matches("error: ");
                    format!("regex {re:?} does not compile: {reason}")
                }),
        }
    }

    /// True when `value` passes.
    pub fn accepts(&self, value: &str) -> bool {
        match self {
            ArgRule::Allowed(list) => list.iter().any(|v| v == value),
            ArgRule::Regex(re) => re.is_match(value),
        }
    }
}

/// Checks `given` against the declared `rules`: every declared argument present and accepted,
/// nothing undeclared.
///
/// # Errors
/// A sentence naming the first argument refused (values are quoted, at most 64 characters).
pub fn check(
    action: &str,
    rules: &BTreeMap<String, ArgRule>,
    given: &BTreeMap<String, String>,
) -> Result<(), String> {
    if let Some(extra) = given.keys().find(|k| !rules.contains_key(*k)) {
        return Err(format!("args.{extra} is not declared for action {action}"));
    }
    for (name, rule) in rules {
        let Some(value) = given.get(name) else {
            return Err(format!("args.{name} is missing"));
        };
        if !rule.accepts(value) {
            let shown: String = value.chars().take(64).collect();
            return Err(format!("args.{name} = {shown:?} is outside its rule"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(allowed: Option<&[&str]>, regex: Option<&str>) -> Result<ArgRule, String> {
        ArgRule::build(&ArgRuleConfig {
            allowed: allowed.map(|a| a.iter().map(|s| (*s).to_owned()).collect()),
            regex: regex.map(str::to_owned),
        })
    }

    #[test]
    fn a_regex_must_match_the_whole_value() {
        let r = rule(None, Some("[a-z]{1,8}")).unwrap();
        assert!(r.accepts("shop"));
        for bad in [
            "shop;rm -rf /",
            "shop\n",
            "$(id)",
            "",
            "a b",
            "toolongvalue",
            "`x`",
        ] {
            assert!(!r.accepts(bad), "{bad:?}");
        }
        // An alternation is anchored as a whole, not only its first branch.
        let r = rule(None, Some("a|b")).unwrap();
        assert!(!r.accepts("ab") && !r.accepts("xb") && r.accepts("b"));
    }

    #[test]
    fn an_allowed_list_accepts_only_its_values() {
        let r = rule(Some(&["primary", "standby"]), None).unwrap();
        assert!(r.accepts("primary"));
        assert!(!r.accepts("primary "));
        assert!(!r.accepts("PRIMARY"));
    }

    #[test]
    fn rule_config_mistakes_have_exact_messages() {
        assert_eq!(
            rule(None, None).unwrap_err(),
            "needs a rule: allowed = [..] or regex = \"..\""
        );
        assert_eq!(
            rule(Some(&["a"]), Some("a")).unwrap_err(),
            "set either allowed or regex, not both"
        );
        assert_eq!(
            rule(Some(&[]), None).unwrap_err(),
            "allowed must list at least one value"
        );
        assert_eq!(
            rule(None, Some("(")).unwrap_err(),
            "regex \"(\" does not compile: unclosed group"
        );
    }

    #[test]
    fn missing_extra_and_refused_arguments_are_named() {
        let rules = BTreeMap::from([("role".to_owned(), rule(Some(&["primary"]), None).unwrap())]);
        let args = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(check("p", &rules, &args(&[("role", "primary")])), Ok(()));
        assert_eq!(
            check("p", &rules, &args(&[])),
            Err("args.role is missing".into())
        );
        assert_eq!(
            check("p", &rules, &args(&[("role", "primary"), ("x", "1")])),
            Err("args.x is not declared for action p".into())
        );
        assert_eq!(
            check("p", &rules, &args(&[("role", "primary; reboot")])),
            Err("args.role = \"primary; reboot\" is outside its rule".into())
        );
    }
}
