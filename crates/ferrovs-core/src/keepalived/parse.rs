//! keepalived's configuration syntax: lines of words, blocks in braces, quoted
//! strings, comments, `include`, parameter definitions.
//!
//! The rules are those of keepalived's own parser (`lib/parser.c`): `#` and `!`
//! outside double quotes start a comment (`\#` and `\!` are the characters); a
//! line ending in `\` continues on the next; `"..."` is one word without its
//! quotes; `{` and `}` outside quotes stand alone wherever they are written, so
//! `real_server 10.0.0.1 80 {weight 1}` is three lines; a block's `{` may open on
//! the line after its keyword. `include PATTERN` reads the files the pattern
//! names (a glob; relative to the including file's directory) in its place.
//! `$NAME=VALUE` defines a parameter that `$NAME` and `${NAME}` then stand for.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Deepest `include` nesting (keepalived has no limit; a loop would never end).
const MAX_INCLUDE_DEPTH: usize = 16;
/// Deepest block nesting accepted.
const MAX_BLOCK_DEPTH: usize = 32;

/// A statement: a keyword and its arguments on one (logical) line, and the block
/// that follows it, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stmt {
    /// Index into [`Parsed::files`] of the file the statement is written in.
    pub file: usize,
    /// 1-based line of its keyword.
    pub line: usize,
    /// The keyword, then its arguments.
    pub words: Vec<String>,
    /// The statements of its `{ ... }` block.
    pub block: Option<Vec<Stmt>>,
}

impl Stmt {
    /// The keyword.
    pub fn keyword(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }

    /// Argument `i` (0 = the first after the keyword).
    pub fn arg(&self, i: usize) -> Option<&str> {
        self.words.get(i + 1).map(String::as_str)
    }

    /// The statements of its block (none without one).
    pub fn children(&self) -> &[Stmt] {
        self.block.as_deref().unwrap_or_default()
    }
}

/// Something read but skipped by the reader itself, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Index into [`Parsed::files`].
    pub file: usize,
    /// 1-based line.
    pub line: usize,
    /// What was skipped.
    pub what: String,
    /// Why.
    pub why: String,
}

/// A whole configuration, includes resolved.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Every file read, as named in reports (the top file as given, includes as
    /// resolved).
    pub files: Vec<String>,
    /// The top-level statements.
    pub stmts: Vec<Stmt>,
    /// Lines the reader left out (conditional configuration, includes matching
    /// nothing, ...).
    pub skipped: Vec<Skipped>,
    /// (file, line) -> its place in reading order (includes read in place), to
    /// report in the order of the configuration.
    pub order: HashMap<(usize, usize), usize>,
}

/// Why a configuration cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The file, as named in reports.
    pub file: String,
    /// 1-based line (1 for a file that cannot be read).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// A token of a logical line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Open,
    Close,
}

/// One physical line's tokens, where it was written.
#[derive(Debug)]
struct Line {
    file: usize,
    line: usize,
    tokens: Vec<Token>,
}

