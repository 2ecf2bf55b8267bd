//! The README against the repository: every shipped alert is in its table,
//! and every link to one of its own sections leads to a heading.

use std::path::PathBuf;

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// to hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn every_link_to_a_readme_section_leads_to_a_heading() {
    let readme = std::fs::read_to_string(repo_file("README.md")).unwrap();
    let anchors: Vec<String> = readme
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect();
    let mut links = 0;
    for part in readme.split("](#").skip(1) {
        let target = part.split(')').next().unwrap_or_default();
        links += 1;
        assert!(
            anchors.iter().any(|a| a == target),
            "README links to #{target}, which no heading makes"
        );
    }
    assert!(links >= 10, "only {links} section links read");
}

/// The README's alert table names every alert the package ships.
#[test]
fn the_readme_lists_every_shipped_alert() {
    let readme = std::fs::read_to_string(repo_file("README.md")).unwrap();
    let mut alerts = 0;
    for file in ["config/alerts.yml", "config/alerts-ha.yml"] {
        let text = std::fs::read_to_string(repo_file(file)).unwrap();
        for name in text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- alert:"))
            .map(str::trim)
        {
            alerts += 1;
            assert!(
                readme.contains(&format!("`{name}`")),
                "{file}'s {name} is missing from the README"
            );
        }
    }
    assert!(alerts >= 10, "only {alerts} alerts read");
}

/// Every rule query the README and the example configuration show parses.
#[test]
fn every_documented_query_is_valid_promql() {
    let mut checked = 0;
    for file in ["README.md", "config/example.toml"] {
        let text = std::fs::read_to_string(repo_file(file)).unwrap();
        for line in text.lines() {
            let line = line.trim_start_matches("# ").trim();
            let Some(q) = line
                .strip_prefix("query = '")
                .and_then(|r| r.split_once('\'').map(|(q, _)| q))
            else {
                continue;
            };
            emr_autoscaler::config::promql::check(q)
                .unwrap_or_else(|e| panic!("{file}: {q:?}: {e}"));
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} queries found");
}
