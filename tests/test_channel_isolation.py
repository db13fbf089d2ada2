"""One channel down delays no other, and the daemon still stops within systemd's budget.

``mma run`` on the bundled sample with two channels: Kafka output pointed at a port
where no broker listens (each send waits out its 30 s delivery timeout) and email to
the harness's real SMTP server. Every email must go out while the Kafka channel is
still stuck on its first message, and SIGTERM must end the process well inside the
unit's ``TimeoutStopSec`` (60 s) although a Kafka send is in flight.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from mma.db.engine import make_engine
from mma.db.schema import outbox
from tests.services.smtp import SmtpServer
from tests.test_daemon import MMA, _free_port
from tests.test_daemon_faults import _alert_payloads, _env, _notice_payloads, _popen, _produce

pytestmark = pytest.mark.daemon

TIMEOUT_STOP_S = 60.0  # systemd/mma.service


def _outbox(url: str) -> list[tuple[str, str]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [(r.channel, r.status) for r in conn.execute(
                select(outbox.c.channel, outbox.c.status))]
    except Exception:  # the schema may not exist yet
        return []
    finally:
        engine.dispose()


def test_dead_kafka_output_delays_neither_email_nor_shutdown(
        tmp_path: Path, kafka_bootstrap: str, smtp_server: SmtpServer) -> None:
    stem = uuid.uuid4().hex[:8]
    db = f"sqlite:///{tmp_path / 'run.sqlite'}"
    env = _env(tmp_path, db, kafka_bootstrap, stem,
               MMA_CHANNELS__KAFKA__BOOTSTRAP_SERVERS=f"127.0.0.1:{_free_port()}",
               MMA_CHANNELS__EMAIL__ENABLED="true", MMA_CHANNELS__EMAIL__SECURITY="none",
               MMA_CHANNELS__EMAIL__HOST=smtp_server.host,
               MMA_CHANNELS__EMAIL__PORT=str(smtp_server.port),
               MMA_CHANNELS__EMAIL__PICTURE="false",
               MMA_CHANNELS__EMAIL__RECIPIENTS=json.dumps(["night-shift@example.org"]),
               MMA_CHANNELS__EMAIL__RULES__MAX_P_CHANCE="1.0",
               # The test survey's background is unmeasured: a flag email drops by default.
               MMA_CHANNELS__EMAIL__RULES__EXCLUDE_FLAGS="[]")
    _produce(kafka_bootstrap, f"n-{stem}", _notice_payloads())
    _produce(kafka_bootstrap, f"a-{stem}", _alert_payloads())
    log = tmp_path / "run.log"
    proc = _popen([MMA, "run"], env, log)
    try:
        started = time.monotonic()
        deadline = started + 25.0  # one Kafka delivery timeout (30 s) has not passed
        rows: list[tuple[str, str]] = []
        while time.monotonic() < deadline:
            rows = _outbox(db)
            email = [status for channel, status in rows if channel == "email"]
            if len(email) >= 3 and "pending" not in email:
                break
            time.sleep(0.2)
        email = [status for channel, status in rows if channel == "email"]
        kafka = [status for channel, status in rows if channel == "kafka"]
        # A revision that a newer one replaced before it was sent is "superseded".
        sent = email.count("sent")
        assert sent >= 3 and set(email) <= {"sent", "superseded"}, (rows, log.read_text()[-3000:])
        assert "sent" not in kafka
        assert len(smtp_server.wait_for(sent, timeout=5)) == sent

        asked = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(TIMEOUT_STOP_S)
        took = time.monotonic() - asked
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert took < TIMEOUT_STOP_S / 2, f"shutdown took {took:.0f} s"
    assert "still busy" in log.read_text()  # the Kafka send was left to the next start
