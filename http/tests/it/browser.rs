//! A real browser: headless Chromium opens a page served on 127.0.0.1
//! whose script subscribes with `EventSource` (token in `access_token`,
//! cross-origin through CORS), writes a row with `fetch` once the stream
//! is open, and shows the event it receives; the test reads the page's
//! DOM. Skipped, saying why, when no Chromium is installed (set
//! `TIDEFEED_CHROMIUM` to a browser binary to choose one).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use axum::response::Html;
use tidefeed_http::{Scope, TokenRule, TokenSecret};

use crate::common::Server;

const TOKEN: &str = "browser-token";

fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TIDEFEED_CHROMIUM") {
        return Some(path.into());
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome", "chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

fn page(api: &str) -> String {
    format!(
        r#"<!doctype html>
<html><body><pre id="out">waiting</pre><script>
const api = "{api}";
const out = document.getElementById("out");
const es = new EventSource(api + "/v1/changes/stream?tables=users&access_token={TOKEN}");
es.onopen = () => {{
  fetch(api + "/v1/tables/users/rows/7", {{
    method: "PUT",
    headers: {{"Authorization": "Bearer {TOKEN}", "Content-Type": "application/json"}},
    body: JSON.stringify({{id: 7, email: "browser@example.com"}}),
  }}).then(r => {{ if (!r.ok) {{ out.textContent = "WRITE FAILED " + r.status; es.close(); }} }})
    .catch(e => {{ out.textContent = "WRITE FAILED " + e; es.close(); }});
}};
es.onmessage = (e) => {{
  out.textContent = "EVENT id=" + e.lastEventId + " " + e.data;
  es.close();
}};
es.onerror = () => {{
  if (out.textContent === "waiting") {{ out.textContent = "STREAM ERROR"; es.close(); }}
}};
</script></body></html>"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_event_source_receives_changes_with_an_access_token() {
    let Some(browser) = chromium() else {
        // CI installs Debian's chromium (.ci/run); there a missing browser
        // is a broken set-up, not a reason to pass.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no Chromium found: .ci/run installs Debian's chromium"
        );
        eprintln!(
            "skipped: no Chromium found (install Debian's chromium, or set TIDEFEED_CHROMIUM)"
        );
        return;
    };
    let pages = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", pages.local_addr().unwrap());
    let server = Server::start_with(
        |_| {},
        |options| {
            options.tokens = vec![TokenRule {
                secret: TokenSecret::Plain(TOKEN.into()),
                scopes: vec![Scope::Read, Scope::Write],
                tables: None,
            }];
            options.cors_allowed_origins = vec![origin.clone()];
        },
    )
    .await;
    server
        .blocking(|engine| {
            engine
                .create_table(tidefeed_engine::TableSchema {
                    name: "users".into(),
                    columns: vec![
                        tidefeed_engine::Column {
                            name: "id".into(),
                            ty: tidefeed_engine::ColumnType::Int64,
                            nullable: false,
                        },
                        tidefeed_engine::Column {
                            name: "email".into(),
                            ty: tidefeed_engine::ColumnType::String,
                            nullable: true,
                        },
                    ],
                    primary_key: vec!["id".into()],
                })
                .unwrap();
        })
        .await;
    let html = page(&server.base);
    let app = axum::Router::new().route("/", axum::routing::get(move || async move { Html(html) }));
    tokio::spawn(async move { axum::serve(pages, app).await });

    let profile = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(browser);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=20000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("{origin}/"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the browser finishes")
        .unwrap();
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(dom.contains("EVENT id=1 "), "{dom}");
    assert!(dom.contains("browser@example.com"), "{dom}");
    assert_eq!(server.engine.visible_seq(), 1);
}
