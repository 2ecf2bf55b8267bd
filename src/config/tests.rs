//! Table tests for loading and validation.

use super::*;
use std::collections::HashMap;

fn data(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn issues(toml: &str) -> Vec<Issue> {
    match load_str(toml, None) {
        Err(ConfigError::Invalid { issues, .. }) => issues,
        other => panic!("expected issues, got {other:?}"),
    }
}

#[test]
fn minimal_config_is_complete_with_defaults() {
    let c = load_str(&data("minimal.toml"), None).unwrap();
    assert_eq!(c.daemon.evaluation_interval, Duration::from_secs(15));
    assert_eq!(c.tencent.requests_per_second.get(), 20);
    assert_eq!(c.tencent.max_attempts, 5);
    let cl = &c.clusters[0];
    assert_eq!(cl.cooldown, Duration::from_secs(300));
    assert_eq!(
        (cl.max_step, cl.max_nodes_per_hour, cl.max_nodes_per_day),
        (None, None, None)
    );
    assert_eq!(cl.scale_out.tags.as_ref().unwrap()[0].key, "owner");
    assert_eq!(cl.scale_out.instance_id, "emr-abc12345");
    assert_eq!(cl.rules.len(), 1);
}

#[test]
fn every_problem_is_reported_at_once_with_its_path() {
    let got = issues(&data("many-errors.toml"));
    let paths: Vec<&str> = got.iter().map(|i| i.path.as_str()).collect();
    for want in [
        "daemon.evaluation_interval",
        "daemon.listen",
        "daemon.colour",
        "tencent.requests_per_second",
        "tencent.endpoint",
        "clusters[0].instance_id",
        "clusters[0].min_task_nodes",
        "clusters[0].max_step",
        "clusters[0].scale_out.time_unit",
        "clusters[0].scale_out.task_count",
        "clusters[0].scale_out.tags[0].valeu",
        "clusters[0].scale_out.tags[0].value",
    ] {
        assert!(paths.contains(&want), "{want} not reported; got:\n{got:#?}");
    }
    let task = got.iter().find(|i| i.path.ends_with("task_count")).unwrap();
    assert!(task.message.contains("decided by the daemon"), "{task}");
}

#[test]
fn environment_overrides_the_file() {
    let env = HashMap::from([
        (
            "EMR_AUTOSCALER__TENCENT__ENDPOINT".to_string(),
            "http://127.0.0.1:8080".to_string(),
        ),
        (
            "EMR_AUTOSCALER__DAEMON__DRY_RUN".to_string(),
            "true".to_string(),
        ),
        (
            "EMR_AUTOSCALER__TENCENT__REQUESTS_PER_SECOND".to_string(),
            "5".to_string(),
        ),
    ]);
    let c = load_str(&data("minimal.toml"), Some(env)).unwrap();
    assert_eq!(c.tencent.endpoint.as_str(), "http://127.0.0.1:8080/");
    assert!(c.daemon.dry_run);
    assert_eq!(c.tencent.requests_per_second.get(), 5);
}

#[test]
fn environment_values_are_validated_too() {
    let env = HashMap::from([(
        "EMR_AUTOSCALER__TENCENT__REQUESTS_PER_SECOND".to_string(),
        "21".to_string(),
    )]);
    match load_str(&data("minimal.toml"), Some(env)) {
        Err(ConfigError::Invalid { issues, .. }) => {
            assert_eq!(issues.len(), 1, "{issues:#?}");
            assert_eq!(issues[0].path, "tencent.requests_per_second");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn max_age_and_unknown_resource_types_are_refused_with_the_fix() {
    let text = data("minimal.toml")
        .replace(
            "[clusters.scale_out]",
            "[clusters.scale_out]\nhardware_resource_type = \"CVM\"",
        )
        .replace(
            "name = \"pending-memory\"",
            "name = \"pending-memory\"\nmax_age = \"2m\"",
        );
    let got = issues(&text);
    let find = |path: &str| {
        got.iter()
            .find(|i| i.path == path)
            .unwrap_or_else(|| panic!("no issue at {path}: {got:?}"))
            .message
            .clone()
    };
    assert!(find("clusters[0].rules[0].max_age").contains("no longer supported"));
    assert!(find("clusters[0].scale_out.hardware_resource_type").contains("\"HOST\""));
    let ok = data("minimal.toml").replace(
        "[clusters.scale_out]",
        "[clusters.scale_out]\nhardware_resource_type = \"MNode\"",
    );
    assert!(load_str(&ok, None).is_ok());
}

#[test]
fn listen_on_port_zero_is_valid() {
    let text = data("minimal.toml").replace("127.0.0.1:9464", "127.0.0.1:0");
    let c = load_str(&text, None).unwrap();
    assert_eq!(c.daemon.listen, SocketAddr::from(([127, 0, 0, 1], 0)));
}

#[test]
fn missing_required_keys() {
    let got = issues("[tencent]\n[[clusters]]\n");
    let paths: Vec<&str> = got.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "clusters[0].instance_id",
            "clusters[0].max_task_nodes",
            "clusters[0].scale_out",
            "tencent.region"
        ]
    );
    let none = issues("[tencent]\nregion = \"ap-guangzhou\"\n");
    assert_eq!(none[0].path, "clusters");
}

#[test]
fn duplicate_clusters_and_template_conflicts() {
    let base = data("minimal.toml");
    let doubled = format!(
        "{base}\n[[clusters]]\ninstance_id = \"emr-abc12345\"\nmax_task_nodes = 3\n[clusters.scale_out]\npay_mode = 1\ntime_unit = \"m\"\ntime_span = 1\nsoft_deploy_info = [1]\nservice_node_info = [2]\nun_necessary_node_list = [3]\ndisaster_recover_group_ids = [\"a\", \"b\"]\n"
    );
    let got = issues(&doubled);
    let paths: Vec<&str> = got.iter().map(|i| i.path.as_str()).collect();
    assert!(paths.contains(&"clusters[1].instance_id"), "{got:#?}");
    assert!(
        paths.contains(&"clusters[1].scale_out.soft_deploy_info"),
        "{got:#?}"
    );
}

#[test]
fn wrong_section_types_are_reported_not_panicked() {
    let got = issues("daemon = 5\n");
    assert_eq!(got[0].path, "daemon", "{got:#?}");
    let got = issues(
        "[[clusters]]\ninstance_id = 7\nmax_task_nodes = -1\n[clusters.scale_out]\npay_mode = \"zero\"\n",
    );
    let paths: Vec<&str> = got.iter().map(|i| i.path.as_str()).collect();
    for want in [
        "clusters[0].instance_id",
        "clusters[0].max_task_nodes",
        "clusters[0].scale_out.pay_mode",
    ] {
        assert!(paths.contains(&want), "{want}: {got:#?}");
    }
}

#[test]
fn secrets_in_the_file_are_refused() {
    let toml = format!("{}\n[clusters.scale_out.x]\n", data("minimal.toml"));
    let _ = issues(&toml);
    let toml = data("minimal.toml").replace("[prometheus]", "[prometheus]\nsecret_key = \"zzz\"");
    let got = issues(&toml);
    assert!(
        got[0].message.contains("never read from the config file"),
        "{got:#?}"
    );
    assert!(!got.iter().any(|i| i.message.contains("zzz")));
}

#[test]
fn shipped_example_is_valid() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml"))
        .unwrap();
    let c = load_str(&text, None).unwrap();
    assert_eq!(c.clusters[0].instance_id, "emr-abc12345");
}

#[test]
fn rule_problems_are_all_reported_with_paths() {
    let got = issues(&data("bad-rules.toml"));
    let shown: Vec<String> = got.iter().map(|i| i.to_string()).collect();
    // Each problem names its rule as its author did.
    let expected = [
        "clusters[0].rules[0]: rule \"pending\": a threshold rule needs a sustain condition",
        "clusters[0].rules[1].add: rule \"pending\": 0 must be at least 1",
        "clusters[0].rules[1].name: \"pending\" is already the name of rules[0]",
        "clusters[0].rules[2].target: rule \"util\": 0 must be above 0",
        "clusters[0].rules[3].type: rule \"mystery\": unknown rule type \"predictive\"",
        "clusters[0].rules[4].cron: rule \"office-hours\": \"0 0 25 * * *\" is not a cron expression",
        "clusters[0].rules[4].timezone: rule \"office-hours\": \"Mars/Olympus\" is not an IANA time zone",
        "clusters[0].rules[4].floor_task_nodes: rule \"office-hours\": 11 is above max_task_nodes (10); min above max",
        "clusters[0].rules[5].cron: rule \"burst\": does not apply to a threshold rule",
        "clusters[0].rules[5].colour: unknown key",
    ];
    for want in expected {
        assert!(
            shown.iter().any(|s| s.starts_with(want)),
            "missing {want:?} in:\n{shown:#?}"
        );
    }
}

#[test]
fn every_rule_type_validates() {
    let toml = format!(
        "{}{}",
        data("minimal.toml"),
        r#"
[[clusters.rules]]
name = "util"
type = "target"
query = "avg(util)"
target = 0.8
tolerance = 0.05
bootstrap = 2
unit = "ratio"

[[clusters.rules]]
name = "demand"
type = "target"
query = "sum(pending_mb)"
per_node = 8192
factor = 1.2
cooldown = "2m"
on_missing = "fail_open"
replay_signal = "pending_mb"

[[clusters.rules]]
name = "office"
type = "schedule"
cron = "0 8 * * Mon-Fri"
timezone = "Europe/Berlin"
end = "0 0 18 * * *"
floor_task_nodes = 10
add = 4
"#
    );
    let c = load_str(&toml, None).unwrap();
    let rules = &c.clusters[0].rules;
    assert_eq!(rules.len(), 4);
    assert!(matches!(
        rules[1].kind,
        crate::policy::RuleKind::Target { bootstrap: 2, .. }
    ));
    assert_eq!(rules[2].on_missing, crate::policy::OnMissing::FailOpen);
    assert!(matches!(
        rules[3].kind,
        crate::policy::RuleKind::Schedule {
            floor_task_nodes: 10,
            add_once: Some(4),
            ..
        }
    ));
}

#[test]
fn every_commented_rule_example_is_valid_too() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml"))
        .unwrap();
    let rules_at = text.find("# Policy rules.").unwrap();
    let keys = [
        "[[clusters.rules]]",
        "name =",
        "type =",
        "query =",
        "target =",
        "tolerance =",
        "bootstrap =",
        "unit =",
        "per_node =",
        "factor =",
        "reserved =",
        "headroom =",
        "trend_window =",
        "trend_horizon =",
        "replay_signal =",
        "cron =",
        "timezone =",
        "end =",
        "floor_task_nodes =",
        "below =",
        "for =",
        "remove =",
    ];
    let uncommented: String = text[rules_at..]
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if keys.iter().any(|k| rest.starts_with(k)) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let c = load_str(&format!("{}{uncommented}", &text[..rules_at]), None).unwrap();
    assert_eq!(c.clusters[0].rules.len(), 6);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        /// Arbitrary text never panics the loader.
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,400}") {
            let _ = load_str(&text, None);
        }

        /// Known keys with values of any type: every problem is reported, none panics.
        #[test]
        fn wrong_types_in_known_keys_are_issues(
            key in prop::sample::select(vec![
                "daemon.evaluation_interval", "daemon.listen", "tencent.requests_per_second", "tencent.endpoint",
                "clusters.0.max_task_nodes", "clusters.0.min_task_nodes", "clusters.0.scale_out.pay_mode",
                "clusters.0.rules.0.above", "clusters.0.rules.0.for", "clusters.0.rules.0.add",
            ]),
            value in prop_oneof![
                Just("-1".to_string()), Just("1e400".to_string()), Just("99999999999999999999".to_string()),
                Just("\"x\"".to_string()), Just("[1, 2]".to_string()), Just("{ a = 1 }".to_string()),
                Just("true".to_string()), Just("\"\"".to_string()), Just("1970-01-01T00:00:00Z".to_string()),
            ],
        ) {
            let mut doc: toml::Table = data("minimal.toml").parse().unwrap();
            let parts: Vec<&str> = key.split('.').collect();
            let parsed: toml::Value = format!("v = {value}").parse::<toml::Table>().map(|t| t["v"].clone())
                .unwrap_or(toml::Value::String(value.clone()));
            let mut cur: &mut toml::Value = doc.get_mut(parts[0]).unwrap();
            for p in &parts[1..parts.len() - 1] {
                cur = match p.parse::<usize>() {
                    Ok(i) => &mut cur.as_array_mut().unwrap()[i],
                    Err(_) => cur.get_mut(*p).unwrap(),
                };
            }
            cur.as_table_mut().unwrap().insert(parts[parts.len() - 1].to_string(), parsed);
            let _ = load_str(&toml::to_string(&doc).unwrap(), None);
        }

        /// Every duration key with values drawn from the whole range of
        /// humantime (the extremes included): the config loads exactly when
        /// the value lies in the key's documented span, a refusal names the
        /// key path, and nothing panics, neither loading nor the arithmetic
        /// a (re)loaded daemon does with the values.
        #[test]
        fn durations_pass_only_inside_their_span(
            key in prop::sample::select(DURATION_KEYS.to_vec()),
            n in prop_oneof![any::<u64>(), 0u64..100_000, Just(0u64), Just(u64::MAX)],
            unit in prop::sample::select(vec!["ns", "ms", "s", "m", "h", "d", "w", "M", "y"]),
        ) {
            let (key, span) = key;
            let text = format!("{n}{unit}");
            let doc = with_key(key, toml::Value::String(text.clone()));
            let parsed = humantime::parse_duration(&text).ok();
            let whole = !key.ends_with("grace_period") || parsed.is_some_and(|d| d.subsec_nanos() == 0);
            let fits = parsed.is_some_and(|d| span.contains(d)) && whole;
            match load_str(&doc, None) {
                Ok(c) => {
                    prop_assert!(fits, "{key} = {text} was accepted outside {span}");
                    exercise(&c);
                }
                Err(ConfigError::Invalid { issues, .. }) => {
                    prop_assert!(!fits, "{key} = {text} lies in {span} but was refused: {issues:?}");
                    let path = key_path(key);
                    prop_assert!(issues.iter().any(|i| i.path == path), "{path} not named: {issues:?}");
                }
                Err(other) => prop_assert!(false, "{other}"),
            }
        }

        /// Node counts from the whole i64 range: `max_task_nodes` passes only
        /// from `min_task_nodes` (0) to MAX_TASK_NODES.
        #[test]
        fn max_task_nodes_is_bounded(n in prop_oneof![any::<i64>(), 0i64..20_000, Just(i64::MAX), Just(i64::MIN)]) {
            let doc = with_key("clusters.0.max_task_nodes", toml::Value::Integer(n));
            let fits = (0..=i64::from(MAX_TASK_NODES)).contains(&n);
            match load_str(&doc, None) {
                Ok(c) => {
                    prop_assert!(fits, "{n} accepted");
                    exercise(&c);
                }
                Err(ConfigError::Invalid { issues, .. }) => {
                    prop_assert!(!fits, "{n} refused: {issues:?}");
                    prop_assert!(issues.iter().any(|i| i.path == "clusters[0].max_task_nodes"), "{issues:?}");
                }
                Err(other) => prop_assert!(false, "{other}"),
            }
        }
    }

    /// Every duration key (dotted, in `minimal.toml` terms) and its span.
    const DURATION_KEYS: &[(&str, Span)] = &[
        ("daemon.evaluation_interval", spans::EVALUATION_INTERVAL),
        ("daemon.flow_timeout", spans::FLOW_TIMEOUT),
        ("daemon.sold_out_backoff", spans::SOLD_OUT_BACKOFF),
        ("prometheus.timeout", spans::TIMEOUT),
        ("tencent.connect_timeout", spans::TIMEOUT),
        ("tencent.request_timeout", spans::TIMEOUT),
        ("clusters.0.cooldown", spans::COOLDOWN),
        ("clusters.0.settle", spans::SETTLE),
        ("clusters.0.scale_in.grace_period", spans::GRACE_PERIOD),
        ("clusters.0.scale_in.stabilization", spans::STABILIZATION),
        ("clusters.0.scale_in.cooldown", spans::COOLDOWN),
        ("clusters.0.rules.0.for", spans::SUSTAIN),
        ("clusters.0.rules.0.cooldown", spans::COOLDOWN),
    ];

    /// `minimal.toml` with `key` set to `value` (tables made as needed).
    fn with_key(key: &str, value: toml::Value) -> String {
        let mut doc: toml::Value = toml::Value::Table(data("minimal.toml").parse().unwrap());
        let parts: Vec<&str> = key.split('.').collect();
        let mut cur = &mut doc;
        for p in &parts[..parts.len() - 1] {
            cur = match p.parse::<usize>() {
                Ok(i) => &mut cur.as_array_mut().unwrap()[i],
                Err(_) => cur
                    .as_table_mut()
                    .unwrap()
                    .entry(p.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new())),
            };
        }
        cur.as_table_mut()
            .unwrap()
            .insert(parts[parts.len() - 1].to_string(), value);
        toml::to_string(&doc).unwrap()
    }

    /// `clusters.0.cooldown` -> `clusters[0].cooldown`.
    fn key_path(key: &str) -> String {
        key.replace(".0.", "[0].")
    }

    /// What a (re)loaded daemon computes from the durations, which must
    /// not panic for any accepted config.
    fn exercise(c: &Config) {
        let now = crate::clock::wall_now();
        let interval = c.daemon.evaluation_interval;
        let _ = interval * 3 + Duration::from_secs(10);
        let _ = interval * 2 + interval / 2;
        let _ = c.tencent.call_within() * 4 + c.prometheus.timeout * 4;
        let _ = c.prometheus.timeout * 2 + Duration::from_secs(5);
        for cluster in &c.clusters {
            let _ = crate::policy::time::after(now, cluster.settle(interval));
            let _ = crate::policy::time::after(now, cluster.cooldown);
            let _ = crate::policy::time::after(now, cluster.scale_in.stabilization);
            let _ = cluster.scale_in.grace_period + c.daemon.flow_timeout;
        }
    }
}

