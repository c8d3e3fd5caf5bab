//! `volume://localhost/voxels?g=<generation>`: the displayed volume as raw little-endian int16
//! (canonical LPS, i fastest), fetched by the UI in one binary response.

use tauri::http::{Request, Response, StatusCode};
use tauri::{Manager, Runtime, UriSchemeContext, UriSchemeResponder};

use super::state::AppState;

pub fn handle<R: Runtime>(ctx: UriSchemeContext<'_, R>, request: Request<Vec<u8>>, responder: UriSchemeResponder) {
    let app = ctx.app_handle().clone();
    std::thread::spawn(move || {
        let state = app.state::<AppState>();
        let reply = |status: StatusCode, body: Vec<u8>, ctype: &str| {
            Response::builder()
                .status(status)
                .header("Content-Type", ctype)
                .header("Access-Control-Allow-Origin", "*")
                .body(body)
                .unwrap()
        };
        let path = request.uri().path().trim_start_matches('/').to_string();
        let resp = if path == "voxels" {
            let guard = state.displayed.lock().unwrap();
            match guard.as_ref() {
                Some(d) => {
                    let mut body = Vec::with_capacity(d.voxels.len() * 2);
                    for v in d.voxels.iter() {
                        body.extend_from_slice(&v.to_le_bytes());
                    }
                    Response::builder()
                        .status(StatusCode::OK)
                        .header("Content-Type", "application/octet-stream")
                        .header("Access-Control-Allow-Origin", "*")
                        .header("X-Generation", d.summary.generation.to_string())
                        .body(body)
                        .unwrap()
                }
                None => reply(StatusCode::NOT_FOUND, b"no volume loaded".to_vec(), "text/plain"),
            }
        } else {
            reply(StatusCode::NOT_FOUND, format!("unknown resource {path}").into_bytes(), "text/plain")
        };
        responder.respond(resp);
    });
}
