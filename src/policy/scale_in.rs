//! Scale-in, pure: which task nodes may be given back, in which order, and
//! how a cluster's removal is stabilised over time.
//!
//! - [`select`] picks the nodes of one removal from the cluster's node list
//!   (and, when a YARN ResourceManager is configured, its nodes and running
//!   ApplicationMasters), and says for every other node why it was not taken.
//! - [`stabilize`] turns the per-evaluation removals of the last
//!   `stabilization` window into the one removal the cluster may make now.
//!
//! Eligibility follows DESIGN.md "Contract: scale-in": a task node (`Flag` 3)
//! on `host` hardware, pay-as-you-go (`ChargeType` 0), `Destroyable` 1, not
//! protected (`DisableApiTermination`), not created by Tencent's own
//! auto-scaling (`AutoFlag` 0), carrying the owner tag when the scope is
//! "ours", and, with YARN configured, matched to a YARN node by its `Ip`. A
//! node whose state is unknown (a field missing, null tags under "ours", no
//! YARN match) is never eligible.
//!
//! # Rules
//! - Scale-in, in the policy: a removal is proposed only when no rule adds (muted votes
//!   and unmet floors count as adding), no rule lacks data, and scale-in is enabled. The
//!   proposal is the smallest among the rules that propose one (a ratio target below its
//!   band with no node settling, or a threshold with `remove = N`; the demand form never
//!   proposes one, since pending work cannot show idle capacity). A capacity rule bounds
//!   the removal even when it proposes none (no rule removes nodes it wants).
//!   `stabilization` keeps the largest desired count of its window (each proposal records
//!   the count it was made against, so after a removal the window's earlier wishes are
//!   judged against what is left), and a window must be observed continuously after
//!   every start. Then: no removal while an operation is open or either cooldown runs,
//!   never below `min_task_nodes` or an open schedule's floor, at most `scale_in.max_step`.
//!   Nodes named by an open scale-in count as gone. `conflict` (Tencent's own auto-scaling
//!   on) holds both directions; unreadable strategies hold only scale-in.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};

/// A cluster's scale-in settings (`[clusters.scale_in]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleInPolicy {
    /// Off unless set: then a target below the current count means "hold".
    pub enabled: bool,
    /// `GraceDownTime`: how long YARN drains a node before it goes.
    pub grace_period: Duration,
    /// Remove only below the largest desired count of this window.
    pub stabilization: Duration,
    /// After any operation, before a scale-in.
    pub cooldown: Duration,
    /// Most nodes one scale-in removes.
    pub max_step: u32,
    /// Which nodes may go.
    pub scope: NodeScope,
}

impl Default for ScaleInPolicy {
    /// Off, with the contract's defaults for the rest.
    fn default() -> Self {
        Self {
            enabled: false,
            grace_period: Duration::from_secs(600),
            stabilization: Duration::from_secs(600),
            cooldown: Duration::from_secs(300),
            max_step: 5,
            scope: NodeScope::AnyTask,
        }
    }
}

/// Why a cluster removes nodes now, or why not: the scale-in half of a
/// decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Scale-in is off for this cluster.
    Off,
    /// Paused, breaker open, capacity unknown, busy or in conflict: the
    /// decision's outcome says which.
    Blocked,
    /// A rule votes to add, or a floor is not met: scale-out wins.
    ScaleOutWins,
    /// A rule lacks data; missing data never removes a node.
    MissingData,
    /// No rule proposes a removal.
    NotProposed,
    /// Tencent's auto-scaling strategies could not be read.
    BuiltinUnknown,
    /// An operation is open (nodes in flight or leaving).
    OperationOpen,
    /// The cluster cooldown after a scale-out runs.
    Cooldown {
        /// Its end.
        until: DateTime<Utc>,
    },
    /// The scale-in cooldown runs.
    ScaleInCooldown {
        /// Its end.
        until: DateTime<Utc>,
    },
    /// Less than one full stabilization window observed.
    Observing {
        /// Since when evaluations are continuous.
        since: Option<DateTime<Utc>>,
    },
    /// An evaluation within the window wanted no removal.
    Stabilizing,
    /// The cluster is at its floor.
    AtFloor {
        /// `min_task_nodes` or an open schedule's floor, the larger.
        floor: u32,
    },
    /// Remove nodes now.
    Remove {
        /// The smallest removal of the window.
        stabilized: u32,
        /// What the floors and max_step leave.
        nodes: u32,
        /// The floor it stops at.
        floor: u32,
        /// `scale_in.max_step`.
        max_step: u32,
    },
}

