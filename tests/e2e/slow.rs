//! Slow clients holding connections: the gateway closes them once their request's head is
//! late, never holds more connections than its cap, and keeps answering its probes meanwhile.
//! Bounded in time: about fifteen seconds of slow clients, then the test ends.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tongban_e2e::Demo;

/// Opens `n` connections that start a request and then send one header byte a second.
async fn slow_clients(address: &str, n: usize) -> Vec<tokio::task::JoinHandle<Option<Duration>>> {
    let mut clients = Vec::new();
    for _ in 0..n {
        let Ok(mut stream) = TcpStream::connect(address).await else { continue };
        clients.push(tokio::spawn(async move {
            let opened = Instant::now();
            if stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.is_err() {
                return Some(opened.elapsed());
            }
            // Until the gateway closes the connection, or fifteen seconds pass.
            while opened.elapsed() < Duration::from_secs(15) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if stream.write_all(b"a").await.is_err() {
                    return Some(opened.elapsed());
                }
                let mut buffer = [0u8; 512];
                let read = tokio::time::timeout(Duration::from_millis(10), stream.read(&mut buffer)).await;
                if let Ok(Ok(0) | Err(_)) = read {
                    return Some(opened.elapsed());
                }
            }
            None
        }));
    }
    clients
}

/// Probes `/healthz` on fresh connections for `span`, returning the slowest answer.
async fn probe(demo: &Demo, span: Duration) -> Duration {
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
    probe_with(demo, &client, span).await
}

async fn probe_with(demo: &Demo, client: &reqwest::Client, span: Duration) -> Duration {
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    while started.elapsed() < span {
        let at = Instant::now();
        let answer =
            tokio::time::timeout(Duration::from_secs(8), client.get(demo.gateway.url("/healthz")).send())
                .await
                .expect("the probe is answered")
                .expect("the probe connects");
        assert_eq!(answer.status(), 200);
        slowest = slowest.max(at.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    slowest
}

#[tokio::test]
async fn slow_clients_are_closed_and_probes_keep_answering() {
    let demo = Demo::start_with(
        1000,
        &[
            ("TONGBAN_SERVER__HEADER_READ_TIMEOUT_SECS", "2"),
            ("TONGBAN_SERVER__MAX_CONNECTIONS", "100"),
            ("TONGBAN_SERVER__METRICS_TOKEN", "scrape-token-for-tests"),
        ],
    )
    .await
    .expect("demo");
    let address = demo.gateway.url("").trim_start_matches("http://").trim_end_matches('/').to_owned();

    // Fewer slow clients than the cap: probes are answered at once, and every slow client is
    // closed once its head is two seconds late.
    let clients = slow_clients(&address, 60).await;
    let slowest = probe(&demo, Duration::from_secs(4)).await;
    assert!(slowest < Duration::from_secs(1), "a probe waited {slowest:?}");
    for client in clients {
        let closed = client.await.expect("joined").expect("the gateway closed the slow connection");
        assert!(closed < Duration::from_secs(5), "closed after {closed:?}");
    }

    // More slow clients than the cap: the gateway holds at most its cap, refuses nothing it
    // cannot serve for lack of descriptors, and each probe is answered once slow clients are
    // closed, within their deadline.
    let clients = slow_clients(&address, 250).await;
    let slowest = probe(&demo, Duration::from_secs(5)).await;
    assert!(slowest < Duration::from_secs(6), "a probe waited {slowest:?}");
    for client in clients {
        let _ = client.await;
    }
    let answer = reqwest::get(demo.gateway.url("/readyz")).await.expect("readyz");
    assert_eq!(answer.status(), 200);

    // Requests the HTTP layer refuses before any route is known are not exchanges, but they
    // are counted: a head too large, two Content-Lengths, and the slow heads above.
    let raw = |request: Vec<u8>| {
        let address = address.clone();
        async move {
            let mut stream = TcpStream::connect(&address).await.expect("connect");
            stream.write_all(&request).await.expect("write");
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
            String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned()
        }
    };
    let mut huge = b"GET /api/v1/data/verify HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 512 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    assert!(raw(huge).await.starts_with("HTTP/1.1 431"));
    let doubled =
        b"POST /api/v1/data/verify HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
            .to_vec();
    assert!(raw(doubled).await.starts_with("HTTP/1.1 400"));
    let metrics = tongban_e2e::Api::new(&demo.gateway.base_url, Some("scrape-token-for-tests".into()));
    let (status, text) = metrics.get_root("/metrics").await.expect("metrics");
    assert_eq!(status, 200);
    let text = text.as_str().expect("text").to_owned();
    let count = |reason: &str| {
        text.lines()
            .find(|l| l.starts_with("tongban_http_refused_total") && l.contains(&format!("\"{reason}\"")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(count("head_too_large") >= 1, "{text}");
    assert!(count("malformed") >= 1, "{text}");
    assert!(count("head_too_slow") >= 60, "{text}");
}

/// Over TLS the same loop serves: connections that start a handshake and stall are closed
/// after the same deadline, and probes over TLS are answered meanwhile.
#[tokio::test]
async fn stalled_tls_handshakes_are_closed_and_probes_keep_answering() {
    let demo =
        Demo::start_tls_with(1000, &[("TONGBAN_SERVER__HEADER_READ_TIMEOUT_SECS", "2")]).await.expect("demo");
    let address = demo.gateway.url("").trim_start_matches("https://").trim_end_matches('/').to_owned();
    let mut stalled = Vec::new();
    for _ in 0..60 {
        let mut stream = TcpStream::connect(&address).await.expect("connect");
        // The first bytes of a TLS record header, then nothing.
        stream.write_all(&[0x16, 0x03]).await.expect("write");
        stalled.push(tokio::spawn(async move {
            let opened = Instant::now();
            let mut buffer = [0u8; 64];
            loop {
                match tokio::time::timeout(Duration::from_secs(15), stream.read(&mut buffer)).await {
                    Ok(Ok(0) | Err(_)) => return Some(opened.elapsed()),
                    Ok(Ok(_)) => continue,
                    Err(_) => return None,
                }
            }
        }));
    }
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .pool_max_idle_per_host(0)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(demo.data_dir().join("certs/ca.pem")).expect("ca"))
                .expect("pem"),
        )
        .build()
        .expect("client");
    let slowest = probe_with(&demo, &client, Duration::from_secs(3)).await;
    assert!(slowest < Duration::from_secs(1), "a probe waited {slowest:?}");
    for connection in stalled {
        let closed = connection.await.expect("joined").expect("the gateway closed the stalled handshake");
        assert!(closed < Duration::from_secs(5), "closed after {closed:?}");
    }
}
