//! Config errors, reported as `FILE:LINE:COL: message` like a compiler.

use std::fmt;

/// One problem in a config file, at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name as given to [`load`](super::load) or [`parse`](super::parse).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong, naming the key or value.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a config file, in file order; never empty when returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// A single error.
    pub fn one(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }

    /// The errors, in file order.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }
}

impl fmt::Display for ConfigErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            fmt::Display::fmt(error, f)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(line: usize, col: usize, message: &str) -> ConfigError {
        ConfigError {
            file: "a.yaml".into(),
            line,
            col,
            message: message.into(),
        }
    }

    #[test]
    fn display_is_file_line_col_message() {
        assert_eq!(error(3, 7, "bad").to_string(), "a.yaml:3:7: bad");
        let all = ConfigErrors(vec![error(1, 1, "x"), error(2, 5, "y")]);
        assert_eq!(all.to_string(), "a.yaml:1:1: x\na.yaml:2:5: y");
        assert_eq!(all.errors().len(), 2);
        assert_eq!(
            ConfigErrors::one(error(1, 2, "z")).to_string(),
            "a.yaml:1:2: z"
        );
    }
}
