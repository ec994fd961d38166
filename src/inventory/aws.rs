//! Reaching AWS the AWS way: the SDK's default credential chain and region handling, a role
//! assumed per account through STS, and endpoint overrides through the SDK's standard
//! `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` variables (how tests and the sandbox point
//! it at localhost). SDK retries are off: `call` retries with knowledge of throttling.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

use super::call::{CallError, CallGate};
use crate::config::{AccountSettings, AccountsSettings, AwsSettings};

/// An account to scan, with the SDK configuration that reaches it (credentials resolved).
#[derive(Clone, Debug)]
pub struct AccountSession {
    pub id: String,
    pub name: Option<String>,
    pub sdk: SdkConfig,
}

/// An account that could not be reached, and why; reported, never fatal to the others.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AccountFailure {
    pub id: String,
    pub name: Option<String>,
    pub reason: String,
}

/// The ambient SDK configuration: default chain, retries off, per-attempt timeout.
pub async fn base_config(settings: &AwsSettings) -> SdkConfig {
    let timeout = Duration::from_secs(settings.call_timeout_secs);
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(timeout)
                .connect_timeout(Duration::from_secs(5).min(timeout))
                .build(),
        );
    // The home region only matters for STS calls; scans name their regions explicitly.
    if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none()
    {
        loader = loader.region(Region::new(settings.regions[0].clone()));
    }
    loader.load().await
}

/// The same configuration aimed at another region.
pub fn in_region(sdk: &SdkConfig, region: &str) -> SdkConfig {
    sdk.to_builder()
        .region(Region::new(region.to_string()))
        .build()
}

/// Opens a session for one configured account: assumes its role if it has one, and proves the
/// credentials work before any scan relies on them.
pub async fn open_account(
    base: &SdkConfig,
    account: &AccountSettings,
    session_name: &str,
) -> Result<AccountSession, AccountFailure> {
    let fail = |reason: String| AccountFailure {
        id: account.id.clone(),
        name: account.name.clone(),
        reason,
    };
    let sdk = match &account.role_arn {
        None => {
            // Without a role, the ambient credentials are trusted to be this account: check
            // it, since reconciling the wrong account would observe everything of the right
            // one as deleted.
            let reached = caller_account(base).await.map_err(|e| {
                fail(format!(
                    "could not check which account the ambient credentials reach (sts:GetCallerIdentity): {e}"
                ))
            })?;
            if reached != account.id {
                return Err(fail(format!(
                    "the ambient credentials reach account {reached}, not {}: give this entry a role_arn, or run with credentials of account {}",
                    account.id, account.id
                )));
            }
            base.clone()
        }
        Some(role_arn) => {
            let mut builder = aws_config::sts::AssumeRoleProvider::builder(role_arn.clone())
                .session_name(session_name)
                .configure(base);
            if let Some(external_id) = &account.external_id {
                builder = builder.external_id(external_id.expose());
            }
            let provider = builder.build().await;
            provider.provide_credentials().await.map_err(|e| {
                fail(format!(
                    "could not assume role {role_arn}: {}",
                    error_chain(&e)
                ))
            })?;
            base.to_builder()
                .credentials_provider(SharedCredentialsProvider::new(provider))
                .build()
        }
    };
    Ok(AccountSession {
        id: account.id.clone(),
        name: account.name.clone(),
        sdk,
    })
}

/// The account `sdk`'s credentials belong to (sts:GetCallerIdentity).
async fn caller_account(sdk: &SdkConfig) -> Result<String, String> {
    let identity = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| error_chain(&e))?;
    identity
        .account()
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .ok_or_else(|| "the answer names no account".to_string())
}

/// Opens the account of the ambient credentials, named by sts:GetCallerIdentity.
pub async fn open_ambient(base: &SdkConfig) -> Result<AccountSession, AccountFailure> {
    match caller_account(base).await {
        Ok(id) => Ok(AccountSession {
            id,
            name: None,
            sdk: base.clone(),
        }),
        Err(e) => Err(AccountFailure {
            id: "ambient".into(),
            name: None,
            reason: format!(
                "could not identify the ambient credentials' account (sts:GetCallerIdentity): {e}"
            ),
        }),
    }
}

