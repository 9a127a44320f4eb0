//! The one text form of a timestamp, used in the API and inside event hashes:
//! RFC 3339, UTC, exactly three fractional digits (`2026-11-21T18:25:03.053Z`).
//! Fixed width, so the text sorts like the time.

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

const FORMAT: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

pub fn format(at: OffsetDateTime) -> String {
    at.to_offset(UtcOffset::UTC)
        .format(FORMAT)
        .expect("a UTC timestamp always formats")
}

/// Parses any RFC 3339 timestamp (the fixed form included).
pub fn parse(text: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
}

/// Serde adapter: `#[serde(with = "taskgate_domain::timestamp")]`.
pub fn serialize<S: serde::Serializer>(
    at: &OffsetDateTime,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*at))
}

pub fn deserialize<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<OffsetDateTime, D::Error> {
    let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
    parse(&text).map_err(serde::de::Error::custom)
}

/// The same for `Option<OffsetDateTime>`.
pub mod option {
    pub fn serialize<S: serde::Serializer>(
        at: &Option<time::OffsetDateTime>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => super::serialize(at, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<time::OffsetDateTime>, D::Error> {
        let text =
            <Option<std::borrow::Cow<'de, str>> as serde::Deserialize>::deserialize(deserializer)?;
        text.map(|t| super::parse(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_text_form_is_fixed_width_and_round_trips() {
        let at = time::macros::datetime!(2026-11-21 18:25:03 UTC);
        assert_eq!(super::format(at), "2026-11-21T18:25:03.000Z");
        assert_eq!(super::parse(&super::format(at)).unwrap(), at);
    }
}
