//! The web dashboard: one HTML page, one hand-written script and one stylesheet, compiled into
//! the binary (`include_str!`) and served at `/` — nothing is fetched from elsewhere, so it works
//! on an air-gapped network. The page holds no data: the script asks `/api/v1` with the token the
//! user typed (kept in `sessionStorage`), so the API's roles and audit apply unchanged. Every
//! answer carries a strict Content-Security-Policy (only this origin's script, style and API;
//! no inline script or style, no frames).

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

/// The page.
const INDEX_HTML: &str = include_str!("assets/index.html");
/// The script: login, routing, API calls, SVG charts.
const APP_JS: &str = include_str!("assets/app.js");
/// The stylesheet (screen, phone, print).
const APP_CSS: &str = include_str!("assets/app.css");

/// The Content-Security-Policy of every dashboard answer. `img-src data:` is for the empty
/// favicon only; charts are SVG elements the script builds (no `style` attributes).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; form-action 'none'; base-uri 'none'; \
frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the page.
pub async fn index() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

/// `GET /assets/app.js`.
pub async fn script() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

/// `GET /assets/app.css`.
pub async fn stylesheet() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashboard_page_names_only_its_own_assets_and_no_inline_code() {
        assert!(INDEX_HTML.contains(r#"src="/assets/app.js""#));
        assert!(INDEX_HTML.contains(r#"href="/assets/app.css""#));
        // Nothing from another origin, nothing inline the CSP would refuse.
        // (The SVG namespace is a name, never fetched.)
        for text in [INDEX_HTML, APP_JS, APP_CSS] {
            let text = text.replace("'http://www.w3.org/2000/svg'", "");
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
        assert!(!INDEX_HTML.contains("style=") && !INDEX_HTML.contains("onclick"));
        assert_eq!(INDEX_HTML.matches("<script").count(), 1);
        assert!(!APP_JS.contains("setAttribute('style'") && !APP_JS.contains("innerHTML"));
    }

    #[test]
    fn dashboard_csp_allows_nothing_foreign() {
        assert!(CSP.starts_with("default-src 'none'"));
        assert!(!CSP.contains("unsafe") && !CSP.contains('*'));
    }
}
