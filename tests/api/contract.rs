//! Answers checked against the OpenAPI document itself, for the inputs that
//! scripts/schemathesis found answered outside the spec.

use serde_json::Value;

use crate::support::TestApp;

/// A small checker of a JSON value against an OpenAPI 3.0 schema: enough of
/// the standard for the schemas Magdi's document uses (`$ref`, `allOf`,
/// `nullable`, `type`, `properties`, `required`, `items`).
struct Spec(Value);

impl Spec {
    fn load() -> Self {
        Self(serde_json::from_str(&magdi::http::openapi_document(false)).unwrap())
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema["$ref"].as_str() {
            Some(reference) => {
                let name = reference.trim_start_matches("#/components/schemas/");
                self.resolve(&self.0["components"]["schemas"][name])
            }
            None => schema,
        }
    }

    /// The schema of a route's 200 JSON answer.
    fn answer_schema(&self, method: &str, path: &str) -> &Value {
        let content = &self.0["paths"][path][method]["responses"]["200"]["content"];
        let schema = &content["application/json; charset=utf-8"]["schema"];
        if schema.is_null() {
            &content["application/json"]["schema"]
        } else {
            schema
        }
    }

    fn check(&self, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
        let schema = self.resolve(schema);
        if value.is_null() {
            if schema["nullable"] != true {
                problems.push(format!("{at} is null, which the spec does not allow"));
            }
            return;
        }
        if let Some(parts) = schema["allOf"].as_array() {
            for part in parts {
                self.check(part, value, at, problems);
            }
        }
        let fits = match schema["type"].as_str() {
            None => true,
            Some("string") => value.is_string(),
            Some("integer") => value.is_i64() || value.is_u64(),
            Some("number") => value.is_number(),
            Some("boolean") => value.is_boolean(),
            Some("array") => value.is_array(),
            Some("object") => value.is_object(),
            Some(other) => panic!("the checker does not know the type {other}"),
        };
        if !fits {
            problems.push(format!("{at} is {value}, not of type {}", schema["type"]));
            return;
        }
        if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
            for (index, item) in values.iter().enumerate() {
                self.check(items, item, &format!("{at}[{index}]"), problems);
            }
        }
        if let Some(object) = value.as_object() {
            for required in schema["required"].as_array().into_iter().flatten() {
                let name = required.as_str().unwrap();
                if !object.contains_key(name) {
                    problems.push(format!("{at}.{name} is required but missing"));
                }
            }
            if let Some(properties) = schema["properties"].as_object() {
                for (name, field) in object {
                    if let Some(field_schema) = properties.get(name) {
                        self.check(field_schema, field, &format!("{at}.{name}"), problems);
                    }
                }
            }
        }
    }

    fn assert_answer(&self, method: &str, path: &str, value: &Value) {
        let schema = self.answer_schema(method, path);
        assert!(!schema.is_null(), "no 200 JSON schema for {method} {path}");
        let mut problems = Vec::new();
        self.check(schema, value, "answer", &mut problems);
        assert!(
            problems.is_empty(),
            "{method} {path} answered outside the spec: {problems:#?}\n{value:#}"
        );
    }
}

#[tokio::test]
async fn fields_that_can_be_null_are_documented_as_nullable() {
    // Unlimited: `remaining` is null. A fresh conversation: `ended_at` and
    // `title` are null. A turn without files: `artifact` is null, and the
    // user's message has a null `usage`, `llm_model` and `error`.
    let app = TestApp::spawn_with(|s| s.daily_token_limit = 0).await;
    let spec = Spec::load();
    let account = app.account("contract@example.com").await;
    let token = account.token.as_str();
    let id = app.conversation(&account, "qa_info").await;

    let list: Value = app
        .get("/conversations", Some(token))
        .await
        .json()
        .await
        .unwrap();
    assert!(list["next_before"].is_null() && list["conversations"][0]["title"].is_null());
    spec.assert_answer("get", "/conversations", &list);

    let detail = app.conversation_detail(token, &id).await;
    assert!(detail["ended_at"].is_null());
    spec.assert_answer("get", "/conversations/{conversation_id}", &detail);

    let usage = app.usage(token).await;
    assert!(usage["remaining"].is_null());
    spec.assert_answer("get", "/usage", &usage);

    let turn = app
        .chat(
            token,
            app.chat_form(&id, "qa_info", "What is a flaky test?"),
        )
        .await;
    assert_eq!(turn.status(), 200);
    let turn: Value = turn.json().await.unwrap();
    assert!(turn["artifact"].is_null());
    spec.assert_answer("post", "/chat", &turn);

    let detail = app.conversation_detail(token, &id).await;
    assert!(detail["messages"][0]["usage"].is_null());
    spec.assert_answer("get", "/conversations/{conversation_id}", &detail);
    let list: Value = app
        .get("/conversations", Some(token))
        .await
        .json()
        .await
        .unwrap();
    spec.assert_answer("get", "/conversations", &list);
}

#[test]
fn the_checker_refuses_a_null_the_spec_does_not_allow() {
    let spec = Spec::load();
    let mut problems = Vec::new();
    let schema = serde_json::json!({"$ref": "#/components/schemas/ConversationList"});
    let value = serde_json::json!({"conversations": null, "next_before": null});
    spec.check(&schema, &value, "answer", &mut problems);
    assert_eq!(
        problems,
        ["answer.conversations is null, which the spec does not allow"]
    );
}
