//! A loopback fixture server for the integration tests: std `TcpListener` in a thread, bound to
//! 127.0.0.1:0, one request per connection, stopped on drop or after 120 s at the latest.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub fn fixture(path: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Bytes, so a test can serve gzip.
    pub body: Vec<u8>,
    /// Send the body one byte per this interval (a slow server).
    pub trickle: Option<Duration>,
}

impl Reply {
    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        Reply {
            status: 200,
            headers: vec![],
            body: body.into(),
            trickle: None,
        }
    }
    pub fn json(body: impl Into<Vec<u8>>) -> Self {
        Reply::ok(body).header("Content-Type", "application/json")
    }
    pub fn status(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Reply {
            status,
            headers: vec![],
            body: body.into(),
            trickle: None,
        }
    }
    pub fn trickle(mut self, every: Duration) -> Self {
        self.trickle = Some(every);
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
}

#[derive(Clone, Debug)]
pub struct Logged {
    pub method: String,
    pub target: String,
    pub at: Instant,
    pub user_agent: Option<String>,
    pub authorization: Option<String>,
    pub body: String,
}

type Handler = dyn Fn(&str, usize, &str) -> Reply + Send + Sync;

pub struct FixtureServer {
    pub base: String,
    log: Arc<Mutex<Vec<Logged>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FixtureServer {
    /// `handler(target, n, body)` answers the n-th (from 0) request for `target` (path + query).
    pub fn start(handler: impl Fn(&str, usize, &str) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (log2, stop2) = (log.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut seen: HashMap<String, usize> = HashMap::new();
            let mut served = 0;
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline && served < 5000 {
                match listener.accept() {
                    Ok((stream, _)) => {
                        served += 1;
                        let _ = serve(stream, &*handler, &log2, &mut seen);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(_) => break,
                }
            }
        });
        FixtureServer {
            base,
            log,
            stop,
            thread: Some(thread),
        }
    }

    pub fn log(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }

    pub fn targets(&self) -> Vec<String> {
        self.log().into_iter().map(|l| l.target).collect()
    }
}

impl Drop for FixtureServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    stream: TcpStream,
    handler: &Handler,
    log: &Mutex<Vec<Logged>>,
    seen: &mut HashMap<String, usize>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut user_agent = None;
    let mut authorization = None;
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let v = v.trim().to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "user-agent" => user_agent = Some(v),
                "authorization" => authorization = Some(v),
                "content-length" => content_length = v.parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; content_length];
    reader.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body).into_owned();
    let n = {
        let e = seen.entry(target.clone()).or_default();
        *e += 1;
        *e - 1
    };
    log.lock().unwrap().push(Logged {
        method,
        target: target.clone(),
        at: Instant::now(),
        user_agent,
        authorization,
        body: body.clone(),
    });
    let reply = handler(&target, n, &body);
    let mut out = stream;
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    match reply.trickle {
        None => out.write_all(&reply.body)?,
        Some(every) => {
            // Stops when the client hangs up (the write fails) or the server is dropped.
            for b in &reply.body {
                std::thread::sleep(every);
                out.write_all(std::slice::from_ref(b))?;
                out.flush()?;
            }
        }
    }
    out.flush()
}

/// A `details` listing page generated from one record shape: `total` records, `per_page` per call.
pub fn listing_page(
    cursor: usize,
    per_page: usize,
    total: usize,
    numbers_as_strings: bool,
) -> String {
    let end = (cursor + per_page).min(total);
    let records: Vec<serde_json::Value> = (cursor..end)
        .map(|i| {
            serde_json::json!({
                "doi": format!("10.1101/2099.01.{:02}.{:06}", i % 28 + 1, 800000 + i),
                "title": format!("Synthetic listing record {i}"),
                "authors": "Doe, J.; Roe, R.",
                "date": "2099-01-15", "version": "1", "type": "new results", "license": "cc_by",
                "category": "bioinformatics", "jatsxml": "", "abstract": "Synthetic.", "published": "NA",
                "server": "bioRxiv"
            })
        })
        .collect();
    let count = records.len();
    let message = if numbers_as_strings {
        serde_json::json!({"status": "ok", "cursor": cursor.to_string(), "count": count, "count_new_papers": count.to_string(), "total": total.to_string()})
    } else {
        serde_json::json!({"status": "ok", "cursor": cursor, "count": count, "total": total})
    };
    serde_json::json!({"messages": [message], "collection": records}).to_string()
}

