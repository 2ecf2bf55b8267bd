//! Simulated cluster nodes: the [`SimNode`] type, the ids the simulator
//! hands out, and the `NodeHardwareInfo` JSON that `DescribeClusterNodes`
//! answers.
//!
//! Ids are unique per simulator: machine ids (`OrderNo`, `ins-` and 8
//! lowercase letters or digits), EMR resource ids (`emr-vm-` and 8) and
//! private IPv4 addresses (`10.0.x.y`, then `10.1.x.y`, ...). They come from
//! counters run through a fixed bijection, so the same configuration always
//! gets the same ids, and ids a test chose itself are never handed out again.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// `Flag` of a common node.
pub const NODE_FLAG_COMMON: i64 = 0;
/// `Flag` of a master node.
pub const NODE_FLAG_MASTER: i64 = 1;
/// `Flag` of a core node.
pub const NODE_FLAG_CORE: i64 = 2;
/// `Flag` of a task node.
pub const NODE_FLAG_TASK: i64 = 3;

/// The `ApplyTime` format: `YYYY-MM-DD HH:MM:SS`, UTC.
pub const APPLY_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// One node of a simulated cluster, with the `NodeHardwareInfo` fields the
/// simulator answers (field names as the SDK spells them, in snake case).
///
/// Build one with [`SimNode::task`] (or [`core`](SimNode::core),
/// [`master`](SimNode::master)) and the `with_*` methods. Empty id fields and
/// a `None` `apply_time` are filled in when the node joins a cluster, so
/// every node a snapshot returns has all of them set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimNode {
    /// `OrderNo`: the machine id, `ins-` and 8 lowercase letters or digits,
    /// what `TerminateClusterNodes` names. Empty: assigned.
    pub order_no: String,
    /// `EmrResourceId`: `emr-vm-` and 8 letters or digits. Empty: assigned.
    pub emr_resource_id: String,
    /// `Ip`: the private IPv4 address. Empty: assigned.
    pub ip: String,
    /// `Flag`: 0 common, 1 master, 2 core, 3 task.
    pub flag: i64,
    /// `AutoFlag`: 1 when Tencent's own auto-scaling created the node, else 0.
    pub auto_flag: i64,
    /// `Destroyable`: 1 may be destroyed, 0 may not.
    pub destroyable: i64,
    /// `DisableApiTermination`: instance protection.
    pub disable_api_termination: bool,
    /// `ChargeType`: 0 pay-as-you-go, 1 monthly.
    pub charge_type: i64,
    /// `HardwareResourceType`: `host`.
    pub hardware_resource_type: String,
    /// `ApplyTime`, on the simulation clock. `None`: the time the node joins.
    pub apply_time: Option<DateTime<Utc>>,
    /// `Tags` as `(TagKey, TagValue)` pairs; `None` is answered as JSON null.
    pub tags: Option<Vec<(String, String)>>,
}

impl Default for SimNode {
    /// The same as [`SimNode::task`].
    fn default() -> Self {
        Self::task()
    }
}

impl SimNode {
    /// A removable task node: Flag 3, AutoFlag 0, Destroyable 1, no
    /// protection, pay-as-you-go, `host`, no tags, ids and ApplyTime assigned.
    pub fn task() -> Self {
        Self {
            order_no: String::new(),
            emr_resource_id: String::new(),
            ip: String::new(),
            flag: NODE_FLAG_TASK,
            auto_flag: 0,
            destroyable: 1,
            disable_api_termination: false,
            charge_type: 0,
            hardware_resource_type: "host".to_owned(),
            apply_time: None,
            tags: None,
        }
    }

    /// A core node (Flag 2), otherwise as [`SimNode::task`].
    pub fn core() -> Self {
        Self::task().with_flag(NODE_FLAG_CORE)
    }

    /// A master node (Flag 1, not destroyable).
    pub(crate) fn master() -> Self {
        Self::task()
            .with_flag(NODE_FLAG_MASTER)
            .with_destroyable(false)
    }

    /// Sets the machine id (`OrderNo`).
    pub fn with_order_no(mut self, order_no: impl Into<String>) -> Self {
        self.order_no = order_no.into();
        self
    }

    #[cfg(test)]
    /// Sets the EMR resource id.
    pub(crate) fn with_emr_resource_id(mut self, id: impl Into<String>) -> Self {
        self.emr_resource_id = id.into();
        self
    }

