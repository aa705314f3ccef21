"""The cluster manager (3FS mgmtd) hosted by the metaserver."""
