//! A JSON object read into a body type ([`taskgate_views::body`]) with every
//! field error at once, in the API's words.
//!
//! serde stops at the first problem and phrases it its own way ("invalid
//! type: integer `1`, expected a string"). A client is better served by one
//! 422 that lists every unknown, missing and invalid field, each with a
//! message that follows the field's name ("must be a string", "is
//! required", or the domain's own "must be 3 to 32 characters long").
//! [`collect`] gets that from the type's derived `Deserialize` alone:
//!
//! 1. the type's field names, from the `fields` its `deserialize_struct`
//!    is called with (a probe that answers nothing, so no cache is needed);
//! 2. every key that is not one of them is reported (sorted by name);
//! 3. the whole object is read once; if that works, that is the answer;
//! 4. otherwise each field is read alone, the type seeing a map of that one
//!    key: an error raised while its value is read belongs to it; an absent
//!    field is presented with a value that is only "nothing" (an `Option`
//!    reads it as `None`; anything else is required).
//!
//! Every pass is over the type's fields, never over the keys sent, so the
//! work grows with the body's size (bounded by the body limit) and no more.
//! A field that may be absent must be an `Option` (or read through one):
//! a `#[serde(default)]` of another type would be reported as required.

use std::fmt;

use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, MapDeserializer, SeqDeserializer, StrDeserializer};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, Expected, IntoDeserializer, MapAccess,
    Unexpected, Visitor,
};
use serde_json::{Map, Value};

use crate::problem::{ApiError, FieldError};

