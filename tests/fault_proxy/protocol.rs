//! What the proxy reads from and writes in the SQS protocols: the action a request
//! names, the error answers it injects, and the rewrite of a batch answer; and in ECS's
//! (JSON 1.1, `X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Action>`): the
//! capacity shortage of a `RunTask` on Fargate Spot, and a `ListTasks` that lags.
//!
//! The AWS SDK speaks the JSON protocol (`X-Amz-Target: AmazonSQS.<Action>`, errors as
//! `{"__type": …}` with the `x-amzn-query-error` header); the older query protocol
//! names its action in an `Action=` form or query parameter and gets XML errors.

use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode, Uri};

/// The action a request names, or `None` when it names none.
pub fn action_of(headers: &HeaderMap, uri: &Uri, body: &[u8]) -> Option<String> {
    if let Some(target) = headers
        .get("x-amz-target")
        .and_then(|value| value.to_str().ok())
    {
        // `AmazonSQS.ReceiveMessage`; other JSON services name theirs the same way.
        let action = target.rsplit('.').next().unwrap_or(target);
        return Some(action.to_owned());
    }
    let form = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|kind| kind.starts_with("application/x-www-form-urlencoded"));
    let from_pairs = |pairs: &[u8]| {
        pairs
            .split(|byte| *byte == b'&')
            .find_map(|pair| pair.strip_prefix(b"Action="))
            .and_then(|action| std::str::from_utf8(action).ok())
            .filter(|action| !action.is_empty())
            .map(str::to_owned)
    };
    uri.query()
        .and_then(|query| from_pairs(query.as_bytes()))
        .or_else(|| form.then(|| from_pairs(body)).flatten())
}

/// Whether the request speaks the query protocol (its errors are XML).
pub fn is_query_protocol(headers: &HeaderMap) -> bool {
    !headers.contains_key("x-amz-target")
}

/// An injected error answer: SQS's throttling error (HTTP 400) or a server error.
pub fn error_response(status: u16, query_protocol: bool) -> Response<Bytes> {
    let (code, fault, message) = match status {
        400 => ("RequestThrottled", "Sender", "Rate exceeded (injected)"),
        503 => (
            "ServiceUnavailable",
            "Receiver",
            "Service unavailable (injected)",
        ),
        _ => ("InternalError", "Receiver", "Internal error (injected)"),
    };
    let (content_type, body) = if query_protocol {
        (
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>{fault}</Type><Code>{code}</Code>\
                 <Message>{message}</Message></Error><RequestId>fault-proxy</RequestId>\
                 </ErrorResponse>"
            ),
        )
    } else {
        (
            "application/x-amz-json-1.0",
            serde_json::json!({
                "__type": format!("com.amazonaws.sqs#{code}"),
                "message": message,
            })
            .to_string(),
        )
    };
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&format!("{code};{fault}")) {
        headers.insert("x-amzn-query-error", value);
    }
    headers.insert("x-amzn-requestid", HeaderValue::from_static("fault-proxy"));
    response
}

/// Rewrites a successful JSON batch answer (`{"Successful": [...], "Failed": [...]}`)
/// so that the entries `choose` picks (given how many succeeded, it returns their
/// indexes) are reported failed with a retryable `InternalError`. `None` when the body
/// is no such answer or no entry succeeded: nothing is injected then.
///
/// The queue did apply those entries: a caller that retries a "failed" delete deletes
/// again (harmless, or a stale-handle answer), a retried visibility change sets the
/// same timeout again from a later moment, a retried send sends a duplicate.
pub fn fail_some_entries(
    body: &[u8],
    choose: impl FnOnce(usize) -> Vec<usize>,
) -> Option<(Bytes, usize)> {
    let mut answer: serde_json::Value = serde_json::from_slice(body).ok()?;
    let object = answer.as_object_mut()?;
    let successful = object.get_mut("Successful")?.as_array_mut()?;
    if successful.is_empty() {
        return None;
    }
    let mut chosen = choose(successful.len());
    chosen.sort_unstable();
    chosen.dedup();
    chosen.retain(|index| *index < successful.len());
    if chosen.is_empty() {
        return None;
    }
    let mut failed = Vec::with_capacity(chosen.len());
    for index in chosen.iter().rev() {
        let entry = successful.remove(*index);
        let id = entry.get("Id").cloned().unwrap_or_default();
        failed.push(serde_json::json!({
            "Id": id,
            "Code": "InternalError",
            "SenderFault": false,
            "Message": "injected",
        }));
    }
    failed.reverse();
    let count = failed.len();
    match object
        .get_mut("Failed")
        .and_then(|list| list.as_array_mut())
    {
        Some(list) => list.extend(failed),
        None => {
            object.insert("Failed".to_owned(), serde_json::Value::Array(failed));
        }
    }
    Some((Bytes::from(answer.to_string()), count))
}