    #[cfg(test)]
    /// Sets the private IP.
    pub(crate) fn with_ip(mut self, ip: impl Into<String>) -> Self {
        self.ip = ip.into();
        self
    }

    /// Sets `Flag` (see the `NODE_FLAG_*` constants).
    pub(crate) fn with_flag(mut self, flag: i64) -> Self {
        self.flag = flag;
        self
    }

    /// Marks the node as created by Tencent's own auto-scaling (`AutoFlag` 1).
    pub fn auto_scaled(mut self) -> Self {
        self.auto_flag = 1;
        self
    }

    /// Sets `Destroyable` (1 when `true`).
    pub fn with_destroyable(mut self, destroyable: bool) -> Self {
        self.destroyable = i64::from(destroyable);
        self
    }

    /// Turns instance protection on (`DisableApiTermination` true).
    pub fn protected(mut self) -> Self {
        self.disable_api_termination = true;
        self
    }

    /// Makes the node monthly (`ChargeType` 1).
    pub fn monthly(mut self) -> Self {
        self.charge_type = 1;
        self
    }

    /// Sets `ApplyTime`.
    pub fn with_apply_time(mut self, at: DateTime<Utc>) -> Self {
        self.apply_time = Some(at);
        self
    }

    /// Adds a tag.
    pub fn with_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags
            .get_or_insert_with(Vec::new)
            .push((key.into(), value.into()));
        self
    }

    /// Whether the node carries the tag `key` = `value`.
    pub fn has_tag(&self, key: &str, value: &str) -> bool {
        self.tags
            .iter()
            .flatten()
            .any(|(k, v)| k == key && v == value)
    }

    /// `ApplyTime` as the API writes it (`YYYY-MM-DD HH:MM:SS`, UTC), when set.
    pub(crate) fn apply_time_text(&self) -> Option<String> {
        self.apply_time
            .map(|t| t.format(APPLY_TIME_FORMAT).to_string())
    }

    /// Whether the node has no tags.
    pub(crate) fn untagged(&self) -> bool {
        self.tags.as_ref().is_none_or(Vec::is_empty)
    }

    /// The `NodeHardwareInfo` object for `DescribeClusterNodes`.
    pub(crate) fn to_json(&self) -> Value {
        let tags = self.tags.as_ref().map(|tags| {
            tags.iter()
                .map(|(k, v)| json!({"TagKey": k, "TagValue": v}))
                .collect::<Vec<_>>()
        });
        json!({
            "AppId": 1_250_000_000u64,
            "SerialNo": self.order_no,
            "OrderNo": self.order_no,
            "EmrResourceId": self.emr_resource_id,
            "Ip": self.ip,
            "Flag": self.flag,
            "AutoFlag": self.auto_flag,
            "IsAutoScale": self.auto_flag,
            "Destroyable": self.destroyable,
            "DisableApiTermination": self.disable_api_termination,
            "ChargeType": self.charge_type,
            "HardwareResourceType": self.hardware_resource_type,
            "ApplyTime": self.apply_time_text(),
            "Tags": tags,
            "Spec": "CVM.S5",
            "CpuNum": 8,
            "MemSize": 32768,
            "MemDesc": "32GB",
            "ZoneId": 100_003,
            "Zone": "ap-guangzhou-3",
        })
    }
}

/// 36^8: how many 8-character base-36 strings there are.
const ALNUM8_SPACE: u128 = 2_821_109_907_456;

