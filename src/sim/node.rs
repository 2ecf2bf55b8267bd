//! Simulated cluster nodes: the [`SimNode`] type, the ids the simulator
//! hands out, and the `NodeHardwareInfo` JSON that `DescribeClusterNodes`
//! answers.
//!
//! A node ordered by `ScaleOutCluster` also records its offering: the CVM
//! instance type (`Spec`, with `CpuNum`, `MemSize` and `MemDesc` read from
//! it), the availability zone (`Zone`, and `ZoneId` for the regions listed
//! in [`zone_id`]) and how it was bought (`SPOTPAID` and the others, which
//! `NodeHardwareInfo` has no field for; its `ChargeType` is 1 for `PREPAID`
//! and 0 otherwise, spot instances being postpaid). Nodes without them are
//! answered as before: `CVM.S5`, 8 cores, 32 GB, `ap-guangzhou-3`.
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

/// `InstanceChargeType` of pay-as-you-go nodes.
pub const CHARGE_POSTPAID_BY_HOUR: &str = "POSTPAID_BY_HOUR";
/// `InstanceChargeType` of spot nodes (task nodes only).
pub const CHARGE_SPOTPAID: &str = "SPOTPAID";
/// `InstanceChargeType` of monthly nodes.
pub const CHARGE_PREPAID: &str = "PREPAID";

/// A cluster's instance type unless set otherwise.
pub const DEFAULT_INSTANCE_TYPE: &str = "S5.2XLARGE32";
/// A cluster's availability zone unless set otherwise.
pub const DEFAULT_ZONE: &str = "ap-guangzhou-3";

/// `Spec` of a node without an instance type.
const GENERIC_SPEC: &str = "CVM.S5";
/// Cores and GB of memory of a node whose instance type says nothing.
const GENERIC_CPU_MEMORY: (i64, i64) = (8, 32);

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
    /// The CVM instance type, e.g. `S5.2XLARGE32`: `Spec`. `None`: `CVM.S5`.
    pub instance_type: Option<String>,
    /// The availability zone, e.g. `ap-guangzhou-3`: `Zone` and `ZoneId`.
    /// `None`: [`DEFAULT_ZONE`].
    pub zone: Option<String>,
    /// How the node was bought: [`CHARGE_POSTPAID_BY_HOUR`],
    /// [`CHARGE_SPOTPAID`] or [`CHARGE_PREPAID`]; `None` for nodes not
    /// ordered by `ScaleOutCluster`. Not answered (the SDK model has no such
    /// field); [`SimHandle::reclaim_spot`](super::SimHandle::reclaim_spot)
    /// reads it.
    pub instance_charge_type: Option<String>,
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
            instance_type: None,
            zone: None,
            instance_charge_type: None,
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

    /// Sets the CVM instance type (`Spec`).
    pub fn with_instance_type(mut self, instance_type: impl Into<String>) -> Self {
        self.instance_type = Some(instance_type.into());
        self
    }

    /// Sets the availability zone (`Zone`, `ZoneId`).
    pub fn in_zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// Records how the node was bought (`PREPAID` also makes it monthly,
    /// `ChargeType` 1; the others pay-as-you-go, 0).
    pub fn with_instance_charge_type(mut self, charge: impl Into<String>) -> Self {
        let charge = charge.into();
        self.charge_type = i64::from(charge == CHARGE_PREPAID);
        self.instance_charge_type = Some(charge);
        self
    }

    /// Makes the node a spot instance (`SPOTPAID`, `ChargeType` 0).
    pub fn spot(self) -> Self {
        self.with_instance_charge_type(CHARGE_SPOTPAID)
    }

    /// Whether the node is a spot instance.
    pub fn is_spot(&self) -> bool {
        self.instance_charge_type.as_deref() == Some(CHARGE_SPOTPAID)
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
        let (cpu, memory_gb) = self
            .instance_type
            .as_deref()
            .and_then(cpu_and_memory)
            .unwrap_or(GENERIC_CPU_MEMORY);
        let zone = self.zone.as_deref().unwrap_or(DEFAULT_ZONE);
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
            "Spec": self.instance_type.as_deref().unwrap_or(GENERIC_SPEC),
            "CpuNum": cpu,
            "MemSize": memory_gb.saturating_mul(1024),
            "MemDesc": format!("{memory_gb}GB"),
            "ZoneId": zone_id(zone),
            "Zone": zone,
        })
    }
}

