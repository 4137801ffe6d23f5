//! Where a value came from in a file (a scenario, a config), and the error that points there.

use std::fmt;
use std::io::Read;
use std::ops::Range;
use std::path::Path;

/// A file larger than this is refused before it is parsed (scenarios and configs are a few KiB).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A file that cannot be used, with where and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    /// 1-based; 0 when the error is about the file as a whole.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.path, self.line, self.column, self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// A place in a file: 1-based line and column, or 0:0 for the file as a whole.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// A value and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub at: Position,
}

/// Turns byte offsets into positions and positions into errors, for one file.
pub struct Source<'a> {
    pub path: &'a str,
    pub text: &'a str,
}

impl Source<'_> {
    pub fn position(&self, span: Range<usize>) -> Position {
        if span == (0..0) {
            return Position::default();
        }
        let before = &self.text[..span.start.min(self.text.len())];
        Position {
            line: before.matches('\n').count() + 1,
            column: before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
        }
    }

    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        error_at(self.path, self.position(span), message)
    }

    pub fn locate<T>(&self, spanned: toml::Spanned<T>) -> Located<T> {
        let at = self.position(spanned.span());
        Located {
            value: spanned.into_inner(),
            at,
        }
    }
}

pub fn error_at(path: &str, at: Position, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.to_string(),
        line: at.line,
        column: at.column,
        message: message.into(),
    }
}

/// Reads a scenario or config file: at most [`MAX_FILE_BYTES`], and UTF-8.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    let shown = path.display().to_string();
    let whole = |message: String| error_at(&shown, Position::default(), message);
    let file = std::fs::File::open(path)
        .map_err(|error| whole(format!("cannot read the file: {error}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| whole(format!("cannot read the file: {error}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(whole(format!(
            "the file is larger than {} KiB; scenario and config files are a few KiB of TOML",
            MAX_FILE_BYTES / 1024
        )));
    }
    String::from_utf8(bytes).map_err(|error| {
        whole(format!(
            "the file is not UTF-8 text (invalid byte at offset {})",
            error.utf8_error().valid_up_to()
        ))
    })
}

/// Refuses control characters, which would otherwise reach the terminal raw. `multiline`
/// allows line breaks and tabs (a description).
pub fn printable(text: &str, multiline: bool) -> Result<(), String> {
    let allowed = |c: char| multiline && (c == '\n' || c == '\t');
    match text.chars().find(|&c| c.is_control() && !allowed(c)) {
        None => Ok(()),
        Some(c) => Err(format!(
            "control character {:?} (U+{:04X}) is not allowed here",
            c, c as u32
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let source = Source {
            path: "t.toml",
            text: "a = 1\nbb = 2\n",
        };
        assert_eq!(source.position(7..8), Position { line: 2, column: 2 });
        assert_eq!(source.position(0..0), Position::default());
    }

    #[test]
    fn a_file_that_is_not_text_is_refused() {
        let path = std::env::temp_dir().join(format!("sim-source-{}.toml", std::process::id()));
        std::fs::write(&path, b"name = \"\xff\"").unwrap();
        let error = read(&path).unwrap_err();
        assert!(error.message.contains("not UTF-8"), "{}", error.message);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn control_characters_are_refused_but_a_description_may_break_lines() {
        assert!(printable("fleet\u{1b}[31m", false)
            .unwrap_err()
            .contains("U+001B"));
        assert!(printable("two\nlines", false).is_err());
        assert!(printable("two\nlines\tand a tab", true).is_ok());
        assert!(printable("bell\u{7}", true).is_err());
    }
}
