//! The HTTP API's wire side, pure: which endpoint a request is for, its JSON body and query
//! decoded (base64 keys and values) into a `KvRequest` for TX, and every answer turned into
//! a status code and a JSON body. The status codes are chosen here once (docs/http-api.md).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};

use spindle_proto::kv::{CommitRequest, Key, KvAnswer, KvRequest, Operation, Precondition};
use spindle_types::limits::{
    KV_OPERATIONS_MAX, KV_PRECONDITIONS_MAX, KV_RANGE_LIMIT_DEFAULT, KV_RANGE_LIMIT_MAX,
};

use crate::request::{query_param, Head, Method};

/// Request ids a client may choose: 1 to this many bytes.
pub const REQUEST_ID_MAX: usize = 256;

/// A response: status code and JSON body (or another body with its content type).
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    /// `Allow:` for a 405.
    pub allow: Option<&'static str>,
}

impl Response {
    pub fn json(status: u16, body: &Value) -> Response {
        Response {
            status,
            body: body.to_string().into_bytes(),
            content_type: "application/json",
            allow: None,
        }
    }

    pub fn error(status: u16, error: &str, message: &str) -> Response {
        Response::json(status, &json!({"status": error, "error": message}))
    }

    /// 400 naming the field at fault.
    pub fn bad(field: &str, message: &str) -> Response {
        Response::json(
            400,
            &json!({"status": "bad_request", "field": field, "error": message}),
        )
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// What a request is, once routed and decoded.
#[derive(Debug, PartialEq)]
pub enum Routed {
    /// Answered on the HTTP thread.
    Version,
    Metrics,
    /// For TX; `request_id` is echoed in the answer.
    Tx {
        request: KvRequest,
        request_id: Option<String>,
    },
    Done(Response),
}

/// What the HTTP thread knows when it routes: this run's leader and a request id source.
pub struct Context<'a> {
    pub leader_id: &'a str,
    pub new_request_id: &'a mut dyn FnMut() -> String,
}

pub fn route(head: &Head, body: &[u8], cx: &mut Context<'_>) -> Routed {
    let method = head.method;
    let allow = |allowed: Method, name: &'static str| -> Option<Routed> {
        (method != allowed).then(|| {
            let mut r = Response::error(405, "method_not_allowed", "method not allowed");
            r.allow = Some(name);
            Routed::Done(r)
        })
    };
    match head.path.as_str() {
        "/v1/commit" => allow(Method::Post, "POST").unwrap_or_else(|| commit(body, cx)),
        "/v1/version" => allow(Method::Get, "GET").unwrap_or(Routed::Version),
        "/metrics" => allow(Method::Get, "GET").unwrap_or(Routed::Metrics),
        "/v1/read" => allow(Method::Get, "GET").unwrap_or_else(|| read(&head.query)),
        "/v1/range" => allow(Method::Get, "GET").unwrap_or_else(|| range(&head.query)),
        p if p.starts_with("/v1/status/") => {
            allow(Method::Get, "GET").unwrap_or_else(|| status(p, &head.query))
        }
        "/v1/subscribe" => Routed::Done(Response::error(
            501,
            "not_implemented",
            "this endpoint is not implemented yet",
        )),
        p if p.starts_with("/v1/retention") => Routed::Done(Response::error(
            501,
            "not_implemented",
            "this endpoint is not implemented yet",
        )),
        _ => Routed::Done(Response::error(404, "not_found", "no such endpoint")),
    }
}

fn to_tx(request: KvRequest) -> Routed {
    Routed::Tx {
        request,
        request_id: None,
    }
}

fn base64_param(query: &str, name: &str) -> Result<Option<Key>, Response> {
    let raw = query_param(query, name).map_err(|e| Response::bad(name, &e))?;
    raw.map(|r| {
        STANDARD
            .decode(r)
            .map_err(|e| Response::bad(name, &format!("not base64 with padding: {e}")))
    })
    .transpose()
}

fn read(query: &str) -> Routed {
    match base64_param(query, "key") {
        Ok(Some(key)) => to_tx(KvRequest::Read { key }),
        Ok(None) => Routed::Done(Response::bad("key", "missing")),
        Err(r) => Routed::Done(r),
    }
}

