//! Offerings against the simulator's ScaleOutCluster: a sold-out spec falls
//! back to the next offering in the same evaluation with exactly one flow;
//! every offering sold out backs the cluster off; a lost answer on the
//! fallback is retried under its own token and never reaches a third
//! offering; kill -9 between the refusal and the fallback's answer never
//! orders twice. Every body sent is checked against the SDK's request model.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // Tests wait in real time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::support::daemon_proc::{Daemon, eventually, eventually_or};
use crate::support::fake_prom::{Answer, FakeProm};
use crate::support::inproc::InProcess;
use emr_autoscaler::clock::{ScaledClock, SharedClock, SystemClock, wall_now};
use emr_autoscaler::sim::{Fault, SimCluster, SimConfig, SimHandle, Simulator};

const CLUSTER: &str = "emr-abc12345";
const Q: &str = "sum(yarn_pending_memory_mb)";
const ACTION: &str = "ScaleOutCluster";
const SOLD_OUT: &str = "ResourcesSoldOut.CvmSoldOut";

/// (name, instance type, zone) of the three offerings, in order.
const OFFERINGS: [(&str, &str, &str); 3] = [
    ("s5-gz6", "S5.2XLARGE32", "ap-guangzhou-6"),
    ("sa5-gz7", "SA5.2XLARGE32", "ap-guangzhou-7"),
    ("s6-gz6", "S6.2XLARGE32", "ap-guangzhou-6"),
];

struct Rig {
    sim: SimHandle,
    prom: FakeProm,
    dir: tempfile::TempDir,
    clock: SharedClock,
}

impl Rig {
    /// The three offerings' rig: a cluster with 2 task nodes, `speed`
    /// times real time (1.0: the wall clock, for the binary).
    async fn new(speed: f64) -> Rig {
        let rig = Rig::start(speed, SimCluster::new(CLUSTER).with_task_nodes(2)).await;
        let mut offerings = String::new();
        for (name, spec, zone) in OFFERINGS {
            offerings.push_str(&format!(
                "[[clusters.scale_out.offerings]]\nname = \"{name}\"\ninstance_type = \"{spec}\"\nzone = \"{zone}\"\n"
            ));
        }
        rig.write_config(
            "10m",
            &format!(
                r#"cooldown = "30m"

[clusters.scale_out]
tags = [{{ key = "managed-by", value = "emr-autoscaler" }}]
{offerings}
[[clusters.rules]]
name = "pending"
type = "threshold"
query = "{Q}"
above = 100
for = "0s"
add = 3
"#
            ),
        );
        rig
    }

