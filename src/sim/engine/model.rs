//! The SDK's `ScaleOutCluster` request model (Version 2019-01-03), field by
//! field with its JSON types, and the check of a body against it.
//!
//! Field names are the SDK's `@SerializedName`s (`ScaleOutClusterRequest`,
//! `ScaleOutNodeConfig`, `NodeResourceSpec`, `Tag`,
//! `ScriptBootstrapActionConfig`, `ScaleOutServiceConfGroupsInfo`). A key
//! the model does not have, at any level the simulator models, is answered
//! `UnknownParameter` with its path (`ResourceSpec.Foo`, `Tags.0.Foo`); a
//! value of the wrong JSON type `InvalidParameter`. `null` counts as absent.
//! `InstanceChargePrepaid`, `PodSpecInfo` and the disks of `ResourceSpec`
//! are only checked to be objects.

use super::*;

/// The JSON type the model gives a field.
#[derive(Debug, Clone, Copy)]
pub(super) enum Shape {
    /// A string (`String`).
    Str,
    /// An integer (`Long`).
    Int,
    /// A boolean (`Boolean`).
    Bool,
    /// An object with exactly these fields.
    Object(&'static [(&'static str, Shape)]),
    /// An object whose fields are not checked.
    AnyObject,
    /// An array of values of one shape.
    List(&'static Shape),
}

/// `Tag`.
const TAG: &[(&str, Shape)] = &[("TagKey", Shape::Str), ("TagValue", Shape::Str)];

/// `ScaleOutNodeConfig`.
const NODE_CONFIG: &[(&str, Shape)] = &[("NodeFlag", Shape::Str), ("NodeCount", Shape::Int)];

/// `NodeResourceSpec`.
const RESOURCE_SPEC: &[(&str, Shape)] = &[
    ("InstanceType", Shape::Str),
    ("SystemDisk", Shape::List(&Shape::AnyObject)),
    ("Tags", Shape::List(&Shape::Object(TAG))),
    ("DataDisk", Shape::List(&Shape::AnyObject)),
    ("LocalDataDisk", Shape::List(&Shape::AnyObject)),
];

/// `ScriptBootstrapActionConfig`.
const BOOTSTRAP_ACTION: &[(&str, Shape)] = &[
    ("CosFileURI", Shape::Str),
    ("ExecutionMoment", Shape::Str),
    ("Args", Shape::List(&Shape::Str)),
    ("CosFileName", Shape::Str),
    ("Remark", Shape::Str),
];

/// `ScaleOutServiceConfGroupsInfo`.
const CONF_GROUPS: &[(&str, Shape)] = &[
    ("ServiceComponentName", Shape::Str),
    ("ConfGroupName", Shape::Str),
];

/// `ScaleOutClusterRequest`: every top-level field a body may carry.
pub(super) const SCALE_OUT_CLUSTER_REQUEST: &[(&str, Shape)] = &[
    ("InstanceChargeType", Shape::Str),
    ("InstanceId", Shape::Str),
    ("ScaleOutNodeConfig", Shape::Object(NODE_CONFIG)),
    ("ClientToken", Shape::Str),
    ("InstanceChargePrepaid", Shape::AnyObject),
    (
        "ScriptBootstrapActionConfig",
        Shape::List(&Shape::Object(BOOTSTRAP_ACTION)),
    ),
    ("SoftDeployInfo", Shape::List(&Shape::Int)),
    ("ServiceNodeInfo", Shape::List(&Shape::Int)),
    ("DisasterRecoverGroupIds", Shape::List(&Shape::Str)),
    ("Tags", Shape::List(&Shape::Object(TAG))),
    ("HardwareSourceType", Shape::Str),
    ("PodSpecInfo", Shape::AnyObject),
    ("ClickHouseClusterName", Shape::Str),
    ("ClickHouseClusterType", Shape::Str),
    ("YarnNodeLabel", Shape::Str),
    ("EnableStartServiceFlag", Shape::Bool),
    ("ResourceSpec", Shape::Object(RESOURCE_SPEC)),
    ("Zone", Shape::Str),
    ("SubnetId", Shape::Str),
    (
        "ScaleOutServiceConfGroupsInfo",
        Shape::List(&Shape::Object(CONF_GROUPS)),
    ),
];

/// Checks an object's fields against `fields`: first that every key is
/// known, then each value's type (depth first). `prefix` is the path of the
/// object, empty or ending in a dot.
pub(super) fn check_fields(
    object: &Map<String, Value>,
    fields: &[(&str, Shape)],
    prefix: &str,
) -> Result<(), ApiError> {
    if let Some(unknown) = object
        .keys()
        .find(|k| !fields.iter().any(|(name, _)| name == k))
    {
        return Err(ApiError::UnknownParameter(format!("{prefix}{unknown}")));
    }
    for (name, shape) in fields {
        if let Some(value) = object.get(*name).filter(|v| !v.is_null()) {
            check_value(value, *shape, &format!("{prefix}{name}"))?;
        }
    }
    Ok(())
}

/// Checks one value against its shape; `path` names it in errors.
fn check_value(value: &Value, shape: Shape, path: &str) -> Result<(), ApiError> {
    let wrong = |what: &str| Err(Params::invalid(path, what));
    match shape {
        Shape::Str if !value.is_string() => wrong("a string"),
        Shape::Int if value.as_i64().is_none() => wrong("an integer"),
        Shape::Bool if !value.is_boolean() => wrong("a boolean"),
        Shape::Object(fields) => match value.as_object() {
            Some(object) => check_fields(object, fields, &format!("{path}.")),
            None => wrong("an object"),
        },
        Shape::AnyObject if !value.is_object() => wrong("an object"),
        Shape::List(item) => {
            let Some(items) = value.as_array() else {
                return wrong("an array");
            };
            items
                .iter()
                .enumerate()
                .try_for_each(|(i, v)| check_value(v, *item, &format!("{path}.{i}")))
        }
        _ => Ok(()),
    }
}