impl Removal {
    /// Nodes to remove now.
    pub fn nodes(&self) -> u32 {
        match self {
            Removal::Remove { nodes, .. } => *nodes,
            _ => 0,
        }
    }
}

impl fmt::Display for Removal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hm = |t: &DateTime<Utc>| t.format("%H:%M:%S UTC").to_string();
        match self {
            Removal::Off => f.write_str("scale-in off"),
            Removal::Blocked => f.write_str("scale-in blocked"),
            Removal::ScaleOutWins => f.write_str("scale-in cancelled: a rule adds"),
            Removal::MissingData => f.write_str("scale-in cancelled: a rule has no data"),
            Removal::NotProposed => f.write_str("no removal: not every rule agrees"),
            Removal::BuiltinUnknown => {
                f.write_str("scale-in held: Tencent's auto-scaling strategies unreadable")
            }
            Removal::OperationOpen => f.write_str("scale-in held: an operation is open"),
            Removal::Cooldown { until } => write!(f, "scale-in held: cooldown until {}", hm(until)),
            Removal::ScaleInCooldown { until } => {
                write!(f, "scale-in held: scale-in cooldown until {}", hm(until))
            }
            Removal::Observing { since: Some(s) } => {
                write!(
                    f,
                    "scale-in held: stabilization window observed since {}",
                    hm(s)
                )
            }
            Removal::Observing { since: None } => {
                f.write_str("scale-in held: stabilization window not yet observed")
            }
            Removal::Stabilizing => {
                f.write_str("scale-in held: the stabilization window wanted no removal")
            }
            Removal::AtFloor { floor } => write!(f, "scale-in held: at the floor {floor}"),
            Removal::Remove {
                stabilized,
                nodes,
                floor,
                max_step,
            } => {
                write!(f, "stabilized -{stabilized}")?;
                if nodes < stabilized {
                    write!(f, " (floor {floor}, scale_in.max_step {max_step})")?;
                }
                write!(f, " -> -{nodes}")
            }
        }
    }
}

/// Which task nodes a cluster may give back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeScope {
    /// Only nodes carrying this tag (the product adds it to every scale-out).
    /// An empty key means no tag is configured: then no node is ours.
    Ours {
        /// Tag key.
        key: String,
        /// Tag value.
        value: String,
    },
    /// Any eligible task node.
    AnyTask,
}

impl NodeScope {
    /// Whether the scope can recognise any node: "ours" needs its tag.
    pub(crate) fn is_usable(&self) -> bool {
        !matches!(self, NodeScope::Ours { key, .. } if key.is_empty())
    }
}

/// One node as `DescribeClusterNodes` lists it: the fields eligibility reads.
/// `None` is "the API did not say".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// The machine id (`OrderNo`), what a removal names.
    pub id: Option<String>,
    /// Private IP, matched against YARN's node addresses.
    pub ip: Option<String>,
    /// 0 common, 1 master, 2 core, 3 task.
    pub flag: Option<i64>,
    /// 1: created by Tencent's own auto-scaling.
    pub auto_flag: Option<i64>,
    /// 1: may be destroyed.
    pub destroyable: Option<i64>,
    /// Instance protection.
    pub disable_api_termination: Option<bool>,
    /// 0 pay-as-you-go, 1 monthly.
    pub charge_type: Option<i64>,
    /// `host` or `pod`.
    pub hardware: Option<String>,
    /// `ApplyTime` as the API wrote it (`YYYY-MM-DD HH:MM:SS`).
    pub apply_time: Option<String>,
    /// Tags as (key, value); `None` when the API answered null.
    pub tags: Option<Vec<(String, String)>>,
}

