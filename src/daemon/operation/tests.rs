//! Every state x event pair of the operation machine (an expect-test
//! snapshot), and properties over random event sequences.

use chrono::{DateTime, Duration, TimeZone, Utc};
use expect_test::expect;
use proptest::prelude::*;

use super::*;

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

/// The moment every table row is judged at: 10 minutes after the decision.
fn env() -> Env {
    Env {
        now: t(600),
        wall: t(600),
        fresh_token: ("tok-new".into(), t(600)),
        flow_timeout: Duration::minutes(30),
    }
}

fn plan() -> Plan {
    ordering(vec![20, 5])
}

/// A daemon's scale-out plan of `chunks`, driven by rule "pending".
fn ordering(chunks: Vec<u32>) -> Plan {
    Plan {
        id: "op-1".into(),
        reason: "pending memory".into(),
        source: OrderSource::Daemon,
        task_nodes_before: 10,
        work: Work::ScaleOut {
            chunks,
            kind: NodeKind::Task,
            marks: RuleMarks {
                rules: vec!["pending".into()],
                ..RuleMarks::default()
            },
            offerings: Vec::new(),
        },
    }
}

fn intent(sends: u32) -> ChunkIntent {
    ChunkIntent {
        client_token: "tok-1".into(),
        token_created_at: t(540),
        nodes: 20,
        task_nodes_before: 10,
        sends,
        first_sent_at: Some(t(540)),
        ..ChunkIntent::default()
    }
}

fn op(current: Option<ChunkIntent>) -> Operation {
    Operation {
        id: "op-1".into(),
        created_at: t(0),
        chunks: vec![20, 5],
        next_chunk: 0,
        task_nodes_before: 10,
        reason: "pending memory".into(),
        current,
        ..Operation::default()
    }
}

fn counted(mut c: ChunkIntent) -> ChunkIntent {
    c.counted = true;
    c
}

fn states() -> Vec<(&'static str, Option<Operation>)> {
    let accepted = ChunkIntent {
        accepted: true,
        flow_id: Some(77),
        sent_at: Some(t(541)),
        ..counted(intent(1))
    };
    let counted_op = |c: ChunkIntent| Operation {
        counted_nodes: 20,
        ..op(Some(c))
    };
    vec![
        ("none", None),
        (
            "between chunks",
            Some(Operation {
                next_chunk: 1,
                completed_nodes: 20,
                counted_nodes: 20,
                wait_capacity_after: Some(t(580)),
                ..op(None)
            }),
        ),
        ("sending, first send", Some(op(Some(intent(1))))),
        (
            "sending, re-send",
            Some(counted_op(ChunkIntent {
                unknown_since: None,
                ..counted(intent(2))
            })),
        ),
        ("in flow", Some(counted_op(accepted.clone()))),
        (
            "in flow, 40 min old",
            Some(counted_op(ChunkIntent {
                first_sent_at: Some(t(600 - 2400)),
                ..accepted.clone()
            })),
        ),
        (
            "in flow, stuck",
            Some(counted_op(ChunkIntent {
                stuck: true,
                flow_unreadable: Some("UnauthorizedOperation".into()),
                ..accepted.clone()
            })),
        ),
        (
            "accepted, no flow id",
            Some(counted_op(ChunkIntent {
                flow_id: None,
                ..accepted.clone()
            })),
        ),
        (
            "unknown, young token",
            Some(counted_op(ChunkIntent {
                unknown_since: Some(t(560)),
                ..counted(intent(1))
            })),
        ),
        (
            "unknown, old token",
            Some(counted_op(ChunkIntent {
                unknown_since: Some(t(560)),
                token_created_at: t(0),
                ..counted(intent(1))
            })),
        ),
        (
            "in flow, stopping",
            Some(Operation {
                stopping: true,
                ..counted_op(accepted)
            }),
        ),
        (
            "sending through offering a (of a, b)",
            Some(Operation {
                offerings: vec!["a".into(), "b".into()],
                ..op(Some(ChunkIntent {
                    offering: Some("a".into()),
                    ..intent(1)
                }))
            }),
        ),
        (
            "sending through offering b (a refused)",
            Some(Operation {
                offerings: vec!["a".into(), "b".into()],
                refused_offerings: vec!["a".into()],
                ..op(Some(ChunkIntent {
                    offering: Some("b".into()),
                    ..intent(1)
                }))
            }),
        ),
    ]
}

fn failed(class: ErrorClass, code: &str, sent_attempts: u32) -> Event {
    Event::Answered(Answer::Failed {
        class,
        code: (!code.is_empty()).then(|| code.to_string()),
        sent_attempts,
        token_expired: false,
    })
}

fn cap(secs: i64, status: i64, nodes: u32) -> Option<Capacity> {
    Some(Capacity {
        at: t(secs),
        status: Some(status),
        task_nodes: Some(nodes),
    })
}

fn events() -> Vec<(&'static str, Event)> {
    use ErrorClass::*;
    vec![
        ("decided", Event::Decided(plan())),
        (
            "accepted(flow 77)",
            Event::Answered(Answer::Accepted { flow_id: Some(77) }),
        ),
        (
            "accepted(no flow)",
            Event::Answered(Answer::Accepted { flow_id: None }),
        ),
        ("throttled x1", failed(Throttled, "RequestLimitExceeded", 1)),
        (
            "in-process x1",
            failed(Busy, "ResourceInUse.InstanceInProcess", 1),
        ),
        (
            "in-process x2",
            failed(Busy, "ResourceInUse.InstanceInProcess", 2),
        ),
        (
            "duplicate x1",
            failed(Busy, "FailedOperation.DuplicateOrderNotAllowed", 1),
        ),
        ("sold out x1", failed(SoldOut, "ResourcesSoldOut", 1)),
        (
            "invalid zone x1",
            failed(Invalid, "InvalidParameter.InvalidZone", 1),
        ),
        (
            "invalid x1",
            failed(Invalid, "InvalidParameterValue.TaskCount", 1),
        ),
        ("auth x1", failed(Auth, "AuthFailure.SignatureFailure", 1)),
        ("not found x1", failed(NotFound, "ResourceNotFound", 1)),
        ("internal x1", failed(Internal, "InternalError", 1)),
        ("transport x3", failed(Transport, "", 3)),
        ("timeout x1", failed(Timeout, "", 1)),
        ("not sent", failed(Auth, "", 0)),
        (
            "token expired",
            Event::Answered(Answer::Failed {
                class: Transport,
                code: None,
                sent_attempts: 2,
                token_expired: true,
            }),
        ),
        ("flow running", Event::FlowRead(Flow::Running)),
        ("flow done", Event::FlowRead(Flow::Done)),
        ("flow failed", Event::FlowRead(Flow::Failed)),
        ("flow blocked", Event::FlowRead(Flow::Blocked)),
        (
            "flow unreadable",
            Event::FlowUnreadable {
                error: "UnauthorizedOperation".into(),
            },
        ),
        ("tick, no capacity", Event::Tick(None)),
        ("tick, idle 30", Event::Tick(cap(590, 2, 30))),
        ("tick, idle 10", Event::Tick(cap(590, 2, 10))),
        ("tick, scaling", Event::Tick(cap(590, 4, 10))),
        ("tick, idle, stale", Event::Tick(cap(500, 2, 30))),
        ("pause", Event::Pause),
        ("resume", Event::Resume),
        ("restart", Event::Restart),
    ]
}

fn show_effect(e: &Effect) -> String {
    match e {
        Effect::CountOrder { token, nodes } => format!("count({token},{nodes})"),
        Effect::UncountOrder { token } => format!("uncount({token})"),
        Effect::MarkRules(_) => "mark".into(),
        Effect::StartCooldown => "cooldown".into(),
        Effect::Backoff(c) => format!("backoff({c})"),
        Effect::OpenBreaker { flow_id, .. } => format!("breaker({flow_id:?})"),
        Effect::FlowEnded(f) => format!("ended({f})"),
        Effect::Arrived(n) => format!("arrived({n})"),
        Effect::Save => "save".into(),
        Effect::Send {
            token,
            nodes,
            chunk,
            resend,
            offering,
            ..
        } => format!(
            "{}({token},{nodes},{}/{}{})",
            if *resend { "RESEND" } else { "SEND" },
            chunk.0,
            chunk.1,
            offering
                .as_ref()
                .map_or_else(String::new, |o| format!("@{o}"))
        ),
        Effect::OfferingRefused { offering, code } => format!("refused({offering}:{code})"),
        Effect::ReadFlow(f) => format!("read({f})"),
        Effect::FlowFailed(f) => format!("failed({f})"),
        Effect::Judged {
            executed, running, ..
        } => format!("judged({}@{running})", if *executed { "yes" } else { "no" }),
        Effect::Close(o) => format!("CLOSE({})", o.label()),
        Effect::Terminate { nodes, resend, .. } => format!(
            "{}({})",
            if *resend { "RE-TERMINATE" } else { "TERMINATE" },
            nodes.join("+")
        ),
        Effect::ListNodes => "list-nodes".into(),
        Effect::Removed(n) => format!("removed({n})"),
    }
}

