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

/// Every `yarn_*` metric the documented queries read is one the shipped
/// jmx_exporter rules produce.
#[test]
fn every_documented_yarn_metric_comes_from_the_shipped_exporter_rules() {
    let rules = std::fs::read_to_string(repo_file("config/jmx-resourcemanager.yml")).unwrap();
    let produced: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("name: "))
        .collect();
    assert!(produced.len() >= 8, "{produced:?}");
    let mut read = 0;
    for file in ["README.md", "config/example.toml"] {
        let text = std::fs::read_to_string(repo_file(file)).unwrap();
        for line in text.lines().filter(|l| l.contains("query = '")) {
            for (at, _) in line.match_indices("yarn_") {
                let name: String = line[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    produced.contains(&name.as_str()),
                    "{file} reads {name}, which config/jmx-resourcemanager.yml does not produce"
                );
                read += 1;
            }
        }
    }
    assert!(read >= 6, "only {read} metric names read");
}
