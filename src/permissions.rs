//! Every AWS operation certsentinel calls, in one place, with the IAM action and resource it
//! needs and who needs it: the read role in each member account, or the daemon's own
//! identity. The policies in `deploy/iam/` are checked against this list in both directions
//! (every operation allowed, nothing allowed that no operation needs), and the list against
//! the code (every SDK call the sources make is here, and every entry is made).
//!
//! Must never be used to decide anything at run time: it is a statement of need, for the
//! people who grant it and for the tests that hold the code to it.

/// Whose identity makes the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// The role assumed in each member account (`aws.accounts`): reads only.
    MemberReadRole,
    /// The daemon's own identity in the account it runs in (its queue, its role chaining,
    /// organization discovery).
    Daemon,
}

/// One AWS operation the code calls.
#[derive(Debug, Clone, Copy)]
pub struct AwsOperation {
    /// The SDK crate's service, as in `aws-sdk-<service>`.
    pub service: &'static str,
    /// The API operation's name.
    pub operation: &'static str,
    /// The SDK client's method that makes it, or `None` when the SDK makes it for us
    /// (`sts:AssumeRole`, by aws-config's `AssumeRoleProvider`).
    pub sdk_method: Option<&'static str>,
    /// The IAM action it needs; `None` for the one operation that needs no permission.
    pub iam_action: Option<&'static str>,
    /// The resource it acts on, as an ARN with `{partition}`, `{region}` and `{account}`
    /// placeholders and `{id}` for any identifier; `*` when the action has no resource type.
    pub resource: &'static str,
    pub principal: Principal,
}

const fn op(
    service: &'static str,
    operation: &'static str,
    sdk_method: Option<&'static str>,
    iam_action: Option<&'static str>,
    resource: &'static str,
    principal: Principal,
) -> AwsOperation {
    AwsOperation {
        service,
        operation,
        sdk_method,
        iam_action,
        resource,
        principal,
    }
}

use Principal::{Daemon, MemberReadRole};

/// Every AWS operation certsentinel calls.
pub const AWS_OPERATIONS: &[AwsOperation] = &[
    // Inventory, in each member account and region (`inventory::control_plane`).
    op(
        "apigateway",
        "GetClientCertificates",
        Some("get_client_certificates"),
        Some("apigateway:GET"),
        "arn:{partition}:apigateway:{region}::/clientcertificates",
        MemberReadRole,
    ),
    op(
        "apigateway",
        "GetClientCertificate",
        Some("get_client_certificate"),
        Some("apigateway:GET"),
        "arn:{partition}:apigateway:{region}::/clientcertificates/{id}",
        MemberReadRole,
    ),
    op(
        "apigateway",
        "GetRestApis",
        Some("get_rest_apis"),
        Some("apigateway:GET"),
        "arn:{partition}:apigateway:{region}::/restapis",
        MemberReadRole,
    ),
    op(
        "apigateway",
        "GetRestApi",
        Some("get_rest_api"),
        Some("apigateway:GET"),
        "arn:{partition}:apigateway:{region}::/restapis/{id}",
        MemberReadRole,
    ),
    op(
        "apigateway",
        "GetStages",
        Some("get_stages"),
        Some("apigateway:GET"),
        "arn:{partition}:apigateway:{region}::/restapis/{id}/stages",
        MemberReadRole,
    ),
    op(
        "apigateway",
        "GetStage",
        Some("get_stage"),
        Some("apigateway:GET"),
        "arn:{partition}:apigateway:{region}::/restapis/{id}/stages/{id}",
        MemberReadRole,
    ),
    op(
        "apigatewayv2",
        "GetApis",
        Some("get_apis"),
        Some("apigateway:GET"),
        "arn:{partition}:apigateway:{region}::/apis",
        MemberReadRole,
    ),
    op(
        "apigatewayv2",
        "GetApi",
        Some("get_api"),
        Some("apigateway:GET"),
        "arn:{partition}:apigateway:{region}::/apis/{id}",
        MemberReadRole,
    ),
    op(
        "apigatewayv2",
        "GetStages",
        Some("get_stages"),
        Some("apigateway:GET"),
        "arn:{partition}:apigateway:{region}::/apis/{id}/stages",
        MemberReadRole,
    ),
    op(
        "apigatewayv2",
        "GetStage",
        Some("get_stage"),
        Some("apigateway:GET"),
        "arn:{partition}:apigateway:{region}::/apis/{id}/stages/{id}",
        MemberReadRole,
    ),
    op(
        "acm",
        "DescribeCertificate",
        Some("describe_certificate"),
        Some("acm:DescribeCertificate"),
        "arn:{partition}:acm:{region}:{account}:certificate/{id}",
        MemberReadRole,
    ),
    // `regions = ["enabled"]` (`inventory::aws`).
    op(
        "account",
        "ListRegions",
        Some("list_regions"),
        Some("account:ListRegions"),
        // Of the caller's own account: the call names no other.
        "arn:{partition}:account::{account}:account",
        MemberReadRole,
    ),
    // Reaching each account (`inventory::aws`): the role, and a check of whose credentials
    // these are (GetCallerIdentity needs no permission, and cannot be denied).
    op(
        "sts",
        "AssumeRole",
        None,
        Some("sts:AssumeRole"),
        "arn:{partition}:iam::{account}:role/{id}",
        Daemon,
    ),
    op(
        "sts",
        "GetCallerIdentity",
        Some("get_caller_identity"),
        None,
        "*",
        Daemon,
    ),
    // `aws.accounts.discover = "organization"`.
    op(
        "organizations",
        "ListAccounts",
        Some("list_accounts"),
        Some("organizations:ListAccounts"),
        "*",
        Daemon,
    ),
    // Change events (`events::queue`).
    op(
        "sqs",
        "ReceiveMessage",
        Some("receive_message"),
        Some("sqs:ReceiveMessage"),
        "arn:{partition}:sqs:{region}:{account}:{id}",
        Daemon,
    ),
    op(
        "sqs",
        "DeleteMessageBatch",
        Some("delete_message_batch"),
        Some("sqs:DeleteMessage"),
        "arn:{partition}:sqs:{region}:{account}:{id}",
        Daemon,
    ),
    op(
        "sqs",
        "ChangeMessageVisibilityBatch",
        Some("change_message_visibility_batch"),
        Some("sqs:ChangeMessageVisibility"),
        "arn:{partition}:sqs:{region}:{account}:{id}",
        Daemon,
    ),
    op(
        "sqs",
        "GetQueueAttributes",
        Some("get_queue_attributes"),
        Some("sqs:GetQueueAttributes"),
        "arn:{partition}:sqs:{region}:{account}:{id}",
        Daemon,
    ),
];