/// Reads `path` and everything it includes with `read`.
pub fn parse_file(
    path: &Path,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Parsed, ParseError> {
    let mut reader = Reader {
        read,
        parsed: Parsed::default(),
        lines: Vec::new(),
        params: HashMap::new(),
        stack: Vec::new(),
    };
    let name = path.display().to_string();
    let text = read(path).map_err(|e| ParseError {
        file: name.clone(),
        line: 1,
        message: format!("cannot read: {e}"),
    })?;
    reader.file(path, name, &text)?;
    let Reader {
        mut parsed, lines, ..
    } = reader;
    let mut at = 0;
    parsed.stmts = block(&lines, &mut at, 0, &parsed.files)?;
    Ok(parsed)
}

/// Reads configuration `text` named `name`, whose includes are read with `read`
/// relative to `dir`.
pub fn parse_text(
    text: &str,
    name: &str,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Parsed, ParseError> {
    let mut reader = Reader {
        read,
        parsed: Parsed::default(),
        lines: Vec::new(),
        params: HashMap::new(),
        stack: Vec::new(),
    };
    reader.file(Path::new(name), name.to_string(), text)?;
    let Reader {
        mut parsed, lines, ..
    } = reader;
    let mut at = 0;
    parsed.stmts = block(&lines, &mut at, 0, &parsed.files)?;
    Ok(parsed)
}

struct Reader<'a> {
    read: &'a dyn Fn(&Path) -> std::io::Result<String>,
    parsed: Parsed,
    lines: Vec<Line>,
    params: HashMap<String, String>,
    /// The files being read, outermost first (include loops).
    stack: Vec<PathBuf>,
}

impl Reader<'_> {
    fn file(&mut self, path: &Path, name: String, text: &str) -> Result<(), ParseError> {
        let index = self.parsed.files.len();
        self.parsed.files.push(name);
        self.stack.push(path.to_path_buf());
        let mut physical = text.lines().enumerate();
        while let Some((i, raw)) = physical.next() {
            let number = i + 1;
            let seq = self.parsed.order.len();
            self.parsed.order.insert((index, number), seq);
            let mut text = decomment(raw);
            // A line ending in an unescaped backslash continues on the next.
            while text.ends_with('\\') {
                text.pop();
                match physical.next() {
                    Some((_, more)) => {
                        text.push(' ');
                        text.push_str(&decomment(more));
                    }
                    None => break,
                }
            }
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            if text.starts_with('@') {
                self.skip(index, number, text, "conditional configuration (@ID lines) is not evaluated; write the lines that apply to this host without the prefix");
                continue;
            }
            if let Some(definition) = text.strip_prefix('$') {
                if let Some((name, value)) = definition.split_once('=') {
                    let name = name.trim();
                    if !name.is_empty()
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        let value = self.substitute(value.trim());
                        self.params.insert(name.to_string(), value);
                        continue;
                    }
                }
            }
            if text.starts_with('~') {
                self.skip(
                    index,
                    number,
                    text,
                    "sequence blocks (~SEQ) are not expanded",
                );
                continue;
            }
            let text = self.substitute(text);
            let tokens = tokenize(&text).map_err(|message| ParseError {
                file: self.parsed.files[index].clone(),
                line: number,
                message,
            })?;
            if let [Token::Word(first), rest @ ..] = tokens.as_slice() {
                if first == "include" {
                    self.include(index, number, path, rest)?;
                    continue;
                }
            }
            self.lines.push(Line {
                file: index,
                line: number,
                tokens,
            });
        }
        self.stack.pop();
        Ok(())
    }

    fn skip(&mut self, file: usize, line: usize, text: &str, why: &str) {
        self.parsed.skipped.push(Skipped {
            file,
            line,
            what: format!("`{text}`"),
            why: why.to_string(),
        });
    }

    /// `$NAME` and `${NAME}` replaced by their definitions; unknown names stay.
    fn substitute(&self, text: &str) -> String {
        if !text.contains('$') {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let (name, len) = if let Some(braced) = after.strip_prefix('{') {
                match braced.find('}') {
                    Some(end) => (&braced[..end], end + 2),
                    None => ("", 0),
                }
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            };
            match self.params.get(name) {
                Some(value) if !name.is_empty() => {
                    out.push_str(value);
                    rest = &after[len..];
                }
                _ => {
                    out.push('$');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }

    fn include(
        &mut self,
        file: usize,
        line: usize,
        from: &Path,
        args: &[Token],
    ) -> Result<(), ParseError> {
        let here = self.parsed.files[file].clone();
        let error = |message: String| ParseError {
            file: here.clone(),
            line,
            message,
        };
        let [Token::Word(pattern)] = args else {
            return Err(error("include takes one file name or pattern".into()));
        };
        if self.stack.len() >= MAX_INCLUDE_DEPTH {
            return Err(error(format!(
                "includes nested deeper than {MAX_INCLUDE_DEPTH}"
            )));
        }
        let dir = from.parent().unwrap_or(Path::new(""));
        let pattern_path = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            dir.join(pattern)
        };
        let files = if pattern.contains(['*', '?', '[']) {
            glob(&pattern_path)
        } else {
            vec![pattern_path]
        };
        if files.is_empty() {
            self.skip(
                file,
                line,
                &format!("include {pattern}"),
                "no file matches it",
            );
            return Ok(());
        }
        for path in files {
            if self.stack.contains(&path) {
                return Err(error(format!(
                    "{} includes itself (through {})",
                    path.display(),
                    here
                )));
            }
            let text = (self.read)(&path)
                .map_err(|e| error(format!("include {}: cannot read: {e}", path.display())))?;
            self.file(&path, path.display().to_string(), &text)?;
        }
        Ok(())
    }
}

/// keepalived's `decomment`: the text before an unquoted `#` or `!`, with `\#` and
/// `\!` unescaped, trimmed.
fn decomment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut quote = false;
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quote = !quote;
                out.push(c);
            }
            '\\' => match chars.peek() {
                Some(&next @ ('#' | '!')) if !quote => {
                    out.push(next);
                    chars.next();
                }
                Some(&next) => {
                    out.push('\\');
                    out.push(next);
                    chars.next();
                }
                None => out.push('\\'),
            },
            '#' | '!' if !quote => break,
            _ => out.push(c),
        }
    }
    out.trim().to_string()
}

