//! The `drills` CLI: a client of the drill API. Lists and runs print JSON; `report` prints the
//! continuity test report as the server rendered it ([`crate::report::continuity`]: JSON, CSV,
//! Markdown or HTML).

use anyhow::Context as _;
use serde_json::Value;

use crate::cli::ApiClient;
use crate::report::Format;

fn pretty(v: &Value) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(v).context("printing JSON")? + "\n")
}

/// `drills list`.
///
/// # Errors
/// The API refused or could not be reached.
pub async fn list(client: &ApiClient) -> anyhow::Result<String> {
    pretty(&client.get("/api/v1/drills", &[]).await?)
}

/// `drills runs [--drill ID]`.
///
/// # Errors
/// The API refused or could not be reached.
pub async fn runs(client: &ApiClient, drill: Option<&str>) -> anyhow::Result<String> {
    let q: Vec<(&str, &str)> = drill.map(|d| ("drill", d)).into_iter().collect();
    pretty(&client.get("/api/v1/drill-runs", &q).await?)
}

/// `drills run ID`.
///
/// # Errors
/// The API refused or could not be reached.
pub async fn run(client: &ApiClient, id: &str) -> anyhow::Result<String> {
    pretty(
        &client
            .post(&format!("/api/v1/drills/{id}/run"), &Value::Null)
            .await?,
    )
}

/// `drills show RUN`.
///
/// # Errors
/// The API refused or could not be reached.
pub async fn show(client: &ApiClient, run: u64) -> anyhow::Result<String> {
    pretty(
        &client
            .get(&format!("/api/v1/drill-runs/{run}"), &[])
            .await?,
    )
}

/// `drills report RUN --format json|csv|md|html` (`markdown` is taken for `md`).
///
/// # Errors
/// A bad `--format` (named); the API refused (an unknown run: 404) or could not be reached.
pub async fn report(client: &ApiClient, run: u64, format: &str) -> anyhow::Result<String> {
    let format: Format = match format {
        "markdown" => Format::Md,
        other => other
            .parse()
            .map_err(|e| anyhow::anyhow!("--format: {e}"))?,
    };
    client
        .get_text(
            &format!("/api/v1/drill-runs/{run}/report"),
            &[("format", format.extension())],
        )
        .await
}

/// `drills review RUN …`.
///
/// # Errors
/// The API refused or could not be reached.
pub async fn review(
    client: &ApiClient,
    run: u64,
    body: &crate::api::drills::ReviewBody,
) -> anyhow::Result<String> {
    let body = serde_json::to_value(body).context("encoding the review")?;
    pretty(
        &client
            .post(&format!("/api/v1/drill-runs/{run}/review"), &body)
            .await?,
    )
}

/// `drills summary`.
///
/// # Errors
/// The API refused or could not be reached.
pub async fn summary(client: &ApiClient) -> anyhow::Result<String> {
    pretty(&client.get("/api/v1/drill-summary", &[]).await?)
}
