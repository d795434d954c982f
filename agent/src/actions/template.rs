//! `{name}` placeholders in an action's argv elements or URL. `{{` and `}}` stand for literal
//! braces. A placeholder is replaced by the argument's value (already checked against its rule):
//! as is in argv (no shell ever sees it), percent-encoded in a URL.

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Arg(String),
}

/// A parsed template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    names: Vec<String>,
}

impl Template {
    /// Parses `text`.
    ///
    /// # Errors
    /// An unclosed `{`, a lone `}`, or a placeholder name outside `[A-Za-z0-9_.-]{1,64}`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut names = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(ch) => name.push(ch),
                            None => return Err(format!("{text:?} has an unclosed {{")),
                        }
                    }
                    if watchstand_shared::topic::validate_id(&name).is_err() {
                        return Err(format!(
                            "{text:?}: placeholder {{{name}}} is not an argument name ([A-Za-z0-9_.-]{{1,64}}; write {{{{ for a literal brace)"
                        ));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    if !names.contains(&name) {
                        names.push(name.clone());
                    }
                    parts.push(Part::Arg(name));
                }
                '}' => {
                    return Err(format!(
                        "{text:?} has a lone }} (write }}}} for a literal brace)"
                    ))
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Self { parts, names })
    }

    /// The argument names it uses.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The text with each placeholder replaced by `encode(value)`; a name missing from `args`
    /// becomes empty (validation makes every placeholder a declared, required argument).
    pub fn render(
        &self,
        args: &std::collections::BTreeMap<String, String>,
        encode: impl Fn(&str) -> String,
    ) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Arg(name) => out.push_str(&encode(args.get(name).map_or("", String::as_str))),
            }
        }
        out
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn placeholders_are_replaced_and_braces_escape() {
        let t = Template::parse("--role={role} {{x}} {db}").unwrap();
        assert_eq!(t.names(), ["role", "db"]);
        let args = BTreeMap::from([
            ("role".to_owned(), "a b".to_owned()),
            ("db".to_owned(), "shop&x=1".to_owned()),
        ]);
        assert_eq!(t.render(&args, str::to_owned), "--role=a b {x} shop&x=1");
        assert_eq!(
            t.render(&args, percent_encode),
            "--role=a%20b {x} shop%26x%3D1"
        );
    }

    #[test]
    fn template_mistakes_have_exact_messages() {
        assert_eq!(
            Template::parse("{x").unwrap_err(),
            "\"{x\" has an unclosed {"
        );
        assert_eq!(
            Template::parse("x}").unwrap_err(),
            "\"x}\" has a lone } (write }} for a literal brace)"
        );
        assert_eq!(
            Template::parse("{a b}").unwrap_err(),
            "\"{a b}\": placeholder {a b} is not an argument name ([A-Za-z0-9_.-]{1,64}; write {{ for a literal brace)"
        );
    }
}