/// Words, `"quoted strings"` and braces of one logical line.
fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '{' => {
                chars.next();
                tokens.push(Token::Open);
            }
            '}' => {
                chars.next();
                tokens.push(Token::Close);
            }
            '"' => {
                chars.next();
                let mut word = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated quote in `{text}`")),
                    }
                }
                tokens.push(Token::Word(word));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '{' | '}' | '"') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

/// The statements of one block, from `lines[*at]` (and its tokens) on, until the
/// `}` that closes it (depth > 0) or the end.
fn block(
    lines: &[Line],
    at: &mut usize,
    depth: usize,
    files: &[String],
) -> Result<Vec<Stmt>, ParseError> {
    // Tokens are consumed across lines: flatten to (line index, token).
    let mut flat: Vec<(usize, Option<&Token>)> = Vec::new();
    for (i, line) in lines.iter().enumerate().skip(*at) {
        for t in &line.tokens {
            flat.push((i, Some(t)));
        }
        flat.push((i, None)); // end of line
    }
    let mut pos = 0;
    let stmts = block_of(lines, &flat, &mut pos, depth, files)?;
    *at = lines.len();
    Ok(stmts)
}

fn block_of(
    lines: &[Line],
    flat: &[(usize, Option<&Token>)],
    pos: &mut usize,
    depth: usize,
    files: &[String],
) -> Result<Vec<Stmt>, ParseError> {
    let error = |i: usize, message: &str| ParseError {
        file: files[lines[i].file].clone(),
        line: lines[i].line,
        message: message.to_string(),
    };
    if depth > MAX_BLOCK_DEPTH {
        let i = flat.get(*pos).map_or(lines.len() - 1, |(i, _)| *i);
        return Err(error(i, "blocks nested too deep"));
    }
    let mut stmts: Vec<Stmt> = Vec::new();
    // The statement being collected: its line index and words.
    let mut current: Option<(usize, Vec<String>)> = None;
    while let Some(&(i, token)) = flat.get(*pos) {
        *pos += 1;
        match token {
            Some(Token::Word(w)) => match current.as_mut() {
                Some((_, words)) => words.push(w.clone()),
                None => current = Some((i, vec![w.clone()])),
            },
            None => {
                if let Some((line, words)) = current.take() {
                    stmts.push(stmt(lines, line, words));
                }
            }
            Some(Token::Open) => {
                if let Some((line, words)) = current.take() {
                    stmts.push(stmt(lines, line, words));
                }
                match stmts.last_mut() {
                    Some(last) if last.block.is_none() => {
                        last.block = Some(block_of(lines, flat, pos, depth + 1, files)?);
                    }
                    _ => return Err(error(i, "`{` opens no keyword's block")),
                }
            }
            Some(Token::Close) => {
                if let Some((line, words)) = current.take() {
                    stmts.push(stmt(lines, line, words));
                }
                if depth == 0 {
                    return Err(error(i, "`}` closes no block"));
                }
                return Ok(stmts);
            }
        }
    }
    if let Some((line, words)) = current.take() {
        stmts.push(stmt(lines, line, words));
    }
    if depth > 0 {
        let i = lines.len().saturating_sub(1);
        return Err(error(i, "a block is not closed: `}` missing at the end"));
    }
    Ok(stmts)
}

