//! The read-only web viewer (`viewer/` at the repository root), served by
//! `stele dev`'s gateway at `/` next to the API: same origin, so the page needs
//! no API URL and the API no CORS. The files are compiled in, so the binary
//! serves the viewer of its own version.
//!
//! `config.json` tells the page the log's verifier key and origin, which a
//! deployment would publish (the vkey is a Terraform output); here they are the
//! dev key's (`--log-key-file`'s `.vkey`).

use bytes::Bytes;
use serde_json::json;

const INDEX_HTML: &str = include_str!("../../viewer/index.html");
const APP_JS: &str = include_str!("../../viewer/app.js");
const STYLE_CSS: &str = include_str!("../../viewer/style.css");

/// The viewer's files and its `config.json`.
#[derive(Debug, Clone)]
pub struct Viewer {
    config: String,
}

/// One file of the viewer: its content type and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    pub content_type: &'static str,
    pub body: Bytes,
}

impl Viewer {
    /// `vkey`: the log's verifier key (`None` when checkpoints are off: the page
    /// then asks for one); `log_origin`: the deployment's origin.
    pub fn new(vkey: Option<&str>, log_origin: &str) -> Self {
        let config = json!({
            "api_url": "",
            "vkey": vkey.unwrap_or_default(),
            "log_origin": log_origin,
        });
        Viewer {
            config: config.to_string(),
        }
    }

    /// The file at `path`, if it is one of the viewer's. The API's paths
    /// (`/v1/…`) are never the viewer's.
    pub fn asset(&self, path: &str) -> Option<Asset> {
        let (content_type, body) = match path {
            "/" | "/index.html" => ("text/html; charset=utf-8", Bytes::from_static(INDEX_HTML.as_bytes())),
            "/app.js" => ("text/javascript; charset=utf-8", Bytes::from_static(APP_JS.as_bytes())),
            "/style.css" => ("text/css; charset=utf-8", Bytes::from_static(STYLE_CSS.as_bytes())),
            "/config.json" => ("application/json", Bytes::from(self.config.clone())),
            _ => return None,
        };
        Some(Asset { content_type, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_viewer_files_are_served_and_nothing_else() {
        let viewer = Viewer::new(Some("stele.dev/local+01234567+AQ=="), "stele.dev/local");
        let index = viewer.asset("/").unwrap();
        assert!(index.content_type.starts_with("text/html"));
        assert!(std::str::from_utf8(&index.body)
            .unwrap()
            .contains("<script src=\"app.js\">"));
        assert!(viewer
            .asset("/app.js")
            .unwrap()
            .content_type
            .starts_with("text/javascript"));
        assert!(viewer.asset("/style.css").is_some());
        let config: serde_json::Value = serde_json::from_slice(&viewer.asset("/config.json").unwrap().body).unwrap();
        assert_eq!(config["vkey"], "stele.dev/local+01234567+AQ==");
        assert_eq!(config["log_origin"], "stele.dev/local");
        for other in ["/v1/events", "/../Cargo.toml", "/viewer/app.js", "/index.htm"] {
            assert!(viewer.asset(other).is_none(), "{other}");
        }
    }
}