/// Cores and GB of memory an instance type names, e.g. 8 and 32 for
/// `S5.2XLARGE32`: `SMALL` 1 core, `MEDIUM` 2, `LARGE` 4, `<k>XLARGE` 4k,
/// then the memory. `None` when the name does not read that way.
pub(crate) fn cpu_and_memory(instance_type: &str) -> Option<(i64, i64)> {
    let (_, size) = instance_type.split_once('.')?;
    let digits = size.len() - size.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (class, memory) = size.split_at(size.len() - digits);
    let memory: i64 = memory.parse().ok()?;
    let cpu = match class {
        "SMALL" => 1,
        "MEDIUM" => 2,
        "LARGE" => 4,
        other => {
            let times: i64 = other.strip_suffix("XLARGE")?.parse().ok()?;
            times.checked_mul(4)?
        }
    };
    (cpu > 0 && memory > 0).then_some((cpu, memory))
}

/// Tencent Cloud's numeric id of a zone (`ap-guangzhou-3` is 100003: the
/// region's number times 100000 plus the zone's), for the mainland and a
/// few other regions; `None` (answered as null) for any other.
pub(crate) fn zone_id(zone: &str) -> Option<i64> {
    let (region, number) = zone.rsplit_once('-')?;
    let number: i64 = number.parse().ok().filter(|n| (1..100_000).contains(n))?;
    let region_number = match region {
        "ap-guangzhou" => 1,
        "ap-shanghai" => 2,
        "ap-hongkong" => 5,
        "ap-beijing" => 8,
        "ap-singapore" => 9,
        "ap-chengdu" => 16,
        "ap-chongqing" => 19,
        "ap-nanjing" => 33,
        _ => return None,
    };
    Some(region_number * 100_000 + number)
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

    #[test]
    fn the_offering_shows_as_spec_zone_and_charge_type() {
        let spot = SimNode::task()
            .with_instance_type("SA3.8XLARGE64")
            .in_zone("ap-beijing-6")
            .spot();
        assert!(spot.is_spot());
        let v = spot.to_json();
        assert_eq!(v["Spec"], "SA3.8XLARGE64");
        assert_eq!(
            (v["CpuNum"].clone(), v["MemSize"].clone()),
            (json!(32), json!(65536))
        );
        assert_eq!(v["MemDesc"], "64GB");
        assert_eq!(
            (v["Zone"].clone(), v["ZoneId"].clone()),
            (json!("ap-beijing-6"), json!(800_006))
        );
        assert_eq!(v["ChargeType"], 0);
        let monthly = SimNode::task().with_instance_charge_type(CHARGE_PREPAID);
        assert_eq!((monthly.charge_type, monthly.is_spot()), (1, false));
        // Names that do not read as type and size keep the generic figures.
        let odd = SimNode::task()
            .with_instance_type("GPU-X")
            .in_zone("eu-frankfurt-1");
        let v = odd.to_json();
        assert_eq!(
            (v["Spec"].clone(), v["CpuNum"].clone()),
            (json!("GPU-X"), json!(8))
        );
        assert!(v["ZoneId"].is_null());
    }

    #[test]
    fn instance_types_read_as_cores_and_memory() {
        assert_eq!(cpu_and_memory("S5.SMALL1"), Some((1, 1)));
        assert_eq!(cpu_and_memory("S5.MEDIUM4"), Some((2, 4)));
        assert_eq!(cpu_and_memory("S5.LARGE8"), Some((4, 8)));
        assert_eq!(cpu_and_memory("S5.2XLARGE32"), Some((8, 32)));
        assert_eq!(cpu_and_memory("M5.16XLARGE512"), Some((64, 512)));
        for odd in [
            "S5",
            "S5.LARGE",
            "S5.XLARGE16",
            "S5.0XLARGE8",
            "S5.LARGE0",
            "S5.é8",
            "",
        ] {
            assert_eq!(cpu_and_memory(odd), None, "{odd}");
        }
        assert_eq!(zone_id("ap-guangzhou-3"), Some(100_003));
        assert_eq!(zone_id("ap-shanghai-2"), Some(200_002));
        assert_eq!(zone_id("ap-nanjing-1"), Some(3_300_001));
        for odd in [
            "ap-guangzhou",
            "ap-guangzhou-x",
            "ap-guangzhou-0",
            "mars-1",
            "",
        ] {
            assert_eq!(zone_id(odd), None, "{odd}");
        }
    }
}