const SCALE_IN: &str = r#"
[clusters.scale_in]
enabled = true
grace_period = "15m"
stabilization = "20m"
cooldown = "10m"
max_step = 3
nodes = "ours"
owner_tag = { key = "managed-by", value = "emr-autoscaler" }

[clusters.yarn]
resourcemanager_urls = ["http://rm1:8088", "http://rm2:8088"]
"#;

fn with_scale_in(extra: &str) -> String {
    data("minimal.toml").replace(
        "[[clusters.rules]]",
        &format!("{extra}\n[[clusters.rules]]"),
    )
}

#[test]
fn scale_in_settings_load_and_the_owner_tag_joins_every_scale_out() {
    let text = data("minimal.toml")
        .replace(
            "max_task_nodes = 40",
            "max_task_nodes = 40\ncoexist_with_builtin = true",
        )
        .replace(
            "[[clusters.rules]]",
            &format!("{SCALE_IN}\n[[clusters.rules]]"),
        )
        + "\n[[clusters.rules]]\nname = \"idle\"\ntype = \"threshold\"\nquery = 'x'\nbelow = 0.2\nfor = \"10m\"\nremove = 2\n";
    let c = load_str(&text, None).unwrap();
    let cl = &c.clusters[0];
    assert!(cl.coexist_with_builtin);
    let si = &cl.scale_in;
    assert!(si.enabled);
    assert_eq!(si.grace_period, Duration::from_secs(900));
    assert_eq!(si.stabilization, Duration::from_secs(1200));
    assert_eq!(si.cooldown, Duration::from_secs(600));
    assert_eq!(si.max_step, 3);
    assert_eq!(
        si.scope,
        NodeScope::Ours {
            key: "managed-by".into(),
            value: "emr-autoscaler".into()
        }
    );
    let tags = cl.scale_out.tags.as_ref().unwrap();
    assert_eq!(tags.len(), 2, "{tags:?}");
    assert_eq!(tags[1].key, "managed-by");
    assert_eq!(cl.yarn.as_ref().unwrap().resourcemanager_urls.len(), 2);
    assert!(matches!(
        cl.rules[1].kind,
        crate::policy::RuleKind::Threshold {
            step: crate::policy::Amount::Remove(2),
            ..
        }
    ));
    assert_eq!(cl.policy().scale_in, cl.scale_in);
    // Defaults: off, 10m, 10m, 5m, 5, ours; no owner tag needed while off.
    let c = load_str(&data("minimal.toml"), None).unwrap();
    let si = &c.clusters[0].scale_in;
    assert!(!si.enabled);
    assert_eq!(
        (si.grace_period, si.stabilization, si.cooldown, si.max_step),
        (
            Duration::from_secs(600),
            Duration::from_secs(600),
            Duration::from_secs(300),
            5
        )
    );
    assert!(!c.clusters[0].coexist_with_builtin);
    // "ours" with no owner_tag: no node is ours, so nothing can be removed.
    assert!(!si.scope.is_usable(), "{:?}", si.scope);
    assert_eq!(c.clusters[0].scale_out.tags.as_ref().unwrap().len(), 1);
}

