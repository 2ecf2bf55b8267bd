use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use proptest::prelude::*;

use super::*;

fn ours() -> NodeScope {
    NodeScope::Ours {
        key: "managed-by".into(),
        value: "emr-autoscaler".into(),
    }
}

fn task(id: &str, ip: &str, applied: &str) -> Node {
    Node {
        id: Some(id.into()),
        ip: Some(ip.into()),
        flag: Some(3),
        auto_flag: Some(0),
        destroyable: Some(1),
        disable_api_termination: Some(false),
        charge_type: Some(0),
        hardware: Some("host".into()),
        apply_time: Some(applied.into()),
        tags: Some(vec![("managed-by".into(), "emr-autoscaler".into())]),
    }
}

fn yarn_node(host: &str, containers: u32) -> YarnNode {
    YarnNode {
        http_host: host.into(),
        host_name: format!("node-{host}"),
        containers,
    }
}

#[test]
fn every_ineligibility_has_its_reason() {
    let ok = task("ins-a", "10.0.0.1", "2026-12-01 10:00:00");
    let cases: Vec<(Node, Ineligible)> = vec![
        (
            Node {
                id: None,
                ..ok.clone()
            },
            Ineligible::NoMachineId,
        ),
        (
            Node {
                id: Some(" ".into()),
                ..ok.clone()
            },
            Ineligible::NoMachineId,
        ),
        (
            Node {
                flag: Some(2),
                ..ok.clone()
            },
            Ineligible::NotTask,
        ),
        (
            Node {
                flag: None,
                ..ok.clone()
            },
            Ineligible::NotTask,
        ),
        (
            Node {
                hardware: Some("pod".into()),
                ..ok.clone()
            },
            Ineligible::NotHost,
        ),
        (
            Node {
                charge_type: Some(1),
                ..ok.clone()
            },
            Ineligible::Monthly,
        ),
        (
            Node {
                charge_type: None,
                ..ok.clone()
            },
            Ineligible::Monthly,
        ),
        (
            Node {
                destroyable: Some(0),
                ..ok.clone()
            },
            Ineligible::NotDestroyable,
        ),
        (
            Node {
                disable_api_termination: Some(true),
                ..ok.clone()
            },
            Ineligible::Protected,
        ),
        (
            Node {
                disable_api_termination: None,
                ..ok.clone()
            },
            Ineligible::Protected,
        ),
        (
            Node {
                auto_flag: Some(1),
                ..ok.clone()
            },
            Ineligible::BuiltinAutoScaling,
        ),
        (
            Node {
                tags: None,
                ..ok.clone()
            },
            Ineligible::TagsUnknown,
        ),
        (
            Node {
                tags: Some(vec![("managed-by".into(), "someone".into())]),
                ..ok.clone()
            },
            Ineligible::NotOurs,
        ),
    ];
    for (node, why) in cases {
        assert_eq!(ineligibility(&node, &ours(), None), Some(why), "{node:?}");
    }
    assert_eq!(ineligibility(&ok, &ours(), None), None);
    // "ours" with no tag configured: nothing is ours, not even tagged nodes.
    let no_tag = NodeScope::Ours {
        key: String::new(),
        value: String::new(),
    };
    assert!(!no_tag.is_usable());
    assert_eq!(ineligibility(&ok, &no_tag, None), Some(Ineligible::NotOurs));
    // An empty Ip never matches a YARN node without an address.
    let blank = YarnState {
        nodes: vec![YarnNode {
            http_host: String::new(),
            host_name: String::new(),
            containers: 0,
        }],
        am_hosts: BTreeSet::new(),
    };
    let no_ip = Node {
        ip: Some(String::new()),
        ..ok.clone()
    };
    assert_eq!(
        ineligibility(&no_ip, &NodeScope::AnyTask, Some(&blank)),
        Some(Ineligible::NotInYarn)
    );
    // Any task node: tags do not matter, null included.
    let untagged = Node {
        tags: None,
        ..ok.clone()
    };
    assert_eq!(ineligibility(&untagged, &NodeScope::AnyTask, None), None);
    // With YARN, a node is matched by its Ip (HTTP address host or host name).
    let yarn = YarnState {
        nodes: vec![yarn_node("10.0.0.9", 0)],
        am_hosts: BTreeSet::new(),
    };
    assert_eq!(
        ineligibility(&ok, &ours(), Some(&yarn)),
        Some(Ineligible::NotInYarn)
    );
    let by_name = YarnState {
        nodes: vec![YarnNode {
            http_host: "h1".into(),
            host_name: "10.0.0.1".into(),
            containers: 0,
        }],
        am_hosts: BTreeSet::new(),
    };
    assert_eq!(ineligibility(&ok, &ours(), Some(&by_name)), None);
    let no_ip = Node { ip: None, ..ok };
    assert_eq!(
        ineligibility(&no_ip, &ours(), Some(&by_name)),
        Some(Ineligible::NotInYarn)
    );
}

