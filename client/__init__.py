"""The EmberFS client library.

    from emberfs.client import Client

    async with Client("127.0.0.1:9000") as fs:
        await fs.makedirs("/datasets/train", exist_ok=True)
        print(await fs.listdir("/datasets"))

`SyncClient` offers the same methods, blocking (for scripts and data-loader workers;
safe to pickle and to use across fork):

    from emberfs.client import SyncClient

    with SyncClient("127.0.0.1:9000") as fs:
        data = fs.read_range("/datasets/train/shard-0", 4096, 65536)

Failures raise the built-in OSError family (FileNotFoundError, PermissionError, ...)
with the path; an unreachable metaserver raises ConnectionError, an expired deadline
TimeoutError.
"""

from ._client import Client, ClientState
from ._file import EmberFile
from ._retry import RetryPolicy
from ._stat import StatFsResult, StatResult
from ._sync import ClientOptions, SyncClient, SyncFile

__all__ = [
    "Client",
    "ClientOptions",
    "ClientState",
    "EmberFile",
    "RetryPolicy",
    "StatFsResult",
    "StatResult",
    "SyncClient",
    "SyncFile",
]