#[test]
fn scale_in_problems_are_reported_with_their_key_paths() {
    let find = |text: &str, path: &str| -> String {
        let got = issues(text);
        got.iter()
            .find(|i| i.path == path)
            .unwrap_or_else(|| panic!("no issue at {path}: {got:#?}"))
            .message
            .clone()
    };
    let no_tag = with_scale_in("[clusters.scale_in]\nenabled = true\n");
    assert!(find(&no_tag, "clusters[0].scale_in.owner_tag").contains("any_task"));
    assert_eq!(issues(&no_tag).len(), 1, "{:?}", issues(&no_tag));
    let any = with_scale_in("[clusters.scale_in]\nenabled = true\nnodes = \"any_task\"\n");
    assert_eq!(
        load_str(&any, None).unwrap().clusters[0].scale_in.scope,
        NodeScope::AnyTask
    );
    let bad = with_scale_in(
        "[clusters.scale_in]\nenabled = true\ngrace_period = \"30s\"\nmax_step = 0\nnodes = \"all\"\nowner_tag = { key = \"owner\", value = \"someone-else\" }\n[clusters.yarn]\nresourcemanager_urls = [\"ftp://rm\", \"not a url\"]\n",
    );
    assert!(find(&bad, "clusters[0].scale_in.grace_period").contains("outside 1m to 30m"));
    assert!(find(&bad, "clusters[0].scale_in.max_step").contains("at least 1"));
    assert!(find(&bad, "clusters[0].scale_in.nodes").contains("any_task"));
    assert!(find(&bad, "clusters[0].scale_in.owner_tag").contains("already in scale_out.tags"));
    assert!(find(&bad, "clusters[0].yarn.resourcemanager_urls[0]").contains("http(s)"));
    assert!(find(&bad, "clusters[0].yarn.resourcemanager_urls[1]").contains("not a URL"));
    let secret = with_scale_in(
        "[clusters.yarn]\nresourcemanager_urls = [\"http://admin:s3cret@rm1:8088\"]\n",
    );
    let message = find(&secret, "clusters[0].yarn.resourcemanager_urls[0]");
    assert!(
        message.contains("must not carry a user or password"),
        "{message}"
    );
    assert!(!message.contains("s3cret"), "{message}");
    let empty = with_scale_in("[clusters.yarn]\nresourcemanager_urls = []\n");
    assert!(find(&empty, "clusters[0].yarn.resourcemanager_urls").contains("at least one"));
    let unknown = with_scale_in("[clusters.scale_in]\nenable = true\n");
    assert!(
        issues(&unknown)
            .iter()
            .any(|i| i.path == "clusters[0].scale_in.enable")
    );
    let both = data("minimal.toml").replace("add = 2", "add = 2\nremove = 1");
    assert!(find(&both, "clusters[0].rules[0].remove").contains("either adds or removes"));
    let zero = data("minimal.toml").replace("add = 2", "remove = 0");
    assert!(find(&zero, "clusters[0].rules[0].remove").contains("at least 1"));
    let on_target = data("minimal.toml")
        .replace("type = \"threshold\"", "type = \"target\"\ntarget = 0.7")
        .replace("above = 8192\nfor = \"1m\"\nadd = 2", "remove = 1");
    assert!(find(&on_target, "clusters[0].rules[0].remove").contains("does not apply"));
}

