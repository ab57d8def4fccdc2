//! The one table style of every report pairgate prints — `status`,
//! `spool ls`, `audit summary`, `cert inspect`, the demo's and the bench's
//! summaries: Unicode box drawing with condensed rows. One constructor, so
//! that whoever reads one report can read them all and a change of style is
//! one line. (`audit query` streams fixed-width rows instead: a query can
//! match millions of lines, more than one laid-out table should hold.)

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::Table;

/// A new, empty table in pairgate's style.
pub fn new() -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_are_drawn_with_unicode_boxes() {
        let mut table = super::new();
        table
            .set_header(["state", "id"])
            .add_row(["outgoing", "a1"]);
        let text = table.to_string();
        assert!(text.starts_with('┌') && text.contains('╞'), "{text}");
        assert!(!text.contains('+'), "no ASCII corners: {text}");
    }
}