/// One YARN NodeManager, as the ResourceManager reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YarnNode {
    /// The host part of `nodeHTTPAddress`.
    pub http_host: String,
    /// `nodeHostName`.
    pub host_name: String,
    /// `numContainers`.
    pub containers: u32,
}

/// What the ResourceManager says: its nodes and the hosts of running
/// ApplicationMasters (host part of `amHostHttpAddress`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct YarnState {
    /// NodeManagers.
    pub nodes: Vec<YarnNode>,
    /// Hosts running an ApplicationMaster.
    pub am_hosts: BTreeSet<String>,
}

impl YarnState {
    fn find(&self, ip: &str) -> Option<&YarnNode> {
        if ip.trim().is_empty() {
            return None;
        }
        self.nodes
            .iter()
            .find(|n| n.http_host == ip || n.host_name == ip)
    }

    fn hosts_am(&self, ip: &str, node: &YarnNode) -> bool {
        self.am_hosts.contains(ip)
            || self.am_hosts.contains(&node.http_host)
            || self.am_hosts.contains(&node.host_name)
    }
}

/// The host part of a `host:port` address (`nodeHTTPAddress`,
/// `amHostHttpAddress`), IPv6 brackets removed.
pub(crate) fn host_of(address: &str) -> &str {
    let a = address.trim();
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match a.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => a,
    }
}

/// Why a node is not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ineligible {
    /// No machine id to name.
    NoMachineId,
    /// Not a task node (master, core, router, common), or the flag is unknown.
    NotTask,
    /// Not `host` hardware (a pod), or unknown.
    NotHost,
    /// Monthly (prepaid), or the charge type is unknown.
    Monthly,
    /// `Destroyable` is not 1.
    NotDestroyable,
    /// Instance protection is on, or unknown.
    Protected,
    /// Created by Tencent's own auto-scaling (`AutoFlag` 1), or unknown.
    BuiltinAutoScaling,
    /// Lacks the owner tag.
    NotOurs,
    /// Tags unknown (null) while only our own nodes may go.
    TagsUnknown,
    /// Not found among YARN's nodes by its Ip.
    NotInYarn,
    /// Already named by an open scale-in.
    AlreadyLeaving,
    /// Eligible, but the removal needed fewer nodes.
    NotNeeded,
    /// Eligible, but removing it would go below `min_task_nodes`.
    Floor,
    /// On demand, and removing it would go below `on_demand_floor`.
    OnDemandFloor,
}

impl fmt::Display for Ineligible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ineligible::NoMachineId => "no machine id (OrderNo)",
            Ineligible::NotTask => "not a task node",
            Ineligible::NotHost => "not host hardware",
            Ineligible::Monthly => "monthly (prepaid) or charge type unknown",
            Ineligible::NotDestroyable => "not destroyable",
            Ineligible::Protected => "instance protection on (or unknown)",
            Ineligible::BuiltinAutoScaling => {
                "created by Tencent's own auto-scaling (AutoFlag 1, or unknown)"
            }
            Ineligible::NotOurs => "lacks the owner tag",
            Ineligible::TagsUnknown => "tags unknown (null)",
            Ineligible::NotInYarn => "not matched to a YARN node by its Ip",
            Ineligible::AlreadyLeaving => "already being removed",
            Ineligible::OnDemandFloor => "on demand, and on_demand_floor keeps it",
            Ineligible::NotNeeded => "eligible, not needed",
            Ineligible::Floor => "eligible, kept for min_task_nodes",
        })
    }
}

/// An eligible node and what orders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The machine id.
    pub id: String,
    /// Hosts a running ApplicationMaster.
    pub hosts_am: bool,
    /// Running containers, with YARN configured.
    pub containers: Option<u32>,
    /// When it was bought; unparseable counts as oldest.
    pub applied: Option<NaiveDateTime>,
}

