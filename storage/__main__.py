"""`emberfs-storage` / `python -m emberfs.storage`: parse flags, build the config, run."""

from __future__ import annotations

import sys

from emberfs.common.errors import InvalidArgument
from emberfs.common.tls import TlsError

from .config import build_parser, config_from_args

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except InvalidArgument as exc:
        parser.error(exc.message)  # exits 1 with usage
    except TlsError as exc:
        print(f"emberfs-storage: error: {exc}", file=sys.stderr)
        return 1
    from .server import run  # after validation: `--help` and bad flags stay fast

    return run(config)


if __name__ == "__main__":
    sys.exit(main())