#[test]
fn newest_first_without_yarn_and_the_shortfall_is_said() {
    let nodes = vec![
        task("ins-old", "10.0.0.1", "2026-11-01 10:00:00"),
        task("ins-new", "10.0.0.2", "2026-12-01 10:00:00"),
        task("ins-mid", "10.0.0.3", "2026-11-15 10:00:00"),
        Node {
            charge_type: Some(1),
            ..task("ins-monthly", "10.0.0.4", "2026-12-02 10:00:00")
        },
    ];
    let s = select(&nodes, &ours(), None, &[], 2);
    assert_eq!(s.ids(), vec!["ins-new", "ins-mid"]);
    assert_eq!(s.shortfall, 0);
    assert!(
        s.passed_over
            .contains(&("ins-monthly".into(), Ineligible::Monthly))
    );
    assert!(
        s.passed_over
            .contains(&("ins-old".into(), Ineligible::NotNeeded))
    );
    let s = select(&nodes, &ours(), None, &[], 5);
    assert_eq!(s.ids(), vec!["ins-new", "ins-mid", "ins-old"]);
    assert_eq!(s.shortfall, 2);
    let s = select(&nodes, &ours(), None, &["ins-new".into()], 1);
    assert_eq!(s.ids(), vec!["ins-mid"]);
    assert!(
        s.passed_over
            .contains(&("ins-new".into(), Ineligible::AlreadyLeaving))
    );
}

#[test]
fn with_yarn_application_masters_go_last_then_fewest_containers() {
    let nodes = vec![
        task("ins-am", "10.0.0.1", "2026-12-01 12:00:00"),
        task("ins-busy", "10.0.0.2", "2026-12-01 11:00:00"),
        task("ins-idle-old", "10.0.0.3", "2026-11-01 10:00:00"),
        task("ins-idle-new", "10.0.0.4", "2026-12-01 10:00:00"),
    ];
    let yarn = YarnState {
        nodes: vec![
            yarn_node("10.0.0.1", 0),
            yarn_node("10.0.0.2", 7),
            yarn_node("10.0.0.3", 0),
            yarn_node("10.0.0.4", 0),
        ],
        am_hosts: ["node-10.0.0.1".to_string()].into_iter().collect(),
    };
    let s = select(&nodes, &ours(), Some(&yarn), &[], 4);
    assert_eq!(
        s.ids(),
        vec!["ins-idle-new", "ins-idle-old", "ins-busy", "ins-am"]
    );
    assert!(s.chosen[3].hosts_am);
}

#[test]
fn hosts_are_read_from_addresses() {
    assert_eq!(host_of("10.0.0.5:8042"), "10.0.0.5");
    assert_eq!(host_of("worker-1.example:8042"), "worker-1.example");
    assert_eq!(host_of("worker-1"), "worker-1");
    assert_eq!(host_of("[fd00::5]:8042"), "fd00::5");
    assert_eq!(host_of("fd00::5"), "fd00::5");
    assert_eq!(host_of(" 10.0.0.5:8042 "), "10.0.0.5");
}

#[test]
fn apply_times_parse_in_both_forms() {
    assert!(parse_apply_time("2026-12-01 10:00:00").is_some());
    assert!(parse_apply_time("2026-12-01T10:00:00Z").is_some());
    assert!(parse_apply_time("yesterday").is_none());
}

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

