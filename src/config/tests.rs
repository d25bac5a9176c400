use super::*;

fn errors(text: &str) -> Vec<String> {
    let rt_handle = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt_handle.block_on(async {
        let rt = crate::runtime::Runtime::new();
        match load(&Source::inline("t.toml", text), &rt, 1) {
            Ok(_) => Vec::new(),
            Err(d) => {
                d.0.iter()
                    .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
                    .collect()
            }
        }
    })
}

#[test]
fn valid_minimal_config_has_no_errors() {
    let e = errors("[[listener]]\nlisten = \"127.0.0.1:0\"\n[[route]]\nrespond = { status = 204 }\n");
    assert!(e.is_empty(), "{e:?}");
}

#[test]
fn every_section_reports_its_own_errors() {
    let e = errors(
        "[[listener]]\nlisten = \"nope\"\n[upstream.a]\nservers = []\n[upstream.b]\nservers = [\"x:1\"]\nbalance = \"hash\"\n[[route]]\nupstream = \"c\"\n",
    );
    assert_eq!(
        e,
        vec![
            "2:10 invalid listen address `nope`",
            "4:11 upstream `a` has no servers",
            "7:11 balance = \"hash\" needs hash_key",
            "9:12 unknown upstream `c`",
        ]
    );
}

#[test]
fn type_errors_and_unknown_keys_point_at_the_value() {
    let e = errors("[[listener]]\nlisten = \"127.0.0.1:0\"\nlimits = { max_body_bytes = \"10 parsecs\" }\n[[route]]\nrespond = { status = 204 }\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("3:29 ") && e[0].contains("unknown size unit"), "{e:?}");
    let e =
        errors("[[listener]]\nlisten = \"127.0.0.1:0\"\n[[route]]\nrespond = { status = 204 }\ncolour = \"blue\"\n");
    assert!(e[0].starts_with("5:1 unknown field `colour`"), "{e:?}");
}

#[test]
fn a_config_without_listeners_is_refused() {
    let e = errors("[[route]]\nrespond = { status = 204 }\n");
    assert_eq!(
        e,
        vec!["1:1 no [[listener]] configured: nothing would accept connections"]
    );
}

#[test]
fn route_must_have_one_action_and_valid_regex() {
    let e = errors("[[listener]]\nlisten = \"127.0.0.1:0\"\n[[route]]\nmatch = { path_regex = \"(\" }\nrespond = { status = 200 }\n[[route]]\n");
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("4:24 invalid path_regex"), "{e:?}");
    assert!(
        e[1].starts_with("6:1 route `route-2` must have exactly one action, found 0"),
        "{e:?}"
    );
}

#[test]
fn compress_settings_are_checked() {
    let base = "[[listener]]\nlisten = \"127.0.0.1:0\"\n[upstream.a]\nservers = [\"127.0.0.1:1\"]\n[[route]]\nupstream = \"a\"\n";
    assert!(errors(&format!("{base}compress = true\n")).is_empty());
    assert!(errors(&format!(
        "{base}compress = {{ encodings = [\"gzip\", \"br\"], min_size = \"1KiB\", types = [\"text/*\"], gzip_level = 9 }}\n"
    ))
    .is_empty());
    assert_eq!(
        errors(&format!("{base}compress = {{ encodings = [\"gzip\", \"lzma\"] }}\n")),
        vec!["7:26 unknown encoding `lzma`"]
    );
    assert_eq!(
        errors(&format!("{base}compress = {{ brotli_level = 12 }}\n")),
        vec!["7:29 brotli_level must be between 0 and 11"]
    );
    let e = errors(&format!("{base}compress = {{ level = 3 }}\n"));
    assert!(e.len() == 1 && e[0].contains("unknown field `level`"), "{e:?}");
    let e = errors("[[listener]]\nlisten = \"127.0.0.1:0\"\n[[route]]\nrespond = { status = 200 }\ncompress = true\n");
    assert_eq!(
        e,
        vec!["5:12 compress needs a route that proxies to an upstream or serves files"]
    );
}