fn show_op(op: &Option<Operation>) -> String {
    match op {
        None => "-".into(),
        Some(op) => {
            let mut s = format!("{:?}", phase(op));
            if let Some(c) = &op.current {
                s += &format!(" {}#{}", c.client_token, c.sends);
                if c.judge_only {
                    s += " judge-only";
                }
                if c.stuck {
                    s += " stuck";
                }
                if c.flow_unreadable.is_some() {
                    s += " unreadable";
                }
            }
            if op.stopping {
                s += " stopping";
            }
            if op.resolve {
                s += " resolve";
            }
            s
        }
    }
}

#[test]
fn every_state_and_event() {
    let mut out = String::new();
    for (state_name, state) in states() {
        out += &format!("## {state_name}\n");
        for (event_name, event) in events() {
            let s = step(state.clone(), event, &env());
            let effects: Vec<String> = s.effects.iter().map(show_effect).collect();
            out += &format!(
                "{event_name:<18} -> {:<28} {}\n",
                show_op(&s.op),
                effects.join(" ")
            );
        }
    }
    expect![[r#"
        ## none
        decided            -> Sending tok-new#1            save SEND(tok-new,20,1/2)
        accepted(flow 77)  -> -                            
        accepted(no flow)  -> -                            
        throttled x1       -> -                            
        in-process x1      -> -                            
        in-process x2      -> -                            
        duplicate x1       -> -                            
        sold out x1        -> -                            
        invalid zone x1    -> -                            
        invalid x1         -> -                            
        auth x1            -> -                            
        not found x1       -> -                            
        internal x1        -> -                            
        transport x3       -> -                            
        timeout x1         -> -                            
        not sent           -> -                            
        token expired      -> -                            
        flow running       -> -                            
        flow done          -> -                            
        flow failed        -> -                            
        flow blocked       -> -                            
        flow unreadable    -> -                            
        tick, no capacity  -> -                            
        tick, idle 30      -> -                            
        tick, idle 10      -> -                            
        tick, scaling      -> -                            
        tick, idle, stale  -> -                            
        pause              -> -                            
        resume             -> -                            
        restart            -> -                            
        ## between chunks
        decided            -> BetweenChunks                
        accepted(flow 77)  -> BetweenChunks                
        accepted(no flow)  -> BetweenChunks                
        throttled x1       -> BetweenChunks                
        in-process x1      -> BetweenChunks                
        in-process x2      -> BetweenChunks                
        duplicate x1       -> BetweenChunks                
        sold out x1        -> BetweenChunks                
        invalid zone x1    -> BetweenChunks                
        invalid x1         -> BetweenChunks                
        auth x1            -> BetweenChunks                
        not found x1       -> BetweenChunks                
        internal x1        -> BetweenChunks                
        transport x3       -> BetweenChunks                
        timeout x1         -> BetweenChunks                
        not sent           -> BetweenChunks                
        token expired      -> BetweenChunks                
        flow running       -> BetweenChunks                
        flow done          -> BetweenChunks                
        flow failed        -> BetweenChunks                
        flow blocked       -> BetweenChunks                
        flow unreadable    -> BetweenChunks                
        tick, no capacity  -> BetweenChunks                
        tick, idle 30      -> Sending tok-new#1            save SEND(tok-new,5,2/2)
        tick, idle 10      -> Sending tok-new#1            save SEND(tok-new,5,2/2)
        tick, scaling      -> BetweenChunks                
        tick, idle, stale  -> BetweenChunks                
        pause              -> -                            cooldown save CLOSE(stopped)
        resume             -> BetweenChunks                
        restart            -> BetweenChunks                
        ## sending, first send
        decided            -> Sending tok-1#1              
        accepted(flow 77)  -> InFlow tok-1#1               count(tok-1,20) mark save
        accepted(no flow)  -> AcceptedNoFlow tok-1#1       count(tok-1,20) mark save
        throttled x1       -> -                            save CLOSE(refused)
        in-process x1      -> -                            save CLOSE(refused)
        in-process x2      -> Unknown tok-1#1              count(tok-1,20) mark save
        duplicate x1       -> Unknown tok-1#1              count(tok-1,20) mark save
        sold out x1        -> -                            backoff(sold_out) save CLOSE(refused)
        invalid zone x1    -> -                            backoff(invalid) save CLOSE(refused)
        invalid x1         -> -                            backoff(invalid) save CLOSE(refused)
        auth x1            -> -                            backoff(auth) save CLOSE(refused)
        not found x1       -> -                            backoff(not_found) save CLOSE(refused)
        internal x1        -> Unknown tok-1#1              count(tok-1,20) mark save
        transport x3       -> Unknown tok-1#1              count(tok-1,20) mark save
        timeout x1         -> Unknown tok-1#1              count(tok-1,20) mark save
        not sent           -> -                            backoff(auth) save CLOSE(refused)
        token expired      -> Unknown tok-1#1              count(tok-1,20) mark save
        flow running       -> Sending tok-1#1              
        flow done          -> Sending tok-1#1              
        flow failed        -> Sending tok-1#1              
        flow blocked       -> Sending tok-1#1              
        flow unreadable    -> Sending tok-1#1              
        tick, no capacity  -> Unknown tok-1#1              count(tok-1,20) mark save
        tick, idle 30      -> Unknown tok-1#1              count(tok-1,20) mark save
        tick, idle 10      -> Unknown tok-1#1              count(tok-1,20) mark save
        tick, scaling      -> Unknown tok-1#1              count(tok-1,20) mark save
        tick, idle, stale  -> Unknown tok-1#1              count(tok-1,20) mark save
        pause              -> Sending tok-1#1 stopping     save
        resume             -> Sending tok-1#1              
        restart            -> Unknown tok-1#1              count(tok-1,20) mark save
        ## sending, re-send
        decided            -> Sending tok-1#2              
        accepted(flow 77)  -> InFlow tok-1#2               mark save
        accepted(no flow)  -> AcceptedNoFlow tok-1#2       mark save
        throttled x1       -> Unknown tok-1#2              mark save
        in-process x1      -> Unknown tok-1#2              mark save
        in-process x2      -> Unknown tok-1#2              mark save
        duplicate x1       -> Unknown tok-1#2              mark save
        sold out x1        -> Unknown tok-1#2 judge-only   mark save
        invalid zone x1    -> Unknown tok-1#2 judge-only   mark save
        invalid x1         -> Unknown tok-1#2 judge-only   mark save
        auth x1            -> Unknown tok-1#2 judge-only   mark save
        not found x1       -> Unknown tok-1#2 judge-only   mark save
        internal x1        -> Unknown tok-1#2              mark save
        transport x3       -> Unknown tok-1#2              mark save
        timeout x1         -> Unknown tok-1#2              mark save
        not sent           -> Unknown tok-1#2 judge-only   mark save
        token expired      -> Unknown tok-1#2              mark save
        flow running       -> Sending tok-1#2              
        flow done          -> Sending tok-1#2              
        flow failed        -> Sending tok-1#2              
        flow blocked       -> Sending tok-1#2              
        flow unreadable    -> Sending tok-1#2              
        tick, no capacity  -> Unknown tok-1#2              mark save
        tick, idle 30      -> Unknown tok-1#2              mark save
        tick, idle 10      -> Unknown tok-1#2              mark save
        tick, scaling      -> Unknown tok-1#2              mark save
        tick, idle, stale  -> Unknown tok-1#2              mark save
        pause              -> Sending tok-1#2 stopping     save
        resume             -> Sending tok-1#2              
        restart            -> Unknown tok-1#2              mark save
        ## in flow
        decided            -> InFlow tok-1#1               
        accepted(flow 77)  -> InFlow tok-1#1               
        accepted(no flow)  -> InFlow tok-1#1               
        throttled x1       -> InFlow tok-1#1               
        in-process x1      -> InFlow tok-1#1               
        in-process x2      -> InFlow tok-1#1               
        duplicate x1       -> InFlow tok-1#1               
        sold out x1        -> InFlow tok-1#1               
        invalid zone x1    -> InFlow tok-1#1               
        invalid x1         -> InFlow tok-1#1               
        auth x1            -> InFlow tok-1#1               
        not found x1       -> InFlow tok-1#1               
        internal x1        -> InFlow tok-1#1               
        transport x3       -> InFlow tok-1#1               
        timeout x1         -> InFlow tok-1#1               
        not sent           -> InFlow tok-1#1               
        token expired      -> InFlow tok-1#1               
        flow running       -> InFlow tok-1#1               
        flow done          -> BetweenChunks                ended(77) arrived(20) save
        flow failed        -> -                            ended(77) failed(77) cooldown save CLOSE(flow_failed)
        flow blocked       -> -                            ended(77) failed(77) cooldown save CLOSE(flow_failed)
        flow unreadable    -> InFlow tok-1#1 unreadable    save
        tick, no capacity  -> InFlow tok-1#1               read(77)
        tick, idle 30      -> InFlow tok-1#1               read(77)
        tick, idle 10      -> InFlow tok-1#1               read(77)
        tick, scaling      -> InFlow tok-1#1               read(77)
        tick, idle, stale  -> InFlow tok-1#1               read(77)
        pause              -> InFlow tok-1#1 stopping      save
        resume             -> InFlow tok-1#1               
        restart            -> InFlow tok-1#1               
        ## in flow, 40 min old
        decided            -> InFlow tok-1#1               
        accepted(flow 77)  -> InFlow tok-1#1               
        accepted(no flow)  -> InFlow tok-1#1               
        throttled x1       -> InFlow tok-1#1               
        in-process x1      -> InFlow tok-1#1               
        in-process x2      -> InFlow tok-1#1               
        duplicate x1       -> InFlow tok-1#1               
        sold out x1        -> InFlow tok-1#1               
        invalid zone x1    -> InFlow tok-1#1               
        invalid x1         -> InFlow tok-1#1               
        auth x1            -> InFlow tok-1#1               
        not found x1       -> InFlow tok-1#1               
        internal x1        -> InFlow tok-1#1               
        transport x3       -> InFlow tok-1#1               
        timeout x1         -> InFlow tok-1#1               
        not sent           -> InFlow tok-1#1               
        token expired      -> InFlow tok-1#1               
        flow running       -> InFlow tok-1#1 stuck         breaker(Some(77)) save
        flow done          -> BetweenChunks                ended(77) arrived(20) save
        flow failed        -> -                            ended(77) failed(77) cooldown save CLOSE(flow_failed)
        flow blocked       -> -                            ended(77) failed(77) cooldown save CLOSE(flow_failed)
        flow unreadable    -> InFlow tok-1#1 stuck unreadable breaker(Some(77)) save
        tick, no capacity  -> InFlow tok-1#1 stuck         breaker(Some(77)) save read(77)
        tick, idle 30      -> InFlow tok-1#1 stuck         breaker(Some(77)) save read(77)
        tick, idle 10      -> InFlow tok-1#1 stuck         breaker(Some(77)) save read(77)
        tick, scaling      -> InFlow tok-1#1 stuck         breaker(Some(77)) save read(77)
        tick, idle, stale  -> InFlow tok-1#1 stuck         breaker(Some(77)) save read(77)
        pause              -> InFlow tok-1#1 stopping      save
        resume             -> InFlow tok-1#1               
        restart            -> InFlow tok-1#1               
        ## in flow, stuck
        decided            -> InFlow tok-1#1 stuck unreadable 
        accepted(flow 77)  -> InFlow tok-1#1 stuck unreadable 
        accepted(no flow)  -> InFlow tok-1#1 stuck unreadable 
        throttled x1       -> InFlow tok-1#1 stuck unreadable 
        in-process x1      -> InFlow tok-1#1 stuck unreadable 
        in-process x2      -> InFlow tok-1#1 stuck unreadable 
        duplicate x1       -> InFlow tok-1#1 stuck unreadable 
        sold out x1        -> InFlow tok-1#1 stuck unreadable 
        invalid zone x1    -> InFlow tok-1#1 stuck unreadable 
        invalid x1         -> InFlow tok-1#1 stuck unreadable 
        auth x1            -> InFlow tok-1#1 stuck unreadable 
        not found x1       -> InFlow tok-1#1 stuck unreadable 
        internal x1        -> InFlow tok-1#1 stuck unreadable 
        transport x3       -> InFlow tok-1#1 stuck unreadable 
        timeout x1         -> InFlow tok-1#1 stuck unreadable 
        not sent           -> InFlow tok-1#1 stuck unreadable 
        token expired      -> InFlow tok-1#1 stuck unreadable 
        flow running       -> InFlow tok-1#1 stuck         save
        flow done          -> BetweenChunks                ended(77) arrived(20) save
        flow failed        -> -                            ended(77) failed(77) cooldown save CLOSE(flow_failed)
        flow blocked       -> -                            ended(77) failed(77) cooldown save CLOSE(flow_failed)
        flow unreadable    -> InFlow tok-1#1 stuck unreadable 
        tick, no capacity  -> InFlow tok-1#1 stuck unreadable read(77)
        tick, idle 30      -> InFlow tok-1#1 stuck unreadable read(77)
        tick, idle 10      -> InFlow tok-1#1 stuck unreadable read(77)
        tick, scaling      -> InFlow tok-1#1 stuck unreadable read(77)
        tick, idle, stale  -> InFlow tok-1#1 stuck unreadable read(77)
        pause              -> InFlow tok-1#1 stuck unreadable stopping save
        resume             -> InFlow tok-1#1 stuck unreadable resolve save
        restart            -> InFlow tok-1#1 stuck unreadable 
        ## accepted, no flow id
        decided            -> AcceptedNoFlow tok-1#1       
        accepted(flow 77)  -> AcceptedNoFlow tok-1#1       
        accepted(no flow)  -> AcceptedNoFlow tok-1#1       
        throttled x1       -> AcceptedNoFlow tok-1#1       
        in-process x1      -> AcceptedNoFlow tok-1#1       
        in-process x2      -> AcceptedNoFlow tok-1#1       
        duplicate x1       -> AcceptedNoFlow tok-1#1       
        sold out x1        -> AcceptedNoFlow tok-1#1       
        invalid zone x1    -> AcceptedNoFlow tok-1#1       
        invalid x1         -> AcceptedNoFlow tok-1#1       
        auth x1            -> AcceptedNoFlow tok-1#1       
        not found x1       -> AcceptedNoFlow tok-1#1       
        internal x1        -> AcceptedNoFlow tok-1#1       
        transport x3       -> AcceptedNoFlow tok-1#1       
        timeout x1         -> AcceptedNoFlow tok-1#1       
        not sent           -> AcceptedNoFlow tok-1#1       
        token expired      -> AcceptedNoFlow tok-1#1       
        flow running       -> AcceptedNoFlow tok-1#1       
        flow done          -> AcceptedNoFlow tok-1#1       
        flow failed        -> AcceptedNoFlow tok-1#1       
        flow blocked       -> AcceptedNoFlow tok-1#1       
        flow unreadable    -> AcceptedNoFlow tok-1#1       
        tick, no capacity  -> AcceptedNoFlow tok-1#1       
        tick, idle 30      -> BetweenChunks                arrived(20) save
        tick, idle 10      -> AcceptedNoFlow tok-1#1       
        tick, scaling      -> AcceptedNoFlow tok-1#1       save
        tick, idle, stale  -> AcceptedNoFlow tok-1#1       
        pause              -> AcceptedNoFlow tok-1#1 stopping save
        resume             -> AcceptedNoFlow tok-1#1       
        restart            -> AcceptedNoFlow tok-1#1       
        ## unknown, young token
        decided            -> Unknown tok-1#1              
        accepted(flow 77)  -> Unknown tok-1#1              
        accepted(no flow)  -> Unknown tok-1#1              
        throttled x1       -> Unknown tok-1#1              
        in-process x1      -> Unknown tok-1#1              
        in-process x2      -> Unknown tok-1#1              
        duplicate x1       -> Unknown tok-1#1              
        sold out x1        -> Unknown tok-1#1              
        invalid zone x1    -> Unknown tok-1#1              
        invalid x1         -> Unknown tok-1#1              
        auth x1            -> Unknown tok-1#1              
        not found x1       -> Unknown tok-1#1              
        internal x1        -> Unknown tok-1#1              
        transport x3       -> Unknown tok-1#1              
        timeout x1         -> Unknown tok-1#1              
        not sent           -> Unknown tok-1#1              
        token expired      -> Unknown tok-1#1              
        flow running       -> Unknown tok-1#1              
        flow done          -> Unknown tok-1#1              
        flow failed        -> Unknown tok-1#1              
        flow blocked       -> Unknown tok-1#1              
        flow unreadable    -> Unknown tok-1#1              
        tick, no capacity  -> Unknown tok-1#1              
        tick, idle 30      -> Sending tok-1#2              save RESEND(tok-1,20,1/2)
        tick, idle 10      -> Sending tok-1#2              save RESEND(tok-1,20,1/2)
        tick, scaling      -> Unknown tok-1#1              
        tick, idle, stale  -> Unknown tok-1#1              
        pause              -> Unknown tok-1#1 stopping     save
        resume             -> Unknown tok-1#1              
        restart            -> Unknown tok-1#1              
        ## unknown, old token
        decided            -> Unknown tok-1#1              
        accepted(flow 77)  -> Unknown tok-1#1              
        accepted(no flow)  -> Unknown tok-1#1              
        throttled x1       -> Unknown tok-1#1              
        in-process x1      -> Unknown tok-1#1              
        in-process x2      -> Unknown tok-1#1              
        duplicate x1       -> Unknown tok-1#1              
        sold out x1        -> Unknown tok-1#1              
        invalid zone x1    -> Unknown tok-1#1              
        invalid x1         -> Unknown tok-1#1              
        auth x1            -> Unknown tok-1#1              
        not found x1       -> Unknown tok-1#1              
        internal x1        -> Unknown tok-1#1              
        transport x3       -> Unknown tok-1#1              
        timeout x1         -> Unknown tok-1#1              
        not sent           -> Unknown tok-1#1              
        token expired      -> Unknown tok-1#1              
        flow running       -> Unknown tok-1#1              
        flow done          -> Unknown tok-1#1              
        flow failed        -> Unknown tok-1#1              
        flow blocked       -> Unknown tok-1#1              
        flow unreadable    -> Unknown tok-1#1              
        tick, no capacity  -> Unknown tok-1#1              
        tick, idle 30      -> BetweenChunks                judged(yes@30) mark arrived(20) save
        tick, idle 10      -> -                            judged(no@10) uncount(tok-1) save CLOSE(not_executed)
        tick, scaling      -> Unknown tok-1#1              
        tick, idle, stale  -> Unknown tok-1#1              
        pause              -> Unknown tok-1#1 stopping     save
        resume             -> Unknown tok-1#1              
        restart            -> Unknown tok-1#1              
        ## in flow, stopping
        decided            -> InFlow tok-1#1 stopping      
        accepted(flow 77)  -> InFlow tok-1#1 stopping      
        accepted(no flow)  -> InFlow tok-1#1 stopping      
        throttled x1       -> InFlow tok-1#1 stopping      
        in-process x1      -> InFlow tok-1#1 stopping      
        in-process x2      -> InFlow tok-1#1 stopping      
        duplicate x1       -> InFlow tok-1#1 stopping      
        sold out x1        -> InFlow tok-1#1 stopping      
        invalid zone x1    -> InFlow tok-1#1 stopping      
        invalid x1         -> InFlow tok-1#1 stopping      
        auth x1            -> InFlow tok-1#1 stopping      
        not found x1       -> InFlow tok-1#1 stopping      
        internal x1        -> InFlow tok-1#1 stopping      
        transport x3       -> InFlow tok-1#1 stopping      
        timeout x1         -> InFlow tok-1#1 stopping      
        not sent           -> InFlow tok-1#1 stopping      
        token expired      -> InFlow tok-1#1 stopping      
        flow running       -> InFlow tok-1#1 stopping      
        flow done          -> -                            ended(77) arrived(20) cooldown save CLOSE(stopped)
        flow failed        -> -                            ended(77) failed(77) cooldown save CLOSE(flow_failed)
        flow blocked       -> -                            ended(77) failed(77) cooldown save CLOSE(flow_failed)
        flow unreadable    -> InFlow tok-1#1 unreadable stopping save
        tick, no capacity  -> InFlow tok-1#1 stopping      read(77)
        tick, idle 30      -> InFlow tok-1#1 stopping      read(77)
        tick, idle 10      -> InFlow tok-1#1 stopping      read(77)
        tick, scaling      -> InFlow tok-1#1 stopping      read(77)
        tick, idle, stale  -> InFlow tok-1#1 stopping      read(77)
        pause              -> InFlow tok-1#1 stopping      
        resume             -> InFlow tok-1#1               save
        restart            -> InFlow tok-1#1 stopping      
        ## sending through offering a (of a, b)
        decided            -> Sending tok-1#1              
        accepted(flow 77)  -> InFlow tok-1#1               count(tok-1,20) mark save
        accepted(no flow)  -> AcceptedNoFlow tok-1#1       count(tok-1,20) mark save
        throttled x1       -> -                            save CLOSE(refused)
        in-process x1      -> -                            save CLOSE(refused)
        in-process x2      -> Unknown tok-1#1              count(tok-1,20) mark save
        duplicate x1       -> Unknown tok-1#1              count(tok-1,20) mark save
        sold out x1        -> Sending tok-new#1            refused(a:ResourcesSoldOut) save SEND(tok-new,20,1/2@b)
        invalid zone x1    -> Sending tok-new#1            refused(a:InvalidParameter.InvalidZone) save SEND(tok-new,20,1/2@b)
        invalid x1         -> -                            backoff(invalid) save CLOSE(refused)
        auth x1            -> -                            backoff(auth) save CLOSE(refused)
        not found x1       -> -                            backoff(not_found) save CLOSE(refused)
        internal x1        -> Unknown tok-1#1              count(tok-1,20) mark save
        transport x3       -> Unknown tok-1#1              count(tok-1,20) mark save
        timeout x1         -> Unknown tok-1#1              count(tok-1,20) mark save
        not sent           -> -                            backoff(auth) save CLOSE(refused)
        token expired      -> Unknown tok-1#1              count(tok-1,20) mark save
        flow running       -> Sending tok-1#1              
        flow done          -> Sending tok-1#1              
        flow failed        -> Sending tok-1#1              
        flow blocked       -> Sending tok-1#1              
        flow unreadable    -> Sending tok-1#1              
        tick, no capacity  -> Unknown tok-1#1              count(tok-1,20) mark save
        tick, idle 30      -> Unknown tok-1#1              count(tok-1,20) mark save
        tick, idle 10      -> Unknown tok-1#1              count(tok-1,20) mark save
        tick, scaling      -> Unknown tok-1#1              count(tok-1,20) mark save
        tick, idle, stale  -> Unknown tok-1#1              count(tok-1,20) mark save
        pause              -> Sending tok-1#1 stopping     save
        resume             -> Sending tok-1#1              
        restart            -> Unknown tok-1#1              count(tok-1,20) mark save
        ## sending through offering b (a refused)
        decided            -> Sending tok-1#1              
        accepted(flow 77)  -> InFlow tok-1#1               count(tok-1,20) mark save
        accepted(no flow)  -> AcceptedNoFlow tok-1#1       count(tok-1,20) mark save
        throttled x1       -> -                            save CLOSE(refused)
        in-process x1      -> -                            save CLOSE(refused)
        in-process x2      -> Unknown tok-1#1              count(tok-1,20) mark save
        duplicate x1       -> Unknown tok-1#1              count(tok-1,20) mark save
        sold out x1        -> -                            refused(b:ResourcesSoldOut) backoff(sold_out) save CLOSE(refused)
        invalid zone x1    -> -                            refused(b:InvalidParameter.InvalidZone) backoff(sold_out) save CLOSE(refused)
        invalid x1         -> -                            backoff(invalid) save CLOSE(refused)
        auth x1            -> -                            backoff(auth) save CLOSE(refused)
        not found x1       -> -                            backoff(not_found) save CLOSE(refused)
        internal x1        -> Unknown tok-1#1              count(tok-1,20) mark save
        transport x3       -> Unknown tok-1#1              count(tok-1,20) mark save
        timeout x1         -> Unknown tok-1#1              count(tok-1,20) mark save
        not sent           -> -                            backoff(auth) save CLOSE(refused)
        token expired      -> Unknown tok-1#1              count(tok-1,20) mark save
        flow running       -> Sending tok-1#1              
        flow done          -> Sending tok-1#1              
        flow failed        -> Sending tok-1#1              
        flow blocked       -> Sending tok-1#1              
        flow unreadable    -> Sending tok-1#1              
        tick, no capacity  -> Unknown tok-1#1              count(tok-1,20) mark save
        tick, idle 30      -> Unknown tok-1#1              count(tok-1,20) mark save
        tick, idle 10      -> Unknown tok-1#1              count(tok-1,20) mark save
        tick, scaling      -> Unknown tok-1#1              count(tok-1,20) mark save
        tick, idle, stale  -> Unknown tok-1#1              count(tok-1,20) mark save
        pause              -> Sending tok-1#1 stopping     save
        resume             -> Sending tok-1#1              
        restart            -> Unknown tok-1#1              count(tok-1,20) mark save
    "#]].assert_eq(&out);
}

#[test]
fn the_one_rule() {
    use ErrorClass::*;
    let f = |class, code: &str, sent, first| {
        verdict(
            &Answer::Failed {
                class,
                code: (!code.is_empty()).then(|| code.to_string()),
                sent_attempts: sent,
                token_expired: false,
            },
            first,
        )
    };
    // The lost answer, then InstanceInProcess on the retry: may have executed.
    assert_eq!(
        f(Busy, "ResourceInUse.InstanceInProcess", 2, true),
        Verdict::Unknown
    );
    // The first attempt of a new token: the flow was checked, nothing ran.
    assert_eq!(
        f(Busy, "ResourceInUse.InstanceInProcess", 1, true),
        Verdict::NotExecuted
    );
    // A re-send after a restart: may have executed.
    assert_eq!(
        f(Busy, "ResourceInUse.InstanceInProcess", 1, false),
        Verdict::Unknown
    );
    assert_eq!(
        f(Busy, "FailedOperation.DuplicateOrderNotAllowed", 1, true),
        Verdict::Unknown
    );
    for class in [Transport, Timeout, Internal] {
        assert_eq!(f(class, "", 1, true), Verdict::Unknown, "{class}");
    }
    for class in [Throttled, SoldOut, Invalid, Auth, NotFound] {
        assert_eq!(f(class, "X", 1, true), Verdict::NotExecuted, "{class}");
        assert_eq!(f(class, "X", 2, true), Verdict::Unknown, "{class}");
    }
    assert_eq!(f(Auth, "", 0, true), Verdict::NotExecuted);
    assert_eq!(f(Auth, "", 0, false), Verdict::Unknown);
    assert_eq!(
        verdict(&Answer::Accepted { flow_id: None }, false),
        Verdict::Executed
    );
}

/// The world's answers in the random sequences.
#[derive(Debug, Clone)]
enum Input {
    Answer(u8, u32),
    Accepted(bool),
    Flow(u8),
    Unreadable,
    Tick(u8, u32),
    NoCapacity,
    Pause,
    Resume,
    Restart,
    Decided(u32),
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        (0u8..10, 0u32..4).prop_map(|(c, n)| Input::Answer(c, n)),
        any::<bool>().prop_map(Input::Accepted),
        (0u8..4).prop_map(Input::Flow),
        Just(Input::Unreadable),
        (0u8..4, 0u32..80).prop_map(|(s, n)| Input::Tick(s, n)),
        Just(Input::NoCapacity),
        Just(Input::Pause),
        Just(Input::Resume),
        Just(Input::Restart),
        (1u32..70).prop_map(Input::Decided),
    ]
}

fn event_of(i: &Input, now: DateTime<Utc>) -> Event {
    let classes = ErrorClass::ALL;
    match i {
        Input::Answer(c, n) => {
            let class = classes[usize::from(*c) % classes.len()];
            let code = match c {
                1 => Some("ResourceInUse.InstanceInProcess".to_string()),
                9 => Some("FailedOperation.DuplicateOrderNotAllowed".to_string()),
                _ => None,
            };
            let class = if *c == 9 { ErrorClass::Busy } else { class };
            Event::Answered(Answer::Failed {
                class,
                code,
                sent_attempts: *n,
                token_expired: *c == 8,
            })
        }
        Input::Accepted(flow) => Event::Answered(Answer::Accepted {
            flow_id: flow.then_some(5),
        }),
        Input::Flow(f) => Event::FlowRead(
            [Flow::Running, Flow::Done, Flow::Failed, Flow::Blocked][usize::from(*f)],
        ),
        Input::Unreadable => Event::FlowUnreadable { error: "x".into() },
        Input::Tick(s, n) => Event::Tick(Some(Capacity {
            at: now,
            status: Some([2, 4, 302, 16][usize::from(*s)]),
            task_nodes: Some(*n),
        })),
        Input::NoCapacity => Event::Tick(None),
        Input::Pause => Event::Pause,
        Input::Resume => Event::Resume,
        Input::Restart => Event::Restart,
        Input::Decided(n) => Event::Decided(ordering(crate::policy::chunks(*n))),
    }
}

/// What the properties track about one operation.
#[derive(Default)]
struct Seen {
    decided: u32,
    /// Token per chunk index.
    tokens: Vec<(usize, String, u32)>,
}

fn check_effects(
    before: &Option<Operation>,
    s: &Step,
    seen: &mut Seen,
) -> Result<(), TestCaseError> {
    let mut saved = false;
    for e in &s.effects {
        match e {
            Effect::Save => saved = true,
            Effect::Send {
                token,
                nodes,
                chunk,
                ..
            } => {
                prop_assert!(saved, "a send before its intent was saved");
                let idx = chunk.0 - 1;
                if let Some((_, t, _)) = seen.tokens.iter().find(|(i, _, _)| *i == idx) {
                    prop_assert_eq!(t, token, "chunk {} sent under a second token", idx);
                } else {
                    // A new chunk: every earlier chunk must be settled.
                    let prev = before.as_ref().and_then(|o| o.current.as_ref());
                    prop_assert!(
                        prev.is_none() || prev.is_some_and(|c| c.client_token == *token),
                        "a new token while the current chunk may have executed"
                    );
                    seen.tokens.push((idx, token.clone(), *nodes));
                }
                let sent: u32 = seen.tokens.iter().map(|(_, _, n)| n).sum();
                prop_assert!(
                    sent <= seen.decided,
                    "sent {sent} > decided {}",
                    seen.decided
                );
            }
            _ => {}
        }
        if matches!(
            e,
            Effect::Send { .. }
                | Effect::ReadFlow(_)
                | Effect::Terminate { .. }
                | Effect::ListNodes
        ) {
            prop_assert!(s.effects.last() == Some(e), "a call is the last effect");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_two_tokens_never_more_than_decided_always_ends(
        inputs in proptest::collection::vec((input(), 0i64..400, -30i64..400), 1..60),
    ) {
        let mut op: Option<Operation> = None;
        let mut seen = Seen::default();
        let mut now = t(0);
        let mut wall = t(0);
        let mut n = 0u32;
        let flow_timeout = Duration::minutes(30);
        for (i, (input, dt, dw)) in inputs.iter().enumerate() {
            now += Duration::seconds(*dt);
            wall += Duration::seconds(*dw);
            n += 1;
            let env = Env { now, wall, fresh_token: (format!("tok-{n}"), wall), flow_timeout };
            let event = event_of(input, now);
            if op.is_none() && let Event::Decided(p) = &event {
                let decided = match &p.work {
                    Work::ScaleOut { chunks, .. } => chunks.iter().sum(),
                    Work::ScaleIn(_) => 0,
                };
                seen = Seen { decided, tokens: vec![] };
            }
            let before = op.clone();
            let s = step(op, event, &env);
            check_effects(&before, &s, &mut seen)?;
            prop_assert!(
                s.op.is_some() || before.is_none() || s.effects.iter().any(|e| matches!(e, Effect::Close(_))),
                "step {i}: an operation vanished without a Close"
            );
            op = s.op;
        }
        // Then a cooperative world: the cluster idles with every node, each
        // send is accepted, each flow is done. The operation must end, or
        // be visibly stuck (its breaker open).
        for _ in 0..40 {
            let Some(cur) = op.clone() else { break };
            now += Duration::seconds(60);
            wall += Duration::seconds(60);
            n += 1;
            let env = Env { now, wall, fresh_token: (format!("tok-{n}"), wall), flow_timeout };
            let cap = Capacity { at: now, status: Some(2), task_nodes: Some(1000) };
            let mut s = step(Some(cur.clone()), Event::Tick(Some(cap)), &env);
            check_effects(&Some(cur), &s, &mut seen)?;
            loop {
                let next = match s.effects.iter().find(|e| matches!(e, Effect::Send { .. } | Effect::ReadFlow(_))) {
                    Some(Effect::Send { .. }) => Event::Answered(Answer::Accepted { flow_id: Some(9) }),
                    Some(Effect::ReadFlow(_)) => Event::FlowRead(Flow::Done),
                    _ => break,
                };
                let before = s.op.clone();
                s = step(s.op, next, &env);
                check_effects(&before, &s, &mut seen)?;
            }
            op = s.op;
        }
        prop_assert!(op.as_ref().is_none_or(is_stuck), "left hanging: {:?}", op);
    }
}

/// An order through offerings a, b and c.
fn through_offerings(n: u32) -> Plan {
    let mut plan = ordering(crate::policy::chunks(n));
    if let Work::ScaleOut { offerings, .. } = &mut plan.work {
        *offerings = vec!["a".into(), "b".into(), "c".into()];
    }
    plan
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// With offerings, a chunk moves to a new token (and the next offering)
    /// only in a step that records its offering's refusal, and only for an
    /// answer that certainly did not execute; no offering is tried twice by
    /// one operation; a send always names an offering, saved first.
    #[test]
    fn offerings_move_on_only_after_a_definitive_refusal(
        inputs in proptest::collection::vec((input(), 0i64..400, -30i64..400, any::<bool>()), 1..60),
    ) {
        let mut op: Option<Operation> = None;
        let mut now = t(0);
        let mut wall = t(0);
        let flow_timeout = Duration::minutes(30);
        // Per chunk index: the tokens it was sent under, with their offering.
        let mut sent: Vec<(usize, String, String)> = Vec::new();
        for (n, (input, dt, dw, sold_out)) in inputs.iter().enumerate() {
            now += Duration::seconds(*dt);
            wall += Duration::seconds(*dw);
            let env = Env { now, wall, fresh_token: (format!("tok-{n}"), wall), flow_timeout };
            let event = match (input, sold_out) {
                (Input::Decided(k), _) => Event::Decided(through_offerings(*k)),
                (Input::Answer(_, attempts), true) => Event::Answered(Answer::Failed {
                    class: ErrorClass::SoldOut,
                    code: Some("ResourcesSoldOut.CvmSoldOut".into()),
                    sent_attempts: *attempts,
                    token_expired: false,
                }),
                (other, _) => event_of(other, now),
            };
            if op.is_none() && matches!(event, Event::Decided(_)) {
                sent.clear();
            }
            let before = op.clone();
            let first_send = before.as_ref().and_then(|o| o.current.as_ref()).is_some_and(|c| c.sends <= 1);
            let definitive = match &event {
                Event::Answered(a) => verdict(a, first_send) == Verdict::NotExecuted,
                _ => false,
            };
            let s = step(op, event, &env);
            let refused: Vec<&str> = s.effects.iter().filter_map(|e| match e {
                Effect::OfferingRefused { offering, .. } => Some(offering.as_str()),
                _ => None,
            }).collect();
            prop_assert!(refused.is_empty() || definitive, "an offering refused on an answer that may have executed");
            let mut saved = false;
            for e in &s.effects {
                match e {
                    Effect::Save => saved = true,
                    Effect::Send { token, chunk, offering, .. } => {
                        prop_assert!(saved, "a send before its intent was saved");
                        let offering = offering.clone().expect("a send through offerings names one");
                        let idx = chunk.0 - 1;
                        if let Some((_, t, o)) = sent.iter().rev().find(|(i, _, _)| *i == idx) {
                            if t != token {
                                prop_assert!(refused.contains(&o.as_str()), "chunk {} re-tokened without its offering {} refusing", idx, o);
                            } else {
                                prop_assert_eq!(o, &offering, "a re-send through another offering");
                            }
                        }
                        prop_assert!(
                            !sent.iter().any(|(i, t, o)| *i == idx && t != token && *o == offering),
                            "offering {} tried twice for chunk {}", offering, idx
                        );
                        if !sent.iter().any(|(_, t, _)| t == token) {
                            sent.push((idx, token.clone(), offering));
                        }
                    }
                    _ => {}
                }
            }
            op = s.op;
        }
    }
}

// ---- Scale-in: the same machine with a named node list. ----

fn removal_plan() -> Plan {
    Plan {
        id: "op-2".into(),
        reason: "idle".into(),
        source: OrderSource::Daemon,
        task_nodes_before: 10,
        work: Work::ScaleIn(RemovalIntent {
            nodes: vec!["ins-a".into(), "ins-b".into(), "ins-c".into()],
            gone: vec![],
            grace_secs: 600,
        }),
    }
}

fn removal_op(current: ChunkIntent) -> Operation {
    Operation {
        id: "op-2".into(),
        created_at: t(0),
        chunks: vec![3],
        task_nodes_before: 10,
        reason: "idle".into(),
        current: Some(current),
        removal: match removal_plan().work {
            Work::ScaleIn(r) => Some(r),
            Work::ScaleOut { .. } => None,
        },
        ..Operation::default()
    }
}

fn removal_intent(sends: u32) -> ChunkIntent {
    ChunkIntent {
        nodes: 3,
        task_nodes_before: 10,
        sends,
        first_sent_at: Some(t(540)),
        ..ChunkIntent::default()
    }
}

fn removal_states() -> Vec<(&'static str, Option<Operation>)> {
    let accepted = ChunkIntent {
        accepted: true,
        flow_id: Some(88),
        sent_at: Some(t(541)),
        ..removal_intent(1)
    };
    vec![
        ("sending", Some(removal_op(removal_intent(1)))),
        ("re-sending", Some(removal_op(removal_intent(2)))),
        ("in flow", Some(removal_op(accepted.clone()))),
        (
            "in flow, past grace + timeout",
            Some(removal_op(ChunkIntent {
                first_sent_at: Some(t(600 - 2400 - 700)),
                ..accepted.clone()
            })),
        ),
        (
            "accepted, no flow id",
            Some(removal_op(ChunkIntent {
                flow_id: None,
                ..accepted.clone()
            })),
        ),
        (
            "unknown",
            Some(removal_op(ChunkIntent {
                unknown_since: Some(t(560)),
                ..removal_intent(1)
            })),
        ),
        (
            "unknown, stopping",
            Some(Operation {
                stopping: true,
                ..removal_op(ChunkIntent {
                    unknown_since: Some(t(560)),
                    ..removal_intent(1)
                })
            }),
        ),
        (
            "in flow, resolving",
            Some(Operation {
                resolve: true,
                ..removal_op(ChunkIntent {
                    stuck: true,
                    ..accepted
                })
            }),
        ),
    ]
}

fn removal_events() -> Vec<(&'static str, Event)> {
    use ErrorClass::*;
    vec![
        ("decided", Event::Decided(removal_plan())),
        (
            "accepted(flow 88)",
            Event::Answered(Answer::Accepted { flow_id: Some(88) }),
        ),
        (
            "in-process x1",
            failed(Busy, "ResourceInUse.InstanceInProcess", 1),
        ),
        (
            "not found x1",
            failed(NotFound, "ResourceNotFound.InstanceNotFound", 1),
        ),
        ("invalid x1", failed(Invalid, "InvalidParameter", 1)),
        ("transport x1", failed(Transport, "", 1)),
        ("not sent", failed(Auth, "", 0)),
        ("flow running", Event::FlowRead(Flow::Running)),
        ("flow done", Event::FlowRead(Flow::Done)),
        ("flow failed", Event::FlowRead(Flow::Failed)),
        ("tick, running", Event::Tick(cap(590, 2, 10))),
        ("tick, scaling in", Event::Tick(cap(590, 24, 10))),
        ("tick, 302", Event::Tick(cap(590, 302, 10))),
        ("tick, stale", Event::Tick(cap(500, 2, 10))),
        (
            "listed a b c",
            Event::NodesListed {
                listed: vec![
                    "ins-a".into(),
                    "ins-b".into(),
                    "ins-c".into(),
                    "ins-z".into(),
                ],
            },
        ),
        (
            "listed c",
            Event::NodesListed {
                listed: vec!["ins-c".into(), "ins-z".into()],
            },
        ),
        (
            "listed none",
            Event::NodesListed {
                listed: vec!["ins-z".into()],
            },
        ),
        ("pause", Event::Pause),
        ("resume", Event::Resume),
        ("restart", Event::Restart),
    ]
}

#[test]
fn every_removal_state_and_event() {
    let mut out = String::new();
    let mut all = vec![("none", None)];
    all.extend(removal_states());
    for (state_name, state) in all {
        out += &format!("## {state_name}\n");
        for (event_name, event) in removal_events() {
            let s = step(state.clone(), event, &env());
            let effects: Vec<String> = s.effects.iter().map(show_effect).collect();
            let gone =
                s.op.as_ref()
                    .and_then(|o| o.removal.as_ref())
                    .map(|r| r.gone.join("+"))
                    .filter(|g| !g.is_empty())
                    .map(|g| format!(" gone:{g}"))
                    .unwrap_or_default();
            out += &format!(
                "{event_name:<18} -> {:<28} {}\n",
                format!("{}{gone}", show_op(&s.op)),
                effects.join(" ")
            );
        }
    }
    expect![[r#"
        ## none
        decided            -> Sending #1                   save TERMINATE(ins-a+ins-b+ins-c)
        accepted(flow 88)  -> -                            
        in-process x1      -> -                            
        not found x1       -> -                            
        invalid x1         -> -                            
        transport x1       -> -                            
        not sent           -> -                            
        flow running       -> -                            
        flow done          -> -                            
        flow failed        -> -                            
        tick, running      -> -                            
        tick, scaling in   -> -                            
        tick, 302          -> -                            
        tick, stale        -> -                            
        listed a b c       -> -                            
        listed c           -> -                            
        listed none        -> -                            
        pause              -> -                            
        resume             -> -                            
        restart            -> -                            
        ## sending
        decided            -> Sending #1                   
        accepted(flow 88)  -> InFlow #1                    removed(3) save
        in-process x1      -> -                            save CLOSE(refused)
        not found x1       -> Unknown #1                   save
        invalid x1         -> -                            save CLOSE(refused)
        transport x1       -> Unknown #1                   save
        not sent           -> -                            save CLOSE(refused)
        flow running       -> Sending #1                   
        flow done          -> Sending #1                   
        flow failed        -> Sending #1                   
        tick, running      -> Unknown #1                   save
        tick, scaling in   -> Unknown #1                   save
        tick, 302          -> Unknown #1                   save
        tick, stale        -> Unknown #1                   save
        listed a b c       -> Sending #1                   
        listed c           -> Sending #1                   
        listed none        -> Sending #1                   
        pause              -> Sending #1 stopping          save
        resume             -> Sending #1                   
        restart            -> Unknown #1                   save
        ## re-sending
        decided            -> Sending #2                   
        accepted(flow 88)  -> InFlow #2                    removed(3) save
        in-process x1      -> Unknown #2                   save
        not found x1       -> Unknown #2 judge-only        save
        invalid x1         -> Unknown #2 judge-only        save
        transport x1       -> Unknown #2                   save
        not sent           -> Unknown #2 judge-only        save
        flow running       -> Sending #2                   
        flow done          -> Sending #2                   
        flow failed        -> Sending #2                   
        tick, running      -> Unknown #2                   save
        tick, scaling in   -> Unknown #2                   save
        tick, 302          -> Unknown #2                   save
        tick, stale        -> Unknown #2                   save
        listed a b c       -> Sending #2                   
        listed c           -> Sending #2                   
        listed none        -> Sending #2                   
        pause              -> Sending #2 stopping          save
        resume             -> Sending #2                   
        restart            -> Unknown #2                   save
        ## in flow
        decided            -> InFlow #1                    
        accepted(flow 88)  -> InFlow #1                    
        in-process x1      -> InFlow #1                    
        not found x1       -> InFlow #1                    
        invalid x1         -> InFlow #1                    
        transport x1       -> InFlow #1                    
        not sent           -> InFlow #1                    
        flow running       -> InFlow #1                    
        flow done          -> -                            ended(88) save CLOSE(completed)
        flow failed        -> -                            ended(88) failed(88) save CLOSE(flow_failed)
        tick, running      -> InFlow #1                    read(88)
        tick, scaling in   -> InFlow #1                    read(88)
        tick, 302          -> InFlow #1                    read(88)
        tick, stale        -> InFlow #1                    read(88)
        listed a b c       -> InFlow #1                    
        listed c           -> InFlow #1                    
        listed none        -> InFlow #1                    
        pause              -> InFlow #1 stopping           save
        resume             -> InFlow #1                    
        restart            -> InFlow #1                    
        ## in flow, past grace + timeout
        decided            -> InFlow #1                    
        accepted(flow 88)  -> InFlow #1                    
        in-process x1      -> InFlow #1                    
        not found x1       -> InFlow #1                    
        invalid x1         -> InFlow #1                    
        transport x1       -> InFlow #1                    
        not sent           -> InFlow #1                    
        flow running       -> InFlow #1 stuck              breaker(Some(88)) save
        flow done          -> -                            ended(88) save CLOSE(completed)
        flow failed        -> -                            ended(88) failed(88) save CLOSE(flow_failed)
        tick, running      -> InFlow #1 stuck              breaker(Some(88)) save read(88)
        tick, scaling in   -> InFlow #1 stuck              breaker(Some(88)) save read(88)
        tick, 302          -> InFlow #1 stuck              breaker(Some(88)) save read(88)
        tick, stale        -> InFlow #1 stuck              breaker(Some(88)) save read(88)
        listed a b c       -> InFlow #1                    
        listed c           -> InFlow #1                    
        listed none        -> InFlow #1                    
        pause              -> InFlow #1 stopping           save
        resume             -> InFlow #1                    
        restart            -> InFlow #1                    
        ## accepted, no flow id
        decided            -> AcceptedNoFlow #1            
        accepted(flow 88)  -> AcceptedNoFlow #1            
        in-process x1      -> AcceptedNoFlow #1            
        not found x1       -> AcceptedNoFlow #1            
        invalid x1         -> AcceptedNoFlow #1            
        transport x1       -> AcceptedNoFlow #1            
        not sent           -> AcceptedNoFlow #1            
        flow running       -> AcceptedNoFlow #1            
        flow done          -> AcceptedNoFlow #1            
        flow failed        -> AcceptedNoFlow #1            
        tick, running      -> AcceptedNoFlow #1            
        tick, scaling in   -> AcceptedNoFlow #1            save
        tick, 302          -> AcceptedNoFlow #1            save
        tick, stale        -> AcceptedNoFlow #1            
        listed a b c       -> -                            save CLOSE(completed)
        listed c           -> -                            save CLOSE(completed)
        listed none        -> -                            save CLOSE(completed)
        pause              -> AcceptedNoFlow #1 stopping   save
        resume             -> AcceptedNoFlow #1            
        restart            -> AcceptedNoFlow #1            
        ## unknown
        decided            -> Unknown #1                   
        accepted(flow 88)  -> Unknown #1                   
        in-process x1      -> Unknown #1                   
        not found x1       -> Unknown #1                   
        invalid x1         -> Unknown #1                   
        transport x1       -> Unknown #1                   
        not sent           -> Unknown #1                   
        flow running       -> Unknown #1                   
        flow done          -> Unknown #1                   
        flow failed        -> Unknown #1                   
        tick, running      -> Unknown #1                   list-nodes
        tick, scaling in   -> Unknown #1                   
        tick, 302          -> Unknown #1                   list-nodes
        tick, stale        -> Unknown #1                   
        listed a b c       -> Sending #2                   save RE-TERMINATE(ins-a+ins-b+ins-c)
        listed c           -> Sending #2 gone:ins-a+ins-b  save RE-TERMINATE(ins-c)
        listed none        -> -                            save CLOSE(completed)
        pause              -> Unknown #1 stopping          save
        resume             -> Unknown #1                   
        restart            -> Unknown #1                   
        ## unknown, stopping
        decided            -> Unknown #1 stopping          
        accepted(flow 88)  -> Unknown #1 stopping          
        in-process x1      -> Unknown #1 stopping          
        not found x1       -> Unknown #1 stopping          
        invalid x1         -> Unknown #1 stopping          
        transport x1       -> Unknown #1 stopping          
        not sent           -> Unknown #1 stopping          
        flow running       -> Unknown #1 stopping          
        flow done          -> Unknown #1 stopping          
        flow failed        -> Unknown #1 stopping          
        tick, running      -> Unknown #1 stopping          list-nodes
        tick, scaling in   -> Unknown #1 stopping          
        tick, 302          -> Unknown #1 stopping          list-nodes
        tick, stale        -> Unknown #1 stopping          
        listed a b c       -> -                            save CLOSE(stopped)
        listed c           -> -                            save CLOSE(stopped)
        listed none        -> -                            save CLOSE(completed)
        pause              -> Unknown #1 stopping          
        resume             -> Unknown #1                   save
        restart            -> Unknown #1 stopping          
        ## in flow, resolving
        decided            -> InFlow #1 stuck resolve      
        accepted(flow 88)  -> InFlow #1 stuck resolve      
        in-process x1      -> InFlow #1 stuck resolve      
        not found x1       -> InFlow #1 stuck resolve      
        invalid x1         -> InFlow #1 stuck resolve      
        transport x1       -> InFlow #1 stuck resolve      
        not sent           -> InFlow #1 stuck resolve      
        flow running       -> InFlow #1 stuck resolve      
        flow done          -> -                            ended(88) save CLOSE(resolved)
        flow failed        -> -                            ended(88) failed(88) save CLOSE(flow_failed)
        tick, running      -> InFlow #1 stuck resolve      list-nodes
        tick, scaling in   -> InFlow #1 stuck resolve      list-nodes
        tick, 302          -> InFlow #1 stuck resolve      list-nodes
        tick, stale        -> InFlow #1 stuck resolve      list-nodes
        listed a b c       -> -                            ended(88) save CLOSE(resolved)
        listed c           -> -                            ended(88) save CLOSE(resolved)
        listed none        -> -                            ended(88) save CLOSE(resolved)
        pause              -> InFlow #1 stuck stopping resolve save
        resume             -> InFlow #1 stuck resolve      
        restart            -> InFlow #1 stuck resolve      
    "#]].assert_eq(&out);
}

/// The world's answers to a removal, in random sequences.
#[derive(Debug, Clone)]
enum RemovalInput {
    Answer(u8, u32),
    Accepted(bool),
    Flow(u8),
    Tick(u8),
    /// Which of the 6 possible nodes are listed (a bit mask).
    Listed(u8),
    Pause,
    Resume,
    Restart,
    Decided(u8),
}

fn removal_input() -> impl Strategy<Value = RemovalInput> {
    prop_oneof![
        (0u8..10, 0u32..3).prop_map(|(c, n)| RemovalInput::Answer(c, n)),
        any::<bool>().prop_map(RemovalInput::Accepted),
        (0u8..4).prop_map(RemovalInput::Flow),
        (0u8..3).prop_map(RemovalInput::Tick),
        any::<u8>().prop_map(RemovalInput::Listed),
        Just(RemovalInput::Pause),
        Just(RemovalInput::Resume),
        Just(RemovalInput::Restart),
        (1u8..64).prop_map(RemovalInput::Decided),
    ]
}

const NODES: [&str; 6] = ["ins-0", "ins-1", "ins-2", "ins-3", "ins-4", "ins-5"];

fn masked(mask: u8) -> Vec<String> {
    NODES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, n)| n.to_string())
        .collect()
}

fn removal_event_of(i: &RemovalInput, now: DateTime<Utc>) -> Event {
    let classes = ErrorClass::ALL;
    match i {
        RemovalInput::Answer(c, n) => Event::Answered(Answer::Failed {
            class: classes[usize::from(*c) % classes.len()],
            code: None,
            sent_attempts: *n,
            token_expired: false,
        }),
        RemovalInput::Accepted(flow) => Event::Answered(Answer::Accepted {
            flow_id: flow.then_some(6),
        }),
        RemovalInput::Flow(f) => Event::FlowRead(
            [Flow::Running, Flow::Done, Flow::Failed, Flow::Blocked][usize::from(*f)],
        ),
        RemovalInput::Tick(s) => Event::Tick(Some(Capacity {
            at: now,
            status: Some([2, 24, 16][usize::from(*s)]),
            task_nodes: Some(10),
        })),
        RemovalInput::Listed(mask) => Event::NodesListed {
            listed: masked(*mask),
        },
        RemovalInput::Pause => Event::Pause,
        RemovalInput::Resume => Event::Resume,
        RemovalInput::Restart => Event::Restart,
        RemovalInput::Decided(mask) => Event::Decided(Plan {
            work: Work::ScaleIn(RemovalIntent {
                nodes: masked(*mask),
                gone: vec![],
                grace_secs: 60,
            }),
            ..removal_plan()
        }),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Over random answers, node lists and signals: a removal only ever
    /// names nodes of its decided list, never a node the list already
    /// showed gone, never re-sends before a node list read after the doubt,
    /// never counts in budgets or starts the cluster cooldown, saves before
    /// each send, and ends (or is visibly stuck) in a cooperative world.
    #[test]
    fn a_removal_names_only_its_nodes_and_always_ends(
        inputs in proptest::collection::vec((removal_input(), 0i64..400), 1..60),
    ) {
        let mut op: Option<Operation> = None;
        let mut decided: Vec<String> = vec![];
        let mut gone: Vec<String> = vec![];
        let mut now = t(0);
        let flow_timeout = Duration::minutes(30);
        let mut listed_since_doubt = true;
        for (input, dt) in &inputs {
            now += Duration::seconds(*dt);
            let env = Env { now, wall: now, fresh_token: ("tok".into(), now), flow_timeout };
            let event = removal_event_of(input, now);
            if op.is_none() && let Event::Decided(p) = &event {
                decided = match &p.work {
                    Work::ScaleIn(r) => r.nodes.clone(),
                    Work::ScaleOut { .. } => Vec::new(),
                };
                gone.clear();
                listed_since_doubt = true;
            }
            if let (Some(o), Event::NodesListed { listed }) = (&op, &event)
                && o.removal.is_some()
            {
                let ph = phase(o);
                if ph == Phase::Unknown || ph == Phase::AcceptedNoFlow || (ph == Phase::InFlow && o.resolve) {
                    for n in o.removal.as_ref().unwrap().remaining() {
                        if !listed.contains(&n) {
                            gone.push(n);
                        }
                    }
                    listed_since_doubt = true;
                }
            }
            let before = op.clone();
            let s = step(op, event, &env);
            let mut saved = false;
            for e in &s.effects {
                match e {
                    Effect::Save => saved = true,
                    Effect::Terminate { nodes, resend, .. } => {
                        prop_assert!(saved, "a removal sent before its list was saved");
                        prop_assert!(!nodes.is_empty());
                        for n in nodes {
                            prop_assert!(decided.contains(n), "{n} was not decided");
                            prop_assert!(!gone.contains(n), "{n} was already gone");
                        }
                        if *resend {
                            prop_assert!(listed_since_doubt, "re-sent without reading the list");
                        }
                    }
                    Effect::CountOrder { .. } | Effect::StartCooldown | Effect::Arrived(_) => {
                        prop_assert!(false, "a removal touched budgets, cooldown or arrivals: {e:?}");
                    }
                    _ => {}
                }
            }
            if let Some(o) = &s.op
                && phase(o) == Phase::Unknown
                && before.as_ref().is_none_or(|b| phase(b) != Phase::Unknown)
            {
                listed_since_doubt = false;
            }
            prop_assert!(
                s.op.is_some() || before.is_none() || s.effects.iter().any(|e| matches!(e, Effect::Close(_))),
                "a removal vanished without a Close"
            );
            op = s.op;
        }
        // A cooperative world: running, the list shows nothing left, flows done.
        for _ in 0..40 {
            let Some(cur) = op.clone() else { break };
            now += Duration::seconds(60);
            let env = Env { now, wall: now, fresh_token: ("tok".into(), now), flow_timeout };
            let cap = Capacity { at: now, status: Some(2), task_nodes: Some(10) };
            let mut s = step(Some(cur), Event::Tick(Some(cap)), &env);
            loop {
                let next = match s.effects.iter().rev().find(|e| matches!(e, Effect::Terminate { .. } | Effect::ReadFlow(_) | Effect::ListNodes)) {
                    Some(Effect::Terminate { .. }) => Event::Answered(Answer::Accepted { flow_id: Some(9) }),
                    Some(Effect::ReadFlow(_)) => Event::FlowRead(Flow::Done),
                    Some(Effect::ListNodes) => Event::NodesListed { listed: vec![] },
                    _ => break,
                };
                s = step(s.op, next, &env);
            }
            op = s.op;
        }
        prop_assert!(op.as_ref().is_none_or(is_stuck), "left hanging: {:?}", op);
    }
}