fn history(points: &[(i64, u32)]) -> Vec<Proposal> {
    points
        .iter()
        .map(|&(at, nodes)| Proposal {
            at: t(at),
            nodes,
            effective: 40,
        })
        .collect()
}

const WINDOW: Duration = Duration::from_secs(600);
const GAP: Duration = Duration::from_secs(30);

#[test]
fn stabilization_waits_one_full_window_then_keeps_the_smallest_removal() {
    // Every 15 s for 9 minutes: still observing.
    let short: Vec<(i64, u32)> = (0..=36).map(|i| (i * 15, 3)).collect();
    assert_eq!(
        stabilize(&history(&short), t(540), WINDOW, GAP),
        Stabilized::Observing { since: Some(t(0)) }
    );
    // Ten minutes: the smallest removal of the window.
    let mut full: Vec<(i64, u32)> = (0..=40).map(|i| (i * 15, 3)).collect();
    full[20].1 = 1;
    assert_eq!(
        stabilize(&history(&full), t(600), WINDOW, GAP),
        Stabilized::Remove(1)
    );
    // One evaluation that wanted none (a burst) cancels it for a window.
    full[30].1 = 0;
    assert_eq!(
        stabilize(&history(&full), t(600), WINDOW, GAP),
        Stabilized::Remove(0)
    );
    // A gap above max_gap (a restart, a stall) starts the observation again.
    let gapped: Vec<(i64, u32)> = (0..=40)
        .filter(|i| *i != 20 && *i != 21)
        .map(|i| (i * 15, 3))
        .collect();
    assert_eq!(
        stabilize(&history(&gapped), t(600), WINDOW, GAP),
        Stabilized::Observing {
            since: Some(t(330))
        }
    );
    // A stale history (no evaluation for longer than the gap) holds.
    assert_eq!(
        stabilize(&history(&full), t(700), WINDOW, GAP),
        Stabilized::Observing { since: None }
    );
    assert_eq!(
        stabilize(&[], t(0), WINDOW, GAP),
        Stabilized::Observing { since: None }
    );
}

#[test]
fn pruning_keeps_what_the_window_reads() {
    let mut h = history(&(0..=80).map(|i| (i * 15, 2)).collect::<Vec<_>>());
    prune(&mut h, t(1200), WINDOW, GAP);
    assert_eq!(h.first().map(|p| p.at), Some(t(570)));
    assert_eq!(stabilize(&h, t(1200), WINDOW, GAP), Stabilized::Remove(2));
}

fn arb_node() -> impl Strategy<Value = Node> {
    (
        (
            prop::option::weighted(0.97, 0u8..12),
            prop::option::weighted(0.9, 0u8..8),
            prop::option::weighted(0.95, prop::sample::select(vec![0i64, 1, 2, 3, 3, 3, 3])),
            prop::option::weighted(0.95, prop::sample::select(vec![0i64, 0, 0, 1])),
            prop::option::weighted(0.95, prop::sample::select(vec![1i64, 1, 1, 0])),
        ),
        (
            prop::option::weighted(0.95, prop::sample::select(vec![false, false, false, true])),
            prop::option::weighted(0.95, prop::sample::select(vec![0i64, 0, 0, 1])),
            prop::option::weighted(0.95, prop::sample::select(vec!["host", "host", "pod"])),
            prop::option::of(0u32..40),
            prop::option::weighted(0.8, prop::collection::vec((0u8..3, 0u8..3), 0..3)),
        ),
    )
        .prop_map(
            |((id, ip, flag, auto_flag, destroyable), (protect, charge, hw, day, tags))| Node {
                id: id.map(|i| format!("ins-{i:08}")),
                ip: ip.map(|i| format!("10.0.0.{i}")),
                flag,
                auto_flag,
                destroyable,
                disable_api_termination: protect,
                charge_type: charge,
                hardware: hw.map(str::to_string),
                apply_time: day.map(|d| format!("2026-11-{:02} 10:00:00", d % 28 + 1)),
                tags: tags.map(|ts| {
                    ts.into_iter()
                        .map(|(k, v)| {
                            (
                                ["managed-by", "team", "x"][k as usize].to_string(),
                                ["emr-autoscaler", "data", "y"][v as usize].to_string(),
                            )
                        })
                        .collect()
                }),
            },
        )
}

