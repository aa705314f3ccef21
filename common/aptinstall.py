"""Installing a Debian package a test, the benchmark or `local-cluster` needs (nginx for a
baseline, etcd for the etcd engine) when it is missing and this process may: root, with
apt-get. One rule for all of them: ask apt first whether it knows the package (a fresh
machine's lists may not), update only then, bound every step, and say why not when the
package cannot be had."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable

__all__ = ["STEP_TIMEOUT_S", "apt_install"]

STEP_TIMEOUT_S = 600.0


def apt_install(package: str, present: Callable[[], bool], progress: Callable[[str], None], *,
                what: str, hint: str) -> str:
    """Install `package` unless `present()`; "" when `present()` holds afterwards, else why
    not (naming `what` is missing and the `hint` to install it by hand)."""
    if present():
        return ""
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return f"{what} not found, and apt-get needs root here ({hint})"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "--no-install-recommends", package]
    known = subprocess.run([apt, "install", "-s", package], env=env, capture_output=True, check=False)
    for step in (install,) if known.returncode == 0 else ([apt, "update"], install):
        progress(f"installing {what}: {' '.join(step[1:])}")
        try:  # apt's own output goes to our stderr: it is the progress of a long step
            done = subprocess.run(step, env=env, stdin=subprocess.DEVNULL, stdout=2, check=False,
                                  timeout=STEP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return f"`{' '.join(step)}` took over {STEP_TIMEOUT_S:g} s ({hint})"
        if done.returncode:
            return f"`{' '.join(step)}` failed ({hint})"
    return "" if present() else f"{what} still missing after apt-get ({hint})"