/// The standard fixture routes under /api, /europepmc and /web.
pub fn standard_routes(target: &str, _n: usize, _body: &str) -> Reply {
    let path = target.split('?').next().unwrap_or(target);
    match path {
        "/api/details/biorxiv/10.1101/2099.01.01.900001/na/json" => {
            Reply::json(fixture("api/details_doi.json"))
        }
        "/api/details/biorxiv/10.1101/2099.02.02.900002/na/json" => {
            Reply::json(fixture("api/details_pdf_only.json"))
        }
        "/api/pubs/biorxiv/10.1101/2099.01.01.900001/na/json" => {
            Reply::json(fixture("api/pubs_hit.json"))
        }
        "/api/pubs/biorxiv/10.1101/2099.02.02.900002/na/json" => {
            Reply::json(fixture("api/pubs_miss.json"))
        }
        p if p.starts_with("/api/details/") || p.starts_with("/api/pubs/") => {
            Reply::json(fixture("api/no_posts.json"))
        }
        "/europepmc/search" => {
            let decoded = target
                .replace("%22", "\"")
                .replace("%3A", ":")
                .replace("%2F", "/");
            if decoded.contains("DOI:\"10.1101/2099.01.01.900001\"") {
                Reply::json(fixture("europepmc/search_doi_900001.json"))
            } else if decoded.contains("DOI:") {
                Reply::json(fixture("europepmc/search_empty.json"))
            } else if target.contains("cursorMark=CURSOR3") {
                Reply::json(fixture("europepmc/search_page3.json"))
            } else if target.contains("cursorMark=CURSOR2") {
                Reply::json(fixture("europepmc/search_page2.json"))
            } else {
                Reply::json(fixture("europepmc/search_page1.json"))
            }
        }
        "/europepmc/PPR/PPR900001/fullTextXML" => Reply::ok(fixture("europepmc/PPR900001.xml")),
        "/web/search/synthetic%20numresults%3A75" if target.contains("page=1") => {
            Reply::ok(fixture("web/search_page1.html"))
        }
        "/web/search/synthetic%20numresults%3A75" => Reply::ok(fixture("web/search_page0.html")),
        _ => Reply::status(404, "not found"),
    }
}

#[derive(clap::Parser, Debug)]
#[command(name = "scllm")]
struct TestCli {
    #[command(subcommand)]
    command: Top,
}

#[derive(clap::Subcommand, Debug)]
enum Top {
    Papers(scllm_papers::cli::PapersArgs),
}

/// `scllm papers ARGS` in-process against `server`: its three services, no cache, no pacing,
/// the committed resources.
pub fn papers(server: &FixtureServer, args: &[&str]) -> anyhow::Result<()> {
    use clap::Parser;
    let mut argv = vec![
        "scllm".to_string(),
        "papers".to_string(),
        "--europepmc-url".into(),
        format!("{}/europepmc", server.base),
        "--biorxiv-api-url".into(),
        format!("{}/api", server.base),
        "--biorxiv-url".into(),
        format!("{}/web", server.base),
        "--no-cache".into(),
        "--min-interval-ms".into(),
        "0".into(),
        "--resources".into(),
        fixtures_dir().join("resources").display().to_string(),
    ];
    argv.extend(args.iter().map(|s| s.to_string()));
    let Top::Papers(a) = TestCli::try_parse_from(argv)?.command;
    scllm_papers::cli::run(a)
}