    /// The simulator (20 s flows) and Prometheus, with no config yet.
    async fn start(speed: f64, cluster: SimCluster) -> Rig {
        let clock: SharedClock = if speed == 1.0 {
            Arc::new(SystemClock)
        } else {
            Arc::new(ScaledClock::new(wall_now(), speed))
        };
        let sim = Simulator::start(
            SimConfig {
                clusters: vec![cluster],
                flow_duration: Duration::from_secs(20),
                ..SimConfig::default()
            },
            clock.clone(),
        )
        .await
        .unwrap();
        let prom = FakeProm::start().await;
        prom.set(Q, Answer::Value(0.0));
        Rig {
            sim,
            prom,
            dir: tempfile::tempdir().unwrap(),
            clock,
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// The daemon against this rig's Prometheus and simulator, with
    /// `sold_out_backoff` and the cluster's keys after `max_task_nodes = 40`.
    fn write_config(&self, sold_out_backoff: &str, cluster: &str) {
        let text = format!(
            r#"
[daemon]
evaluation_interval = "10s"
listen = "127.0.0.1:0"
state_dir = "{state}"
sold_out_backoff = "{sold_out_backoff}"

[prometheus]
url = "{prom}"
timeout = "2s"

[tencent]
region = "ap-guangzhou"
endpoint = "{sim}"
metadata_url = "http://127.0.0.1:9"

[[clusters]]
instance_id = "{CLUSTER}"
max_task_nodes = 40
{cluster}"#,
            state = self.dir.path().join("state").display(),
            prom = self.prom.url(),
            sim = self.sim.endpoint(),
        );
        std::fs::write(self.config_path(), text).unwrap();
    }

    /// Every ScaleOutCluster request: (instance type, token, started a flow).
    fn requests(&self) -> Vec<(String, String, bool)> {
        self.sim
            .ledger()
            .for_action(ACTION)
            .map(|e| {
                (
                    e.params["ResourceSpec"]["InstanceType"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    e.client_token.clone().unwrap_or_default(),
                    e.started_flow().is_some(),
                )
            })
            .collect()
    }

    /// Every body sent matches the SDK model, starts the services and
    /// carries the owner's tags.
    fn assert_bodies(&self) {
        let ledger = self.sim.ledger();
        let mut n = 0;
        for e in ledger.for_action(ACTION) {
            n += 1;
            emr_autoscaler::sim::check_scale_out_cluster_body(&e.params)
                .unwrap_or_else(|r| panic!("{r}: {}", e.params));
            assert!(e.start_service(), "EnableStartServiceFlag: {}", e.params);
            assert_eq!(e.params["InstanceChargeType"], "POSTPAID_BY_HOUR");
            assert_eq!(e.params["ScaleOutNodeConfig"]["NodeFlag"], "TASK");
            assert_eq!(e.params["Tags"][0]["TagKey"], "managed-by");
        }
        assert!(n > 0, "no ScaleOutCluster was sent");
        assert_eq!(ledger.for_action("ScaleOutInstance").count(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sold_out_offering_falls_back_to_the_next_in_the_same_evaluation() {
    // At 5x the next tick is 2 s of real time away: the gap checked below
    // leaves room for a state save's fsync on a busy disk.
    let rig = Rig::new(5.0).await;
    rig.sim
        .set_sold_out(OFFERINGS[0].1, Some(OFFERINGS[0].2), None, true);
    let d = InProcess::start(&rig.config_path(), rig.clock.clone()).await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually_or(
        Duration::from_secs(20),
        "an order through the second offering",
        || d.log(),
        || async { rig.requests().iter().any(|r| r.2) },
    )
    .await;
    let requests = rig.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].0, OFFERINGS[0].1);
    assert!(!requests[0].2, "the sold-out offering executed nothing");
    assert_eq!(requests[1].0, OFFERINGS[1].1);
    assert_ne!(requests[0].1, requests[1].1, "a new token for the fallback");
    let ledger = rig.sim.ledger();
    assert_eq!(ledger.flows_started(CLUSTER), 1);
    assert_eq!(ledger.nodes_ordered(CLUSTER), 3, "the same NodeCount");
    // Both within one evaluation: the fallback went at once, not at the
    // next tick (10 s of clock, 2 s of real time).
    let at: Vec<_> = ledger.for_action(ACTION).map(|e| e.arrived_at).collect();
    assert!(
        (at[1] - at[0]).to_std().unwrap() < rig.clock.real(Duration::from_secs(10)),
        "{at:?}"
    );
    rig.assert_bodies();
    // Status, metrics and history say which offering is skipped and why
    // (the status from the next evaluation on).
    eventually(
        Duration::from_secs(10),
        "the status to skip the first",
        || async { d.status().await["clusters"][0]["offerings"][0]["name"] == OFFERINGS[1].0 },
    )
    .await;
    let status = d.status().await;
    let offerings = &status["clusters"][0]["offerings"];
    assert_eq!(offerings[0]["name"], OFFERINGS[1].0, "{status:#}");
    assert_eq!(offerings[0]["available"], true);
    let skipped = offerings
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == OFFERINGS[0].0)
        .unwrap();
    assert_eq!(skipped["available"], false);
    assert!(skipped["unavailable_until"].is_string());
    assert_eq!(
        d.metric(&format!(
            "emr_autoscaler_offering_unavailable{{cluster=\"{CLUSTER}\",offering=\"{}\"}}",
            OFFERINGS[0].0
        ))
        .await,
        Some(1.0)
    );
    assert_eq!(
        d.metric(&format!(
            "emr_autoscaler_nodes_requested_total{{cluster=\"{CLUSTER}\",offering=\"{}\"}}",
            OFFERINGS[1].0
        ))
        .await,
        Some(3.0)
    );
    // Every family the dashboard draws for offerings is exported.
    let (_, exposition) = d.get("/metrics").await;
    for family in crate::dashboard::OFFERINGS_ONLY {
        assert!(
            exposition.contains(&format!("# TYPE {family} ")),
            "{family} is not exported with offerings"
        );
    }
    eventually(Duration::from_secs(10), "two history events", || async {
        d.history().await.len() >= 2
    })
    .await;
    let events = d.history().await;
    let refused = events.iter().find(|e| e["kind"] == "refused").unwrap();
    assert_eq!(refused["offering"], OFFERINGS[0].0);
    assert_eq!(refused["outcome"], "sold_out");
    let order = events.iter().find(|e| e["kind"] == "scale_out").unwrap();
    assert_eq!(order["offering"], OFFERINGS[1].0);
    assert_eq!(order["nodes"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_offering_sold_out_backs_the_cluster_off_and_says_so() {
    let rig = Rig::new(20.0).await;
    for (_, spec, zone) in OFFERINGS {
        rig.sim.set_sold_out(spec, Some(zone), None, true);
    }
    let d = InProcess::start(&rig.config_path(), rig.clock.clone()).await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually_or(
        Duration::from_secs(20),
        "the cluster backing off",
        || d.log(),
        || async { !d.status().await["clusters"][0]["backoff_until"].is_null() },
    )
    .await;
    let requests = rig.requests();
    assert_eq!(
        requests.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        OFFERINGS.map(|o| o.1).to_vec(),
        "each offering once, in order"
    );
    assert_eq!(rig.sim.ledger().flows_started(CLUSTER), 0);
    // Six more evaluations (a minute of clock): nothing more is sent.
    let decided = d.decisions().await;
    eventually(Duration::from_secs(20), "six more evaluations", || async {
        d.decisions().await >= decided + 6.0
    })
    .await;
    assert_eq!(rig.requests().len(), 3);
    let status = d.status().await;
    assert!(
        status["clusters"][0]["offerings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["available"] == false),
        "{status:#}"
    );
    assert!(
        status["clusters"][0]["last_decision"]
            .as_str()
            .unwrap()
            .contains("back"),
        "{status:#}"
    );
    assert!(
        d.log()
            .contains("Offering refused the order; it is skipped until its backoff ends."),
        "{}",
        d.log()
    );
    let refused: Vec<_> = d
        .history()
        .await
        .into_iter()
        .filter(|e| e["kind"] == "refused")
        .map(|e| e["offering"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(refused.len(), 3, "{refused:?}");
    rig.assert_bodies();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_on_the_fallback_is_retried_under_its_token_and_never_reaches_a_third() {
    let rig = Rig::new(20.0).await;
    // The first offering refuses; the fallback executes and its answer is lost.
    rig.sim
        .inject(ACTION, Some(CLUSTER), Fault::ApiError(SOLD_OUT.into()));
    rig.sim
        .inject(ACTION, Some(CLUSTER), Fault::DropAfterExecute);
    let d = InProcess::start(&rig.config_path(), rig.clock.clone()).await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually_or(
        Duration::from_secs(30),
        "the fallback's order to be known",
        || d.log(),
        || async {
            let h = d.history().await;
            h.iter().any(|e| e["kind"] == "scale_out")
        },
    )
    .await;
    let requests = rig.requests();
    assert!(requests.len() >= 3, "{requests:?}");
    assert_eq!(requests[0].0, OFFERINGS[0].1);
    assert!(
        requests[1..]
            .iter()
            .all(|r| r.0 == OFFERINGS[1].1 && r.1 == requests[1].1),
        "every later request is the fallback under its one token: {requests:?}"
    );
    assert!(
        !requests.iter().any(|r| r.0 == OFFERINGS[2].1),
        "the third offering was never tried"
    );
    assert_eq!(rig.sim.ledger().flows_started(CLUSTER), 1);
    assert!(rig.sim.ledger().tokens_with_several_flows().is_empty());
    rig.assert_bodies();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_the_refusal_and_the_fallbacks_answer_never_orders_twice() {
    let rig = Rig::new(1.0).await;
    // The first offering refuses; the fallback executes and answers 4 s
    // late: the daemon is killed while it waits.
    rig.sim
        .inject(ACTION, Some(CLUSTER), Fault::ApiError(SOLD_OUT.into()));
    rig.sim
        .inject(ACTION, Some(CLUSTER), Fault::Delay(Duration::from_secs(4)));
    let mut d = Daemon::start(
        &rig.config_path(),
        &rig.dir.path().join("daemon.log"),
        rig.dir.path(),
    );
    d.wait_healthy(Duration::from_secs(20)).await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(
        Duration::from_secs(20),
        "the fallback's request",
        || async { rig.requests().len() >= 2 },
    )
    .await;
    d.kill9();
    let state = std::fs::read_to_string(rig.dir.path().join("state/state.json")).unwrap();
    assert!(
        state.contains(OFFERINGS[1].0) && state.contains(&rig.requests()[1].1),
        "the refusal and the fallback's intent are on disk: {state}"
    );
    d.spawn(rig.dir.path());
    d.wait_healthy(Duration::from_secs(20)).await;
    eventually_or(
        Duration::from_secs(60),
        "the order to be settled",
        || d.log_text(),
        || async {
            let s = std::fs::read_to_string(rig.dir.path().join("state/state.json"))
                .unwrap_or_default();
            s.contains("\"flow_id\": ") && !s.contains("\"flow_id\": null")
                || s.contains("\"operation\": null")
        },
    )
    .await;
    let requests = rig.requests();
    assert!(
        !requests.iter().any(|r| r.0 == OFFERINGS[2].1),
        "no third offering: {requests:?}"
    );
    assert!(
        requests[1..].iter().all(|r| r.1 == requests[1].1),
        "the fallback only under its own token: {requests:?}"
    );
    assert_eq!(
        rig.sim.ledger().flows_started(CLUSTER),
        1,
        "one order; log:\n{}",
        d.log_text()
    );
    rig.assert_bodies();
}

/// `plan` names the offering an order would use and why the first is
/// skipped, from the same state the daemon wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_names_the_offering_and_why_earlier_ones_are_skipped() {
    let rig = Rig::new(20.0).await;
    rig.sim
        .set_sold_out(OFFERINGS[0].1, Some(OFFERINGS[0].2), None, true);
    let mut d = InProcess::start(&rig.config_path(), rig.clock.clone()).await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(20), "the fallback's order", || async {
        rig.requests().iter().any(|r| r.2)
    })
    .await;
    assert!(d.stop().await.is_ok());
    let out = tokio::task::spawn_blocking({
        let config = rig.config_path();
        let home = rig.dir.path().to_path_buf();
        move || {
            std::process::Command::new(crate::support::daemon_proc::BIN)
                .args(["plan", "--config"])
                .arg(config)
                .env_clear()
                .env("HOME", home)
                .env(
                    "TENCENTCLOUD_SECRET_ID",
                    emr_autoscaler::sim::DEFAULT_SECRET_ID,
                )
                .env(
                    "TENCENTCLOUD_SECRET_KEY",
                    emr_autoscaler::sim::DEFAULT_SECRET_KEY,
                )
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("an order would go through {}", OFFERINGS[1].0))
            && text.contains(&format!("{} skipped: refused an order", OFFERINGS[0].0)),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
}

/// The InstanceChargeType of every ScaleOutCluster that started a flow.
fn charges(sim: &SimHandle) -> Vec<String> {
    sim.ledger()
        .for_action(ACTION)
        .filter(|e| e.started_flow().is_some())
        .map(|e| {
            e.params["InstanceChargeType"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// Raises the demand until one more order starts, checks its charge, and
/// waits until its nodes run with no operation open.
async fn one_order(d: &InProcess, prom: &FakeProm, sim: &SimHandle, charge: &str) {
    let before = charges(sim).len();
    prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(30), "one more order", || async {
        charges(sim).len() > before
    })
    .await;
    prom.set(Q, Answer::Value(0.0));
    assert_eq!(charges(sim)[before], charge, "{:?}", charges(sim));
    eventually(Duration::from_secs(30), "its nodes running", || async {
        let s = d.status().await;
        s["clusters"][0]["operation"].is_null() && s["clusters"][0]["in_flight"] == 0
    })
    .await;
}

/// Spot with an on-demand floor of 2: below the floor the order goes on
/// demand; above it, spot first. Spot nodes reclaimed are counted as lost
/// per offering, from the books the daemon keeps (the node list says
/// nothing of spot), and replaced by the next decision. A removal never
/// takes the on-demand nodes below the floor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_keeps_the_on_demand_floor_and_lost_spot_nodes_are_counted_and_replaced() {
    let rig = Rig::start(20.0, SimCluster::new(CLUSTER)).await;
    rig.write_config(
        "1m",
        &format!(
            r#"cooldown = "0s"
[clusters.scale_out]
on_demand_floor = 2
[[clusters.scale_out.offerings]]
name = "spot-s5"
instance_type = "S5.2XLARGE32"
charge = "spot"
[[clusters.scale_out.offerings]]
name = "od-sa5"
instance_type = "SA5.2XLARGE32"
[clusters.scale_in]
enabled = true
grace_period = "60s"
owner_tag = {{ key = "managed-by", value = "emr-autoscaler" }}
[[clusters.rules]]
name = "pending"
type = "threshold"
query = "{Q}"
above = 100
for = "0s"
add = 2
"#
        ),
    );
    let (sim, prom, dir) = (&rig.sim, &rig.prom, &rig.dir);
    let d = InProcess::start(&rig.config_path(), rig.clock.clone()).await;
    let charges = || charges(sim);
    let task_nodes = || sim.cluster(CLUSTER).map_or(0, |c| c.task_nodes);
    // Two orders: the first below the floor (on demand), the second spot.
    prom.set(Q, Answer::Value(500.0));
    eventually_or(
        Duration::from_secs(30),
        "two orders",
        || d.log(),
        || async { charges().len() >= 2 },
    )
    .await;
    prom.set(Q, Answer::Value(0.0));
    let first_two = charges()[..2].to_vec();
    assert_eq!(
        first_two,
        ["POSTPAID_BY_HOUR", "SPOTPAID"],
        "{:?}",
        charges()
    );
    eventually_or(
        Duration::from_secs(30),
        "every ordered node running and matched",
        || d.log(),
        || async {
            let s =
                std::fs::read_to_string(dir.path().join("state/state.json")).unwrap_or_default();
            task_nodes() as usize == 2 * charges().len()
                && d.status().await["clusters"][0]["operation"].is_null()
                && !s.contains("\"unmatched\"")
                && s.matches("\"spot-s5\"").count() >= 2
        },
    )
    .await;
    let on_demand_ordered = charges()
        .iter()
        .filter(|c| *c == "POSTPAID_BY_HOUR")
        .count();
    // The cloud takes the spot nodes back.
    let spot_before = sim
        .nodes(CLUSTER)
        .unwrap()
        .iter()
        .filter(|n| n.is_spot())
        .count() as u32;
    assert!(spot_before >= 2, "{:?}", sim.nodes(CLUSTER));
    assert_eq!(sim.reclaim_spot(CLUSTER, 100), spot_before);
    eventually_or(
        Duration::from_secs(30),
        "the loss counted per offering",
        || d.log(),
        || async {
            d.metric(&format!(
                "emr_autoscaler_nodes_lost_total{{cluster=\"{CLUSTER}\",offering=\"spot-s5\"}}"
            ))
            .await
                == Some(f64::from(spot_before))
        },
    )
    .await;
    assert_eq!(
        d.metric(&format!(
            "emr_autoscaler_offering_task_nodes{{cluster=\"{CLUSTER}\",offering=\"od-sa5\"}}"
        ))
        .await,
        Some(2.0),
        "the books: the two on-demand nodes"
    );
    let lost = d.history().await;
    let lost = lost.iter().find(|e| e["kind"] == "lost_nodes").unwrap();
    assert_eq!(lost["offering"], "spot-s5");
    assert_eq!(lost["nodes"], spot_before);
    // Replaced by the next decision, above the floor: spot again.
    one_order(&d, prom, sim, "SPOTPAID").await;
    // Spot sold out: the next order falls back on demand, above the floor.
    sim.set_sold_out("S5.2XLARGE32", None, None, true);
    one_order(&d, prom, sim, "POSTPAID_BY_HOUR").await;
    // Spot again, so the newest nodes are spot ones.
    sim.set_sold_out("S5.2XLARGE32", None, None, false);
    eventually(
        Duration::from_secs(30),
        "the spot offering available again",
        || async {
            let s = d.status().await;
            s["clusters"][0]["offerings"]
                .as_array()
                .is_some_and(|o| o.iter().all(|o| o["available"] == true))
        },
    )
    .await;
    one_order(&d, prom, sim, "SPOTPAID").await;
    let http =
        emr_autoscaler::http::http_client(Duration::from_secs(1), Duration::from_secs(30)).unwrap();
    let remove = |count: u32| {
        let http = http.clone();
        let url = d.url(&format!("/api/v1/clusters/{CLUSTER}/scale-in"));
        async move {
            let r = http
                .post(url)
                .json(&serde_json::json!({ "count": count }))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            assert_eq!(status, 200, "{}", r.text().await.unwrap_or_default());
        }
    };
    // Two of four on-demand nodes are above the floor: of equal standing,
    // they go before the (newer) spot ones.
    let on_demand_ids: Vec<String> = sim
        .nodes(CLUSTER)
        .unwrap()
        .iter()
        .filter(|n| n.instance_charge_type.as_deref() == Some("POSTPAID_BY_HOUR"))
        .map(|n| n.order_no.clone())
        .collect();
    assert_eq!(on_demand_ids.len(), 4, "{:?}", sim.nodes(CLUSTER));
    remove(2).await;
    let first = sim.ledger().terminations(CLUSTER).last().unwrap().clone();
    assert!(
        first.len() == 2 && first.iter().all(|n| on_demand_ids.contains(n)),
        "on-demand above the floor first: {first:?}"
    );
    eventually(Duration::from_secs(30), "the removal done", || async {
        d.status().await["clusters"][0]["operation"].is_null()
    })
    .await;
    // A removal of everything keeps the on-demand floor: only spot goes.
    let spot_ids: Vec<String> = sim
        .nodes(CLUSTER)
        .unwrap()
        .iter()
        .filter(|n| n.is_spot())
        .map(|n| n.order_no.clone())
        .collect();
    remove(100).await;
    let removals = sim.ledger().terminations(CLUSTER);
    let mut named = removals.last().unwrap().clone();
    named.sort();
    let mut want = spot_ids.clone();
    want.sort();
    assert_eq!(
        on_demand_ordered, 1,
        "one order of 2 on-demand nodes at first"
    );
    assert_eq!(
        named, want,
        "only the spot nodes go; the floor keeps the on-demand ones"
    );
    // Every body, spot ones included, matches the SDK model.
    for e in sim.ledger().for_action(ACTION) {
        emr_autoscaler::sim::check_scale_out_cluster_body(&e.params)
            .unwrap_or_else(|r| panic!("{r}: {}", e.params));
        assert!(e.start_service(), "{}", e.params);
    }
    let status = d.status().await;
    let passed = status["clusters"][0]["last_selection"].to_string();
    assert!(passed.contains("on_demand_floor keeps it"), "{passed}");
}