/// The policies of the README's week comparison (`docs/week/`) differ only
/// in their rule, and the scale-out-only one also in scale-in: the figures
/// compare rules, not cluster settings.
#[test]
fn the_week_comparison_differs_only_in_the_rules() {
    let root = env!("CARGO_MANIFEST_DIR");
    let env = || {
        Some(HashMap::from([(
            "EMR_AUTOSCALER__TENCENT__ENDPOINT".to_string(),
            "http://127.0.0.1:9".to_string(),
        )]))
    };
    let load = |name: &str| {
        let text = std::fs::read_to_string(format!("{root}/docs/week/{name}.toml")).unwrap();
        let mut c = load_str(&text, env()).unwrap();
        assert_eq!(c.clusters.len(), 1, "{name}");
        c.clusters[0].rules.clear();
        c
    };
    let capacity = load("capacity");
    assert!(capacity.clusters[0].scale_in.enabled);
    for name in ["utilisation-80", "utilisation-90"] {
        assert_eq!(load(name).clusters, capacity.clusters, "{name}");
    }
    let mut scale_out_only = load("demand-sized");
    assert!(!scale_out_only.clusters[0].scale_in.enabled);
    scale_out_only.clusters[0].scale_in.enabled = true;
    assert_eq!(scale_out_only.clusters, capacity.clusters);
}