fn range(query: &str) -> Routed {
    let parsed = (|| {
        let begin = base64_param(query, "begin")?.unwrap_or_default();
        let end = base64_param(query, "end")?.filter(|e| !e.is_empty());
        let limit = match query_param(query, "limit").map_err(|e| Response::bad("limit", &e))? {
            None => KV_RANGE_LIMIT_DEFAULT,
            Some(text) => std::str::from_utf8(&text)
                .ok()
                .and_then(|t| t.parse::<u32>().ok())
                .filter(|l| (1..=KV_RANGE_LIMIT_MAX).contains(l))
                .ok_or_else(|| {
                    Response::bad(
                        "limit",
                        &format!("must be an integer from 1 to {KV_RANGE_LIMIT_MAX}"),
                    )
                })?,
        };
        Ok(KvRequest::Range { begin, end, limit })
    })();
    match parsed {
        Ok(r) => to_tx(r),
        Err(r) => Routed::Done(r),
    }
}

/// `/v1/status/<request_id>[?min_version=V]`.
fn status(path: &str, query: &str) -> Routed {
    let raw = path.strip_prefix("/v1/status/").unwrap_or("");
    let id = crate::request::query_param(&format!("id={raw}"), "id")
        .ok()
        .flatten()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|id| !id.is_empty() && id.len() <= REQUEST_ID_MAX);
    let Some(request_id) = id else {
        return Routed::Done(Response::bad(
            "request_id",
            &format!("must be 1 to {REQUEST_ID_MAX} bytes of percent-encoded UTF-8"),
        ));
    };
    // Accepted and checked; nothing is dropped from the log's commit records yet, so no
    // answer is `log_truncated` for now.
    let min_version = query_param(query, "min_version").map(|v| {
        v.map(|text| {
            std::str::from_utf8(&text)
                .ok()
                .and_then(|t| t.parse::<u64>().ok())
        })
    });
    if matches!(min_version, Err(_) | Ok(Some(None))) {
        return Routed::Done(Response::bad(
            "min_version",
            "must be a non-negative integer",
        ));
    }
    Routed::Tx {
        request: KvRequest::Status {
            request_id: request_id.clone(),
        },
        request_id: Some(request_id),
    }
}

/// A bad field: its path and what is wrong.
struct Bad(String, String);

fn bad(field: impl Into<String>, message: impl Into<String>) -> Bad {
    Bad(field.into(), message.into())
}

fn commit(body: &[u8], cx: &mut Context<'_>) -> Routed {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Routed::Done(Response::bad("body", &format!("malformed JSON: {e}"))),
    };
    let Some(obj) = value.as_object() else {
        return Routed::Done(Response::bad("body", "must be a JSON object"));
    };
    if let Some(leader) = obj.get("leader_id") {
        match leader.as_str() {
            Some(l) if l == cx.leader_id => {}
            Some(_) => {
                return Routed::Done(Response::json(
                    421,
                    &json!({"status": "leader_changed", "leader_id": cx.leader_id,
                            "error": "leader_id is not this server's leader id"}),
                ))
            }
            None => return Routed::Done(Response::bad("leader_id", "must be a string")),
        }
    }
    match decode_commit(obj, cx) {
        Ok(c) => Routed::Tx {
            request_id: Some(c.request_id.clone()),
            request: KvRequest::Commit(c),
        },
        Err(Bad(field, message)) => Routed::Done(Response::bad(&field, &message)),
    }
}

fn decode_commit(obj: &Map<String, Value>, cx: &mut Context<'_>) -> Result<CommitRequest, Bad> {
    let request_id = match obj.get("request_id") {
        None | Some(Value::Null) => (cx.new_request_id)(),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= REQUEST_ID_MAX => s.clone(),
        Some(_) => {
            return Err(bad(
                "request_id",
                format!("must be a string of 1 to {REQUEST_ID_MAX} bytes"),
            ))
        }
    };
    let read_version = match obj.get("read_version") {
        None => return Err(bad("read_version", "missing")),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| bad("read_version", "must be a non-negative integer"))?,
    };
    let preconditions = match obj.get("preconditions") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => list(v, "preconditions", KV_PRECONDITIONS_MAX)?
            .iter()
            .enumerate()
            .map(|(i, p)| precondition(p, i, read_version))
            .collect::<Result<_, _>>()?,
    };
    let operations: Vec<Operation> = match obj.get("operations") {
        None => return Err(bad("operations", "missing")),
        Some(v) => list(v, "operations", KV_OPERATIONS_MAX)?
            .iter()
            .enumerate()
            .map(|(i, op)| operation(op, i))
            .collect::<Result<_, _>>()?,
    };
    if operations.is_empty() {
        return Err(bad("operations", "must hold at least one operation"));
    }
    Ok(CommitRequest {
        request_id,
        read_version,
        preconditions,
        operations,
    })
}

