//! Timestamps as the platform writes them: Beijing wall time (UTC+8, the mainland's one zone,
//! without daylight saving) with its offset, so that `2026-12-04T11:57:14+08:00` is an
//! RFC 3339 `date-time` any client reads as the same instant, whatever its own zone.

use chrono::{DateTime, FixedOffset, NaiveDateTime, SecondsFormat};

/// Beijing's offset from UTC.
pub fn beijing() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// `at`, Beijing wall time, as RFC 3339 with its `+08:00` offset.
pub fn to_rfc3339(at: NaiveDateTime) -> String {
    match at.and_local_timezone(beijing()).single() {
        Some(at) => at.to_rfc3339_opts(SecondsFormat::AutoSi, false),
        // Only at the very ends of chrono's range, which no clock reaches.
        None => format!("{}+08:00", at.format("%Y-%m-%dT%H:%M:%S%.f")),
    }
}

/// Reads an RFC 3339 timestamp in any offset as Beijing wall time; a timestamp without an
/// offset, as histories stored before offsets were written hold, is taken as Beijing time.
pub fn parse(text: &str) -> Option<NaiveDateTime> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&beijing()).naive_local());
    }
    text.parse::<NaiveDateTime>().ok()
}

/// `#[serde(with = "tongban_policy::time::rfc3339")]` for a Beijing wall-time field.
pub mod rfc3339 {
    use chrono::NaiveDateTime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &NaiveDateTime, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::to_rfc3339(*at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<NaiveDateTime, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        super::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 timestamp: {text:?}")))
    }
}

/// `#[serde(default, with = "tongban_policy::time::rfc3339_option")]` for an optional
/// Beijing wall-time field.
pub mod rfc3339_option {
    use chrono::NaiveDateTime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &Option<NaiveDateTime>, serializer: S) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => serializer.serialize_some(&super::to_rfc3339(*at)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<NaiveDateTime>, D::Error> {
        let text = Option::<std::borrow::Cow<str>>::deserialize(deserializer)?;
        text.map(|text| {
            super::parse(&text)
                .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 timestamp: {text:?}")))
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        text.parse().expect("timestamp")
    }

    #[test]
    fn beijing_wall_time_is_written_with_its_offset_and_read_back_from_any_offset() {
        assert_eq!(to_rfc3339(at("2026-12-04T11:57:14.610069")), "2026-12-04T11:57:14.610069+08:00");
        assert_eq!(to_rfc3339(at("2026-12-04T11:57:14")), "2026-12-04T11:57:14+08:00");
        assert_eq!(parse("2026-12-04T11:57:14.610069+08:00"), Some(at("2026-12-04T11:57:14.610069")));
        assert_eq!(parse("2026-12-04T03:57:14Z"), Some(at("2026-12-04T11:57:14")));
        assert_eq!(parse("2026-12-03T22:57:14-05:00"), Some(at("2026-12-04T11:57:14")));
        assert_eq!(
            parse("2026-12-04T11:57:14.5"),
            Some(at("2026-12-04T11:57:14.5")),
            "stored before offsets"
        );
        assert_eq!(parse("yesterday"), None);
    }

    #[test]
    fn a_field_round_trips_through_json() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Stamped {
            #[serde(with = "rfc3339")]
            at: NaiveDateTime,
        }
        let stamped = Stamped { at: at("2026-01-31T23:59:59.999") };
        let json = serde_json::to_string(&stamped).expect("json");
        assert_eq!(json, r#"{"at":"2026-01-31T23:59:59.999+08:00"}"#);
        assert_eq!(serde_json::from_str::<Stamped>(&json).expect("read"), stamped);
        let legacy: Stamped = serde_json::from_str(r#"{"at":"2026-01-31T23:59:59.999"}"#).expect("read");
        assert_eq!(legacy, stamped);
    }
}
