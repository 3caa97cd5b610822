//! `mlxcel::chat_template` against Hugging Face transformers: every case of
//! `fixtures/chat_templates/golden.json` (rendered by transformers' `apply_chat_template` from
//! real model templates and from small templates that pin down engine behaviour, see
//! `gen_golden.py`) must come out byte for byte the same; plus unit tests of the API.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mlxcel::chat_template::{
    CHAT_TEMPLATE_FILE, ChatTemplate, Clock, LEGACY_CHAT_TEMPLATE_JSON, Message, SpecialTokens, TemplateError,
    load_template, template_from_tokenizer_config,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn template_dir() -> PathBuf {
    fixtures().join("chat_templates")
}

#[derive(Deserialize)]
struct Golden {
    /// The instant transformers' `strftime_now` read when the goldens were rendered.
    clock: String,
    templates: HashMap<String, GoldenTemplate>,
    cases: Vec<GoldenCase>,
}

#[derive(Deserialize)]
struct GoldenTemplate {
    /// A real model template, stored beside golden.json.
    file: Option<String>,
    /// A synthetic template, stored inline.
    source: Option<String>,
    special_tokens: SpecialTokens,
}

#[derive(Deserialize)]
struct GoldenCase {
    name: String,
    template: String,
    messages: Vec<Message>,
    add_generation_prompt: bool,
    extra: Map<String, Value>,
    output: Option<String>,
    error: Option<GoldenError>,
}

#[derive(Deserialize)]
struct GoldenError {
    /// `raised` (the template's `raise_exception`) or `render` (any other Jinja2 failure).
    kind: String,
    message: String,
}

fn load_golden() -> Golden {
    let text = std::fs::read_to_string(template_dir().join("golden.json")).expect("read golden.json");
    serde_json::from_str(&text).expect("parse golden.json")
}

fn golden_templates(golden: &Golden) -> HashMap<String, ChatTemplate> {
    let clock = Clock::Fixed(golden.clock.parse().expect("golden.json's clock is an ISO date and time"));
    golden
        .templates
        .iter()
        .map(|(name, template)| {
            let source = match (&template.file, &template.source) {
                (Some(file), _) => std::fs::read_to_string(template_dir().join(file)).expect("read template file"),
                (None, Some(source)) => source.clone(),
                (None, None) => panic!("template {name} has neither a file nor a source"),
            };
            let parsed = ChatTemplate::new(&source, template.special_tokens.clone())
                .unwrap_or_else(|err| panic!("template {name} does not parse: {err}"))
                .with_clock(clock);
            (name.clone(), parsed)
        })
        .collect()
}

/// What a golden case got wrong, or `None` when it matches transformers.
fn check_case(case: &GoldenCase, template: &ChatTemplate) -> Option<String> {
    let rendered = template.render_with(&case.messages, case.add_generation_prompt, &case.extra);
    match (&case.output, &case.error, rendered) {
        (Some(expected), _, Ok(actual)) if *expected == actual => None,
        (Some(expected), _, Ok(actual)) => Some(format!("expected\n{expected:?}\ngot\n{actual:?}")),
        (Some(_), _, Err(err)) => Some(format!("expected output, got error {err}")),
        (None, Some(expected), Ok(actual)) => Some(format!("expected error {}, got\n{actual:?}", expected.message)),
        (None, Some(expected), Err(err)) => match (expected.kind.as_str(), &err) {
            ("raised", TemplateError::Raised(message)) if *message == expected.message => None,
            ("render", TemplateError::Render(_)) => None,
            _ => Some(format!("expected {} error {:?}, got {err:?}", expected.kind, expected.message)),
        },
        (None, None, _) => Some("golden case has neither output nor error".to_string()),
    }
}