fn list<'a>(v: &'a Value, field: &str, max: usize) -> Result<&'a Vec<Value>, Bad> {
    let items = v.as_array().ok_or_else(|| bad(field, "must be an array"))?;
    if items.len() > max {
        return Err(bad(field, format!("holds more than {max} items")));
    }
    Ok(items)
}

/// `obj[name]` as base64 bytes; `None` when absent (or null).
fn bytes(obj: &Map<String, Value>, path: &str, name: &str) -> Result<Option<Vec<u8>>, Bad> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => STANDARD.decode(s).map(Some).map_err(|e| {
            bad(
                format!("{path}.{name}"),
                format!("not base64 with padding: {e}"),
            )
        }),
        Some(_) => Err(bad(format!("{path}.{name}"), "must be a base64 string")),
    }
}

fn required(obj: &Map<String, Value>, path: &str, name: &str) -> Result<Vec<u8>, Bad> {
    bytes(obj, path, name)?.ok_or_else(|| bad(format!("{path}.{name}"), "missing"))
}

/// `end`: absent, null or empty means "to the last key".
fn end(obj: &Map<String, Value>, path: &str) -> Result<Option<Vec<u8>>, Bad> {
    Ok(bytes(obj, path, "end")?.filter(|e| !e.is_empty()))
}

fn typed<'a>(v: &'a Value, path: &str) -> Result<(&'a Map<String, Value>, &'a str), Bad> {
    let obj = v
        .as_object()
        .ok_or_else(|| bad(path, "must be an object"))?;
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("{path}.type"), "missing or not a string"))?;
    Ok((obj, kind))
}

fn precondition(v: &Value, i: usize, read_version: u64) -> Result<Precondition, Bad> {
    let path = format!("preconditions[{i}]");
    let (obj, kind) = typed(v, &path)?;
    let version = match obj.get("version") {
        None | Some(Value::Null) => read_version,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| bad(format!("{path}.version"), "must be a non-negative integer"))?,
    };
    match kind {
        "point_read" => Ok(Precondition::PointRead {
            key: required(obj, &path, "key")?,
            version,
        }),
        "range_read" => Ok(Precondition::RangeRead {
            begin: required(obj, &path, "begin")?,
            end: end(obj, &path)?,
            version,
        }),
        other => Err(bad(
            format!("{path}.type"),
            format!("unknown precondition type '{other}'"),
        )),
    }
}

fn operation(v: &Value, i: usize) -> Result<Operation, Bad> {
    let path = format!("operations[{i}]");
    let (obj, kind) = typed(v, &path)?;
    match kind {
        "write" => Ok(Operation::Write {
            key: required(obj, &path, "key")?,
            value: required(obj, &path, "value")?,
        }),
        "delete" => Ok(Operation::Delete {
            key: required(obj, &path, "key")?,
        }),
        "range_delete" => Ok(Operation::RangeDelete {
            begin: required(obj, &path, "begin")?,
            end: end(obj, &path)?,
        }),
        other => Err(bad(
            format!("{path}.type"),
            format!("unknown operation type '{other}'"),
        )),
    }
}

/// `/v1/version`.
pub fn version(durable: u64, leader_id: &str) -> Response {
    Response::json(200, &json!({"version": durable, "leader_id": leader_id}))
}

