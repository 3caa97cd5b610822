//! Plain-text layout for human-readable command output: titled sections of aligned label/value
//! rows, and column grids. No colour or terminal detection, so output pastes cleanly into issues.

use std::fmt::Write;

const INDENT: &str = "  ";
const COLUMN_GAP: &str = "  ";

/// A titled block of `label  value` rows.
pub struct Section {
    title: String,
    rows: Vec<(String, String)>,
}

impl Section {
    pub fn new(title: impl Into<String>) -> Self {
        Section { title: title.into(), rows: Vec::new() }
    }

    pub fn row(mut self, label: &str, value: impl Into<String>) -> Self {
        self.rows.push((label.to_string(), value.into()));
        self
    }
}

/// Renders sections one after another, with every section's values starting in the same column.
pub fn render_sections(sections: &[Section]) -> String {
    let label_width = sections.iter().flat_map(|s| &s.rows).map(|(label, _)| label.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for (index, section) in sections.iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        out.push_str(&section.title);
        out.push('\n');
        for (label, value) in &section.rows {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "{INDENT}{label:<label_width$}{COLUMN_GAP}{value}");
        }
    }
    out
}

/// Renders a header row and data rows as left-aligned columns; the last column is not padded.
pub fn render_columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::from(INDENT);
        for (column, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if column + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}{COLUMN_GAP}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_share_one_value_column() {
        let sections = [Section::new("A").row("x", "1").row("longer", "2"), Section::new("B").row("yy", "3")];
        assert_eq!(render_sections(&sections), "A\n  x       1\n  longer  2\n\nB\n  yy      3\n");
    }

    #[test]
    fn columns_align_and_last_is_unpadded() {
        let rows = vec![vec!["a".to_string(), "long value".to_string(), "end".to_string()]];
        assert_eq!(render_columns(&["h1", "h2", "h3"], &rows), "  h1  h2          h3\n  a   long value  end\n");
    }
}
