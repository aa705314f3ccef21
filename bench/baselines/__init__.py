"""The baselines measured beside EmberFS in the same run, on the same bytes.

    pagecache   local reads from the page cache (the local limit) and local writes
    rawsocket   a raw asyncio socket on loopback (the transport limit)
    nginx       nginx serving the file to aiohttp Range GETs (the peer a user would pick)

Each read baseline is a `RangeSource` (see `..workloads`); one that cannot run here
(nginx not installed, aiohttp missing) says why in `unavailable` and the run goes on.
"""
