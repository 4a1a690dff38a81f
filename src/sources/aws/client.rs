//! The AWS SDK configuration: the default credential chain (environment, profile, IRSA web
//! identity, EKS Pod Identity, instance metadata), the standard `AWS_ENDPOINT_URL*` variables,
//! an HTTPS client on rustls with ring, bounded timeouts, and the SDK's standard retries
//! (throttling and 5xx, exponential backoff with jitter).

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::ProvideCredentials;
use aws_smithy_http_client::tls;
use std::time::Duration;

/// How long the credential chain may take (instance metadata probing included): the CLI must
/// answer within 5 s on a machine with no credentials.
pub const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(4);

/// Timeouts of one API call.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// One attempt (a hung endpoint ends here).
    pub attempt: Duration,
    /// All attempts of one call, retries included.
    pub operation: Duration,
}

impl Timeouts {
    /// Timeouts for calls that must end within `operation`, retries included: one attempt gets
    /// a third of it, a connection a tenth (at least half a second).
    pub fn within(operation: Duration) -> Timeouts {
        Timeouts {
            connect: (operation / 10).max(Duration::from_millis(500)),
            attempt: operation / 3,
            operation,
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(3),
            attempt: Duration::from_secs(10),
            operation: Duration::from_secs(30),
        }
    }
}

/// Builds the shared SDK configuration. Every call names its region itself, so no region is
/// looked up here (a region chain would probe instance metadata too).
pub async fn sdk_config(timeouts: Timeouts) -> SdkConfig {
    crate::install_crypto_provider();
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .region(Region::new("us-east-1"))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(4)
                .with_initial_backoff(Duration::from_millis(200))
                .with_max_backoff(Duration::from_secs(5)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(timeouts.connect)
                .read_timeout(timeouts.attempt)
                .operation_attempt_timeout(timeouts.attempt)
                .operation_timeout(timeouts.operation)
                .build(),
        )
        .load()
        .await
}

/// Why the default chain gave no credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoCredentials {
    #[error("no credential provider is configured")]
    NoProvider,
    /// The chain answered with an error (one line).
    #[error("{0}")]
    Refused(String),
    #[error("the credential chain found nothing within {}s", CREDENTIALS_TIMEOUT.as_secs())]
    TimedOut,
}

/// Checks that the chain finds credentials, within [`CREDENTIALS_TIMEOUT`].
pub async fn check_credentials(config: &SdkConfig) -> Result<(), NoCredentials> {
    let Some(provider) = config.credentials_provider() else {
        return Err(NoCredentials::NoProvider);
    };
    match tokio::time::timeout(CREDENTIALS_TIMEOUT, provider.provide_credentials()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(NoCredentials::Refused(super::one_line(&e))),
        Err(_) => Err(NoCredentials::TimedOut),
    }
}