/// The nodes one removal names, and why every other node is not named.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// The nodes to remove, in removal-preference order.
    pub chosen: Vec<Candidate>,
    /// Every other node, with why it is not taken (in list order).
    pub passed_over: Vec<(String, Ineligible)>,
    /// How many of the wanted nodes could not be found eligible.
    pub shortfall: u32,
}

impl Selection {
    /// The machine ids to name in the request.
    pub fn ids(&self) -> Vec<String> {
        self.chosen.iter().map(|c| c.id.clone()).collect()
    }
}

/// Why `node` may not be removed, or `None` when it may.
pub(crate) fn ineligibility(
    node: &Node,
    scope: &NodeScope,
    yarn: Option<&YarnState>,
) -> Option<Ineligible> {
    let Some(_) = node.id.as_deref().filter(|id| !id.trim().is_empty()) else {
        return Some(Ineligible::NoMachineId);
    };
    if node.flag != Some(3) {
        return Some(Ineligible::NotTask);
    }
    if !node
        .hardware
        .as_deref()
        .is_some_and(|h| h.eq_ignore_ascii_case("host"))
    {
        return Some(Ineligible::NotHost);
    }
    if node.charge_type != Some(0) {
        return Some(Ineligible::Monthly);
    }
    if node.destroyable != Some(1) {
        return Some(Ineligible::NotDestroyable);
    }
    if node.disable_api_termination != Some(false) {
        return Some(Ineligible::Protected);
    }
    if node.auto_flag != Some(0) {
        return Some(Ineligible::BuiltinAutoScaling);
    }
    if let NodeScope::Ours { key, value } = scope {
        if key.is_empty() {
            return Some(Ineligible::NotOurs);
        }
        match &node.tags {
            None => return Some(Ineligible::TagsUnknown),
            Some(tags) if !tags.iter().any(|(k, v)| k == key && v == value) => {
                return Some(Ineligible::NotOurs);
            }
            Some(_) => {}
        }
    }
    if let Some(yarn) = yarn {
        let matched = node.ip.as_deref().and_then(|ip| yarn.find(ip));
        if matched.is_none() {
            return Some(Ineligible::NotInYarn);
        }
    }
    None
}

/// Parses `ApplyTime` (`YYYY-MM-DD HH:MM:SS`, or RFC 3339).
pub(crate) fn parse_apply_time(text: &str) -> Option<NaiveDateTime> {
    let t = text.trim();
    NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S")
        .ok()
        .or_else(|| DateTime::parse_from_rfc3339(t).ok().map(|d| d.naive_utc()))
}

/// Picks `count` nodes to remove from `nodes`.
///
/// Only eligible nodes ([`ineligibility`]) not in `leaving` are candidates.
/// With YARN: nodes hosting no ApplicationMaster first, then fewest running
/// containers; then (and without YARN, only) the newest `ApplyTime` first;
/// the machine id breaks the last ties, so the choice is deterministic. A
/// machine id listed twice is considered once, and only if every listing of
/// it is eligible.
pub fn select(
    nodes: &[Node],
    scope: &NodeScope,
    yarn: Option<&YarnState>,
    leaving: &[String],
    count: u32,
) -> Selection {
    let mut candidates = Vec::new();
    let mut passed_over = Vec::new();
    let doubtful: BTreeSet<&str> = nodes
        .iter()
        .filter(|n| ineligibility(n, scope, yarn).is_some())
        .filter_map(|n| n.id.as_deref())
        .collect();
    let mut seen = BTreeSet::new();
    for node in nodes {
        let label = node.id.clone().unwrap_or_else(|| "(no OrderNo)".into());
        if let Some(why) = ineligibility(node, scope, yarn) {
            passed_over.push((label, why));
            continue;
        }
        if doubtful.contains(label.as_str()) {
            // Listed again with fields that make it ineligible: that listing
            // already said why.
            continue;
        }
        if leaving.contains(&label) {
            passed_over.push((label, Ineligible::AlreadyLeaving));
            continue;
        }
        if !seen.insert(label.clone()) {
            continue;
        }
        let ip = node.ip.as_deref().unwrap_or_default();
        let yarn_node = yarn.and_then(|y| y.find(ip).map(|n| (y, n)));
        candidates.push(Candidate {
            hosts_am: yarn_node.is_some_and(|(y, n)| y.hosts_am(ip, n)),
            containers: yarn_node.map(|(_, n)| n.containers),
            applied: node.apply_time.as_deref().and_then(parse_apply_time),
            id: label,
        });
    }
    candidates.sort_by(|a, b| {
        a.hosts_am
            .cmp(&b.hosts_am)
            .then(a.containers.cmp(&b.containers))
            .then(b.applied.cmp(&a.applied))
            .then(a.id.cmp(&b.id))
    });
    let take = (count as usize).min(candidates.len());
    let rest = candidates.split_off(take);
    passed_over.extend(rest.into_iter().map(|c| (c.id, Ineligible::NotNeeded)));
    Selection {
        shortfall: count.saturating_sub(take as u32),
        chosen: candidates,
        passed_over,
    }
}

