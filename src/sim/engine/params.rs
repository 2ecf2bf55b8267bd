//! Reading a request's parameters with the API's own error codes.

use super::*;

/// Typed access to request parameters. JSON `null` counts as absent.
pub(super) struct Params<'a>(pub(super) &'a Map<String, Value>);

impl<'a> Params<'a> {
    pub(super) fn get(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub(super) fn invalid(name: &str, what: &str) -> ApiError {
        ApiError::InvalidParameter(format!("{name} must be {what}"))
    }

    pub(super) fn str(&self, name: &str) -> Result<Option<&'a str>, ApiError> {
        self.get(name)
            .map(|v| v.as_str().ok_or_else(|| Self::invalid(name, "a string")))
            .transpose()
    }

    pub(super) fn required_str(&self, name: &str) -> Result<&'a str, ApiError> {
        self.str(name)?
            .ok_or_else(|| ApiError::MissingParameter(name.to_owned()))
    }

    pub(super) fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| v.as_i64().ok_or_else(|| Self::invalid(name, "an integer")))
            .transpose()
    }

    pub(super) fn required_int(&self, name: &str) -> Result<i64, ApiError> {
        self.int(name)?
            .ok_or_else(|| ApiError::MissingParameter(name.to_owned()))
    }

    pub(super) fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.get(name)
            .map(|v| v.as_bool().ok_or_else(|| Self::invalid(name, "a boolean")))
            .transpose()
    }

    pub(super) fn array(&self, name: &str) -> Result<Option<&'a Vec<Value>>, ApiError> {
        self.get(name)
            .map(|v| v.as_array().ok_or_else(|| Self::invalid(name, "an array")))
            .transpose()
    }

    pub(super) fn required_object(&self, name: &str) -> Result<&'a Map<String, Value>, ApiError> {
        self.get(name)
            .ok_or_else(|| ApiError::MissingParameter(name.to_owned()))?
            .as_object()
            .ok_or_else(|| Self::invalid(name, "an object"))
    }

    pub(super) fn str_list(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        let Some(items) = self.array(name)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| Self::invalid(name, "an array of strings"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// `Offset` (default 0) and `Limit` (default `default_limit`, 1 to 100).
    pub(super) fn page(&self, default_limit: usize) -> Result<(usize, usize), ApiError> {
        let offset = self.int("Offset")?.unwrap_or(0);
        let offset = usize::try_from(offset).map_err(|_| Self::invalid("Offset", "at least 0"))?;
        let limit = match self.int("Limit")? {
            None => default_limit,
            Some(l @ 1..=100) => usize::try_from(l).unwrap_or(default_limit),
            Some(_) => return Err(Self::invalid("Limit", "between 1 and 100")),
        };
        Ok((offset, limit))
    }
}

/// Wraps a JSON value that is known to be an object.
pub(super) fn into_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
