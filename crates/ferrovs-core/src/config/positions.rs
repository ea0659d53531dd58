//! Where each value sits in the YAML text, by path, for semantic error reports.
//!
//! serde gives typed values without positions, so the text is parsed a second time
//! with yaml-rust2's marked event parser and every node's start is recorded under its
//! path: `services[0].real_servers[1].address`. The root mapping is the empty path.
//! yaml-rust2 was picked over saphyr-parser because its `MarkedEventReceiver` push
//! API is stable and small and it is the more widely used of the two.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column; ordered by line, then column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

impl Position {
    /// The start of the file.
    pub const START: Position = Position { line: 1, col: 1 };
}

/// Start positions of YAML nodes by path.
#[derive(Debug, Default)]
pub struct Positions {
    by_path: HashMap<String, Position>,
}

impl Positions {
    /// Records every node of the first document of `text`. A file that serde accepted
    /// parses here too; should the two parsers ever disagree, what was recorded before
    /// the disagreement is kept and lookups fall back to enclosing nodes.
    pub fn of(text: &str) -> Positions {
        let mut recorder = Recorder::default();
        // Ignoring the error is the fallback described above; serde already reported
        // any syntax error with its own position.
        let _ = Parser::new_from_str(text).load(&mut recorder, false);
        Positions {
            by_path: recorder.by_path,
        }
    }

    /// The position of the node at `path`, or of its nearest recorded ancestor when
    /// the node is absent (a missing key is reported at its parent mapping).
    pub fn get(&self, path: &str) -> Position {
        let mut path = path;
        loop {
            if let Some(position) = self.by_path.get(path) {
                return *position;
            }
            match path.rfind(['.', '[']) {
                Some(cut) => path = &path[..cut],
                None if !path.is_empty() => path = "",
                None => return Position::START,
            }
        }
    }
}

/// An open collection while walking the event stream.
enum Frame {
    Mapping {
        path: String,
        /// The key whose value comes next, or `None` while a key is expected.
        key: Option<String>,
        /// No key has started yet.
        empty: bool,
    },
    Sequence {
        path: String,
        next_index: usize,
    },
}

#[derive(Default)]
struct Recorder {
    stack: Vec<Frame>,
    by_path: HashMap<String, Position>,
}

impl Recorder {
    /// The path of the node now starting, or `None` if it is a mapping key.
    fn child_path(&self) -> Option<String> {
        match self.stack.last() {
            None => Some(String::new()),
            Some(Frame::Mapping { key: None, .. }) => None,
            Some(Frame::Mapping {
                path,
                key: Some(key),
                ..
            }) if path.is_empty() => Some(key.clone()),
            Some(Frame::Mapping {
                path,
                key: Some(key),
                ..
            }) => Some(format!("{path}.{key}")),
            Some(Frame::Sequence { path, next_index }) => Some(format!("{path}[{next_index}]")),
        }
    }

    /// A node (scalar, alias or whole collection) has ended: advance its parent.
    fn node_done(&mut self, scalar_text: Option<&str>) {
        match self.stack.last_mut() {
            Some(Frame::Mapping { key, .. }) => {
                *key = match key {
                    // A non-scalar key cannot name a config field; keep a placeholder
                    // so the value after it still gets a path of its own.
                    None => Some(scalar_text.unwrap_or("?").to_string()),
                    Some(_) => None,
                };
            }
            Some(Frame::Sequence { next_index, .. }) => *next_index += 1,
            None => {}
        }
    }

    /// Records the start of the node now starting at `mark`.
    fn record(&mut self, path: &Option<String>, mark: Marker) {
        // yaml-rust2 lines are 1-based, columns 0-based.
        let position = Position {
            line: mark.line(),
            col: mark.col() + 1,
        };
        match path {
            Some(path) => {
                self.by_path.entry(path.clone()).or_insert(position);
            }
            None => self.first_key_starts(position),
        }
    }

    /// yaml-rust2 marks a block mapping's start after its first key (at the `:`), so
    /// a mapping is placed at its first key when that comes earlier.
    fn first_key_starts(&mut self, position: Position) {
        if let Some(Frame::Mapping { path, empty, .. }) = self.stack.last_mut() {
            if *empty {
                *empty = false;
                if let Some(start) = self.by_path.get_mut(path.as_str()) {
                    *start = (*start).min(position);
                }
            }
        }
    }
}

impl MarkedEventReceiver for Recorder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(text, ..) => {
                let path = self.child_path();
                self.record(&path, mark);
                self.node_done(Some(&text));
            }
            Event::Alias(_) => {
                let path = self.child_path();
                self.record(&path, mark);
                self.node_done(None);
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let path = self.child_path();
                self.record(&path, mark);
                // A collection used as a mapping key gets a path no lookup asks for.
                let path = path.unwrap_or_else(|| "?".to_string());
                self.stack.push(match event {
                    Event::MappingStart(..) => Frame::Mapping {
                        path,
                        key: None,
                        empty: true,
                    },
                    _ => Frame::Sequence {
                        path,
                        next_index: 0,
                    },
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.node_done(None);
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, col: usize) -> Position {
        Position { line, col }
    }

    #[test]
    fn block_and_flow_nodes_get_paths() {
        let text = "\
eal:
  cores: [0, 1]
services:
  - name: web
    real_servers:
      - { address: \"198.19.0.10\", port: 8080 }
      - address: 198.19.0.11
        port: 8081
";
        let positions = Positions::of(text);
        assert_eq!(positions.get("eal.cores"), at(2, 10));
        assert_eq!(positions.get("eal.cores[0]"), at(2, 11));
        assert_eq!(positions.get("eal.cores[1]"), at(2, 14));
        assert_eq!(positions.get("services[0].name"), at(4, 11));
        assert_eq!(
            positions.get("services[0].real_servers[0].address"),
            at(6, 20)
        );
        assert_eq!(positions.get("services[0].real_servers[0].port"), at(6, 41));
        assert_eq!(
            positions.get("services[0].real_servers[1].address"),
            at(7, 18)
        );
        assert_eq!(positions.get("services[0].real_servers[1].port"), at(8, 15));
        // The mapping of an item starts at its first key.
        assert_eq!(positions.get("services[0].real_servers[1]"), at(7, 9));
    }

    #[test]
    fn missing_nodes_fall_back_to_the_nearest_ancestor() {
        let positions = Positions::of("x: 1\nservices:\n  - name: web\n");
        assert_eq!(positions.get("services[0].local_addresses"), at(3, 5));
        assert_eq!(positions.get("services[4].name"), at(3, 3));
        assert_eq!(positions.get("mempool.mbufs"), at(1, 1));
        assert_eq!(Positions::of("").get("a.b[3].c"), Position::START);
    }

    #[test]
    fn aliases_complex_keys_and_broken_text_do_not_derail_paths() {
        let text = "a: &x [1, 2]\nb: *x\n? [k]\n: 5\nc: 3\n";
        let positions = Positions::of(text);
        assert_eq!(positions.get("b"), at(2, 4));
        assert_eq!(positions.get("b[1]"), at(2, 4));
        assert_eq!(positions.get("c"), at(5, 4));
        // Positions recorded before a syntax error are kept.
        let positions = Positions::of("a: 1\nb: [2\n");
        assert_eq!(positions.get("a"), at(1, 4));
    }
}
