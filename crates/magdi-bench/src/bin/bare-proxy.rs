//! The baseline gateway of the benchmarks: the smallest poem program that takes
//! a Chat Completions request, forwards it to the provider with reqwest, and
//! records one SQLite row per request (its own transaction, WAL,
//! synchronous=NORMAL). `--no-db` leaves the row out.
//!
//! It checks no token, parses no form, loads no history and keeps no
//! allowance: whatever Magdi costs beyond this is the price of what it does.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use futures_util::{StreamExt, future, stream};
use poem::http::StatusCode;
use poem::http::uri::Scheme;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Body, EndpointExt, Response, Route, Server, handler, post};
use rusqlite::Connection;
use serde::Deserialize;

/// The bare proxy baseline, on 127.0.0.1.
#[derive(Debug, Parser)]
struct Args {
    /// Port to listen on (127.0.0.1 only).
    #[arg(long, default_value_t = 9200)]
    port: u16,

    /// The provider's base URL (must be on 127.0.0.1).
    #[arg(long, default_value = "http://127.0.0.1:9100/v1")]
    upstream: String,

    /// The SQLite file that gets one row per request.
    #[arg(long, default_value = "bare-proxy.db")]
    db: PathBuf,

    /// Forward only; write nothing.
    #[arg(long)]
    no_db: bool,

    /// Set TCP_NODELAY on accepted connections (poem's listener leaves Nagle's
    /// algorithm on, which holds back the small writes of a stream).
    #[arg(long)]
    nodelay: bool,
}

/// poem's TCP acceptor, but with TCP_NODELAY on every accepted connection.
struct NodelayAcceptor {
    listener: tokio::net::TcpListener,
    local: LocalAddr,
}

impl Acceptor for NodelayAcceptor {
    type Io = tokio::net::TcpStream;

    fn local_addr(&self) -> Vec<LocalAddr> {
        vec![self.local.clone()]
    }

    async fn accept(&mut self) -> std::io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let (stream, remote) = self.listener.accept().await?;
        stream.set_nodelay(true)?;
        Ok((
            stream,
            self.local.clone(),
            RemoteAddr(remote.into()),
            Scheme::HTTP,
        ))
    }
}

struct Proxy {
    http: reqwest::Client,
    url: String,
    db: Option<Arc<Mutex<Connection>>>,
}

#[derive(Deserialize)]
struct ChatRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    stream: bool,
}

struct Row {
    model: String,
    stream: bool,
    status: u16,
    bytes: usize,
}

fn open_db(path: &PathBuf) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         CREATE TABLE IF NOT EXISTS requests (
             id INTEGER PRIMARY KEY,
             created_at INTEGER NOT NULL,
             model TEXT NOT NULL,
             stream INTEGER NOT NULL,
             status INTEGER NOT NULL,
             bytes INTEGER NOT NULL
         );",
    )?;
    Ok(conn)
}

/// Inserts the request's row in its own transaction, off the async runtime.
async fn record(db: Option<Arc<Mutex<Connection>>>, row: Row) {
    let Some(db) = db else { return };
    let written = tokio::task::spawn_blocking(move || {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let conn = db.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        conn.prepare_cached(
            "INSERT INTO requests (created_at, model, stream, status, bytes)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut stmt| {
            stmt.execute(rusqlite::params![
                now,
                row.model,
                row.stream,
                row.status,
                row.bytes as i64
            ])
        })
    })
    .await;
    if !matches!(written, Ok(Ok(_))) {
        eprintln!("bare-proxy: recording a request failed");
    }
}

fn bad_gateway(message: &str) -> Response {
    Response::builder()
        .status(StatusCode::BAD_GATEWAY)
        .content_type("application/json")
        .body(serde_json::json!({"error": {"message": message}}).to_string())
}

#[handler]
async fn chat(Data(proxy): Data<&Arc<Proxy>>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<ChatRequest>(&body) else {
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .content_type("application/json")
            .body(r#"{"error":{"message":"not a chat request"}}"#);
    };
    let upstream = proxy
        .http
        .post(&proxy.url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let upstream = match upstream {
        Ok(upstream) => upstream,
        Err(_) => return bad_gateway("the provider did not answer"),
    };
    let status = upstream.status();
    let content_type = upstream
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let db = proxy.db.clone();

    if !request.stream {
        let Ok(bytes) = upstream.bytes().await else {
            return bad_gateway("the provider's answer was cut short");
        };
        let row = Row {
            model: request.model,
            stream: false,
            status: status.as_u16(),
            bytes: bytes.len(),
        };
        record(db, row).await;
        return Response::builder()
            .status(status)
            .content_type(content_type)
            .body(bytes);
    }

    // Streamed: pass every chunk on as it comes; the row is written after the
    // last one and before the client sees the end of the body.
    let counted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&counted);
    let chunks = upstream.bytes_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        counter.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
        Ok::<Bytes, std::io::Error>(chunk)
    });
    let tail = stream::once(async move {
        let row = Row {
            model: request.model,
            stream: true,
            status: status.as_u16(),
            bytes: counted.load(std::sync::atomic::Ordering::Relaxed),
        };
        record(db, row).await;
        Ok(Bytes::new())
    });
    let body = chunks
        .chain(tail)
        .filter(|chunk| future::ready(!matches!(chunk, Ok(b) if b.is_empty())));
    Response::builder()
        .status(status)
        .content_type(content_type)
        .header("cache-control", "no-cache")
        .body(Body::from_bytes_stream(body))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if !args.upstream.starts_with("http://127.0.0.1:") {
        return Err("--upstream must be on http://127.0.0.1".into());
    }
    let db = if args.no_db {
        None
    } else {
        Some(Arc::new(Mutex::new(open_db(&args.db)?)))
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()?;
    let proxy = Arc::new(Proxy {
        http,
        url: format!("{}/chat/completions", args.upstream.trim_end_matches('/')),
        db,
    });
    let app = Route::new()
        .at("/v1/chat/completions", post(chat))
        .at("/chat/completions", post(chat))
        .data(proxy);
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    println!(
        "bare-proxy listening on http://{address} ({})",
        if args.no_db {
            "no database"
        } else {
            "one SQLite row per request"
        }
    );
    if args.nodelay {
        let listener = tokio::net::TcpListener::bind(address).await?;
        let local = LocalAddr(listener.local_addr()?.into());
        Server::new_with_acceptor(NodelayAcceptor { listener, local })
            .run(app)
            .await?;
    } else {
        let acceptor = TcpListener::bind(address).into_acceptor().await?;
        Server::new_with_acceptor(acceptor).run(app).await?;
    }
    Ok(())
}