/// An error and its causes on one line: SDK errors hide the useful part in `source()`.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Lists the active accounts of the AWS Organization the ambient credentials can read, as the
/// accounts to scan: each reached by assuming `role_name`, minus `exclude`.
pub async fn discover_organization(
    base: &SdkConfig,
    gate: &CallGate,
    accounts: &AccountsSettings,
) -> Result<Vec<AccountSettings>, CallError> {
    let client = aws_sdk_organizations::Client::new(base);
    let mut found = Vec::new();
    gate.paged(
        "ListAccounts",
        |next| client.list_accounts().set_next_token(next).send(),
        |page| {
            for account in page.accounts() {
                let Some(id) = account.id() else { continue };
                // `State` supersedes the deprecated `Status`; either says whether it is usable.
                #[allow(deprecated)]
                let active = match (account.state(), account.status()) {
                    (Some(state), _) => state.as_str() == "ACTIVE",
                    (None, Some(status)) => status.as_str() == "ACTIVE",
                    (None, None) => true,
                };
                if !active || accounts.exclude.iter().any(|e| e == id) {
                    continue;
                }
                let partition = account
                    .arn()
                    .and_then(|arn| arn.split(':').nth(1))
                    .unwrap_or("aws");
                found.push(AccountSettings {
                    id: id.to_string(),
                    role_arn: Some(format!(
                        "arn:{partition}:iam::{id}:role/{}",
                        accounts.role_name
                    )),
                    external_id: accounts.external_id.clone(),
                    name: account.name().map(str::to_string),
                });
            }
            page.next_token().map(str::to_string)
        },
    )
    .await?;
    Ok(found)
}

/// The regions enabled for an account (default regions, and opt-in regions once opted in),
/// read with the account's own credentials through the Account service's ListRegions.
pub async fn enabled_regions(
    session: &AccountSession,
    gate: &CallGate,
) -> Result<Vec<String>, CallError> {
    use aws_sdk_account::types::RegionOptStatus;
    let client = aws_sdk_account::Client::new(&session.sdk);
    let mut regions = Vec::new();
    gate.paged(
        "ListRegions",
        |next| {
            client
                .list_regions()
                .region_opt_status_contains(RegionOptStatus::Enabled)
                .region_opt_status_contains(RegionOptStatus::EnabledByDefault)
                .max_results(50)
                .set_next_token(next)
                .send()
        },
        |page| {
            regions.extend(
                page.regions()
                    .iter()
                    .filter_map(|r| r.region_name().map(str::to_string)),
            );
            page.next_token().map(str::to_string)
        },
    )
    .await?;
    regions.sort();
    Ok(regions)
}

/// Whether certsentinel reads `account`, and how: `Ok(Some)` with its session when it is a
/// configured account, one of the organization's (discovery), or the ambient account when
/// none is configured; `Ok(None)` when it reads no such account. A change event names its
/// account; one certsentinel does not scan is acknowledged, never read.
pub async fn scanned_account(
    settings: &AwsSettings,
    base: &SdkConfig,
    account: &str,
) -> Result<Option<AccountSession>, AccountFailure> {
    use crate::config::Discovery;
    let unreachable = |reason: String| AccountFailure {
        id: account.to_string(),
        name: None,
        reason,
    };
    let configured = match settings.accounts.discover {
        Discovery::List if settings.accounts.list.is_empty() => {
            let ambient = open_ambient(base).await?;
            return Ok((ambient.id == account).then_some(ambient));
        }
        Discovery::List => settings
            .accounts
            .list
            .iter()
            .find(|a| a.id == account)
            .cloned(),
        Discovery::Organization => {
            let gate = CallGate::new(&settings.rate_limit, &settings.retry);
            discover_organization(base, &gate, &settings.accounts)
                .await
                .map_err(|e| {
                    unreachable(format!("could not list the organization's accounts: {e}"))
                })?
                .into_iter()
                .find(|a| a.id == account)
        }
    };
    match configured {
        Some(a) => open_account(base, &a, &settings.role_session_name)
            .await
            .map(Some),
        None => Ok(None),
    }
}

/// Whether certsentinel reads `region` (configured, or every enabled region).
pub fn scans_region(settings: &AwsSettings, region: &str) -> bool {
    settings
        .regions
        .iter()
        .any(|r| r == region || r == crate::config::ENABLED_REGIONS)
}
