"""The process fixture itself: failed starts explain themselves, restarts keep the port."""

from __future__ import annotations

import pytest

from emberfs.client._launch import ServerStartError, metaserver_process

pytestmark = pytest.mark.timeout(60)


def test_a_server_that_dies_at_start_shows_its_log(tmp_path) -> None:
    proc = metaserver_process(tmp_path / "meta", extra_args=["--default-stripe", "not-a-number"])
    with pytest.raises(ServerStartError) as info:
        proc.start(timeout=20)
    assert "before it was ready" in str(info.value) and "--default-stripe" in str(info.value)
    assert not proc.running


def test_stop_is_clean_and_restart_reuses_data_and_port(tmp_path) -> None:
    proc = metaserver_process(tmp_path / "meta")
    first = proc.start()
    try:
        assert first.startswith("127.0.0.1:") and not first.endswith(":0")
        assert proc.stop() == 0  # SIGTERM: a clean exit
        assert proc.restart() == first
        proc.kill()
        assert not proc.running
        assert proc.restart() == first
    finally:
        proc.stop()
