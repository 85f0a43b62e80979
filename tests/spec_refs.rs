//! Every "spec §N" reference in the sources, and every "docs/gte-architecture.md §N", names a
//! section that exists in the model spec kept in the repository, `docs/gte-architecture.md`,
//! so each one resolves in a fresh clone.

use std::path::{Path, PathBuf};

const SPEC: &str = "docs/gte-architecture.md";
/// Where references live (tests/fixtures holds data, not prose, and is skipped).
const ROOTS: [&str; 9] = [
    "src",
    "kernels",
    "tools",
    "tests",
    "benches",
    "examples",
    "python/src",
    "fuzz/src",
    "build.rs",
];
const EXTENSIONS: [&str; 7] = ["rs", "cu", "cuh", "py", "sh", "md", "toml"];

/// Section numbers of the spec's headings: `## 3. Forward pass` is "3", `### 3.1 Embeddings`
/// is "3.1".
fn spec_sections(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| {
            let number: String = l
                .trim_start_matches('#')
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let number = number.trim_end_matches('.');
            (!number.is_empty()).then(|| number.to_string())
        })
        .collect()
}

/// The section numbers cited right after each `marker` in `text` ("§3.3." cites "3.3").
fn cited_after(text: &str, marker: &str) -> Vec<String> {
    let mut cited = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(marker) {
        rest = &rest[at + marker.len()..];
        let number: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
        let number = number.trim_end_matches('.');
        if !number.is_empty() {
            cited.push(number.to_string());
        }
    }
    cited
}

fn source_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        if path.ends_with("tests/fixtures") {
            return;
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for entry in entries {
            source_files(&entry, out);
        }
    } else if path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e))
    {
        out.push(path.to_path_buf());
    }
}

#[test]
fn the_spec_numbers_its_sections() {
    let sections = spec_sections("## 0. Summary\n### 2.1 Names\n## Sources\n#### 3.10 x\n");
    assert_eq!(sections, ["0", "2.1", "3.10"]);
    assert_eq!(
        cited_after("see spec §3.3. and spec §5 item 7, spec §x", "spec §"),
        ["3.3", "5"]
    );
}

#[test]
fn every_spec_reference_names_a_section_of_the_spec() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let spec = std::fs::read_to_string(root.join(SPEC)).expect("the spec is in the repository");
    let sections = spec_sections(&spec);
    assert!(
        sections.len() > 20,
        "the spec's headings were not recognized: {sections:?}"
    );

    let mut files = Vec::new();
    for dir in ROOTS {
        source_files(&root.join(dir), &mut files);
    }
    let mut checked = 0;
    let mut dangling = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for marker in ["spec §", "gte-architecture.md §"] {
            for number in cited_after(&text, marker) {
                checked += 1;
                if !sections.contains(&number) {
                    dangling.push(format!(
                        "{}: {marker}{number}",
                        file.strip_prefix(root).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(
        checked > 10,
        "only {checked} references found: is the scan looking in the right places?"
    );
    assert!(
        dangling.is_empty(),
        "references to no section of {SPEC}:\n{}",
        dangling.join("\n")
    );
}