/// The reason ECS gives in a `RunTask` answer's `failures` when Fargate has no capacity
/// for a task.
pub const NO_CAPACITY: &str = "Capacity is unavailable at this time. Please try again later or in a different availability zone";

/// The tasks a `RunTask` request asks for when its capacity provider strategy names
/// `FARGATE_SPOT` (`count`, 1 when absent); `None` for any other request.
pub fn spot_tasks_asked(body: &[u8]) -> Option<u64> {
    let request: serde_json::Value = serde_json::from_slice(body).ok()?;
    let on_spot = request["capacityProviderStrategy"]
        .as_array()?
        .iter()
        .any(|item| item["capacityProvider"] == "FARGATE_SPOT");
    on_spot.then(|| request["count"].as_u64().unwrap_or(1))
}

/// A `RunTask` answer that started nothing: each of the `count` tasks in `failures` for
/// lack of Spot capacity, as ECS reports it (HTTP 200).
pub fn no_spot_answer(count: u64) -> Response<Bytes> {
    let failures: Vec<serde_json::Value> = (0..count)
        .map(|_| serde_json::json!({ "reason": NO_CAPACITY }))
        .collect();
    let body = serde_json::json!({ "tasks": [], "failures": failures }).to_string();
    let mut response = Response::new(Bytes::from(body));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    headers.insert("x-amzn-requestid", HeaderValue::from_static("fault-proxy"));
    response
}