#[test]
fn golden_cases_match_transformers() {
    let golden = load_golden();
    let templates = golden_templates(&golden);
    assert!(golden.cases.len() >= 150, "golden.json has only {} cases", golden.cases.len());

    let failures: Vec<String> = golden
        .cases
        .iter()
        .filter_map(|case| {
            let template = templates.get(&case.template).expect("case names a known template");
            check_case(case, template).map(|problem| format!("{}: {problem}", case.name))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} golden cases differ from transformers:\n\n{}",
        failures.len(),
        golden.cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn golden_cases_cover_the_required_templates_and_conversations() {
    let golden = load_golden();
    for template in ["gemma3n", "smollm2", "llama3", "qwen3", "phi3", "phi4_mini"] {
        assert!(golden.templates[template].file.is_some(), "{template} must be a real template file");
        for conversation in ["system_user", "multi_turn", "single_user", "unicode", "whitespace"] {
            for generation in ["gen", "no_gen"] {
                let name = format!("{template}/{conversation}/{generation}");
                assert!(golden.cases.iter().any(|case| case.name == name), "missing golden case {name}");
            }
        }
    }
    assert!(golden.cases.iter().any(|case| case.template == "gemma3n" && case.error.is_some()));
    for thinking in ["on", "off"] {
        let name = format!("qwen3/thinking_history/thinking_{thinking}/gen");
        assert!(golden.cases.iter().any(|case| case.name == name), "missing golden case {name}");
    }
}

fn gemma_tokens() -> SpecialTokens {
    SpecialTokens { bos_token: Some("<bos>".into()), eos_token: Some("<eos>".into()), ..Default::default() }
}

fn render(source: &str, messages: &[Message]) -> Result<String, TemplateError> {
    ChatTemplate::new(source, gemma_tokens())?.render(messages, true)
}

fn render_extra(source: &str, extra: Value) -> Result<String, TemplateError> {
    let Value::Object(extra) = extra else { panic!("extra must be an object") };
    ChatTemplate::new(source, gemma_tokens())?.render_with(&[Message::user("hi")], false, &extra)
}

#[test]
fn gemma3n_template_renders_the_gemma_turn_format() {
    let source = std::fs::read_to_string(template_dir().join("gemma3n.jinja")).unwrap();
    let template = ChatTemplate::new(&source, gemma_tokens()).unwrap();
    let messages =
        [Message::system("Be brief."), Message::user("  Hi!  "), Message::assistant("Hello."), Message::user("Bye")];
    assert_eq!(
        template.render(&messages, true).unwrap(),
        "<bos><start_of_turn>user\nBe brief.\n\nHi!<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n\
         <start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
    );
}

#[test]
fn raise_exception_becomes_raised_error() {
    let source = "{% if messages[0].role != 'user' %}{{ raise_exception('Conversation must start with a user message') }}{% endif %}ok";
    let err = render(source, &[Message::assistant("hi")]).unwrap_err();
    match err {
        TemplateError::Raised(message) => assert_eq!(message, "Conversation must start with a user message"),
        other => panic!("expected Raised, got {other:?}"),
    }
    assert_eq!(render(source, &[Message::user("hi")]).unwrap(), "ok");
}

#[test]
fn raise_exception_inside_a_macro_is_still_raised() {
    let source = "{% macro refuse(role) %}{{ raise_exception('no ' ~ role) }}{% endmacro %}{{ refuse('tool') }}";
    assert!(matches!(render(source, &[]), Err(TemplateError::Raised(message)) if message == "no tool"));
}

#[test]
fn syntax_errors_are_reported_by_new() {
    for source in
        ["{% for message in messages %}unterminated", "{{ messages[0] }", "{% if %}{% endif %}", "{% endfor %}"]
    {
        match ChatTemplate::new(source, SpecialTokens::default()) {
            Err(TemplateError::Syntax(message)) => assert!(!message.is_empty()),
            other => panic!("{source:?}: expected a syntax error, got {other:?}"),
        }
    }
}

#[test]
fn render_errors_are_errors_not_panics() {
    let cases = [
        "{{ messages[0].missing.deeper }}",
        "{{ messages | tojson(no_such_argument=1) }}",
        "{{ strftime_now('%Q') }}",
        "{{ 1 + 'a' }}",
        "{{ nothing.attribute }}",
        "{{ messages | tojson(indent=[1]) }}",
        "{{ messages | tojson(separators='x') }}",
    ];
    for source in cases {
        match render(source, &[Message::user("hi")]) {
            Err(TemplateError::Render(message)) => assert!(!message.is_empty()),
            other => panic!("{source:?}: expected a render error, got {other:?}"),
        }
    }
}

#[test]
fn tojson_does_not_escape_html() {
    let out = render_extra("{{ value | tojson }}", json!({"value": "<a href='x'>Tom & \"Jerry\"</a>"})).unwrap();
    assert_eq!(out, r#""<a href='x'>Tom & \"Jerry\"</a>""#);
    let out = render_extra("{{ value | tojson }}", json!({"value": {"k": ["<", "&", "'"]}})).unwrap();
    assert_eq!(out, r#"{"k": ["<", "&", "'"]}"#);
}

#[test]
fn tojson_takes_transformers_arguments() {
    let extra = json!({"value": {"a": [1, "é"], "b": null}});
    assert_eq!(
        render_extra("{{ value | tojson(indent=2) }}", extra.clone()).unwrap(),
        "{\n  \"a\": [\n    1,\n    \"é\"\n  ],\n  \"b\": null\n}"
    );
    assert_eq!(
        render_extra("{{ value | tojson(ensure_ascii=true) }}", extra.clone()).unwrap(),
        r#"{"a": [1, "\u00e9"], "b": null}"#
    );
    assert_eq!(
        render_extra("{{ value | tojson(separators=(',', ':')) }}", extra.clone()).unwrap(),
        r#"{"a":[1,"é"],"b":null}"#
    );
    // Positional arguments follow transformers' signature: ensure_ascii, indent, separators, sort_keys.
    assert_eq!(
        render_extra("{{ value | tojson(false, 1) }}", extra).unwrap(),
        "{\n \"a\": [\n  1,\n  \"é\"\n ],\n \"b\": null\n}"
    );
}

#[test]
fn loop_controls_work() {
    let source = "{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}\
                  {% if m.content == 'stop' %}{% break %}{% endif %}{{ m.content }};{% endfor %}";
    let messages =
        [Message::system("s"), Message::user("a"), Message::assistant("b"), Message::user("stop"), Message::user("c")];
    assert_eq!(render(source, &messages).unwrap(), "a;b;");
}

#[test]
fn python_string_methods_work() {
    let source = "{% set s = messages[0].content %}{{ s.strip() }}|{{ s.split() }}|{{ s.strip().startswith('Hello') }}\
                  |{{ s.strip().endswith('!') }}|{{ s.upper() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s.strip().split(',')[0] }}";
    assert_eq!(
        render(source, &[Message::user("  Hello, world!\n")]).unwrap(),
        "Hello, world!|['Hello,', 'world!']|True|True|  HELLO, WORLD!\n|Hello, world!\n|  Hello, world!|Hello"
    );
}

#[test]
fn python_dict_methods_work() {
    let source = "{% for k, v in info.items() %}{{ k }}={{ v }} {% endfor %}{{ info.get('a') }} {{ info.get('z', 'none') }} {{ info.keys() | list }}";
    assert_eq!(render_extra(source, json!({"info": {"a": 1, "b": "x"}})).unwrap(), "a=1 b=x 1 none ['a', 'b']");
}

#[test]
fn printed_values_use_python_spelling() {
    let out = render_extra(
        "{{ none }} {{ flag }} {{ list }} {{ 1e-7 }} {{ missing }}",
        json!({"flag": true, "list": [1, null, "a"]}),
    )
    .unwrap();
    assert_eq!(out, "None True [1, None, 'a'] 1e-07 ");
}

#[test]
fn trailing_newline_is_dropped_like_jinja2() {
    assert_eq!(render("abc\n", &[]).unwrap(), "abc");
    assert_eq!(render("abc\n\n", &[]).unwrap(), "abc\n");
}

#[test]
fn trim_and_lstrip_blocks_are_on() {
    let source = "<s>\n  {% for m in messages %}\n    {{ m.content }}\n  {% endfor %}\n</s>";
    assert_eq!(render(source, &[Message::user("a"), Message::user("b")]).unwrap(), "<s>\n    a\n    b\n</s>");
}

#[test]
fn special_tokens_and_context_variables() {
    let template = ChatTemplate::new(
        "{{ bos_token }}|{{ eos_token }}|{{ pad_token is defined }}|{{ tools is none }}|{{ add_generation_prompt }}|{{ messages | length }}",
        gemma_tokens(),
    )
    .unwrap();
    assert_eq!(template.render(&[Message::user("x")], true).unwrap(), "<bos>|<eos>|False|True|True|1");

    // Extra variables override special tokens (as transformers' kwargs do), not the arguments.
    let Value::Object(extra) =
        json!({"bos_token": "[B]", "tools": [1], "messages": [], "add_generation_prompt": false})
    else {
        unreachable!()
    };
    assert_eq!(template.render_with(&[Message::user("x")], true, &extra).unwrap(), "[B]|<eos>|False|False|True|1");
}

#[test]
fn strftime_now_formats_the_clock_it_is_given() {
    let instant = "2024-07-26T09:05:03".parse().unwrap();
    let template = ChatTemplate::new("{{ strftime_now('%d %b %Y|%A|%H:%M:%S|%-d %B') }}", SpecialTokens::default())
        .unwrap()
        .with_clock(Clock::Fixed(instant));
    assert_eq!(template.render(&[], false).unwrap(), "26 Jul 2024|Friday|09:05:03|26 July");
    let date_only = template.with_clock(Clock::Fixed("1999-12-31T23:59:59".parse().unwrap()));
    assert_eq!(date_only.render(&[], false).unwrap(), "31 Dec 1999|Friday|23:59:59|31 December");
}

/// The one test that reads the machine's clock: by default a template sees today's date, as under
/// transformers. It compares with the same clock, so it holds on any day (and under faketime).
#[test]
fn llama3_2_renders_todays_date_by_default() {
    let source = std::fs::read_to_string(template_dir().join("llama3_2.jinja")).unwrap();
    let template = ChatTemplate::new(&source, SpecialTokens::default()).unwrap();
    let before = chrono::Local::now();
    let out = template.render(&[Message::user("hi")], true).unwrap();
    let after = chrono::Local::now();
    // Either side of midnight, should the render straddle it.
    let dates = [before, after].map(|day| format!("Today Date: {}\n", day.format("%d %b %Y")));
    assert!(dates.iter().any(|date| out.contains(date.as_str())), "{out}");
}

#[test]
fn chat_template_from_tokenizer_config() {
    assert_eq!(template_from_tokenizer_config(&json!({"chat_template": "T"})).as_deref(), Some("T"));
    let list = json!({"chat_template": [
        {"name": "tool_use", "template": "TOOLS"},
        {"name": "default", "template": "DEFAULT"},
        {"name": "rag", "template": "RAG"}
    ]});
    assert_eq!(template_from_tokenizer_config(&list).as_deref(), Some("DEFAULT"));
    let no_default = json!({"chat_template": [{"name": "tool_use", "template": "TOOLS"}]});
    assert_eq!(template_from_tokenizer_config(&no_default), None);
    assert_eq!(template_from_tokenizer_config(&json!({"bos_token": "<s>"})), None);
    assert_eq!(template_from_tokenizer_config(&json!({"chat_template": 3})), None);
}

#[test]
fn chat_template_jinja_takes_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let config = json!({"chat_template": "FROM CONFIG"});
    assert_eq!(load_template(dir.path(), None).unwrap(), None);
    assert_eq!(load_template(dir.path(), Some(&config)).unwrap().as_deref(), Some("FROM CONFIG"));

    std::fs::write(dir.path().join(LEGACY_CHAT_TEMPLATE_JSON), r#"{"chat_template": "FROM LEGACY JSON"}"#).unwrap();
    assert_eq!(load_template(dir.path(), Some(&config)).unwrap().as_deref(), Some("FROM CONFIG"));
    assert_eq!(load_template(dir.path(), None).unwrap().as_deref(), Some("FROM LEGACY JSON"));

    std::fs::write(dir.path().join(CHAT_TEMPLATE_FILE), "FROM JINJA\n").unwrap();
    assert_eq!(load_template(dir.path(), Some(&config)).unwrap().as_deref(), Some("FROM JINJA\n"));
}

#[test]
fn malformed_legacy_template_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(LEGACY_CHAT_TEMPLATE_JSON), "{not json").unwrap();
    assert!(matches!(load_template(dir.path(), None), Err(TemplateError::InvalidFile { .. })));
}

#[test]
fn tiny_tokenizer_fixture_template_renders() {
    let dir = fixtures().join("tokenizer-tiny");
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer_config.json")).unwrap()).unwrap();
    let source = load_template(&dir, Some(&config)).unwrap().expect("fixture has a chat template");
    let special = SpecialTokens::from_tokenizer_config(&config);
    assert_eq!(special.bos_token.as_deref(), Some("<bos>"));
    let template = ChatTemplate::new(&source, special).unwrap();
    assert_eq!(
        template.render(&[Message::user(" Hi ")], true).unwrap(),
        "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    );
}

#[test]
fn special_tokens_from_tokenizer_config_accept_added_token_objects() {
    let config = json!({
        "bos_token": {"__type": "AddedToken", "content": "<|begin_of_text|>", "lstrip": false},
        "eos_token": "<|eot_id|>",
        "pad_token": null
    });
    assert_eq!(
        SpecialTokens::from_tokenizer_config(&config),
        SpecialTokens {
            bos_token: Some("<|begin_of_text|>".into()),
            eos_token: Some("<|eot_id|>".into()),
            pad_token: None,
            unk_token: None
        }
    );
}

#[test]
fn message_helpers_set_roles() {
    assert_eq!(Message::system("s"), Message { role: "system".into(), content: "s".into() });
    assert_eq!(Message::user("u").role, "user");
    assert_eq!(Message::assistant("a").role, "assistant");
}

#[test]
fn chat_template_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ChatTemplate>();
}

#[test]
fn generation_tags_render_their_body() {
    let source = "{%generation%}a{%endgeneration%}|{%- generation +%} b {%+ endgeneration -%} |{% set generation_count = 1 %}{{ generation_count }}";
    assert_eq!(render(source, &[]).unwrap(), "a| b |1");
}

#[test]
fn json_objects_keep_their_key_order_like_python_dicts() {
    // serde_json and MiniJinja are built with preserve_order: a tool schema prints in the order it
    // was written, as transformers prints it, and so do dicts written in the template.
    let template =
        ChatTemplate::new("{{ tools | tojson }}|{{ {'zeta': 1, 'alpha': 2} | tojson }}", SpecialTokens::default())
            .unwrap();
    let extra: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(r#"{"tools": [{"type": "function", "name": "f", "parameters": {"b": 1, "a": 2}}]}"#)
            .unwrap();
    let rendered = template.render_with(&[], false, &extra).unwrap();
    assert_eq!(
        rendered,
        r#"[{"type": "function", "name": "f", "parameters": {"b": 1, "a": 2}}]|{"zeta": 1, "alpha": 2}"#
    );
}
