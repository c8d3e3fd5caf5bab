//! The report as JSON: the same content as the PDF, machine-readable. The layout is described
//! by `report.schema.json` (JSON Schema 2020-12) next to this file; `format` names its version.

use std::path::Path;

use super::{Report, Result};

/// The JSON Schema of the report document.
pub const SCHEMA: &str = include_str!("report.schema.json");

/// The report as pretty JSON text.
pub fn to_string(report: &Report) -> String {
    serde_json::to_string_pretty(report).expect("a report always serialises") + "\n"
}

pub fn write_json(report: &Report, output: &Path) -> Result<()> {
    crate::write_file(output, to_string(report))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_schema_is_valid_json() {
        let v: serde_json::Value = serde_json::from_str(super::SCHEMA).unwrap();
        assert_eq!(v["properties"]["format"]["const"], super::super::REPORT_FORMAT);
    }
}