#[test]
fn ha_section_defaults_and_every_problem_at_once() {
    let base = data("minimal.toml");
    let c = load_str(
        &format!("{base}\n[ha]\netcd_endpoints = [\"http://127.0.0.1:2379\"]\n"),
        None,
    )
    .unwrap();
    let ha = c.ha.as_ref().unwrap();
    assert_eq!(ha.lease_ttl, Duration::from_secs(10));
    assert_eq!(ha.prefix, "/emr-autoscaler/");
    assert_eq!(ha.node_name, ha::host_name());
    assert_eq!((ha.advertise_url.as_ref(), ha.user.as_ref()), (None, None));
    assert!(
        load_str(&base, None).unwrap().ha.is_none(),
        "no [ha], single host"
    );

    let bad = issues(&format!(
        "{base}\n[ha]\netcd_endpoints = [\"http://10.0.0.5\", \"ftp://x:1\", \"https://10.0.0.6:2379\"]\n\
         lease_ttl = \"1s\"\nprefix = \"/no-slash\"\nnode_name = \"ops 1\"\nadvertise_url = \"nope\"\n\
         cert_file = \"/c.pem\"\nusername = \"u\"\nleader_key = \"x\"\n"
    ));
    let paths: Vec<&str> = bad.iter().map(|i| i.path.as_str()).collect();
    for want in [
        "ha.etcd_endpoints",
        "ha.etcd_endpoints[0]",
        "ha.etcd_endpoints[1]",
        "ha.lease_ttl",
        "ha.prefix",
        "ha.node_name",
        "ha.advertise_url",
        "ha.cert_file",
        "ha.username",
        "ha.leader_key",
    ] {
        assert!(paths.contains(&want), "{want} missing from {bad:#?}");
    }
    let ttl = issues(&format!(
        "{base}\n[ha]\netcd_endpoints = [\"http://127.0.0.1:2379\"]\nlease_ttl = \"2500ms\"\n"
    ));
    assert!(ttl[0].message.contains("whole seconds"), "{ttl:?}");
    let tls = issues(&format!(
        "{base}\n[ha]\netcd_endpoints = [\"http://127.0.0.1:2379\"]\nca_file = \"/ca.pem\"\n"
    ));
    assert!(tls[0].message.contains("https://"), "{tls:?}");
}