fn stmt(lines: &[Line], i: usize, words: Vec<String>) -> Stmt {
    Stmt {
        file: lines[i].file,
        line: lines[i].line,
        words,
        block: None,
    }
}

/// The files matching `pattern` (`*`, `?` and `[...]` in any component), sorted as
/// glob(3) sorts them.
fn glob(pattern: &Path) -> Vec<PathBuf> {
    let mut found = vec![PathBuf::new()];
    for component in pattern.components() {
        let text = component.as_os_str().to_string_lossy();
        let wild = text.contains(['*', '?', '[']);
        let mut next = Vec::new();
        for base in &found {
            if !wild {
                next.push(base.join(component.as_os_str()));
                continue;
            }
            let dir = if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base.as_path()
            };
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| !name.starts_with('.') && matches(&text, name))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| base.join(n)));
        }
        found = next;
    }
    found.retain(|p| p.is_file());
    found
}

/// fnmatch(3) without flags, for one path component.
fn matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|skip| go(rest, &n[skip..])),
            Some(('?', rest)) => !n.is_empty() && go(rest, &n[1..]),
            Some(('[', rest)) => {
                let Some(close) = rest.iter().skip(1).position(|&c| c == ']').map(|i| i + 1) else {
                    return n.first() == Some(&'[') && go(rest, &n[1..]);
                };
                let Some((&c, n_rest)) = n.split_first() else {
                    return false;
                };
                let (negate, set) = match rest[..close].split_first() {
                    Some(('!' | '^', set)) => (true, set),
                    _ => (false, &rest[..close]),
                };
                let mut hit = false;
                let mut i = 0;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == '-' {
                        hit |= set[i] <= c && c <= set[i + 2];
                        i += 3;
                    } else {
                        hit |= set[i] == c;
                        i += 1;
                    }
                }
                hit != negate && go(&rest[close + 1..], n_rest)
            }
            Some((&c, rest)) => n.first() == Some(&c) && go(rest, &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_files(path: &Path) -> std::io::Result<String> {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} not found", path.display()),
        ))
    }

    fn parse(text: &str) -> Parsed {
        parse_text(text, "k.conf", &no_files).unwrap()
    }

    fn shape(stmts: &[Stmt]) -> Vec<String> {
        stmts
            .iter()
            .map(|s| {
                let mut out = format!("{}:{}", s.line, s.words.join(" "));
                if let Some(b) = &s.block {
                    out.push_str(&format!(" {{{}}}", shape(b).join("; ")));
                }
                out
            })
            .collect()
    }

    #[test]
    fn blocks_comments_quotes_and_braces_anywhere() {
        let p = parse(
            "! Configuration File for keepalived\n\
             virtual_server 10.0.0.1 80 {   # the VIP\n\
             \x20   lb_algo rr\n\
             \x20   real_server 10.0.0.11 80 { weight 2 }\n\
             \x20   real_server 10.0.0.12 80\n\
             \x20   {\n\
             \x20       MISC_CHECK {\n\
             \x20           misc_path \"/usr/bin/check --opt '#1' x\" \\\n\
             \x20               \\#2\n\
             \x20       }\n\
             \x20   }\n\
             }\n",
        );
        assert_eq!(
            shape(&p.stmts),
            ["2:virtual_server 10.0.0.1 80 {3:lb_algo rr; 4:real_server 10.0.0.11 80 {4:weight 2}; \
              5:real_server 10.0.0.12 80 {7:MISC_CHECK {8:misc_path /usr/bin/check --opt '#1' x #2}}}"]
        );
        assert_eq!(p.stmts[0].children()[1].arg(1), Some("80"));
    }

    #[test]
    fn parameters_are_substituted_and_conditional_lines_reported() {
        let p = parse(
            "$VIP=10.0.0.1\n$PORT = 443\n@backup virtual_server 10.9.9.9 80 {\n\
             virtual_server $VIP ${PORT} { lb_kind DR }\n",
        );
        assert_eq!(
            shape(&p.stmts),
            ["4:virtual_server 10.0.0.1 443 {4:lb_kind DR}"]
        );
        assert_eq!(p.skipped.len(), 1);
        assert_eq!(p.skipped[0].line, 3);
    }

    #[test]
    fn unbalanced_braces_and_quotes_are_errors() {
        let err = |text: &str| parse_text(text, "k.conf", &no_files).unwrap_err();
        let e = err("virtual_server 10.0.0.1 80 {\n  lb_algo rr\n");
        assert_eq!((e.line, e.message.contains("not closed")), (2, true), "{e}");
        let e = err("lb_algo rr\n}\n");
        assert_eq!(
            (e.line, e.message.contains("closes no block")),
            (2, true),
            "{e}"
        );
        let e = err("{\n");
        assert!(e.message.contains("opens no"), "{e}");
        let e = err("misc_path \"/bin/x\n");
        assert!(e.message.contains("unterminated quote"), "{e}");
        let e = err("include /nonexistent/x.conf\n");
        assert!(e.message.contains("cannot read"), "{e}");
    }

    #[test]
    fn includes_are_read_in_place_relative_to_the_including_file() {
        let read = |path: &Path| -> std::io::Result<String> {
            match path.to_str() {
                Some("/etc/keepalived/keepalived.conf") => {
                    Ok("include conf.d/vs.conf\nvirtual_server 10.0.0.2 80 {\n}\n".into())
                }
                Some("/etc/keepalived/conf.d/vs.conf") => {
                    Ok("virtual_server 10.0.0.1 80 {\n  include ../rs.conf\n}\n".into())
                }
                Some("/etc/keepalived/conf.d/../rs.conf") => {
                    Ok("real_server 10.0.0.11 80\n".into())
                }
                Some("/etc/keepalived/loop.conf") => Ok("include loop.conf\n".into()),
                _ => no_files(path),
            }
        };
        let p = parse_file(Path::new("/etc/keepalived/keepalived.conf"), &read).unwrap();
        assert_eq!(
            shape(&p.stmts),
            [
                "1:virtual_server 10.0.0.1 80 {1:real_server 10.0.0.11 80}",
                "2:virtual_server 10.0.0.2 80 {}"
            ]
        );
        assert_eq!(p.files[p.stmts[0].file], "/etc/keepalived/conf.d/vs.conf");
        assert_eq!(
            p.files[p.stmts[0].children()[0].file],
            "/etc/keepalived/conf.d/../rs.conf"
        );
        let e = parse_file(Path::new("/etc/keepalived/loop.conf"), &read).unwrap_err();
        assert!(e.message.contains("includes itself"), "{e}");
    }

    #[test]
    fn glob_patterns_match_like_fnmatch() {
        assert!(matches("*.conf", "vs1.conf"));
        assert!(!matches("*.conf", "vs1.conf.bak"));
        assert!(matches("vs?.conf", "vs1.conf"));
        assert!(matches("vs[0-9].conf", "vs7.conf"));
        assert!(!matches("vs[!0-9].conf", "vs7.conf"));
        assert!(matches("[", "["));
    }
}