/// TX's answer as the client sees it.
pub fn answer(answer: KvAnswer, request_id: Option<&str>, leader_id: &str) -> Response {
    let mut r = match answer {
        KvAnswer::Committed { version } => Response::json(
            200,
            &json!({"status": "committed", "version": version, "leader_id": leader_id}),
        ),
        KvAnswer::NotCommitted { conflicts, version } => Response::json(
            409,
            &json!({"status": "not_committed", "conflicts": conflicts, "version": version,
                    "leader_id": leader_id}),
        ),
        KvAnswer::RequestIdUsed { version } => Response::json(
            422,
            &json!({"status": "request_id_used", "version": version, "leader_id": leader_id,
                    "error": "this request_id has committed already"}),
        ),
        KvAnswer::RequestIdBanned => Response::json(
            422,
            &json!({"status": "request_id_banned", "leader_id": leader_id,
                    "error": "a status request banned this request_id before it committed"}),
        ),
        KvAnswer::StatusCommitted { version } => Response::json(
            200,
            &json!({"status": "committed", "version": version, "leader_id": leader_id}),
        ),
        KvAnswer::StatusNotCommitted { version } => Response::json(
            200,
            &json!({"status": "not_committed", "version": version, "leader_id": leader_id}),
        ),
        KvAnswer::TooOld { oldest, version } => Response::json(
            410,
            &json!({"status": "read_version_too_old", "oldest_version": oldest,
                    "version": version, "leader_id": leader_id,
                    "error": "the conflict window no longer holds that version"}),
        ),
        KvAnswer::FutureVersion { version } => Response::json(
            400,
            &json!({"status": "bad_request", "field": "read_version", "version": version,
                    "error": "newer than the latest version"}),
        ),
        KvAnswer::Value { version, value } => Response::json(
            200,
            &json!({"version": version, "value": value.map(|v| STANDARD.encode(v))}),
        ),
        KvAnswer::Range {
            version,
            pairs,
            more,
        } => {
            let pairs: Vec<Value> = pairs
                .into_iter()
                .map(|(k, v)| json!({"key": STANDARD.encode(k), "value": STANDARD.encode(v)}))
                .collect();
            Response::json(
                200,
                &json!({"version": version, "pairs": pairs, "more": more}),
            )
        }
        KvAnswer::Unavailable(why) => Response::error(503, "unavailable", &why),
        KvAnswer::Failed(why) => Response::error(500, "failed", &why),
    };
    if let Some(id) = request_id {
        if let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(&r.body) {
            obj.insert("request_id".into(), Value::String(id.to_string()));
            r.body = Value::Object(obj).to_string().into_bytes();
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::parse_head;

    fn routed(raw: &str, body: &str) -> Routed {
        let head = parse_head(raw.as_bytes(), 1 << 20).unwrap().unwrap();
        let mut next = || "generated".to_string();
        let mut cx = Context {
            leader_id: "L",
            new_request_id: &mut next,
        };
        route(&head, body.as_bytes(), &mut cx)
    }

    fn post(body: &str) -> Routed {
        routed("POST /v1/commit HTTP/1.1\r\n\r\n", body)
    }

    fn field_of(r: Routed) -> String {
        match r {
            Routed::Done(resp) => {
                assert_eq!(resp.status, 400, "{resp:?}");
                let v: Value = serde_json::from_slice(&resp.body).unwrap();
                v["field"].as_str().unwrap().to_string()
            }
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn a_commit_decodes_with_defaults() {
        let r = post(
            r#"{"read_version": 7, "preconditions": [{"type": "point_read", "key": "YQ=="},
                {"type": "range_read", "begin": "", "end": "", "version": 3}],
                "operations": [{"type": "write", "key": "YQ==", "value": "Yg=="},
                {"type": "delete", "key": "YQ=="}, {"type": "range_delete", "begin": "YQ==", "end": "Yw=="}]}"#,
        );
        let Routed::Tx {
            request: KvRequest::Commit(c),
            request_id,
        } = r
        else {
            panic!("{r:?}")
        };
        assert_eq!(request_id.as_deref(), Some("generated"));
        assert_eq!(c.read_version, 7);
        assert_eq!(
            c.preconditions,
            vec![
                Precondition::PointRead {
                    key: b"a".to_vec(),
                    version: 7
                },
                Precondition::RangeRead {
                    begin: vec![],
                    end: None,
                    version: 3
                },
            ]
        );
        assert_eq!(c.operations.len(), 3);
    }

    #[test]
    fn bad_commits_name_their_field() {
        assert_eq!(field_of(post("{")), "body");
        assert_eq!(field_of(post("[]")), "body");
        assert_eq!(field_of(post(r#"{"operations": []}"#)), "read_version");
        assert_eq!(field_of(post(r#"{"read_version": -1}"#)), "read_version");
        assert_eq!(field_of(post(r#"{"read_version": 1}"#)), "operations");
        assert_eq!(
            field_of(post(r#"{"read_version": 1, "operations": []}"#)),
            "operations"
        );
        assert_eq!(
            field_of(post(
                r#"{"read_version": 1, "operations": [{"type": "put", "key": "YQ=="}]}"#
            )),
            "operations[0].type"
        );
        assert_eq!(
            field_of(post(
                r#"{"read_version": 1, "operations": [{"type": "write", "key": "YQ", "value": ""}]}"#
            )),
            "operations[0].key"
        );
        assert_eq!(
            field_of(post(
                r#"{"read_version": 1, "operations": [{"type": "write", "key": "YQ=="}]}"#
            )),
            "operations[0].value"
        );
        assert_eq!(
            field_of(post(
                r#"{"read_version": 1, "preconditions": [{"type": "point_read", "key": 5}],
                    "operations": [{"type": "delete", "key": ""}]}"#
            )),
            "preconditions[0].key"
        );
        assert_eq!(
            field_of(post(
                r#"{"request_id": "", "read_version": 1, "operations": [{"type": "delete", "key": ""}]}"#
            )),
            "request_id"
        );
    }

    #[test]
    fn a_foreign_leader_is_its_own_answer() {
        let r = post(r#"{"leader_id": "other", "read_version": 1}"#);
        let Routed::Done(resp) = r else {
            panic!("{r:?}")
        };
        assert_eq!(resp.status, 421);
    }

    #[test]
    fn methods_and_paths() {
        let r = routed("GET /v1/commit HTTP/1.1\r\n\r\n", "");
        assert!(matches!(
            r,
            Routed::Done(Response {
                status: 405,
                allow: Some("POST"),
                ..
            })
        ));
        let r = routed("GET /nope HTTP/1.1\r\n\r\n", "");
        assert!(matches!(r, Routed::Done(Response { status: 404, .. })));
        assert_eq!(
            routed("GET /v1/version HTTP/1.1\r\n\r\n", ""),
            Routed::Version
        );
        let r = routed("GET /v1/range?begin=YQ%3D%3D&limit=0 HTTP/1.1\r\n\r\n", "");
        assert_eq!(field_of(r), "limit");
        let r = routed("GET /v1/read HTTP/1.1\r\n\r\n", "");
        assert_eq!(field_of(r), "key");
        let r = routed("GET /v1/status/ HTTP/1.1\r\n\r\n", "");
        assert_eq!(field_of(r), "request_id");
        let r = routed("GET /v1/status/a%zz HTTP/1.1\r\n\r\n", "");
        assert_eq!(field_of(r), "request_id");
        let r = routed("GET /v1/status/x?min_version=-1 HTTP/1.1\r\n\r\n", "");
        assert_eq!(field_of(r), "min_version");
        let r = routed("GET /v1/status/a%20b?min_version=3 HTTP/1.1\r\n\r\n", "");
        assert_eq!(
            r,
            Routed::Tx {
                request: KvRequest::Status {
                    request_id: "a b".into()
                },
                request_id: Some("a b".into())
            }
        );
        let r = routed("POST /v1/status/x HTTP/1.1\r\n\r\n", "");
        assert!(matches!(r, Routed::Done(Response { status: 405, .. })));
    }

    proptest::proptest! {
        #[test]
        fn any_body_or_query_gets_an_answer_without_panicking(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
            query in "[a-z=&%0-9A-Za-z+/]{0,64}",
        ) {
            let _ = post(&String::from_utf8_lossy(&body));
            let _ = routed(&format!("GET /v1/range?{query} HTTP/1.1\r\n\r\n"), "");
            let _ = routed(&format!("GET /v1/read?{query} HTTP/1.1\r\n\r\n"), "");
        }

        #[test]
        fn commits_built_from_any_json_shape_never_panic(
            rv in proptest::prelude::any::<i64>(),
            kind in "(write|delete|range_delete|point_read|range_read|x)",
            key in "[A-Za-z0-9+/=]{0,8}",
        ) {
            let body = format!(
                r#"{{"read_version": {rv}, "preconditions": [{{"type": "{kind}", "key": "{key}", "begin": "{key}"}}],
                    "operations": [{{"type": "{kind}", "key": "{key}", "value": "{key}", "begin": "{key}", "end": "{key}"}}]}}"#
            );
            let _ = post(&body);
        }
    }

    #[test]
    fn answers_carry_the_request_id() {
        let r = answer(KvAnswer::Committed { version: 3 }, Some("id"), "L");
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(v["request_id"], "id");
        assert_eq!(v["version"], 3);
    }
}