#[test]
fn the_digest_ignores_per_host_keys_and_sees_the_policy() {
    let base = data("minimal.toml");
    let with = |extra: &str| {
        load_str(
            &format!("{base}\n[ha]\netcd_endpoints = [\"http://127.0.0.1:2379\"]\n{extra}"),
            None,
        )
        .unwrap()
        .digest()
    };
    let a = with("node_name = \"ops-1\"\n");
    assert_eq!(
        a,
        with("node_name = \"ops-2\"\nadvertise_url = \"http://10.0.0.6:9464\"\n")
    );
    assert_ne!(a, with("lease_ttl = \"20s\"\n"));
    let mut other = load_str(&base, None).unwrap();
    other.clusters[0].max_task_nodes += 1;
    assert_ne!(load_str(&base, None).unwrap().digest(), other.digest());
}

/// A duration written as a bare number is told its fix: the unit.
#[test]
fn a_bare_number_for_a_duration_names_the_fix() {
    let base = data("minimal.toml");
    let text = base.replacen("[[clusters]]\n", "[[clusters]]\ncooldown = 300\n", 1);
    let bad = issues(&text);
    let cooldown = bad
        .iter()
        .find(|i| i.path == "clusters[0].cooldown")
        .unwrap_or_else(|| panic!("{bad:#?}"));
    assert!(cooldown.message.contains("\"300s\""), "{cooldown:?}");
    assert!(!cooldown.message.contains("invalid type"), "{cooldown:?}");
}

#[test]
fn a_capacity_rule_validates_with_its_defaults() {
    let rule = |extra: &str| {
        format!(
            "{}\n[[clusters.rules]]\nname = \"capacity\"\ntype = \"capacity\"\nquery = \"sum(a) + sum(p)\"\nreplay_signal = \"demand_mb\"\nunit = \"mb\"\n{extra}\n",
            data("minimal.toml")
        )
    };
    let c = load_str(&rule("per_node = 57344"), None).unwrap();
    let last = c.clusters[0].rules.last().unwrap();
    let crate::policy::RuleKind::Capacity(cap) = last.kind else {
        panic!("{:?}", last.kind)
    };
    assert_eq!(cap.per_node, 57344.0);
    assert_eq!(cap.reserved, 0.0);
    assert_eq!(cap.headroom, 28672.0);
    assert_eq!(cap.trend_window, Duration::from_secs(180));
    assert_eq!(cap.trend_horizon, crate::policy::Horizon::Auto);
    assert_eq!(
        last.replay_signal,
        Some(crate::policy::ReplaySignal::DemandMb)
    );
    let c = load_str(
        &rule("per_node = 1024\nreserved = 4096\nheadroom = 0\ntrend_window = \"0s\"\ntrend_horizon = \"4m\""),
        None,
    )
    .unwrap();
    let crate::policy::RuleKind::Capacity(cap) = c.clusters[0].rules.last().unwrap().kind else {
        panic!()
    };
    assert_eq!(
        (
            cap.reserved,
            cap.headroom,
            cap.trend_window,
            cap.trend_horizon
        ),
        (
            4096.0,
            0.0,
            Duration::ZERO,
            crate::policy::Horizon::Fixed(Duration::from_secs(240))
        )
    );
}

