//! The YARN ResourceManager reader over real HTTP, against the simulator's
//! ResourceManager stand-in: JSON shapes, a standby's redirect, an RM that is
//! down, and node selection from what it reports (ApplicationMaster hosts
//! last, then fewest containers).

use std::time::Duration;

use emr_autoscaler::policy::scale_in::{Node, NodeScope, select};
use emr_autoscaler::sim::{YarnApp, YarnNode, YarnRm};
use emr_autoscaler::yarn::Yarn;

fn http() -> reqwest::Client {
    emr_autoscaler::http::http_client(Duration::from_secs(1), Duration::from_secs(3)).unwrap()
}

fn task(id: &str, ip: &str) -> Node {
    Node {
        id: Some(id.into()),
        ip: Some(ip.into()),
        flag: Some(3),
        auto_flag: Some(0),
        destroyable: Some(1),
        disable_api_termination: Some(false),
        charge_type: Some(0),
        hardware: Some("host".into()),
        apply_time: Some("2026-12-01 10:00:00".into()),
        tags: None,
    }
}

#[tokio::test]
async fn the_standby_redirects_and_selection_follows_yarn() {
    let active = YarnRm::start().await.unwrap();
    active.set_nodes(vec![
        YarnNode::running("worker-1", "10.0.0.1:8042", 0),
        YarnNode::running("worker-2", "10.0.0.2:8042", 9),
        YarnNode::running("worker-3", "10.0.0.3:8042", 1),
    ]);
    active.set_apps(vec![YarnApp::new("application_1_0001", "worker-1:8042")]);
    let standby = YarnRm::start().await.unwrap();
    standby.set_redirect(Some(active.url()));
    let down = "http://127.0.0.1:9".parse().unwrap();
    // A standby's redirect is followed only to a configured ResourceManager.
    let unlisted = Yarn::new(
        http(),
        vec![standby.url().parse().unwrap()],
        Duration::from_secs(2),
    );
    let refused = unlisted.state().await.unwrap_err().to_string();
    assert!(
        refused.contains("not one of resourcemanager_urls"),
        "{refused}"
    );
    assert!(
        active.requests().is_empty(),
        "nothing went to an unlisted host"
    );
    let yarn = Yarn::new(
        http(),
        vec![
            down,
            standby.url().parse().unwrap(),
            active.url().parse().unwrap(),
        ],
        Duration::from_secs(2),
    );
    let state = yarn.state().await.unwrap();
    assert_eq!(state.nodes.len(), 3);
    assert!(state.am_hosts.contains("worker-1"), "{state:?}");
    assert!(
        !standby.requests().is_empty() && !active.requests().is_empty(),
        "the standby answered with a redirect to the active RM"
    );
    // The AM host goes last, then by containers; a node YARN does not list
    // is never taken.
    let nodes = vec![
        task("ins-1", "10.0.0.1"),
        task("ins-2", "10.0.0.2"),
        task("ins-3", "10.0.0.3"),
        task("ins-9", "10.0.0.9"),
    ];
    let s = select(&nodes, &NodeScope::AnyTask, Some(&state), &[], 4);
    assert_eq!(s.ids(), vec!["ins-3", "ins-2", "ins-1"]);
    assert_eq!(s.shortfall, 1);
    // With no ResourceManager answering, reading fails (and no node goes).
    let none = Yarn::new(
        http(),
        vec!["http://127.0.0.1:9".parse().unwrap()],
        Duration::from_secs(2),
    );
    assert!(none.state().await.is_err());
    active.shutdown().await;
    standby.shutdown().await;
}
