//! A real server on 127.0.0.1:0 over a real engine in a temporary
//! directory, a real HTTP client, and an SSE reader built on a real SSE
//! parser.

use std::time::Duration;

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value as Json};
use tidefeed_engine::{Engine, EngineOptions};
use tidefeed_http::{AppState, ServerOptions, Stopped};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Generous bound for anything a test waits on.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub struct Server {
    pub base: String,
    pub engine: Engine,
    pub client: reqwest::Client,
    /// A bearer token sent by [`Server::request`], if any.
    pub token: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<Stopped, tidefeed_http::ServeError>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(|_| {}, |_| {}).await
    }

    pub async fn start_with(
        engine_options: impl FnOnce(&mut EngineOptions),
        server_options: impl FnOnce(&mut ServerOptions),
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut options = EngineOptions::new(dir.path());
        engine_options(&mut options);
        let engine = tokio::task::spawn_blocking(move || Engine::open(options).unwrap())
            .await
            .unwrap();
        let mut server = ServerOptions {
            resolved_interval: Duration::from_millis(100),
            ..ServerOptions::default()
        };
        server_options(&mut server);
        let state = AppState::new(engine.clone(), server);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(tidefeed_http::serve(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        Server {
            base,
            engine,
            client: reqwest::Client::builder()
                .timeout(PATIENCE)
                .build()
                .unwrap(),
            token: None,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `body` (if any) as JSON; returns the status and the JSON body
    /// (`null` when empty).
    pub async fn call(&self, method: Method, path: &str, body: Option<Json>) -> (StatusCode, Json) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        json_of(request.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Json) {
        self.call(Method::GET, path, None).await
    }

    pub async fn put(&self, path: &str, body: Json) -> (StatusCode, Json) {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: Json) -> (StatusCode, Json) {
        self.call(Method::POST, path, Some(body)).await
    }

    /// `users(id int64 pk, email string?, age int64?)`.
    pub async fn create_users(&self) {
        let (status, body) = self.put("/v1/tables/users", users_schema()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// Upserts `users/{id}` and returns its seq.
    pub async fn put_user(&self, id: i64, email: &str) -> u64 {
        let (status, body) = self
            .put(
                &format!("/v1/tables/users/rows/{id}"),
                json!({"id": id, "email": email}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["seq"].as_u64().unwrap()
    }

    /// Opens a change stream (`query` after `?`, `last_event_id` as a
    /// header) and returns the raw response, which may be an error.
    pub async fn open_stream(&self, query: &str, last_event_id: Option<u64>) -> Response {
        let mut request = self.request(Method::GET, &format!("/v1/changes/stream?{query}"));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        // Streams outlive the client's request timeout.
        request
            .timeout(Duration::from_secs(3600))
            .send()
            .await
            .unwrap()
    }

    pub async fn stream(&self, query: &str, last_event_id: Option<u64>) -> Sse {
        let response = self.open_stream(query, last_event_id).await;
        assert_eq!(response.status(), StatusCode::OK, "stream refused");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "SSE content type"
        );
        Sse::new(response)
    }

    pub async fn stop(mut self) -> Stopped {
        self.stop.take().unwrap().send(()).ok();
        let stopped = tokio::time::timeout(PATIENCE, self.task.take().unwrap())
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
        stopped
    }

    /// Runs blocking engine work off the async workers.
    pub async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(Engine) -> T + Send + 'static,
    ) -> T {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || work(engine))
            .await
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
    }
}

pub async fn json_of(response: Response) -> (StatusCode, Json) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let json = if text.is_empty() {
        Json::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
    };
    (status, json)
}

/// Asserts an error response: status, code, and the JSON error shape.
#[track_caller]
pub fn assert_error(status: StatusCode, body: &Json, expected: u16, code: &str) {
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (expected, Some(code)),
        "{body}"
    );
    assert!(body["error"]["message"].is_string(), "{body}");
}

pub fn users_schema() -> Json {
    json!({
        "columns": [
            {"name": "id", "type": "int64"},
            {"name": "email", "type": "string", "nullable": true},
            {"name": "age", "type": "int64", "nullable": true}
        ],
        "primary_key": ["id"]
    })
}

/// An SSE client over a response, parsed by `eventsource-stream`.
pub struct Sse {
    events: BoxStream<'static, Result<Event, EventStreamError<reqwest::Error>>>,
}

impl Sse {
    pub fn new(response: Response) -> Sse {
        Sse {
            events: response.bytes_stream().eventsource().boxed(),
        }
    }

    /// The next event, within [`PATIENCE`]; `None` when the stream ended.
    pub async fn next(&mut self) -> Option<Event> {
        tokio::time::timeout(PATIENCE, self.events.next())
            .await
            .expect("an event within the patience")
            .map(|event| event.expect("a well-formed SSE stream"))
    }

    /// The next event that is not `resolved`.
    pub async fn next_change(&mut self) -> Event {
        loop {
            let event = self.next().await.expect("stream still open");
            if event.event != "resolved" {
                return event;
            }
        }
    }

    /// The next `n` change events, as (id, JSON data).
    pub async fn changes(&mut self, n: usize) -> Vec<(String, Json)> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let event = self.next_change().await;
            assert_eq!(event.event, "message", "{event:?}");
            out.push((event.id.clone(), serde_json::from_str(&event.data).unwrap()));
        }
        out
    }
}

/// Percent-encodes every byte but unreserved characters (RFC 3986), as a
/// client puts a key into a path segment.
pub fn enc(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
