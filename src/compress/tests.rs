use super::*;

fn ae(value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
    h
}

#[test]
fn negotiation_follows_q_values_then_preference() {
    let c = Compression::default(); // zstd, br, gzip
    assert_eq!(c.negotiate(&ae("gzip, deflate, br, zstd")), Some(Coding::Zstd));
    assert_eq!(c.negotiate(&ae("gzip, deflate, br")), Some(Coding::Brotli));
    assert_eq!(c.negotiate(&ae("gzip;q=1.0, br;q=0.5")), Some(Coding::Gzip));
    assert_eq!(c.negotiate(&ae("br;q=0, gzip;q=0.001")), Some(Coding::Gzip));
    assert_eq!(c.negotiate(&ae("deflate, identity")), None);
    assert_eq!(c.negotiate(&ae("gzip;q=0")), None);
    assert_eq!(c.negotiate(&HeaderMap::new()), None);
    // `*` stands for every coding not listed.
    assert_eq!(c.negotiate(&ae("zstd;q=0, *;q=0.8")), Some(Coding::Brotli));
    assert_eq!(c.negotiate(&ae("x-gzip")), Some(Coding::Gzip));
    assert_eq!(c.negotiate(&ae("GZIP ; Q=0.9")), Some(Coding::Gzip));
    // Malformed q-values count as zero, not as one.
    assert_eq!(c.negotiate(&ae("br;q=high")), None);

    let gzip_first = Compression {
        codings: vec![Coding::Gzip, Coding::Brotli],
        ..Compression::default()
    };
    assert_eq!(gzip_first.negotiate(&ae("br, gzip, zstd")), Some(Coding::Gzip));
    assert_eq!(gzip_first.negotiate(&ae("zstd")), None, "zstd is not enabled");
}

#[test]
fn q_values_parse_to_thousandths() {
    assert_eq!(qvalue("1"), 1000);
    assert_eq!(qvalue("1.000"), 1000);
    assert_eq!(qvalue("0.5"), 500);
    assert_eq!(qvalue("0.125"), 125);
    assert_eq!(qvalue("0"), 0);
    assert_eq!(qvalue("-1"), 0);
    assert_eq!(qvalue("abc"), 0);
}

#[test]
fn type_patterns() {
    assert!(TypePattern::new("text/*").matches("text/html"));
    assert!(TypePattern::new("application/*+json").matches("application/ld+json"));
    assert!(!TypePattern::new("application/*+json").matches("application/json"));
    assert!(TypePattern::new("Application/JSON").matches("application/json"));
    assert!(!TypePattern::new("text/html").matches("text/htmlx"));
}

fn response(headers: &[(&str, &str)], status: u16) -> http::response::Parts {
    let mut b = http::Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

#[test]
fn eligibility_rules() {
    let c = Compression::default();
    let ok = |h: &[(&str, &str)], s| c.eligible(&response(h, s));
    assert!(ok(&[("content-type", "text/html; charset=utf-8")], 200));
    assert!(ok(
        &[("content-type", "application/json"), ("content-length", "5000")],
        404
    ));
    assert!(!ok(&[("content-type", "image/png")], 200));
    assert!(!ok(&[], 200), "no content type");
    assert!(
        !ok(&[("content-type", "text/html"), ("content-length", "100")], 200),
        "small"
    );
    assert!(!ok(&[("content-type", "text/html"), ("content-encoding", "gzip")], 200));
    assert!(!ok(
        &[("content-type", "text/html"), ("cache-control", "public, no-transform")],
        200
    ));
    assert!(!ok(&[("content-type", "text/html")], 206));
    assert!(!ok(&[("content-type", "text/html")], 304));
    assert!(!ok(&[("content-type", "text/event-stream")], 200));
}

#[test]
fn encoding_rewrites_the_head() {
    let c = Compression::default();
    let mut parts = response(
        &[
            ("content-type", "text/html"),
            ("content-length", "1000"),
            ("etag", "\"v1\""),
            ("vary", "Cookie"),
            ("accept-ranges", "bytes"),
        ],
        200,
    );
    let body = c.apply(
        Negotiated(Some(Coding::Gzip)),
        &Method::GET,
        &mut parts,
        ResponseBody::Full {
            data: Some(bytes::Bytes::from(vec![b'a'; 1000])),
        },
    );
    assert!(matches!(body, ResponseBody::Encoded { .. }));
    let h = &parts.headers;
    assert_eq!(h["content-encoding"], "gzip");
    assert!(!h.contains_key("content-length"));
    assert!(!h.contains_key("accept-ranges"));
    assert_eq!(h["etag"], "W/\"v1\"");
    let vary: Vec<_> = h.get_all("vary").iter().collect();
    assert_eq!(vary, ["Cookie", "Accept-Encoding"]);

    // Identity for this client, but another would get an encoding: Vary still says so.
    let mut parts = response(&[("content-type", "text/html"), ("etag", "\"v1\"")], 200);
    let body = c.apply(Negotiated(None), &Method::GET, &mut parts, ResponseBody::Empty);
    assert!(matches!(body, ResponseBody::Empty));
    assert_eq!(parts.headers["vary"], "Accept-Encoding");
    assert_eq!(parts.headers["etag"], "\"v1\"");
}
