//! JSON request bodies, held to the fields their route documents. The
//! framework's parser takes a number or `true` for a string and, when a body
//! does not fit, names no field; this compares the body with the documented
//! fields first and says which one is missing or of the wrong type.

use std::ops::Deref;

use poem::{Request, RequestBody};
use poem_openapi::error::ParseRequestPayloadError;
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaRequest, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, Type};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use serde_json::Value;

use super::error::ApiError;

/// A JSON body of type `T`, documented in the spec exactly as `Json<T>`.
pub struct JsonBody<T>(pub T);

impl<T> Deref for JsonBody<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<'a, T: ParseFromJSON> ApiExtractor<'a> for JsonBody<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <Json<T> as ApiExtractor>::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        <Json<T> as ApiExtractor>::request_meta()
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        // The content type and the JSON syntax are checked as for any JSON
        // body, with the same errors.
        let Json(value) = Json::<Value>::from_request(request, body, param_opts).await?;
        // Checked before parsing: the parser would take a number or `true`
        // where the route documents a string.
        if let Some(named) = misfit::<T>(&value) {
            return Err(named.into());
        }
        T::parse_from_json(Some(value)).map(Self).map_err(|err| {
            ParseRequestPayloadError {
                reason: err.into_message(),
            }
            .into()
        })
    }
}

/// What a documented field takes, in the words an error uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    WholeNumber,
    Number,
    Boolean,
}

impl Kind {
    fn of(property: &MetaSchemaRef) -> Option<Self> {
        let MetaSchemaRef::Inline(schema) = property else {
            return None;
        };
        match schema.ty {
            "string" => Some(Self::Text),
            "integer" => Some(Self::WholeNumber),
            "number" => Some(Self::Number),
            "boolean" => Some(Self::Boolean),
            _ => None,
        }
    }

    fn fits(self, value: &Value) -> bool {
        match self {
            Self::Text => value.is_string(),
            Self::WholeNumber => value.is_i64() || value.is_u64(),
            Self::Number => value.is_number(),
            Self::Boolean => value.is_boolean(),
        }
    }

    fn words(self) -> &'static str {
        match self {
            Self::Text => "a string",
            Self::WholeNumber => "a whole number",
            Self::Number => "a number",
            Self::Boolean => "true or false",
        }
    }
}

/// The first documented field of `T` that `value` leaves out or gives a value
/// of the wrong type, as the error to answer; `None` when no field is at fault
/// (the body is not an object, or is wrong in a way fields cannot say).
fn misfit<T: Type>(value: &Value) -> Option<ApiError> {
    let Value::Object(given) = value else {
        return None;
    };
    let mut registry = Registry::new();
    T::register(&mut registry);
    let MetaSchemaRef::Reference(name) = T::schema_ref() else {
        return None;
    };
    let schema = registry.schemas.get(&name)?;
    for (field, property) in &schema.properties {
        let required = schema.required.contains(field);
        let fault = match given.get(*field) {
            None if required => format!("The field `{field}` is missing."),
            // An optional field may be left out, or be null.
            None => continue,
            Some(Value::Null) if !required => continue,
            Some(value) => match Kind::of(property) {
                Some(kind) if !kind.fits(value) => {
                    format!("The field `{field}` must be {}.", kind.words())
                }
                _ => continue,
            },
        };
        return Some(ApiError::bad_request("bad_request", fault).with_field(field));
    }
    None
}

#[cfg(test)]
mod tests {
    use poem_openapi::Object;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Object)]
    struct Sample {
        name: String,
        #[oai(rename = "confirmName")]
        confirm_name: String,
        age: Option<i64>,
        admin: Option<bool>,
    }

    fn message(value: Value) -> Option<(String, Option<String>)> {
        misfit::<Sample>(&value).map(|err| (err.body.message, err.body.field))
    }

    #[test]
    fn a_missing_field_is_named_by_its_json_name() {
        assert_eq!(
            message(json!({"name": "a"})),
            Some((
                "The field `confirmName` is missing.".into(),
                Some("confirmName".into())
            ))
        );
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named_with_what_it_takes() {
        let cases = [
            (
                json!({"name": [1], "confirmName": "a"}),
                "The field `name` must be a string.",
            ),
            (
                json!({"name": null, "confirmName": "a"}),
                "The field `name` must be a string.",
            ),
            (
                json!({"name": 12345678, "confirmName": "a"}),
                "The field `name` must be a string.",
            ),
            (
                json!({"name": "a", "confirmName": true}),
                "The field `confirmName` must be a string.",
            ),
            (
                json!({"name": "a", "confirmName": "a", "age": 1.5}),
                "The field `age` must be a whole number.",
            ),
            (
                json!({"name": "a", "confirmName": "a", "admin": "yes"}),
                "The field `admin` must be true or false.",
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(
                message(value.clone()).map(|m| m.0).as_deref(),
                Some(expected),
                "{value}"
            );
        }
    }

    #[test]
    fn a_fitting_body_or_a_body_that_is_no_object_names_no_field() {
        for value in [
            json!({"name": "a", "confirmName": "a"}),
            json!({"name": "a", "confirmName": "a", "age": null, "admin": true, "extra": 1}),
            json!([1]),
            json!(null),
        ] {
            assert_eq!(message(value.clone()), None, "{value}");
        }
    }
}
