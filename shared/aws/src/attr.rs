//! Building DynamoDB attribute values, shared by every table's adapter.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

/// An item as DynamoDB sends and takes it.
pub(crate) type Row = HashMap<String, AttributeValue>;

/// A string attribute.
pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A number attribute.
pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}