/// The `n`-th 8-character lowercase base-36 string under a bijection of
/// `0..36^8` (`mult` is prime and neither 2 nor 3, so coprime with 36^8).
fn alnum8(n: u64, mult: u128, add: u128) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut x = (u128::from(n) * mult + add) % ALNUM8_SPACE;
    let mut out = [b'0'; 8];
    for slot in out.iter_mut().rev() {
        // x % 36 < 36, so the index is in range.
        let digit = usize::try_from(x % 36).unwrap_or(0);
        *slot = DIGITS[digit];
        x /= 36;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

/// The `n`-th private address: 10.0.0.1 .. 10.0.0.254, 10.0.1.1, ...
fn nth_ip(n: u64) -> String {
    let host = n % 254 + 1;
    let third = (n / 254) % 256;
    let second = (n / (254 * 256)) % 256;
    format!("10.{second}.{third}.{host}")
}

/// Hands out node ids that are unique across the simulator.
#[derive(Debug, Default)]
pub(crate) struct NodeIds {
    next_order: u64,
    next_resource: u64,
    next_ip: u64,
    orders: HashSet<String>,
    resources: HashSet<String>,
    ips: HashSet<String>,
}

impl NodeIds {
    /// Marks the ids a node already carries as taken.
    pub(crate) fn reserve(&mut self, node: &SimNode) {
        if !node.order_no.is_empty() {
            self.orders.insert(node.order_no.clone());
        }
        if !node.emr_resource_id.is_empty() {
            self.resources.insert(node.emr_resource_id.clone());
        }
        if !node.ip.is_empty() {
            self.ips.insert(node.ip.clone());
        }
    }

    /// Fills in the node's missing ids (and `apply_time`, with `at`), and
    /// reserves the ones it had.
    pub(crate) fn fill(&mut self, node: &mut SimNode, at: DateTime<Utc>) {
        self.reserve(node);
        if node.order_no.is_empty() {
            node.order_no = take(&mut self.orders, &mut self.next_order, |n| {
                format!("ins-{}", alnum8(n, 2_654_435_761, 0x5bd1_e995))
            });
        }
        if node.emr_resource_id.is_empty() {
            node.emr_resource_id = take(&mut self.resources, &mut self.next_resource, |n| {
                format!("emr-vm-{}", alnum8(n, 2_246_822_519, 0x27d4_eb2f))
            });
        }
        if node.ip.is_empty() {
            node.ip = take(&mut self.ips, &mut self.next_ip, nth_ip);
        }
        if node.apply_time.is_none() {
            node.apply_time = Some(at);
        }
    }
}

/// The next candidate from `make` not yet in `used`, now reserved.
fn take(used: &mut HashSet<String>, next: &mut u64, make: impl Fn(u64) -> String) -> String {
    loop {
        let candidate = make(*next);
        *next = next.wrapping_add(1);
        if used.insert(candidate.clone()) {
            return candidate;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("valid test timestamp")
    }

    #[test]
    fn ids_have_the_api_shapes_and_never_repeat() {
        let mut ids = NodeIds::default();
        let taken = SimNode::task()
            .with_order_no(format!("ins-{}", alnum8(1, 2_654_435_761, 0x5bd1_e995)))
            .with_ip("10.0.0.2");
        ids.reserve(&taken);
        let mut seen = HashSet::new();
        let mut ips = HashSet::new();
        for _ in 0..2000 {
            let mut node = SimNode::task();
            ids.fill(&mut node, t0());
            let suffix = node.order_no.strip_prefix("ins-").expect("ins- prefix");
            assert_eq!(suffix.len(), 8);
            assert!(
                suffix
                    .chars()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
            );
            let res = node
                .emr_resource_id
                .strip_prefix("emr-vm-")
                .expect("prefix");
            assert_eq!(res.len(), 8);
            assert!(node.ip.starts_with("10.0."));
            assert_ne!(node.order_no, taken.order_no);
            assert_ne!(node.ip, "10.0.0.2");
            assert!(seen.insert(node.order_no.clone()), "{}", node.order_no);
            assert!(ips.insert(node.ip.clone()), "{}", node.ip);
            assert_eq!(node.apply_time, Some(t0()));
        }
    }

    #[test]
    fn node_json_has_the_sdk_fields() {
        let node = SimNode::task()
            .with_order_no("ins-abcd1234")
            .with_emr_resource_id("emr-vm-abcd1234")
            .with_ip("10.0.0.9")
            .monthly()
            .protected()
            .with_tag("managed-by", "emr-autoscaler")
            .with_apply_time(t0());
        let v = node.to_json();
        assert_eq!(v["OrderNo"], "ins-abcd1234");
        assert_eq!(v["EmrResourceId"], "emr-vm-abcd1234");
        assert_eq!(v["Ip"], "10.0.0.9");
        assert_eq!(v["Flag"], 3);
        assert_eq!(v["ChargeType"], 1);
        assert_eq!(v["DisableApiTermination"], true);
        assert_eq!(v["Destroyable"], 1);
        assert_eq!(v["AutoFlag"], 0);
        assert_eq!(v["HardwareResourceType"], "host");
        assert_eq!(v["ApplyTime"], "2023-11-14 22:13:20");
        assert_eq!(
            v["Tags"],
            json!([{"TagKey": "managed-by", "TagValue": "emr-autoscaler"}])
        );
        assert!(SimNode::task().to_json()["Tags"].is_null());
        assert!(node.has_tag("managed-by", "emr-autoscaler"));
        assert!(!node.has_tag("managed-by", "someone"));
    }
}
