"""The EmberFS client library.

    from emberfs.client import Client

    async with Client("127.0.0.1:9000") as fs:
        await fs.makedirs("/datasets/train", exist_ok=True)
        print(await fs.listdir("/datasets"))

Failures raise the built-in OSError family (FileNotFoundError, PermissionError, ...)
with the path; an unreachable metaserver raises ConnectionError, an expired deadline
TimeoutError.
"""

from ._client import Client, ClientState
from ._retry import RetryPolicy
from ._stat import StatFsResult, StatResult

__all__ = ["Client", "ClientState", "RetryPolicy", "StatFsResult", "StatResult"]
