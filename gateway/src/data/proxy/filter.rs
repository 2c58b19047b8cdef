//! A supplier's JSON answer seen through the caller's permit: granted items kept and masked,
//! the declared envelope kept, records out of the grant's rows dropped, everything else
//! removed; and how an answer is recognised as JSON from its bytes.

use serde_json::Value;
use tongban_policy::catalog::{MaskRule, Resource};
use tongban_policy::decision::Permit;

/// A JSON answer seen through a permit. The item lists are searched in place: a resource has
/// tens of items at most, and building hash sets of them cost more on each call than the
/// searches they would save.
pub(super) struct JsonFilter<'p> {
    permit: &'p Permit<'p>,
    resource: &'p Resource,
    envelope: &'p [String],
    scope: Option<(&'p str, &'p str)>,
}

impl<'p> JsonFilter<'p> {
    pub(super) fn new(resource: &'p Resource, permit: &'p Permit<'p>, envelope: &'p [String]) -> Self {
        JsonFilter {
            permit,
            resource,
            envelope,
            scope: permit.scope.as_ref().map(|s| (s.item.as_str(), s.prefix.as_str())),
        }
    }

    /// The rule of a granted item.
    fn granted(&self, name: &str) -> Option<MaskRule> {
        self.permit.items.iter().find(|i| i.name == name).map(|i| i.mask)
    }

    /// Whether `name` is an item of the resource, granted or not.
    fn is_item(&self, name: &str) -> bool {
        self.resource.items.iter().any(|i| i.name == name)
    }

    /// The value as the permit lets it be seen, or `None` when it is a record out of scope.
    /// `records` counts the objects that carried granted items.
    pub(super) fn value(&self, value: Value, records: &mut u64) -> Option<Value> {
        match value {
            Value::Array(values) => {
                Some(Value::Array(values.into_iter().filter_map(|v| self.value(v, records)).collect()))
            }
            Value::Object(members) => {
                let is_record = members.keys().any(|k| self.is_item(k));
                if is_record && let Some((item, prefix)) = self.scope {
                    // A record must show it is in scope; one that does not is dropped.
                    let in_scope =
                        members.get(item).and_then(Value::as_str).is_some_and(|v| v.starts_with(prefix));
                    if !in_scope {
                        return None;
                    }
                }
                let mut kept = serde_json::Map::new();
                let mut carried = false;
                for (name, member) in members {
                    if let Some(rule) = self.granted(&name) {
                        carried = true;
                        let member = match (rule, member) {
                            // A structured value under an item granted whole is filtered like
                            // the answer itself: it may hold other items, or records out of the
                            // grant's rows, which the grant does not cover.
                            (MaskRule::None, structured @ (Value::Object(_) | Value::Array(_))) => {
                                self.value(structured, records).unwrap_or(Value::Null)
                            }
                            (rule, member) => mask_json(member, rule),
                        };
                        kept.insert(name, member);
                    } else if self.envelope.contains(&name) && !self.is_item(&name) {
                        let member = self.value(member, records).unwrap_or(Value::Null);
                        kept.insert(name, member);
                    }
                }
                if carried {
                    *records += 1;
                }
                Some(Value::Object(kept))
            }
            scalar => Some(scalar),
        }
    }
}

/// Masks one granted item's JSON value. Structured values under a masked item are redacted
/// whole: the rule is defined for text.
pub(super) fn mask_json(value: Value, rule: MaskRule) -> Value {
    match (rule, value) {
        (MaskRule::None, value) => value,
        (MaskRule::Redact, _) => Value::String(tongban_policy::mask::REDACTED.to_owned()),
        (_, Value::Null) => Value::Null,
        (rule, Value::String(text)) => Value::String(rule.apply(&text).into_owned()),
        (rule, Value::Number(number)) => Value::String(rule.apply(&number.to_string()).into_owned()),
        (_, _) => Value::String(tongban_policy::mask::REDACTED.to_owned()),
    }
}

/// Whether an answer reads as a JSON object or array, whatever it is labelled: a client would
/// parse it so. Byte order marks, whitespace and JSON text sequence separators before it are
/// skipped, as lenient parsers skip them.
pub(super) fn looks_like_json(body: &[u8]) -> bool {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    body.iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x1e))
        .is_some_and(|b| matches!(b, b'{' | b'['))
}

pub(super) fn is_json_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}
