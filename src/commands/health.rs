//! `winnerr health`: a container health check (the runtime image has no curl).

use std::time::Duration;

use anyhow::{Context, bail};

/// `winnerr health`: one plain HTTP/1.0 GET of `url` (http only), success on status 200.
pub async fn run(url: &str) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .context("health checks take an http:// URL")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let check = async {
        let mut stream = tokio::net::TcpStream::connect(host).await?;
        let request = format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        anyhow::Ok(head)
    };
    let head = tokio::time::timeout(Duration::from_secs(2), check)
        .await
        .context("no answer within 2 s")?
        .with_context(|| format!("cannot reach {url}"))?;
    let status = String::from_utf8_lossy(&head[9..12]).to_string();
    if status != "200" {
        bail!("{url} answered {status}");
    }
    Ok(())
}
