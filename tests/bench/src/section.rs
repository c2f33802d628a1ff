//! `docs/benchmarks.md` has two writers: `just bench` writes the document and `just
//! bench-shim` its xds-shim section. Each keeps the other's part: the section sits
//! between two markers that `just bench` carries over and `just bench-shim` replaces.

const BEGIN: &str = "<!-- xds-shim section: written by `just bench-shim` -->";
const END: &str = "<!-- end of xds-shim section -->";

/// The marked section of `doc`, markers included.
pub fn extract(doc: &str) -> Option<&str> {
    let start = doc.find(BEGIN)?;
    let end = doc[start..].find(END)? + start + END.len();
    Some(&doc[start..end])
}

/// `doc` with its marked section replaced by `section` (wrapped in markers), or with
/// `section` appended when there is none.
pub fn splice(doc: &str, section: &str) -> String {
    let marked = format!("{BEGIN}\n\n{}\n\n{END}", section.trim());
    match extract(doc) {
        Some(old) => doc.replacen(old, &marked, 1),
        None if doc.trim().is_empty() => format!("{marked}\n"),
        None => format!("{}\n\n{marked}\n", doc.trim_end()),
    }
}

/// `new` (a freshly rendered document) keeping the marked section `old` had.
pub fn carry_over(old: &str, new: &str) -> String {
    match extract(old) {
        Some(section) => format!("{}\n\n{section}\n", new.trim_end()),
        None => new.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_or_appends_and_carry_over_keeps_it() {
        let doc = splice("# Benchmarks\n\nbody\n", "## shim\n\nv1");
        assert!(doc.starts_with("# Benchmarks\n\nbody\n\n<!--"));
        assert_eq!(extract(&doc).map(|s| s.contains("v1")), Some(true));

        let doc = splice(&doc, "## shim\n\nv2");
        assert!(!doc.contains("v1") && doc.contains("v2"));
        assert_eq!(doc.matches(BEGIN).count(), 1);

        let rerun = carry_over(&doc, "# Benchmarks\n\nnew body\n");
        assert!(rerun.contains("new body") && rerun.contains("v2"));
        assert!(!rerun.contains("\nbody"));
        assert_eq!(carry_over("no section", "fresh"), "fresh");
        assert_eq!(
            extract(&splice("", "s")).map(str::len),
            Some(BEGIN.len() + END.len() + 5)
        );
    }
}