/// A `ListTasks` answer with its tasks (and any next page) taken out; `None` when the
/// body is no such answer.
pub fn without_tasks(body: &[u8]) -> Option<Bytes> {
    let mut answer: serde_json::Value = serde_json::from_slice(body).ok()?;
    let object = answer.as_object_mut()?;
    object.get("taskArns")?.as_array()?;
    object.insert("taskArns".to_owned(), serde_json::json!([]));
    object.remove("nextToken");
    Some(Bytes::from(answer.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_action_comes_from_the_target_header_or_the_action_parameter() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amz-target",
            HeaderValue::from_static("AmazonSQS.ReceiveMessage"),
        );
        let uri = Uri::from_static("/");
        assert_eq!(
            action_of(&headers, &uri, b"{}").as_deref(),
            Some("ReceiveMessage")
        );
        assert!(!is_query_protocol(&headers));

        let mut form = HeaderMap::new();
        form.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
        );
        assert_eq!(
            action_of(
                &form,
                &uri,
                b"QueueUrl=x&Action=DeleteMessageBatch&Version=1"
            )
            .as_deref(),
            Some("DeleteMessageBatch")
        );
        assert!(is_query_protocol(&form));
        let query = Uri::from_static("/?Action=GetQueueAttributes");
        assert_eq!(
            action_of(&HeaderMap::new(), &query, b"").as_deref(),
            Some("GetQueueAttributes")
        );
        assert_eq!(action_of(&HeaderMap::new(), &uri, b"Action=X"), None);
    }

    #[test]
    fn the_throttling_answer_has_the_sqs_code_in_body_and_header() {
        let response = error_response(400, false);
        assert_eq!(response.status(), 400);
        assert_eq!(
            response.headers()["x-amzn-query-error"],
            "RequestThrottled;Sender"
        );
        let body: serde_json::Value = serde_json::from_slice(response.body()).expect("a JSON body");
        assert_eq!(body["__type"], "com.amazonaws.sqs#RequestThrottled");
        let xml = error_response(503, true);
        assert_eq!(xml.status(), 503);
        let text = String::from_utf8_lossy(xml.body()).into_owned();
        assert!(text.contains("<Code>ServiceUnavailable</Code>"), "{text}");
    }

    #[test]
    fn chosen_successful_entries_move_to_failed_with_a_retryable_code() {
        let body = br#"{"Successful":[{"Id":"0"},{"Id":"1"},{"Id":"2"}],"Failed":[{"Id":"3","Code":"ReceiptHandleIsInvalid","SenderFault":true}]}"#;
        let (rewritten, count) =
            fail_some_entries(body, |len| vec![len - 1, 0, 0]).expect("a rewrite");
        assert_eq!(count, 2);
        let answer: serde_json::Value = serde_json::from_slice(&rewritten).expect("JSON");
        assert_eq!(answer["Successful"], serde_json::json!([{"Id": "1"}]));
        let failed = answer["Failed"].as_array().expect("a list");
        let ids: Vec<_> = failed.iter().map(|entry| entry["Id"].clone()).collect();
        assert_eq!(ids, ["3", "0", "2"]);
        assert_eq!(failed[1]["Code"], "InternalError");
        assert_eq!(failed[1]["SenderFault"], false);
    }

    #[test]
    fn a_spot_run_task_is_told_apart_and_answered_with_capacity_failures() {
        let spot = br#"{"cluster":"c","count":3,"capacityProviderStrategy":[{"capacityProvider":"FARGATE_SPOT","weight":1}]}"#;
        assert_eq!(spot_tasks_asked(spot), Some(3));
        let one = br#"{"capacityProviderStrategy":[{"capacityProvider":"FARGATE_SPOT"}]}"#;
        assert_eq!(spot_tasks_asked(one), Some(1));
        let on_demand =
            br#"{"count":3,"capacityProviderStrategy":[{"capacityProvider":"FARGATE"}]}"#;
        assert_eq!(spot_tasks_asked(on_demand), None);
        assert_eq!(
            spot_tasks_asked(br#"{"count":3,"launchType":"FARGATE"}"#),
            None
        );

        let answer = no_spot_answer(2);
        assert_eq!(answer.status(), 200);
        let body: serde_json::Value = serde_json::from_slice(answer.body()).expect("JSON");
        assert_eq!(body["tasks"], serde_json::json!([]));
        assert_eq!(body["failures"][1]["reason"], NO_CAPACITY);
        assert_eq!(body["failures"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn a_lagging_list_lists_nothing() {
        let listed =
            without_tasks(br#"{"taskArns":["a","b"],"nextToken":"n"}"#).expect("a rewrite");
        let answer: serde_json::Value = serde_json::from_slice(&listed).expect("JSON");
        assert_eq!(answer, serde_json::json!({ "taskArns": [] }));
        assert!(without_tasks(br#"{"Messages":[]}"#).is_none());
    }

    #[test]
    fn other_answers_are_left_alone() {
        let all = |len: usize| (0..len).collect();
        assert!(fail_some_entries(br#"{"Successful":[],"Failed":[]}"#, all).is_none());
        assert!(fail_some_entries(br#"{"Messages":[]}"#, all).is_none());
        assert!(fail_some_entries(b"<xml/>", all).is_none());
        let (rewritten, count) =
            fail_some_entries(br#"{"Successful":[{"Id":"a"}]}"#, all).expect("a rewrite");
        assert_eq!(count, 1);
        let answer: serde_json::Value = serde_json::from_slice(&rewritten).expect("JSON");
        assert_eq!(answer["Failed"][0]["Id"], "a");
    }
}
