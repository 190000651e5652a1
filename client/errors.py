"""Expected failures of the client, each class carrying the exit status it ends the run with.

`client.cli.main` catches ClientError in one place and prints the message as one
line on stderr, so every message must make sense without a traceback.
"""


class ClientError(Exception):
    """Base class: an expected failure with a one-line message and an exit status."""

    exit_code = 1


class UsageError(ClientError):
    """Invalid arguments, or a named file or folder that is missing or unreadable."""

    exit_code = 2


class GatewayUnreachable(ClientError):
    """The connection to the gateway failed, or the gateway did not reply within the timeout."""

    exit_code = 3


class RequestRejected(ClientError):
    """The gateway rejected the request with a 4xx status, for example for a non-image file."""

    exit_code = 4


class GatewayFailed(ClientError):
    """The gateway or the model server failed (5xx), or the reply does not match the API."""

    exit_code = 5