/// `object` as a `T`, or one 422 naming every field that is wrong.
pub fn collect<T: DeserializeOwned>(object: &Map<String, Value>) -> Result<T, ApiError> {
    let fields = fields_of::<T>().ok_or_else(|| {
        ApiError::internal(format!(
            "{} is read as a request body but is not a struct",
            std::any::type_name::<T>()
        ))
    })?;
    let mut errors: Vec<FieldError> = Vec::new();
    let unknown_message = || format!("is not a known field (known: {})", fields.join(", "));
    for key in object.keys() {
        if !fields.contains(&key.as_str()) {
            errors.push(FieldError {
                field: key.clone(),
                message: unknown_message(),
            });
        }
    }
    errors.sort_by(|a, b| a.field.cmp(&b.field));
    let whole = if errors.is_empty() {
        match T::deserialize(whole_map(object)) {
            Ok(body) => return Ok(body),
            Err(refusal) => Some(refusal),
        }
    } else {
        None
    };
    for &name in fields {
        let value = object.get(name);
        if let Some(refusal) = refusal_of::<T>(name, value) {
            let message = match value {
                None | Some(Value::Null) => "is required".to_owned(),
                Some(_) => refusal.message,
            };
            errors.push(FieldError {
                field: name.to_owned(),
                message,
            });
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    // Every field is fine alone and the whole is not: a field that read
    // "nothing" as a value yet is missing to serde. Not for the bodies of
    // this API, but answered all the same.
    Err(match whole {
        Some(Refusal {
            missing: Some(field),
            ..
        }) => ApiError::invalid(field, "is required"),
        Some(refusal) => ApiError::Malformed(format!("the request body does not fit: {refusal}")),
        None => ApiError::internal("a body with unknown fields was read without errors"),
    })
}

/// Why a value was refused, phrased to follow the field's name.
#[derive(Clone, Debug)]
pub(crate) struct Refusal {
    message: String,
    /// The field serde found missing, for [`de::Error::missing_field`].
    missing: Option<&'static str>,
}

impl Refusal {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            missing: None,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refusal {}

impl de::Error for Refusal {
    /// A domain type's own refusal (`try_from`), word for word.
    fn custom<M: fmt::Display>(message: M) -> Self {
        Self::new(message.to_string())
    }

    fn invalid_type(_: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Self::new(must_be(expected))
    }

    fn invalid_value(_: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Self::new(must_be(expected))
    }

    fn invalid_length(_: usize, expected: &dyn Expected) -> Self {
        Self::new(must_be(expected))
    }

    fn missing_field(field: &'static str) -> Self {
        Self {
            message: "is required".to_owned(),
            missing: Some(field),
        }
    }
}

/// What serde expected, in the API's words ("must be a string").
fn must_be(expected: &dyn Expected) -> String {
    let expected = expected.to_string();
    let whole = |min: i128, max: u128| format!("must be a whole number from {min} to {max}");
    match expected.as_str() {
        "a string" | "a borrowed string" | "a character" => "must be a string".to_owned(),
        "f32" | "f64" => "must be a number".to_owned(),
        "i8" => whole(i8::MIN.into(), i8::MAX.unsigned_abs().into()),
        "i16" => whole(i16::MIN.into(), i16::MAX.unsigned_abs().into()),
        "i32" => whole(i32::MIN.into(), i32::MAX.unsigned_abs().into()),
        "i64" => whole(i64::MIN.into(), i64::MAX.unsigned_abs().into()),
        "u8" => whole(0, u8::MAX.into()),
        "u16" => whole(0, u16::MAX.into()),
        "u32" => whole(0, u32::MAX.into()),
        "u64" => whole(0, u64::MAX.into()),
        "a boolean" => "must be true or false".to_owned(),
        "a map" => "must be an object".to_owned(),
        "a sequence" => "must be an array".to_owned(),
        "unit" => "must be null".to_owned(),
        other if other.starts_with("struct ") => "must be an object".to_owned(),
        other if other.starts_with("a tuple") || other.starts_with("an array") => {
            "must be an array".to_owned()
        }
        other => format!("must be {other}"),
    }
}

/// The field names of `T`, if it is a struct.
fn fields_of<'de, T: Deserialize<'de>>() -> Option<&'static [&'static str]> {
    let mut fields = None;
    // The probe answers with an error; only what it saw matters.
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// The whole object as a map of [`Val`]s.
fn whole_map(
    object: &Map<String, Value>,
) -> MapDeserializer<'_, impl Iterator<Item = (&str, Val<'_>)>, Refusal> {
    MapDeserializer::new(object.iter().map(|(key, value)| (key.as_str(), Val(value))))
}

/// What reading `T` from a map of `name` alone (absent: a value that is
/// only "nothing") says about that field's value, if anything.
fn refusal_of<'de, T: Deserialize<'de>>(
    name: &'static str,
    value: Option<&'de Value>,
) -> Option<Refusal> {
    let mut refusal = None;
    let one = One {
        key: Some(name),
        value: Some(value),
        refusal: &mut refusal,
    };
    // Other fields' absence makes this fail too; only an error raised while
    // this value was read is kept.
    let _ = T::deserialize(MapAccessDeserializer::new(one));
    refusal
}

/// A map of one key, keeping the error raised while its value is read.
struct One<'de, 'r> {
    key: Option<&'static str>,
    /// `Some(None)`: the field is absent.
    value: Option<Option<&'de Value>>,
    refusal: &'r mut Option<Refusal>,
}

impl<'de> MapAccess<'de> for One<'de, '_> {
    type Error = Refusal;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Refusal> {
        match self.key.take() {
            Some(key) => seed.deserialize(StrDeserializer::new(key)).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Refusal> {
        let read = match self.value.take().flatten() {
            Some(value) => seed.deserialize(Val(value)),
            None => seed.deserialize(Absent),
        };
        if let Err(refusal) = &read {
            *self.refusal = Some(refusal.clone());
        }
        read
    }
}

/// A JSON value, read with [`Refusal`]s for errors.
#[derive(Clone, Copy)]
struct Val<'de>(&'de Value);

impl<'de> IntoDeserializer<'de, Refusal> for Val<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Deserializer<'de> for Val<'de> {
    type Error = Refusal;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refusal> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(n) = n.as_u64() {
                    visitor.visit_u64(n)
                } else if let Some(n) = n.as_i64() {
                    visitor.visit_i64(n)
                } else if let Some(n) = n.as_f64() {
                    visitor.visit_f64(n)
                } else {
                    Err(Refusal::new("must be a number"))
                }
            }
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => {
                let mut seq = SeqDeserializer::new(items.iter().map(Val));
                let read = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(read)
            }
            Value::Object(map) => {
                let mut map = whole_map(map);
                let read = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(read)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refusal> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Refusal> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Refusal> {
        match self.0 {
            Value::String(s) => visitor.visit_enum(StrDeserializer::new(s)),
            _ => self.deserialize_any(visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

/// The value of an absent field: "nothing" to an `Option`, missing to
/// anything else.
struct Absent;

impl<'de> Deserializer<'de> for Absent {
    type Error = Refusal;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Refusal> {
        Err(Refusal::new("is required"))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refusal> {
        visitor.visit_none()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any newtype_struct enum
    }
}

/// Learns a struct's field names from `deserialize_struct`, and reads
/// nothing.
struct Probe<'f>(&'f mut Option<&'static [&'static str]>);

impl<'de> Deserializer<'de> for Probe<'_> {
    type Error = Refusal;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Refusal> {
        Err(Refusal::new("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Refusal> {
        *self.0 = Some(fields);
        Err(Refusal::new("probed"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map identifier ignored_any enum
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde::Deserialize;
    use serde_json::json;
    use taskgate_views::body;

    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    /// The (field, message) pairs of the 422 reading `value` as `T` gives.
    fn refusals<T: DeserializeOwned + fmt::Debug>(value: Value) -> Vec<(String, String)> {
        match collect::<T>(&object(value)) {
            Err(ApiError::Invalid(errors)) => {
                errors.into_iter().map(|e| (e.field, e.message)).collect()
            }
            other => panic!("expected a 422, got {other:?}"),
        }
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(f, m)| ((*f).to_owned(), (*m).to_owned()))
            .collect()
    }

    const USER_FIELDS: &str =
        "is not a known field (known: username, password, level, email, profile)";

    #[test]
    fn every_bad_field_is_reported_at_once_in_the_api_words() {
        assert_eq!(
            refusals::<body::NewUser>(
                json!({"username": "x y", "password": "p", "level": "god", "extra": 1})
            ),
            pairs(&[
                ("extra", USER_FIELDS),
                (
                    "username",
                    "may contain only letters a-z, digits 0-9, '.', '_' and '-'",
                ),
                ("password", "must be at least 15 characters long"),
                ("level", r#"must be "admin" or "user""#),
            ])
        );
    }

    #[test]
    fn unknown_invalid_and_missing_fields_together() {
        assert_eq!(
            refusals::<body::NewUser>(json!({
                "zeta": true, "alpha": null, "password": 42, "email": "nope", "profile": [1, 2],
            })),
            pairs(&[
                ("alpha", USER_FIELDS),
                ("zeta", USER_FIELDS),
                ("username", "is required"),
                ("password", "must be a string"),
                ("email", "must be a valid e-mail address"),
                ("profile", "must be a JSON object"),
            ])
        );
    }

    #[test]
    fn wrong_json_types_are_named() {
        assert_eq!(
            refusals::<body::StartTask>(json!({"type": true, "seconds": "5", "code": []})),
            pairs(&[
                ("type", "must be a string"),
                ("seconds", "must be a number"),
                ("code", "must be a string"),
            ])
        );
        assert_eq!(
            refusals::<body::NewItem>(json!({"title": "t", "status": "done", "due_date": 7})),
            pairs(&[
                ("status", "must be pending, in_progress or completed"),
                ("due_date", "must be a string"),
            ])
        );
    }

    #[test]
    fn null_is_absent_for_optional_fields_and_missing_for_required_ones() {
        assert_eq!(
            refusals::<body::NewProject>(json!({"name": null, "description": null})),
            pairs(&[("name", "is required")])
        );
        let project: body::NewProject =
            collect(&object(json!({"name": "Launch", "description": null}))).unwrap();
        assert_eq!(project.description, None);
    }

    #[test]
    fn a_nullable_field_tells_null_from_absent() {
        let edit: body::UserEdit = collect(&object(json!({"email": null}))).unwrap();
        assert_eq!(edit.email, Some(None));
        assert_eq!(edit.profile, None);
        let edit: body::UserEdit =
            collect(&object(json!({"email": "a@example.com", "profile": null}))).unwrap();
        assert_eq!(edit.email.unwrap().unwrap().as_str(), "a@example.com");
        assert_eq!(edit.profile, Some(None));
        let edit: body::ItemEdit = collect(&object(json!({}))).unwrap();
        assert!(edit.description.is_none() && edit.due_date.is_none() && edit.assignee.is_none());
    }

    #[test]
    fn an_empty_object_lists_every_required_field() {
        assert_eq!(
            refusals::<body::NewUser>(json!({})),
            pairs(&[("username", "is required"), ("password", "is required")])
        );
        assert!(collect::<body::ProjectEdit>(&Map::new()).is_ok());
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Nested {
        inner: Inner,
        bytes: Vec<u8>,
        #[serde(default)]
        flag: Option<bool>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        weight: f64,
    }

    #[test]
    fn a_wrong_type_in_a_nested_value_is_the_field_s() {
        assert_eq!(
            refusals::<Nested>(json!({"inner": {"weight": "heavy"}, "bytes": [1, 300], "flag": 1})),
            pairs(&[
                ("inner", "must be a number"),
                ("bytes", "must be a whole number from 0 to 255"),
                ("flag", "must be true or false"),
            ])
        );
        assert_eq!(
            refusals::<Nested>(json!({"inner": [], "bytes": {}})),
            pairs(&[
                ("inner", "must be an object"),
                ("bytes", "must be an array")
            ])
        );
        assert_eq!(
            refusals::<body::StartTask>(
                json!({"type": "export", "files": ["nope", 3], "format": "zip"})
            ),
            pairs(&[("files", r#""nope" is not a file id"#)])
        );
    }

    /// Counts how often a value of it is read.
    static READS: AtomicUsize = AtomicUsize::new(0);

    #[derive(Debug)]
    struct Counted;

    impl<'de> Deserialize<'de> for Counted {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            READS.fetch_add(1, Ordering::Relaxed);
            String::deserialize(deserializer).map(|_| Self)
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Small {
        counted: Counted,
        other: Option<String>,
    }

    #[test]
    fn many_unknown_keys_cost_no_reads_and_a_valid_body_one() {
        let mut body = Map::new();
        body.insert("counted".into(), json!("x"));
        for n in 0..50_000 {
            body.insert(format!("k{n:05}"), json!(n));
        }
        READS.store(0, Ordering::Relaxed);
        let errors = match collect::<Small>(&body) {
            Err(ApiError::Invalid(errors)) => errors,
            other => panic!("expected a 422, got {other:?}"),
        };
        assert_eq!(errors.len(), 50_000);
        assert_eq!(errors[0].field, "k00000");
        assert_eq!(errors[49_999].field, "k49999");
        assert_eq!(
            errors[0].message,
            "is not a known field (known: counted, other)"
        );
        // One pass per known field, whatever the number of keys: `counted`
        // read alone, and asked for (and found missing) in the pass of
        // `other`; the unknown keys are never read.
        assert_eq!(READS.load(Ordering::Relaxed), 2);

        // A valid body is read once, whole.
        READS.store(0, Ordering::Relaxed);
        let body: Small = collect(&object(json!({"counted": "x", "other": "y"}))).unwrap();
        assert_eq!(body.other.as_deref(), Some("y"));
        assert_eq!(READS.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn every_body_type_is_a_struct_with_the_fields_of_today() {
        let fields = |f: Option<&'static [&'static str]>| f.unwrap().join(",");
        assert_eq!(
            fields(fields_of::<body::Login>()),
            "username,email,password,device_token"
        );
        assert_eq!(
            fields(fields_of::<body::NewUser>()),
            "username,password,level,email,profile"
        );
        assert_eq!(
            fields(fields_of::<body::UserEdit>()),
            "password,level,email,profile"
        );
        assert_eq!(fields(fields_of::<body::NewProject>()), "name,description");
        assert_eq!(
            fields(fields_of::<body::ProjectEdit>()),
            "name,description,owner"
        );
        assert_eq!(fields(fields_of::<body::MemberRole>()), "role");
        for item in [fields_of::<body::NewItem>(), fields_of::<body::ItemEdit>()] {
            assert_eq!(fields(item), "title,description,status,due_date,assignee");
        }
        assert_eq!(
            fields(fields_of::<body::StartTask>()),
            "type,seconds,code,project,files,format"
        );
        assert_eq!(fields(fields_of::<body::ExportFile>()), "filename");
        assert!(fields_of::<Value>().is_none());
    }

    /// What a field cannot judge alone waits for the body's conversion
    /// (`RequestBody::check`), which runs once every field is valid: until
    /// then the 422 names only the fields that are wrong on their own.
    #[test]
    fn field_errors_come_before_the_rules_across_fields() {
        // A login's username or e-mail address is one rule across two
        // fields: an empty login is refused for its password first.
        assert_eq!(
            refusals::<body::Login>(json!({})),
            pairs(&[("password", "is required")])
        );
        // A password that contains the username is long enough on its own.
        assert_eq!(
            refusals::<body::NewUser>(
                json!({"username": "newbie", "password": "i am newbie, trust me", "level": "god"})
            ),
            pairs(&[("level", r#"must be "admin" or "user""#)])
        );
        // A field of another kind of task is read as its type first.
        assert_eq!(
            refusals::<body::StartTask>(json!({"type": "js", "code": "1", "seconds": "x"})),
            pairs(&[("seconds", "must be a number")])
        );
        // And null is absent: a null field of another kind is not given.
        let task: body::StartTask = collect(&object(
            json!({"type": "delay", "seconds": 1, "code": null}),
        ))
        .unwrap();
        assert_eq!(task.code, None);
    }

    #[test]
    fn a_password_never_shows_in_debug() {
        let user: body::NewUser = collect(&object(
            json!({"username": "alice", "password": "correct horse battery staple"}),
        ))
        .unwrap();
        assert!(!format!("{user:?}").contains("horse"));
        let login: body::Login =
            collect(&object(json!({"username": "alice", "password": "hunter2"}))).unwrap();
        assert!(!format!("{login:?}").contains("hunter2"));
        // Written out for the server all the same.
        assert_eq!(
            serde_json::to_value(&login).unwrap(),
            json!({"username": "alice", "password": "hunter2"})
        );
    }
}
