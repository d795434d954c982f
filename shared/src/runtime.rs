//! What both binaries do at their edge, in one place: install the log subscriber and turn
//! SIGINT/SIGTERM into a cancellation token.

use tokio_util::sync::CancellationToken;

/// Installs the stderr log subscriber with `filter` (a level or a tracing filter such as
/// `watchstand_agent=debug,info`).
///
/// # Errors
/// The filter does not parse (the message names `--log-level`), or a subscriber is installed
/// already.
pub fn install_tracing(filter: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| format!("--log-level {filter:?}: {e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init()
        .map_err(|e| format!("cannot install the log subscriber: {e}"))
}

/// Waits for ctrl-c; if no handler can be installed, waits forever (SIGTERM may still come).
async fn ctrl_c() {
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::warn!(error = %e, "Ctrl-c handler not installed.");
        std::future::pending::<()>().await;
    }
}

/// A token cancelled on ctrl-c or SIGTERM. Must be called inside a Tokio runtime.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        () = ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "SIGTERM handler not installed; ctrl-c only.");
                    ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        ctrl_c().await;
        tracing::info!("Shutdown requested.");
        cancel.cancel();
    });
    token
}

/// An error and its causes as one line for the binaries' stderr: `outer: cause: root`, leaving
/// out a cause whose text the line already holds (an error that prints its source, such as "cannot
/// read: No such file", would otherwise show the OS error twice).
pub fn error_report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::error_report;

    #[derive(Debug, thiserror::Error)]
    #[error("config.toml: cannot read: {source}")]
    struct ReadError {
        source: std::io::Error,
    }

    #[test]
    fn error_report_shows_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let e = ReadError { source: io };
        assert_eq!(
            error_report(&e),
            "config.toml: cannot read: No such file or directory"
        );
        let wrapped = std::io::Error::other(e);
        assert_eq!(
            error_report(&wrapped),
            "config.toml: cannot read: No such file or directory"
        );
    }
}