#[test]
fn a_capacity_rule_names_every_bad_key() {
    let text = format!(
        "{}{}",
        data("minimal.toml"),
        r#"
[[clusters.rules]]
name = "capacity"
type = "capacity"
query = "sum(a)"
per_node = 0
reserved = -1
headroom = -5
trend_window = "2h"
trend_horizon = "soon"
above = 3
"#
    );
    let found: Vec<String> = issues(&text).iter().map(|i| i.to_string()).collect();
    let at = "clusters[0].rules[1]";
    for (key, words) in [
        ("per_node", "must be above 0"),
        ("reserved", "must be 0 or more"),
        ("headroom", "must be 0 or more"),
        ("trend_window", "outside 0s to 1h"),
        ("trend_horizon", "neither \"auto\" nor a duration"),
        ("above", "does not apply to a capacity rule"),
    ] {
        assert!(
            found
                .iter()
                .any(|f| f.starts_with(&format!("{at}.{key}:")) && f.contains(words)),
            "{key}: {found:#?}"
        );
    }
    let missing = format!(
        "{}\n[[clusters.rules]]\nname = \"c\"\ntype = \"capacity\"\nquery = \"sum(a)\"\n",
        data("minimal.toml")
    );
    let found: Vec<String> = issues(&missing).iter().map(|i| i.to_string()).collect();
    assert!(
        found.iter().any(|f| f.contains("needs per_node")),
        "{found:#?}"
    );
}

#[test]
fn a_misspelt_key_gets_a_suggestion_and_no_cascade() {
    let text = data("minimal.toml").replace("max_task_nodes", "max_nodes");
    let found: Vec<String> = issues(&text).iter().map(|i| i.to_string()).collect();
    assert!(
        found
            .iter()
            .any(|f| f.contains(".max_nodes: unknown key; did you mean max_task_nodes?")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|f| f.contains(".max_task_nodes:")),
        "{found:#?}"
    );
    // Nothing else is judged against the missing maximum.
    assert_eq!(found.len(), 2, "{found:#?}");
    let far = data("minimal.toml").replace("[daemon]", "[daemon]\nwibble = 1");
    let found: Vec<String> = issues(&far).iter().map(|i| i.to_string()).collect();
    assert!(
        found
            .iter()
            .any(|f| f
                == "daemon.wibble: unknown key; check the spelling against config/example.toml"),
        "{found:#?}"
    );
}

#[test]
fn webhooks_and_history_max_load_with_defaults_and_every_problem_at_once() {
    let base = data("minimal.toml");
    let c = load_str(
        &format!(
            "{base}\n[[notify.webhooks]]\nurl_file = \"/etc/emr-autoscaler/wecom-url\"\nformat = \"wecom\"\n\
             [[notify.webhooks]]\nname = \"ding\"\nurl_file = \"/u\"\nformat = \"dingtalk\"\n\
             secret_file = \"/s\"\nevents = [\"breaker\", \"refused\", \"breaker\"]\n"
        ),
        None,
    )
    .unwrap();
    assert_eq!(c.daemon.history_max, 10_000);
    let [wecom, ding] = &c.notify.webhooks[..] else {
        panic!("{:?}", c.notify)
    };
    assert_eq!(
        (wecom.name.as_str(), wecom.format, wecom.events.len()),
        ("0", notify::WebhookFormat::Wecom, 8)
    );
    assert_eq!(
        (ding.name.as_str(), ding.format, ding.events.clone()),
        (
            "ding",
            notify::WebhookFormat::Dingtalk,
            vec![crate::history::Kind::Breaker, crate::history::Kind::Refused]
        )
    );
    assert!(load_str(&base, None).unwrap().notify.webhooks.is_empty());

    let bad = issues(&format!(
        "{}\n[[notify.webhooks]]\nname = \"a\"\nformat = \"teams\"\nurl_file = \"/u\"\n\
         [[notify.webhooks]]\nname = \"a\"\nformat = \"wecom\"\nsecret_file = \"/s\"\nevents = [\"orders\"]\n\
         [[notify.webhooks]]\nname = \"b c\"\nurl_file = \"/u\"\nevents = []\nurl = \"https://x\"\n",
        base.replace("[daemon]\n", "[daemon]\nhistory_max = 5\n")
    ));
    let found: Vec<(&str, &str)> = bad
        .iter()
        .map(|i| (i.path.as_str(), i.message.as_str()))
        .collect();
    for (path, words) in [
        ("daemon.history_max", "outside 100..=100000"),
        ("notify.webhooks[0].format", "\"teams\" is not a format"),
        (
            "notify.webhooks[1].name",
            "already the name of notify.webhooks[0]",
        ),
        (
            "notify.webhooks[1].url_file",
            "required: the file that holds",
        ),
        ("notify.webhooks[1].secret_file", "only DingTalk"),
        (
            "notify.webhooks[1].events[0]",
            "\"orders\" is not an event kind",
        ),
        ("notify.webhooks[2].name", "metric label"),
        ("notify.webhooks[2].events", "an empty list sends nothing"),
        ("notify.webhooks[2].url", "unknown key"),
    ] {
        assert!(
            found.iter().any(|(p, m)| *p == path && m.contains(words)),
            "{path}: {words:?} missing from {bad:#?}"
        );
    }
}

