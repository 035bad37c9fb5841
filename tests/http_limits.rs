//! The HTTP port under idle clients, black-box: a real `accrue run` with a
//! short `[http] header_read_timeout` and a connection cap. 500 connections
//! held silent or with half a request head must not stop `/health/live` and
//! `/metrics` from answering, must all be closed by the server once the
//! timeout has passed (not before), and connections beyond the cap must be
//! refused at once and counted.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{http_get as get, http_request as request, sample, scrape, terminate, wait_until, Env};

const HELD: usize = 500;
const CAP: usize = 510;
const TIMEOUT: Duration = Duration::from_secs(6);

/// What a held connection shows without waiting: still open, or closed
/// by the server (EOF or reset), with what it sent first.
enum Seen {
    Open,
    Closed(String),
}

fn look(stream: &mut TcpStream) -> Seen {
    stream.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let seen = loop {
        match stream.read(&mut buf) {
            Ok(0) => break Seen::Closed(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                break if got.is_empty() {
                    Seen::Open
                } else {
                    // Bytes without a close yet: the close is on its way.
                    Seen::Closed(String::from_utf8_lossy(&got).into_owned())
                };
            }
            Err(_) => break Seen::Closed(String::from_utf8_lossy(&got).into_owned()),
        }
    };
    stream.set_nonblocking(false).unwrap();
    seen
}

#[test]
fn idle_and_half_sent_connections_are_closed_after_the_timeout_and_the_cap_refuses_the_rest() {
    let env = Env::new("http", 1);
    let port = env.http_port;
    let text = std::fs::read_to_string(&env.config).unwrap();
    let listen = format!("listen = \"127.0.0.1:{port}\"\n");
    let limited = text.replace(
        &listen,
        &format!(
            "{listen}header_read_timeout = \"{}s\"\nidle_timeout = \"60s\"\nmax_connections = {CAP}\nmax_body_bytes = 1024\n",
            TIMEOUT.as_secs()
        ),
    );
    assert_ne!(limited, text, "the [http] section was found");
    std::fs::write(&env.config, limited).unwrap();

    let mut child = env.spawn();
    assert!(
        wait_until(Duration::from_secs(60), || get(port, "/health/live").0 == 200),
        "accrue run never served /health/live\n{}",
        env.logs()
    );

    // Half silent, half stopped in the middle of a request head.
    let mut held: Vec<(TcpStream, Instant)> = Vec::with_capacity(HELD);
    for i in 0..HELD {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let opened = Instant::now();
        if i % 2 == 1 {
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
                .unwrap();
        }
        held.push((stream, opened));
    }
    eprintln!("{HELD} connections opened in {:?}", held[0].1.elapsed());

    // The port still answers while they are held.
    let (status, body) = get(port, "/health/live");
    assert_eq!((status, body.as_str()), (200, "live\n"));
    let metrics = scrape(port);
    assert!(metrics.starts_with("HTTP/1.0 200"), "{metrics}");
    let open = sample(&metrics, "accrue_http_connections_open", &[]);
    assert!(open >= HELD as f64, "open connections {open} while {HELD} are held");

    // A body over the cap is a 413 with a JSON error.
    let (status, body) = request(
        port,
        "POST /health/live HTTP/1.0\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n",
    );
    assert_eq!(status, 413, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"], "payload_too_large");

    // Beyond the cap: the held 500 leave 10 slots (fewer while the probes'
    // slots are still being released); the rest are refused at once.
    let extra: Vec<(TcpStream, Instant)> = (0..20)
        .map(|_| {
            let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            (stream, Instant::now())
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut refused = 0;
    let mut admitted = Vec::new();
    for (mut stream, opened) in extra {
        match look(&mut stream) {
            Seen::Closed(answer) => {
                assert!(
                    answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
                    "a refusal is a 503 or a bare close: {answer:?}"
                );
                refused += 1;
            }
            Seen::Open => admitted.push((stream, opened)),
        }
    }
    eprintln!("beyond the cap: {refused} of 20 refused, {} admitted", admitted.len());
    assert!(
        refused >= 10,
        "{refused} of 20 connections beyond {HELD} held refused (cap {CAP})"
    );
    assert!(
        admitted.len() <= CAP - HELD,
        "{} admitted beyond the cap",
        admitted.len()
    );
    // All of the above must happen while the first connection is held.
    let still_held = held[0].1.elapsed();
    assert!(
        still_held < TIMEOUT,
        "the checks above took {still_held:?}, longer than the timeout; the machine is too slow for this test"
    );

    // Every held connection is closed by the server, none before the timeout.
    held.extend(admitted);
    let total = held.len();
    let mut closed_after: Vec<Duration> = Vec::with_capacity(total);
    let deadline = Instant::now() + TIMEOUT + Duration::from_secs(30);
    while !held.is_empty() && Instant::now() < deadline {
        let mut open = Vec::with_capacity(held.len());
        for (mut stream, opened) in held {
            match look(&mut stream) {
                Seen::Open => open.push((stream, opened)),
                Seen::Closed(answer) => {
                    assert!(answer.is_empty(), "a timed-out connection gets no answer: {answer:?}");
                    closed_after.push(opened.elapsed());
                }
            }
        }
        held = open;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        held.is_empty(),
        "{} of {total} connections still open {:?} after opening",
        held.len(),
        TIMEOUT + Duration::from_secs(30)
    );
    closed_after.sort();
    let (first, last) = (closed_after[0], closed_after[total - 1]);
    eprintln!("{total} connections closed by the server {first:?} to {last:?} after they opened");
    // 20 ms: the client reads its clock just after connect returns, the
    // server may accept a moment before.
    assert!(
        first + Duration::from_millis(20) >= TIMEOUT,
        "a connection was closed {first:?} after it opened, before the timeout"
    );

    // Counted: each refusal once, each timeout once, and the port answers.
    let metrics = scrape(port);
    assert!(metrics.starts_with("HTTP/1.0 200"), "{metrics}");
    assert_eq!(
        sample(&metrics, "accrue_http_connections_refused_total", &[]),
        refused as f64,
        "every refusal counted once"
    );
    assert_eq!(
        sample(
            &metrics,
            "accrue_http_connections_timed_out_total",
            &["reason=\"header_read\""]
        ),
        total as f64,
        "every held connection closed by the header-read timeout"
    );
    assert_eq!(
        sample(
            &metrics,
            "accrue_http_requests_refused_total",
            &["reason=\"body_too_large\""]
        ),
        1.0
    );
    assert_eq!(get(port, "/health/live").0, 200);
    assert!(child.try_wait().unwrap().is_none(), "accrue run is still running");
    let status = terminate(&mut child, Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "accrue run exits 0 on SIGTERM: {status:?}\n{}",
        env.logs()
    );
}
