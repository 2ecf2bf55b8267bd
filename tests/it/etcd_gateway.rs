//! The etcd client against Debian's real etcd, through its JSON gateway:
//! every call the daemon makes, TLS with client certificates, user/password
//! authentication with tokens that expire, and a member that lost its quorum
//! refusing at once instead of answering stale or waiting out a timeout.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use emr_autoscaler::config::ha::HaConfig;
use emr_autoscaler::etcd::{Campaign, Etcd, EtcdError};
use url::Url;

use crate::support::daemon_proc::eventually;
use crate::support::etcd::{EtcdCluster, Options, Tls};

fn config(endpoints: &[String]) -> HaConfig {
    HaConfig {
        etcd_endpoints: endpoints.iter().map(|e| Url::parse(e).unwrap()).collect(),
        lease_ttl: Duration::from_secs(10),
        prefix: "/gw/".into(),
        node_name: "a".into(),
        advertise_url: None,
        ca_file: None,
        client_identity: None,
        user: None,
    }
}

/// Starts a cluster off the runtime thread (it waits for every member).
async fn start(n: usize, options: Options) -> EtcdCluster {
    tokio::task::spawn_blocking(move || EtcdCluster::start_with(n, options))
        .await
        .unwrap()
}

#[tokio::test]
async fn every_call_the_daemon_makes_works_through_the_gateway() {
    let cluster = start(1, Options::default()).await;
    let etcd = Etcd::new(&config(&cluster.endpoints()), Duration::from_secs(3)).unwrap();

    let a = etcd.grant(10).await.unwrap();
    let b = etcd.grant(10).await.unwrap();
    assert_ne!(a.id, b.id);
    assert_eq!(a.ttl, 10);
    assert!(etcd.keep_alive(a.id).await.unwrap() > 0);

    let Campaign::Won(fence) = etcd.campaign("/gw/leader", b"node-a", a.id).await.unwrap() else {
        panic!("the first campaign must win");
    };
    // Campaigning again with the same lease keeps the same fence.
    assert_eq!(
        etcd.campaign("/gw/leader", b"node-a", a.id).await.unwrap(),
        Campaign::Won(fence.clone())
    );
    assert_eq!(
        etcd.campaign("/gw/leader", b"node-b", b.id).await.unwrap(),
        Campaign::Held {
            value: b"node-a".to_vec(),
            lease: a.id
        }
    );

    etcd.fenced_put(&fence, "/gw/state", b"v1".to_vec())
        .await
        .unwrap();
    assert!(
        etcd.fenced_create(&fence, "/gw/intent", b"i1".to_vec())
            .await
            .unwrap()
    );
    assert!(
        !etcd
            .fenced_create(&fence, "/gw/intent", b"i2".to_vec())
            .await
            .unwrap(),
        "a second create of the same key must not overwrite it"
    );
    let state = etcd.get("/gw/state").await.unwrap().unwrap();
    assert_eq!((state.bytes.as_slice(), state.lease), (&b"v1"[..], 0));
    let leader = etcd.get("/gw/leader").await.unwrap().unwrap();
    assert_eq!(
        (leader.create_revision, leader.lease),
        (fence.revision, a.id)
    );
    assert_eq!(etcd.get("/gw/nothing").await.unwrap(), None);
    assert_eq!(
        etcd.get("/gw/intent").await.unwrap().unwrap().bytes,
        b"i1".to_vec()
    );

    // Revoking the lease deletes the leader key: the fence no longer holds.
    etcd.revoke(a.id).await.unwrap();
    assert_eq!(etcd.get("/gw/leader").await.unwrap(), None);
    assert_eq!(etcd.keep_alive(a.id).await.unwrap(), 0, "a revoked lease");
    assert_eq!(
        etcd.fenced_put(&fence, "/gw/state", b"v2".to_vec()).await,
        Err(EtcdError::Fenced)
    );
    assert_eq!(
        etcd.fenced_create(&fence, "/gw/other", b"x".to_vec()).await,
        Err(EtcdError::Fenced)
    );
    assert_eq!(
        etcd.get("/gw/state").await.unwrap().unwrap().bytes,
        b"v1".to_vec()
    );
    // The other lease now wins, at a new revision.
    let Campaign::Won(second) = etcd.campaign("/gw/leader", b"node-b", b.id).await.unwrap() else {
        panic!("the key is free");
    };
    assert!(second.revision > fence.revision);
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is missing: install Debian's openssl package");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 (also usable as a client one:
/// etcd's gateway dials its own member with it) and a client certificate.
fn certificates(dir: &Path) -> (Tls, (std::path::PathBuf, std::path::PathBuf)) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    for (name, usage) in [
        ("server", "serverAuth,clientAuth"),
        ("client", "clientAuth"),
    ] {
        std::fs::write(
            dir.join(format!("{name}.ext")),
            format!(
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage={usage}\n\
                 basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
            ),
        )
        .unwrap();
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=etcd"]);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }
    (
        Tls {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            client_cert_auth: true,
        },
        (dir.join("client.pem"), dir.join("client.key")),
    )
}

#[tokio::test]
async fn tls_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, identity) = certificates(dir.path());
    let cluster = start(
        1,
        Options {
            tls: Some(tls.clone()),
            ..Options::default()
        },
    )
    .await;
    let endpoints = cluster.endpoints();
    assert!(endpoints[0].starts_with("https://"), "{endpoints:?}");

    let mut with_cert = config(&endpoints);
    with_cert.ca_file = Some(tls.ca.clone());
    with_cert.client_identity = Some(identity);
    let etcd = Etcd::new(&with_cert, Duration::from_secs(3)).unwrap();
    let lease = etcd.grant(10).await.unwrap();
    assert!(matches!(
        etcd.campaign("/gw/leader", b"a", lease.id).await.unwrap(),
        Campaign::Won(_)
    ));

    // Without a client certificate the member refuses the handshake: an
    // error in bounded time, not a hang.
    let mut without = config(&endpoints);
    without.ca_file = Some(tls.ca.clone());
    let refused = Etcd::new(&without, Duration::from_secs(3)).unwrap();
    let started = Instant::now();
    assert!(matches!(
        refused.get("/gw/leader").await,
        Err(EtcdError::Unreachable(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(3));

    // Without the CA, the server's certificate is not trusted.
    let mut untrusted = config(&endpoints);
    untrusted.client_identity = with_cert.client_identity.clone();
    let untrusted = Etcd::new(&untrusted, Duration::from_secs(3)).unwrap();
    assert!(matches!(
        untrusted.get("/gw/leader").await,
        Err(EtcdError::Unreachable(_))
    ));
}

/// Turns authentication on: a root user with `password`.
async fn enable_auth(endpoint: &str, password: &str) {
    let http =
        emr_autoscaler::http::http_client(Duration::from_secs(2), Duration::from_secs(5)).unwrap();
    for (path, body) in [
        (
            "auth/user/add",
            serde_json::json!({"name": "root", "password": password}),
        ),
        (
            "auth/user/grant",
            serde_json::json!({"user": "root", "role": "root"}),
        ),
        ("auth/enable", serde_json::json!({})),
    ] {
        let r = http
            .post(format!("{endpoint}/v3/{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "{path}: {}",
            r.text().await.unwrap()
        );
    }
}

#[tokio::test]
async fn auth_tokens_are_fetched_again_when_they_expire() {
    let cluster = start(
        1,
        Options {
            auth_token_ttl: Some(1),
            ..Options::default()
        },
    )
    .await;
    let endpoints = cluster.endpoints();
    const PASSWORD: &str = "pw-MUST-NOT-LEAK-5150";
    enable_auth(&endpoints[0], PASSWORD).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();

    let mut with_user = config(&endpoints);
    with_user.user = Some(("root".into(), file.clone()));
    let etcd = Etcd::new(&with_user, Duration::from_secs(3)).unwrap();
    let lease = etcd.grant(10).await.unwrap();
    assert!(matches!(
        etcd.campaign("/gw/leader", b"a", lease.id).await.unwrap(),
        Campaign::Won(_)
    ));
    // The member forgets an idle token after its TTL (1 s here); nothing can
    // be polled without using the token, which would keep it alive.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(etcd.keep_alive(lease.id).await.unwrap() > 0);
    assert!(etcd.get("/gw/leader").await.unwrap().is_some());

    // Without a user, and with a wrong password, calls fail with an error
    // that never carries the password.
    let anonymous = Etcd::new(&config(&endpoints), Duration::from_secs(3)).unwrap();
    let err = anonymous.get("/gw/leader").await.unwrap_err();
    assert!(matches!(err, EtcdError::Unreachable(_)), "{err:?}");
    assert!(err.to_string().contains("ha.username"), "{err}");
    std::fs::write(&file, "wrong-password\n").unwrap();
    let wrong = Etcd::new(&with_user, Duration::from_secs(3)).unwrap();
    let err = wrong.get("/gw/leader").await.unwrap_err().to_string();
    assert!(err.contains("authentication failed"), "{err}");
    assert!(
        !err.contains("wrong-password") && !err.contains(PASSWORD),
        "{err}"
    );
    assert!(!format!("{etcd:?}").contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_without_quorum_refuses_at_once() {
    let mut cluster = start(3, Options::default()).await;
    let endpoints = cluster.endpoints();
    let all = Etcd::new(&config(&endpoints), Duration::from_secs(5)).unwrap();
    let lease = all.grant(10).await.unwrap();
    assert!(matches!(
        all.campaign("/gw/leader", b"a", lease.id).await.unwrap(),
        Campaign::Won(_)
    ));
    tokio::task::block_in_place(|| {
        cluster.stop(1);
        cluster.stop(2);
    });
    // The survivor notices within its election timeout (500 ms here); from
    // then on it refuses every call at once, reads included, instead of
    // answering from its stale copy or waiting out the 5 s timeout.
    let alone = Etcd::new(&config(&endpoints[..1]), Duration::from_secs(5)).unwrap();
    eventually(Duration::from_secs(10), "the survivor refusing", || {
        let alone = alone.clone();
        async move {
            let started = Instant::now();
            match alone.get("/gw/leader").await {
                Err(EtcdError::Unreachable(m)) if m.contains("no leader") => {
                    assert!(started.elapsed() < Duration::from_secs(2), "{m}");
                    true
                }
                _ => false,
            }
        }
    })
    .await;
    let started = Instant::now();
    for call in [
        alone.grant(10).await.map(|_| ()),
        alone.keep_alive(lease.id).await.map(|_| ()),
        alone
            .campaign("/gw/leader", b"b", lease.id)
            .await
            .map(|_| ()),
    ] {
        let err = call.unwrap_err().to_string();
        assert!(err.contains("no leader"), "{err}");
    }
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// The history with `[ha]`: one key per event, read newest first in pages,
/// the oldest trimmed past `history_max` plus a tenth.
#[tokio::test]
async fn history_events_page_and_trim_in_etcd() {
    use emr_autoscaler::history::log::EtcdLog;
    use emr_autoscaler::history::{Event, Kind, Log};
    let cluster = start(1, Options::default()).await;
    let etcd = Etcd::new(&config(&cluster.endpoints()), Duration::from_secs(3)).unwrap();
    let log = std::sync::Arc::new(Log::Etcd(EtcdLog::new(etcd.clone(), "/gw/", 100)));
    let at = |i: i64| chrono::DateTime::from_timestamp(1_800_000_000 + i, 0).unwrap();
    for i in 0..115 {
        let e = Event::new(
            at(i),
            "emr-abc12345",
            Kind::ScaleOut,
            "accepted",
            format!("order {i}"),
        )
        .token(Some(format!("t{i}")));
        log.append(&e).await.unwrap();
    }
    // The 111th append passed 100 + 10: the 11 oldest went; 4 came since.
    assert_eq!(etcd.count("/gw/history/").await.unwrap(), 104);
    let kept = log.load(1000).await.unwrap();
    assert_eq!(kept.len(), 104);
    assert_eq!(kept.first().unwrap().reason, "order 11");
    assert_eq!(kept.last().unwrap().reason, "order 114");
    assert!(kept.windows(2).all(|w| w[0].at < w[1].at), "oldest first");
    assert_eq!(log.load(100).await.unwrap().len(), 100);
    // A short load is the newest events.
    let newest = log.load(3).await.unwrap();
    assert_eq!(
        newest.iter().map(|e| e.reason.as_str()).collect::<Vec<_>>(),
        vec!["order 112", "order 113", "order 114"]
    );
    // A retried append (its answer lost) overwrites its own key.
    let again = Event::new(at(200), "emr-abc12345", Kind::Pause, "paused", "retried");
    log.append(&again).await.unwrap();
    log.append(&again).await.unwrap();
    assert_eq!(etcd.count("/gw/history/").await.unwrap(), 105);
    // A value that is not an event is skipped, not fatal.
    etcd.put(
        "/gw/history/99999999999999999999-zzzz",
        b"not json".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(log.load(1000).await.unwrap().len(), 105);

    // More events than one page (500) of a read.
    let many = std::sync::Arc::new(Log::Etcd(EtcdLog::new(etcd.clone(), "/gw/many/", 5000)));
    for chunk in (0..1100).collect::<Vec<i64>>().chunks(100) {
        futures_util::future::join_all(chunk.iter().map(|&i| {
            let e = Event::new(at(i), "emr-abc12345", Kind::Pause, "paused", format!("{i}"));
            let many = &many;
            async move { many.append(&e).await.unwrap() }
        }))
        .await;
    }
    let read = many.load(5000).await.unwrap();
    assert_eq!(read.len(), 1100);
    assert!(read.windows(2).all(|w| w[0].at < w[1].at), "oldest first");
    assert_eq!(many.load(700).await.unwrap()[0].reason, "400");
}