fn arb_yarn() -> impl Strategy<Value = Option<YarnState>> {
    prop::option::of((
        prop::collection::vec((0u8..10, 0u32..20, any::<bool>()), 0..10),
        prop::collection::btree_set(0u8..10, 0..4),
    ))
    .prop_map(|y| {
        y.map(|(nodes, ams)| YarnState {
            nodes: nodes
                .into_iter()
                .map(|(i, containers, by_name)| {
                    let ip = format!("10.0.0.{i}");
                    if by_name {
                        YarnNode {
                            http_host: format!("h{i}"),
                            host_name: ip,
                            containers,
                        }
                    } else {
                        YarnNode {
                            http_host: ip,
                            host_name: format!("h{i}"),
                            containers,
                        }
                    }
                })
                .collect(),
            am_hosts: ams
                .into_iter()
                .map(|i| {
                    if i % 2 == 0 {
                        format!("10.0.0.{i}")
                    } else {
                        format!("h{i}")
                    }
                })
                .collect(),
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    /// Over random node lists and YARN states: a selection names only
    /// eligible task nodes, never one already leaving, never more than
    /// asked, never a node twice, and never an ApplicationMaster host while
    /// another candidate is left unchosen; the shortfall is exact.
    #[test]
    fn a_selection_names_only_eligible_nodes(
        nodes in prop::collection::vec(arb_node(), 0..25),
        yarn in arb_yarn(),
        any_task in any::<bool>(),
        leaving in prop::collection::vec(0u8..12, 0..3),
        count in 0u32..12,
    ) {
        let scope = if any_task { NodeScope::AnyTask } else { ours() };
        let leaving: Vec<String> = leaving.iter().map(|i| format!("ins-{i:08}")).collect();
        let s = select(&nodes, &scope, yarn.as_ref(), &leaving, count);
        let ids = s.ids();
        prop_assert!(ids.len() as u32 <= count);
        let unique: BTreeSet<&String> = ids.iter().collect();
        prop_assert_eq!(unique.len(), ids.len());
        for id in &ids {
            prop_assert!(!leaving.contains(id));
            // Every listing of this id is eligible (a duplicate id with
            // other fields must not sneak an ineligible node in).
            let listed: Vec<&Node> = nodes.iter().filter(|n| n.id.as_ref() == Some(id)).collect();
            prop_assert!(!listed.is_empty());
            for node in listed {
                prop_assert!(ineligibility(node, &scope, yarn.as_ref()).is_none());
                prop_assert_eq!(node.flag, Some(3));
                prop_assert_eq!(node.auto_flag, Some(0));
                prop_assert_eq!(node.charge_type, Some(0));
                prop_assert_eq!(node.destroyable, Some(1));
                prop_assert_eq!(node.disable_api_termination, Some(false));
            }
        }
        let eligible: BTreeSet<String> = nodes
            .iter()
            .filter_map(|n| n.id.clone())
            .filter(|id| {
                nodes
                    .iter()
                    .filter(|n| n.id.as_ref() == Some(id))
                    .all(|n| ineligibility(n, &scope, yarn.as_ref()).is_none())
            })
            .filter(|id| !leaving.contains(id))
            .collect();
        prop_assert_eq!(s.shortfall, count.saturating_sub(eligible.len() as u32));
        prop_assert_eq!(ids.len(), (count as usize).min(eligible.len()));
        if s.chosen.iter().any(|c| c.hosts_am) {
            let unchosen_without_am = eligible.len() > ids.len()
                && s.passed_over.iter().any(|(id, why)| {
                    *why == Ineligible::NotNeeded
                        && !s.chosen.iter().any(|c| &c.id == id)
                        && !am_host(&nodes, id, yarn.as_ref())
                });
            prop_assert!(!unchosen_without_am, "an AM host was chosen over a free node");
        }
    }
}

fn am_host(nodes: &[Node], id: &str, yarn: Option<&YarnState>) -> bool {
    let Some(y) = yarn else { return false };
    nodes
        .iter()
        .filter(|n| n.id.as_deref() == Some(id))
        .filter_map(|n| n.ip.as_deref())
        .any(|ip| y.find(ip).is_some_and(|yn| y.hosts_am(ip, yn)))
}
