//! One error type for every config problem, wherever it is found: `frontdesk check`, startup,
//! reload and (later) the admin API all render the same `Diagnostic`.

use std::fmt;
use std::ops::Range;

/// A problem in a configuration file, located by line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based; 0 when the problem has no location (e.g. the file cannot be read).
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: error: {}", self.file, self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: error: {}",
                self.file, self.line, self.column, self.message
            )?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// A list of diagnostics, rendered one per paragraph.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Turns byte spans into line/column positions and collects diagnostics for one source text.
pub struct Reporter<'a> {
    file: &'a str,
    source: &'a str,
    pub found: Vec<Diagnostic>,
}

impl<'a> Reporter<'a> {
    pub fn new(file: &'a str, source: &'a str) -> Self {
        Reporter {
            file,
            source,
            found: Vec::new(),
        }
    }

    pub fn error(&mut self, span: Option<Range<usize>>, message: impl Into<String>, hint: Option<&str>) {
        let (line, column) = match span {
            Some(span) => line_col(self.source, span.start),
            None => (0, 0),
        };
        self.found.push(Diagnostic {
            file: self.file.to_string(),
            line,
            column,
            message: message.into(),
            hint: hint.map(str::to_string),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..floor_char_boundary(source, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let src = "a = 1\nbb = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, 9), (2, 4));
    }

    #[test]
    fn renders_location_and_hint() {
        let d = Diagnostic {
            file: "f.toml".into(),
            line: 3,
            column: 7,
            message: "bad".into(),
            hint: Some("do this".into()),
        };
        assert_eq!(d.to_string(), "f.toml:3:7: error: bad\n  hint: do this");
    }
}
