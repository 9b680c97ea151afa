"""What went wrong with AWS, in words a student or instructor can act on: each boto3 error
becomes an AwsError that names the cause and the fix."""

from __future__ import annotations

from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
)

from kit.errors import AwsError, NotFoundError

THROTTLED = {
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
}


def iam_action(operation: str) -> str:
    """The IAM action behind a boto3 operation the kit calls (list_principal_things ->
    iot:ListPrincipalThings): every one is IoT's but the caller's identity, which is STS's."""
    service = "sts" if operation == "get_caller_identity" else "iot"
    return f"{service}:" + "".join(part.title() for part in operation.split("_"))


def explain(error: Exception, operation: str) -> AwsError:
    """Turn a boto3 error into an AwsError that names the cause and the fix."""
    action = iam_action(operation)
    if isinstance(error, NoCredentialsError):
        return AwsError(
            "No AWS credentials found. Sign in with `aws configure` or `aws sso login` (or set "
            "AWS_PROFILE), or use the local cloud, which needs no account."
        )
    if isinstance(error, NoRegionError):
        return AwsError("No AWS region is set: give one with --region, for example eu-west-1.")
    if isinstance(error, EndpointConnectionError):
        return AwsError(
            f"AWS IoT could not be reached ({error}). Check the network, and that the region "
            "offers AWS IoT Core (not every region does)."
        )
    if isinstance(error, ClientError):
        code = error.response["Error"]["Code"]
        message = error.response["Error"].get("Message", "")
        if code in ("ExpiredToken", "ExpiredTokenException", "RequestExpired"):
            return AwsError(
                "Your AWS session has expired. Sign in again (`aws sso login`) and retry."
            )
        if code in (
            "UnrecognizedClientException",
            "InvalidClientTokenId",
            "InvalidSignatureException",
        ):
            return AwsError(
                "AWS does not recognise these credentials. Check the profile (`aws sts "
                "get-caller-identity`), or sign in again."
            )
        if code in ("AccessDeniedException", "AccessDenied", "UnauthorizedException"):
            return AwsError(
                f"AWS denied {action}: the IAM user or role needs that permission. The "
                "instructor's least-privilege policy for the kit is in the README."
            )
        if code in THROTTLED:
            return AwsError(
                "AWS is still throttling after several retries; wait a minute and retry."
            )
        if code == "LimitExceededException":
            return AwsError(
                f"An AWS IoT quota was reached ({message}). Remove unused things "
                "(course.teardown() in a notebook, or `kit unregister --all --cloud aws`) or ask "
                "for a higher quota."
            )
        if code == "ResourceNotFoundException":
            return NotFoundError(f"AWS IoT has no such resource: {message}")
        return AwsError(f"AWS refused {action}: {code}: {message}")
    return AwsError(f"AWS could not be reached for {action}: {error}")
