"""The starter configuration that ``mma config init`` writes.

A small, real configuration for a new service (docs/service.md): the paths, the
database, the sources (a spool directory, the GCN and alert topics commented out until their
credentials are in place), the channels disabled, and a comment on each key.
``mma config check`` accepts it as written: a daemon started with it consumes only
its spool directory and needs no secret.
"""

from __future__ import annotations

import os
from pathlib import Path

from mma.errors import ConfigError

__all__ = ["STARTER", "write_starter"]

STARTER = """\
# mma configuration (written by `mma config init`). Every key, with its default and
# what it means, is in the packaged default.toml; `mma config show` prints the
# effective configuration. After an edit: `mma config check`, then
# `systemctl reload mma` (database and Kafka settings need `systemctl restart mma`).
# Secrets never go in this file: /etc/mma/mma.env or LoadCredential= (docs/service.md).

[paths]
# The unit's StateDirectory and CacheDirectory, named here so that commands run by hand
# as the service user (`runuser -u mma -- mma status`) use the same database and cache.
state_dir = "/var/lib/mma"
cache_dir = "/var/cache/mma"

[database]
# SQLAlchemy URL. Empty: SQLite in the state directory (/var/lib/mma under systemd).
# PostgreSQL on this host, through its socket with peer authentication as role mma:
#url = "postgresql+psycopg:///mma?host=/var/run/postgresql"
url = ""

[kafka]
# Sources are opt-in: nothing is read from Kafka unless its topics are listed here.
#
# GCN notices (NASA GCN Kafka): needs MMA_GCN_CLIENT_ID and MMA_GCN_CLIENT_SECRET
# (https://gcn.nasa.gov/quickstart). "handler:topic" entries, or ["*"] for every
# notice topic mma reads.
#notice_topics = ["lvk:igwn.gwalert",
#                 "icecube:gcn.notices.icecube.lvk_nu_track_search",
#                 "icecube:gcn.notices.icecube.gold_bronze_track_alerts",
#                 "swift:gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK",
#                 "fermi_gbm:gcn.classic.voevent.FERMI_GBM_GND_POS",
#                 "einstein_probe:gcn.notices.einstein_probe.wxt.alert"]
# "gcn.nasa.gov" (production) or "test.gcn.nasa.gov" (the test stream).
gcn_domain = "gcn.nasa.gov"
#
# Optical alerts from your broker (security settings in [kafka.alert_client]):
#alert_bootstrap_servers = "broker.example.org:9092"
#alert_topics = ["ztf:^ztf_.*_programid1$"]
#
# Consumer group shared by the daemons of one deployment.
group_id = "mma"

[daemon]
# Notice and alert files dropped here are processed once and moved to done/; the
# only source until topics are listed above. The daemon creates it.
spool_dir = "/var/lib/mma/spool"
# /healthz and /metrics on 127.0.0.1 at this port (0: off).
health_port = 8787

[channels.email]
# Mail to the on-call astronomers; the SMTP password is MMA_SMTP_PASSWORD.
enabled = false
host = "localhost"
port = 587
security = "starttls"  # starttls | ssl | none
username = ""
sender = "mma@localhost"
recipients = []

[channels.slack]
# One Slack channel through its incoming webhook: MMA_SLACK_WEBHOOK_URL.
enabled = false

[channels.kafka]
# Candidates as JSON records on a Kafka topic of yours.
enabled = false

[logging]
# DEBUG, INFO, WARNING, ERROR or CRITICAL; empty: each command's own.
level = ""
"""


def write_starter(path: Path, *, force: bool = False) -> None:
    """Write :data:`STARTER` to *path* (mode 0640), refusing to replace a file.

    Raises
    ------
    ConfigError
        *path* exists and *force* is false, or it cannot be written.
    """
    if path.exists() and not force:
        raise ConfigError(f"{path}: exists; not overwritten (use --force to replace it)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(STARTER)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the configuration: "
                          f"{exc.strerror or exc}") from exc
