//! The table style of the demo's and the bench's reports: the same as every
//! other report pairgate prints (`pairgate::table`, Unicode box drawing with
//! condensed rows). The lab does not link the library, so the one line of
//! style is repeated here; an integration test checks the two still draw
//! the same table.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::Table;

/// A new, empty table in pairgate's style.
pub fn new() -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table
}