/// One evaluation's removal: how many nodes the rules would give back then
/// (0 when a rule voted to add, lacked data, or none proposed a removal),
/// and of how many: the count it wanted is `effective − nodes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    /// When.
    pub at: DateTime<Utc>,
    /// Nodes.
    pub nodes: u32,
    /// Running (without nodes leaving) plus in flight, then.
    pub effective: u32,
}

impl Proposal {
    /// The task-node count this evaluation wanted.
    pub(crate) fn desired(&self) -> u32 {
        self.effective.saturating_sub(self.nodes)
    }
}

/// What the stabilization window allows now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stabilized {
    /// Less than one full window observed since the start (or since a gap).
    Observing {
        /// Since when the evaluations are continuous.
        since: Option<DateTime<Utc>>,
    },
    /// The smallest removal over the window (0: some evaluation in it wanted
    /// none).
    Remove(u32),
}

/// The removal the window allows at `now`: the current count (the newest
/// proposal's) less the largest count wanted over `[now - window, now]`, once the evaluations have been continuous (no gap
/// above `max_gap`) for one full window. `history` is oldest first and ends
/// with the current evaluation.
pub(crate) fn stabilize(
    history: &[Proposal],
    now: DateTime<Utc>,
    window: Duration,
    max_gap: Duration,
) -> Stabilized {
    let Ok(window) = chrono::Duration::from_std(window) else {
        return Stabilized::Observing { since: None };
    };
    let max_gap = chrono::Duration::from_std(max_gap).unwrap_or(chrono::Duration::MAX);
    let Some(start) = now.checked_sub_signed(window) else {
        return Stabilized::Observing { since: None };
    };
    let seen: Vec<&Proposal> = history.iter().filter(|p| p.at <= now).collect();
    let Some(last) = seen.last() else {
        return Stabilized::Observing { since: None };
    };
    if now - last.at > max_gap {
        return Stabilized::Observing { since: None };
    }
    // The oldest evaluation of the continuous run that ends with the newest.
    let mut since = last.at;
    for pair in seen.windows(2).rev() {
        if pair[1].at - pair[0].at > max_gap {
            break;
        }
        since = pair[0].at;
    }
    if since > start {
        return Stabilized::Observing { since: Some(since) };
    }
    // HPA's rule: the largest count wanted in the window, against the count
    // now. With the count unchanged, that is the smallest removal; after a
    // removal, the window's earlier wishes are judged against what is left.
    let largest = seen
        .iter()
        .filter(|p| p.at >= start)
        .map(|p| p.desired())
        .max()
        .unwrap_or(last.desired());
    Stabilized::Remove(last.effective.saturating_sub(largest))
}

/// Drops proposals older than `window` plus `max_gap` before `now`; what
/// [`stabilize`] no longer reads.
pub(crate) fn prune(
    history: &mut Vec<Proposal>,
    now: DateTime<Utc>,
    window: Duration,
    max_gap: Duration,
) {
    let keep =
        chrono::Duration::from_std(window.saturating_add(max_gap)).unwrap_or(chrono::Duration::MAX);
    history.retain(|p| now - p.at <= keep);
}

#[cfg(test)]
mod tests;
