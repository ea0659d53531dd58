//! Bounds checked before a YAML parser sees the text: the file's size and how deep
//! flow collections (`[...]`, `{...}`) nest. The YAML scanners we use keep a stack
//! per flow level and walk it for every token, so parse time grows with the square
//! of the nesting depth (100,000 `[` took 22 s); no real config nests more than a
//! few levels.

use super::positions::Position;

/// Largest config file accepted (4,096 services with hundreds of real servers
/// each fit).
pub const MAX_CONFIG_BYTES: usize = 16 << 20;
/// Deepest nesting of flow collections accepted.
pub const MAX_FLOW_DEPTH: usize = 64;

/// Why `text` is refused before parsing, and where.
pub fn check(text: &str) -> Result<(), (Position, String)> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err((
            Position::START,
            format!(
                "the file is {} bytes; a config holds at most {MAX_CONFIG_BYTES} bytes",
                text.len()
            ),
        ));
    }
    match deepest_flow(text) {
        Some(at) => Err((
            at,
            format!(
                "flow collections ([...] and {{...}}) nest deeper than {MAX_FLOW_DEPTH} levels"
            ),
        )),
        None => Ok(()),
    }
}

/// Where flow nesting first exceeds [`MAX_FLOW_DEPTH`], if it does. Brackets in
/// comments and in quoted scalars do not count; a quote opens a scalar only where
/// YAML allows one to start (after an indicator or at the start of a line), so the
/// apostrophe in `don't` does not.
fn deepest_flow(text: &str) -> Option<Position> {
    #[derive(PartialEq)]
    enum In {
        Plain,
        Single,
        Double,
        Comment,
    }
    let mut state = In::Plain;
    let mut depth = 0usize;
    let (mut line, mut col) = (1usize, 0usize);
    // The last character other than a blank on this line, outside quotes.
    let mut last_token: Option<char> = None;
    let mut prev: Option<char> = None;
    let mut escaped = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        col += 1;
        match state {
            In::Comment => {}
            In::Single => {
                if c == '\'' {
                    if chars.peek() == Some(&'\'') {
                        // `''` is a quote inside the scalar.
                        chars.next();
                        col += 1;
                    } else {
                        state = In::Plain;
                        last_token = Some('\'');
                    }
                }
            }
            In::Double => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    state = In::Plain;
                    last_token = Some('"');
                }
            }
            In::Plain => {
                let at_token_start =
                    matches!(last_token, None | Some(':' | '-' | '?' | ',' | '[' | '{'))
                        && prev.is_none_or(|p| {
                            p == ' ' || p == '\t' || p == '\n' || "[{,".contains(p)
                        });
                match c {
                    '#' if prev.is_none_or(|p| p == ' ' || p == '\t' || p == '\n') => {
                        state = In::Comment
                    }
                    '\'' if at_token_start => state = In::Single,
                    '"' if at_token_start => state = In::Double,
                    '[' | '{' => {
                        depth += 1;
                        if depth > MAX_FLOW_DEPTH {
                            return Some(Position { line, col });
                        }
                    }
                    ']' | '}' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                if !matches!(c, ' ' | '\t' | '\n' | '\r') && state == In::Plain {
                    last_token = Some(c);
                }
            }
        }
        if c == '\n' {
            line += 1;
            col = 0;
            last_token = None;
            if state == In::Comment {
                state = In::Plain;
            }
        }
        prev = Some(c);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_flow_nesting_is_refused_where_it_passes_the_limit() {
        let text = format!("eal: {}", "[".repeat(100_000));
        let t0 = std::time::Instant::now();
        let (at, message) = check(&text).unwrap_err();
        assert!(t0.elapsed() < std::time::Duration::from_millis(100));
        assert_eq!(
            at,
            Position {
                line: 1,
                col: 6 + MAX_FLOW_DEPTH
            }
        );
        assert!(message.contains("nest deeper than 64"), "{message}");
        let mixed = format!("a:\n  b: {}x{}", "{c: [".repeat(40), "]}".repeat(40));
        assert_eq!(check(&mixed).unwrap_err().0.line, 2);
    }

    #[test]
    fn brackets_in_quotes_and_comments_do_not_count() {
        let deep = "[".repeat(200);
        for text in [
            format!("a: \"{deep}\"\n"),
            format!("a: '{deep}'\n"),
            format!("a: 'it''s {deep}'\n"),
            format!("a: \"esc \\\" {deep}\"\n"),
            format!("a: 1 # {deep}\n"),
            format!("# {deep}\nb: 2\n"),
            format!("a: [\"{deep}\", '{deep}']\n"),
            format!("- \"{deep}\"\n"),
        ] {
            assert_eq!(check(&text), Ok(()), "{text}");
        }
        // An apostrophe inside a plain scalar opens no quote, so the flow
        // collections on the next line are still counted.
        let text = format!("a: don't\nb: {}", "[".repeat(100));
        assert!(check(&text).is_err());
        // A `#` inside a word starts no comment.
        let text = format!("a: x#{}", "[".repeat(100));
        assert!(check(&text).is_err());
    }

    #[test]
    fn ordinary_nesting_and_size_pass() {
        assert_eq!(check("a: [[1, 2], {b: [3]}]\n"), Ok(()));
        let big = "x".repeat(MAX_CONFIG_BYTES + 1);
        assert!(check(&big).unwrap_err().1.contains("at most"));
    }
}
