use super::*;

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fd-disk-{tag}-{:x}", fastrand::u64(..)));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn entry(url: &str, body: &str, vary_key: &str) -> Entry {
    let req = http::Request::get(url).body(()).unwrap().into_parts().0;
    let resp = http::Response::builder()
        .header("cache-control", "max-age=60")
        .header("content-type", "text/plain")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let now = SystemTime::now();
    let policy = CachePolicy::new(&req, &resp);
    Entry {
        fresh_until: now + policy.time_to_live(now),
        policy,
        status: StatusCode::OK,
        headers: resp.headers.clone(),
        body: Bytes::from(body.to_string()),
        sealed: None,
        url: url.to_string(),
        vary_key: vary_key.to_string(),
        req_host: None,
        tags: vec!["t1".into()],
        stale_while_revalidate: Duration::from_secs(5),
        stale_if_error: Duration::ZERO,
        may_serve_stale: true,
        encoded: false,
        memo: Default::default(),
    }
}

fn files(d: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(d).unwrap().map(|e| e.unwrap().path()).collect()
}

#[test]
fn entries_survive_reopening() {
    let d = dir("reopen");
    let tier = DiskTier::open(&d, 1 << 20).unwrap();
    tier.save("k1", &entry("http://a/1", "one", ""), tier.epoch());
    tier.save(
        "k1",
        &entry("http://a/1", "one-gzip", "accept-encoding=gzip,\n"),
        tier.epoch(),
    );
    tier.save("k2", &entry("http://a/2", "two", ""), tier.epoch());
    drop(tier);
    let tier = DiskTier::open(&d, 1 << 20).unwrap();
    assert_eq!(tier.usage().0, 3);
    let mut bodies: Vec<Bytes> = tier.load("k1").into_iter().map(|e| e.body).collect();
    bodies.sort();
    assert_eq!(bodies, ["one", "one-gzip"]);
    let two = tier.load("k2").pop().unwrap();
    assert_eq!(two.headers["content-type"], "text/plain");
    assert_eq!(two.tags, ["t1"]);
    assert!(two.fresh_until > SystemTime::now());
    assert_eq!(two.stale_while_revalidate, Duration::from_secs(5));
    assert!(tier.load("k3").is_empty());
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn corrupt_and_truncated_files_are_dropped_never_served() {
    let d = dir("corrupt");
    let tier = DiskTier::open(&d, 1 << 20).unwrap();
    tier.save("flip", &entry("http://a/f", "the body", ""), tier.epoch());
    tier.save("cut", &entry("http://a/c", "another body", ""), tier.epoch());
    tier.save("ok", &entry("http://a/o", "fine", ""), tier.epoch());
    drop(tier);
    let by_key = |key: &str| {
        files(&d)
            .into_iter()
            .find(|p| {
                std::fs::read(p)
                    .unwrap()
                    .windows(key.len() + 2)
                    .any(|w| w == format!("\"{key}\"").as_bytes())
            })
            .unwrap()
    };
    // One flipped body byte: caught by the checksum when read.
    let flip = by_key("flip");
    let mut data = std::fs::read(&flip).unwrap();
    let at = data.windows(8).position(|w| w == b"the body").unwrap();
    data[at] ^= 0x20;
    std::fs::write(&flip, data).unwrap();
    // A truncated file: caught by its length when indexed.
    let cut = by_key("cut");
    let data = std::fs::read(&cut).unwrap();
    std::fs::write(&cut, &data[..data.len() - 3]).unwrap();
    // Junk and a leftover temporary file.
    std::fs::write(d.join("0000000000000000.fdc"), b"garbage").unwrap();
    std::fs::write(d.join("0000000000000001.tmp.1234"), b"partial").unwrap();

    let tier = DiskTier::open(&d, 1 << 20).unwrap();
    assert_eq!(tier.usage().0, 2, "truncated and junk files are not indexed");
    assert!(!cut.exists());
    assert!(!d.join("0000000000000000.fdc").exists());
    assert!(!d.join("0000000000000001.tmp.1234").exists());
    assert!(tier.load("flip").is_empty(), "a corrupt body is never returned");
    assert!(!flip.exists(), "and its file is deleted");
    assert_eq!(tier.load("ok").pop().unwrap().body, "fine");
    assert_eq!(tier.usage().0, 1);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn least_recently_used_objects_are_evicted_past_the_size() {
    let d = dir("evict");
    let tier = DiskTier::open(&d, 20_000).unwrap();
    let body = "x".repeat(3000);
    for i in 0..5 {
        tier.save(
            &format!("k{i}"),
            &entry(&format!("http://a/{i}"), &body, ""),
            tier.epoch(),
        );
    }
    assert!(tier.load("k0").len() == 1, "k0 used recently");
    for i in 5..8 {
        tier.save(
            &format!("k{i}"),
            &entry(&format!("http://a/{i}"), &body, ""),
            tier.epoch(),
        );
    }
    let (count, used) = tier.usage();
    assert!(used <= 20_000, "{used}");
    assert!(count < 8);
    assert_eq!(files(&d).len(), count, "evicted files are deleted");
    assert!(tier.contains("k0"), "recently used survives");
    assert!(!tier.contains("k1"), "least recently used goes first");
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn removal_wins_over_a_write_that_started_before_it() {
    let d = dir("epoch");
    let tier = DiskTier::open(&d, 1 << 20).unwrap();
    let before = tier.epoch();
    tier.save("a", &entry("http://a/a", "1", ""), before);
    assert!(tier.remove("a"));
    tier.save("a", &entry("http://a/a", "late", ""), before);
    assert!(!tier.contains("a"));
    assert!(files(&d).is_empty());
    tier.save("b", &entry("http://a/b", "2", ""), tier.epoch());
    tier.save("c", &entry("http://a/c", "3", ""), tier.epoch());
    let gone = tier.remove_where(|url, _| url.ends_with("/b"));
    assert_eq!(gone, ["b"]);
    assert_eq!(tier.usage().0, 1);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn an_unwritable_directory_fails_quietly() {
    let d = dir("gone");
    let tier = DiskTier::open(&d, 1 << 20).unwrap();
    std::fs::remove_dir_all(&d).unwrap();
    std::fs::write(&d, b"now a file").unwrap();
    tier.save("a", &entry("http://a/a", "1", ""), tier.epoch());
    assert!(tier.failing.load(Ordering::Relaxed));
    assert!(!tier.contains("a"));
    std::fs::remove_file(&d).unwrap();
    std::fs::create_dir_all(&d).unwrap();
    tier.save("a", &entry("http://a/a", "1", ""), tier.epoch());
    assert!(!tier.failing.load(Ordering::Relaxed), "recovers when writes work again");
    assert!(tier.contains("a"));
    std::fs::remove_dir_all(d).unwrap();
}
