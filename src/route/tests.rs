use super::*;
use http::Request;

fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn matcher() -> Matcher {
    Matcher::any()
}

#[test]
fn host_exact_and_wildcard() {
    let mut m = matcher();
    m.hosts = vec![HostPattern::parse("a.test"), HostPattern::parse("*.Example.com")];
    let p = parts("GET", "/", &[]);
    assert!(m.matches(&p, "a.test"));
    assert!(m.matches(&p, "x.example.com"));
    assert!(m.matches(&p, "y.x.example.com"));
    assert!(!m.matches(&p, "example.com"));
    assert!(!m.matches(&p, "b.test"));
}

#[test]
fn request_host_from_header_or_authority() {
    assert_eq!(request_host(&parts("GET", "/", &[("host", "A.Test:8080")])), "a.test");
    assert_eq!(request_host(&parts("GET", "http://b.test:1/x", &[])), "b.test");
    assert_eq!(request_host(&parts("GET", "/", &[("host", "[::1]:80")])), "[::1]");
}

#[test]
fn path_kinds() {
    let p = parts("GET", "/api/v1/users?x=1", &[]);
    let mut m = matcher();
    m.path = PathMatch::Prefix("/api/".into());
    assert!(m.matches(&p, ""));
    m.path = PathMatch::Exact("/api/v1/users".into());
    assert!(m.matches(&p, ""));
    m.path = PathMatch::Exact("/api".into());
    assert!(!m.matches(&p, ""));
    m.path = PathMatch::Regex(regex::Regex::new(r"^/api/v\d+/").unwrap());
    assert!(m.matches(&p, ""));
}

#[test]
fn method_header_cookie_query() {
    let p = parts(
        "POST",
        "/?debug=1&name=a%20b",
        &[("x-env", "staging"), ("cookie", "a=1; session=xyz")],
    );
    let mut m = matcher();
    m.methods = vec![http::Method::POST];
    m.headers = vec![(http::HeaderName::from_static("x-env"), ValueMatch::parse("staging"))];
    m.cookies = vec![("session".into(), ValueMatch::parse("*"))];
    m.query = vec![
        ("debug".into(), ValueMatch::parse("1")),
        ("name".into(), ValueMatch::parse("a b")),
    ];
    assert!(m.matches(&p, ""));
    m.cookies = vec![("other".into(), ValueMatch::parse("*"))];
    assert!(!m.matches(&p, ""));
    m.cookies.clear();
    m.methods = vec![http::Method::GET];
    assert!(!m.matches(&p, ""));
}

#[test]
fn first_match_wins() {
    let mk = |name: &str, prefix: &str| Route {
        name: name.into(),
        matcher: Matcher {
            path: PathMatch::Prefix(prefix.into()),
            ..Matcher::any()
        },
        action: Action::Respond(FixedResponse {
            status: http::StatusCode::OK,
            headers: Default::default(),
            body: Default::default(),
        }),
        rewrite: Default::default(),
        stages: Vec::new(),
        #[cfg(feature = "acceleration")]
        cache: None,
        #[cfg(feature = "acceleration")]
        compress: None,
    };
    let router = Router {
        routes: vec![mk("api", "/api"), mk("all", "/"), mk("never", "/api/x")],
    };
    assert_eq!(&*router.find(&parts("GET", "/api/x", &[]), "").unwrap().name, "api");
    assert_eq!(&*router.find(&parts("GET", "/other", &[]), "").unwrap().name, "all");
}

#[test]
fn redirect_template_with_captures() {
    let re = regex::Regex::new(r"^/old/(?P<id>\d+)/(.*)$").unwrap();
    let t = Template::parse("https://{host}/new/${id}/$2?{query}&cost=$$5");
    let p = parts("GET", "/old/42/rest/of?a=1", &[]);
    assert_eq!(
        t.render(&p, "a.test", Some(&re)),
        "https://a.test/new/42/rest/of?a=1&cost=$5"
    );
}