#[test]
fn offerings_load_in_order_and_every_problem_is_named() {
    let base = data("minimal.toml");
    // minimal.toml's [clusters.scale_out] has the billing keys: noted, not refused.
    let with = |offerings: &str| format!("{base}\n{offerings}");
    let c = load_str(
        &with(
            "[[clusters.scale_out.offerings]]\nname = \"s5\"\ninstance_type = \"S5.2XLARGE32\"\nzone = \"ap-guangzhou-6\"\nprice_per_hour = 1.2\n\
             [[clusters.scale_out.offerings]]\nname = \"sa5\"\ninstance_type = \"SA5.2XLARGE32\"\ncharge = \"on_demand\"\nsubnet_id = \"subnet-1\"\n",
        ),
        None,
    )
    .unwrap();
    let o = &c.clusters[0].offerings;
    assert_eq!(
        o.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
        vec!["s5", "sa5"]
    );
    assert_eq!(o[0].zone.as_deref(), Some("ap-guangzhou-6"));
    assert_eq!(o[0].charge, offerings::Charge::OnDemand);
    assert_eq!(o[1].subnet_id.as_deref(), Some("subnet-1"));
    assert_eq!(
        c.notes.iter().map(|n| n.path.as_str()).collect::<Vec<_>>(),
        vec![
            "clusters[0].scale_out.pay_mode",
            "clusters[0].scale_out.time_unit",
            "clusters[0].scale_out.time_span"
        ]
    );
    assert!(load_str(&base, None).unwrap().notes.is_empty());

    let bad = issues(&with(
        "zone_id = 100003\nrouter_count = 1\non_demand_floor = 2\n\
         [[clusters.scale_out.offerings]]\nname = \"a\"\ninstance_type = \"S5.2XLARGE32\"\ncharge = \"reserved\"\n\
         [[clusters.scale_out.offerings]]\nname = \"a\"\ninstance_type = \"\"\n\
         [[clusters.scale_out.offerings]]\nname = \"default\"\ninstance_type = \"S5.LARGE8\"\ncharge = \"spot\"\nprice_per_hour = -1\n\
         [[clusters.scale_out.offerings]]\ninstance_type = \"S5.LARGE8\"\ncpu = 8\n",
    )
    .replace("[clusters.scale_out]\n", "[clusters.scale_out]\nzone_id = 100003\nrouter_count = 1\non_demand_floor = 2\n")
    .replacen("zone_id = 100003\nrouter_count = 1\non_demand_floor = 2\n[[", "[[", 1));
    let found: Vec<(&str, &str)> = bad
        .iter()
        .map(|i| (i.path.as_str(), i.message.as_str()))
        .collect();
    for (path, words) in [
        ("clusters[0].scale_out.zone_id", "no such field"),
        ("clusters[0].scale_out.router_count", "no such field"),
        (
            "clusters[0].scale_out.offerings[0].charge",
            "\"reserved\" is not a charge",
        ),
        (
            "clusters[0].scale_out.offerings[1].name",
            "already the name of offerings[0]",
        ),
        (
            "clusters[0].scale_out.offerings[1].instance_type",
            "must not be empty",
        ),
        (
            "clusters[0].scale_out.offerings[2].name",
            "\"default\" names orders",
        ),
        (
            "clusters[0].scale_out.offerings[2].price_per_hour",
            "0 or more",
        ),
        (
            "clusters[0].scale_out.offerings[3].name",
            "required key is missing",
        ),
        ("clusters[0].scale_out.offerings[3].cpu", "unknown key"),
    ] {
        assert!(
            found.iter().any(|(p, m)| *p == path && m.contains(words)),
            "{path}: {words:?} missing from {bad:#?}"
        );
    }
    // The on-demand floor.
    let spot_only = "[[clusters.scale_out.offerings]]\nname = \"s\"\ninstance_type = \"S5.LARGE8\"\ncharge = \"spot\"\n";
    let floor = |n: u32, offerings: &str| {
        issues(&with(offerings).replace(
            "[clusters.scale_out]\n",
            &format!("[clusters.scale_out]\non_demand_floor = {n}\n"),
        ))
    };
    let named = |bad: Vec<Issue>, words: &str| {
        assert!(
            bad.iter()
                .any(|i| i.path == "clusters[0].scale_out.on_demand_floor"
                    && i.message.contains(words)),
            "{words:?} missing from {bad:#?}"
        );
    };
    named(
        floor(2, spot_only),
        "needs at least one offering with charge = \"on_demand\"",
    );
    named(
        floor(
            41,
            &format!(
                "{spot_only}[[clusters.scale_out.offerings]]\nname = \"o\"\ninstance_type = \"S5.LARGE8\"\n"
            ),
        ),
        "41 is above max_task_nodes (40)",
    );
    named(floor(1, ""), "applies to offerings");
    let ok = load_str(
        &with(&format!("{spot_only}[[clusters.scale_out.offerings]]\nname = \"o\"\ninstance_type = \"S5.LARGE8\"\n"))
            .replace("[clusters.scale_out]\n", "[clusters.scale_out]\non_demand_floor = 2\n"),
        None,
    )
    .unwrap();
    assert_eq!(ok.clusters[0].on_demand_floor, 2);
    assert_eq!(ok.clusters[0].offerings[0].charge, offerings::Charge::Spot);
}
