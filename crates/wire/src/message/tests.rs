use super::*;
use proptest::prelude::*;

fn parse(s: &str) -> Result<Message, ParseError> {
    Message::parse(Bytes::copy_from_slice(s.as_bytes()))
}

#[test]
fn classifies_the_four_kinds() {
    let req = parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
    assert_eq!(req.kind(), Kind::Request);
    assert_eq!(req.method(), Some("tools/list"));
    assert_eq!(req.id(), Some(&Id::Number(1)));
    let note = parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
    assert_eq!(note.kind(), Kind::Notification);
    let ok = parse(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
    assert_eq!(ok.kind(), Kind::Response);
    assert_eq!(ok.id(), Some(&Id::String("a".into())));
    let err = parse(r#"{"jsonrpc":"2.0","id":2,"error":{"code":-1,"message":"x"}}"#).unwrap();
    assert_eq!(err.kind(), Kind::ErrorResponse);
}

#[test]
fn tr_06_batches_are_refused_with_invalid_request() {
    let e = parse(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).unwrap_err();
    assert_eq!(e, ParseError::Batch);
    assert_eq!(e.code(), ErrorCode::InvalidRequest);
}

#[test]
fn tr_12_invalid_utf8_and_json_are_parse_errors() {
    let e = Message::parse(Bytes::from_static(
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}",
    ))
    .unwrap_err();
    assert_eq!(e, ParseError::NotUtf8);
    assert_eq!(e.code(), ErrorCode::ParseError);
    let e = parse(r#"{"jsonrpc":"2.0","id":1,"method":"#).unwrap_err();
    assert_eq!(e.code(), ErrorCode::ParseError);
    let e = parse("[1,").unwrap_err();
    assert_eq!(e.code(), ErrorCode::ParseError);
    assert_eq!(parse("42").unwrap_err(), ParseError::NotObject);
}

#[test]
fn life_04_null_and_fractional_ids_are_invalid() {
    for bad in [
        r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
    ] {
        let e = parse(bad).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidRequest, "{bad}");
    }
}

#[test]
fn life_05_responses_carry_exactly_one_of_result_and_error() {
    assert!(parse(r#"{"jsonrpc":"2.0","id":1}"#).is_err());
    assert!(
        parse(r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":""}}"#).is_err()
    );
    assert!(parse(r#"{"jsonrpc":"2.0","method":"x","result":{}}"#).is_err());
}

#[test]
fn envelope_rules() {
    assert!(
        parse(r#"{"id":1,"method":"ping"}"#).is_err(),
        "missing jsonrpc"
    );
    assert!(parse(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#).is_err());
    assert!(
        parse(r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#).is_err(),
        "duplicate id"
    );
    assert!(parse(r#"{"jsonrpc":"2.0","id":1,"method":7}"#).is_err());
    assert!(parse(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#).is_err());
    // Duplicate keys anywhere in params: parsers disagree on which one wins.
    assert!(
        parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#)
            .is_err()
    );
    assert!(
        parse(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"x":1,"x":2}}}"#
        )
        .is_err()
    );
    assert!(parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"a":[{"k":1},{"k":2}],"s":"\u0041"}}"#).is_ok());
}

#[test]
fn with_id_splices_only_the_id() {
    let raw = r#"{ "jsonrpc":"2.0", "id" : "client-7" , "method":"tools/call","params":{"name":"echo","arguments":{"id":"keep"}}}"#;
    let m = parse(raw).unwrap();
    let n = m.with_id(&Id::Number(123456));
    let expected = raw.replace("\"client-7\"", "123456");
    assert_eq!(std::str::from_utf8(n.raw()).unwrap(), expected);
    assert_eq!(n.id(), Some(&Id::Number(123456)));
    assert_eq!(n.params_raw(), m.params_raw());
    let back = n.with_id(&Id::String("client-7".into()));
    assert_eq!(std::str::from_utf8(back.raw()).unwrap(), raw);
}

#[test]
fn with_param_str_splices_one_member() {
    let raw = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"name":"keep"}, "name" : "up__echo","x":1}}"#;
    let m = parse(raw).unwrap();
    assert_eq!(m.param_str("name").as_deref(), Some("up__echo"));
    let n = m.with_param_str("name", "echo").unwrap();
    assert_eq!(
        std::str::from_utf8(n.raw()).unwrap(),
        raw.replace("\"up__echo\"", "\"echo\"")
    );
    assert_eq!(n.param_str("name").as_deref(), Some("echo"));
    assert!(m.with_param_str("missing", "x").is_none());
    let escaped = m.with_param_str("name", "a\"b").unwrap();
    assert_eq!(escaped.param_str("name").as_deref(), Some("a\"b"));
}

#[test]
fn built_messages_round_trip() {
    let m = Message::request(&Id::Number(3), "ping", &serde_json::json!({}));
    assert_eq!(m.kind(), Kind::Request);
    let e = Message::error(None, ErrorCode::InvalidRequest, "no");
    let v: serde_json::Value = serde_json::from_slice(e.raw()).unwrap();
    assert!(v.get("id").is_none());
    assert_eq!(v["error"]["code"], -32600);
}

fn arb_id() -> impl Strategy<Value = Id> {
    prop_oneof![
        any::<i64>().prop_map(Id::Number),
        ".{0,20}".prop_map(|s| Id::String(s.into())),
    ]
}

proptest! {
    // Any bytes: parsing never panics, and success implies a coherent message.
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(m) = Message::parse(Bytes::from(bytes)) {
            prop_assert_eq!(m.kind() == Kind::Request, m.method().is_some() && m.id().is_some());
        }
    }

    // Splicing any ID into any request keeps the rest of the message and parses back.
    #[test]
    fn with_id_round_trips(a in arb_id(), b in arb_id(), method in "[a-z/]{1,16}", arg in ".{0,32}") {
        let m = Message::request(&a, &method, &serde_json::json!({"arg": arg}));
        let n = m.with_id(&b);
        let reparsed = Message::parse(n.raw().clone()).unwrap();
        prop_assert_eq!(reparsed.id(), Some(&b));
        prop_assert_eq!(reparsed.method(), Some(method.as_str()));
        prop_assert_eq!(reparsed.params_raw(), m.params_raw());
        let back = n.with_id(&a);
        prop_assert_eq!(back.raw(), m.raw());
    }
}

#[test]
fn a_message_read_whole_has_no_repeated_key_at_any_depth() {
    let ok = parse(r#"{"jsonrpc":"2.0","id":1,"result":{"a":[{"b":1.5,"c":"\u00e9"}],"n":null,"t":true,"u":18446744073709551615,"i":-3}}"#).unwrap();
    let whole = ok.to_unique_value().unwrap();
    assert_eq!(whole, ok.to_value().unwrap());
    for bad in [
        r#"{"jsonrpc":"2.0","id":1,"result":{"a":1,"a":2}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"x":[{"k":1,"k":1}]}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"n":1e400}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"s":"\ud800"}}"#,
    ] {
        let m = parse(bad).unwrap();
        assert!(m.to_unique_value().is_err(), "{bad}");
    }
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":{{"d":{}1{}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    assert!(parse(&deep).unwrap().to_unique_value().is_err());
}
