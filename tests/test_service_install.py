"""The service install of docs/service.md, run as far as this machine allows.

The commands of the page's sections are taken from the page itself and run in a
temporary root (``/etc/mma`` → ``<root>/etc/mma`` ...) with a system user ``mma-test``
standing for ``mma``: directories with their documented owners and modes, ``mma config
init``, ``mma config check`` as the service user reading the file through those
permissions, the check with the service's secrets, and the old root-only directory
reported as a configuration error, not a traceback. The unit files are parsed and
checked against the page, and verified by ``systemd-analyze verify``. PostgreSQL: the
role owning the database migrates, and owns every table.

Needs root (useradd, chown), as CI runs. Not run here: systemd itself (no PID 1).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

ROOT = Path(__file__).parents[1]
DOC = (ROOT / "docs" / "service.md").read_text(encoding="utf-8")
MMA = str(Path(sys.executable).with_name("mma"))
USER = "mma-test"
UNITS = {name: ROOT / "systemd" / name for name in ("mma.service", "mma@.service")}


def doc_commands(section: str) -> list[str]:
    """The shell lines of the ```bash blocks of the page's section *section* ("2." ...)."""
    match = re.search(rf"^## {re.escape(section)} .*?(?=^## |\Z)", DOC, re.M | re.S)
    assert match, f"docs/service.md has no section '## {section}'"
    blocks = re.findall(r"^```bash\n(.*?)^```", match.group(0), re.M | re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def localised(line: str, root: Path) -> str:
    """A documented command with the temporary root, the test user and this mma."""
    line = line.split("  #", 1)[0]
    for path in ("/etc/mma", "/var/lib/mma", "/var/cache/mma"):
        line = line.replace(path, f"{root}{path}")
    line = line.replace("/opt/mma/.venv/bin/mma", "\0").replace("/opt/mma/", f"{ROOT}/")
    line = line.replace("\0", f"{root}/opt/mma/.venv/bin/mma")
    return re.sub(r"(-o|-g|chgrp|-u) mma\b", rf"\1 {USER}", line)


def run_doc(section: str, root: Path, env: dict[str, str], *,
            only: str = "") -> list[subprocess.CompletedProcess[str]]:
    """Run the commands of *section* (those containing *only*), each one checked."""
    done = []
    for line in doc_commands(section):
        if line.startswith(("editor ", "apt-get ")) or only not in line:
            continue
        result = subprocess.run(["bash", "-c", localised(line, root)], env=env, text=True,
                                capture_output=True, timeout=120, check=False)
        assert result.returncode == 0, f"{line}\n{result.stdout}{result.stderr}"
        done.append(result)
    assert done, f"no command of section {section} ran"
    return done


@pytest.fixture(scope="module")
def service_user() -> Iterator[pwd.struct_passwd]:
    """The system user and group ``mma-test``, created as the page creates ``mma``."""
    assert os.geteuid() == 0, ("the install steps need root (useradd, chown, runuser); "
                               "CI runs the tests as root")
    created = False
    try:
        pwd.getpwnam(USER)
    except KeyError:
        line = next(c for c in doc_commands("1.") if c.startswith("useradd "))
        line = line.replace("/var/lib/mma", "/nonexistent").replace(" mma", f" {USER}")
        subprocess.run(line.split(), check=True, capture_output=True)
        created = True
    yield pwd.getpwnam(USER)
    if created:
        subprocess.run(["userdel", USER], check=False, capture_output=True)


# The test's virtual environment runs an interpreter installed under /root, which no
# service user can reach; the page installs with Debian's python3. That interpreter (the
# same 3.11) runs the same installed packages as <root>/opt/mma/.venv/bin/mma.
SITE = Path(sysconfig.get_paths()["purelib"])
WRAPPER = f"""#!/bin/sh
PYTHONPATH='{SITE}:{ROOT}' exec /usr/bin/python3 -m mma "$@"
"""


@pytest.fixture
def root() -> Iterator[Path]:
    """A temporary root the service user can reach (pytest's own tmp is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="mma-install-"))
    path.chmod(0o755)
    venv_mma = path / "opt/mma/.venv/bin/mma"
    venv_mma.parent.mkdir(parents=True)
    venv_mma.write_text(WRAPPER)
    venv_mma.chmod(0o755)
    for parent in venv_mma.parents:
        if parent == path:
            break
        parent.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def env(root: Path) -> dict[str, str]:
    """The administrator's environment: no MMA_* variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MMA_")}


def unit_env(env: dict[str, str], root: Path) -> dict[str, str]:
    """The service's environment: the unit's ``MMA_CONFIG``."""
    return {**env, "MMA_CONFIG": f"{root}/etc/mma/mma.toml"}


def _owner(path: Path) -> tuple[str, str, int]:
    import grp

    st = path.stat()
    return (pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name,
            stat.S_IMODE(st.st_mode))


def _as_user(root: Path, args: list[str],
             env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``mma ARGS`` run as the service user, as installed in *root*."""
    return subprocess.run(["runuser", "-u", USER, "--", f"{root}/opt/mma/.venv/bin/mma", *args],
                          env=env, text=True, capture_output=True, timeout=120, check=False)


@pytest.mark.daemon
@pytest.mark.slow
def test_documented_install_gives_a_config_the_service_user_can_check(
        service_user: pwd.struct_passwd, root: Path, env: dict[str, str]) -> None:
    run_doc("2.", root, env)
    run_doc("3.", root, env)
    assert _owner(root / "etc/mma") == ("root", USER, 0o750)
    assert _owner(root / "etc/mma/mma.toml") == ("root", USER, 0o640)
    assert _owner(root / "var/lib/mma") == (USER, USER, 0o750)
    assert _owner(root / "var/cache/mma") == (USER, USER, 0o750)
    check = _as_user(root, ["config", "check"], unit_env(env, root))
    assert check.returncode == 0, check.stderr
    assert f"configuration OK (defaults, {root}/etc/mma/mma.toml)" in check.stdout
    # Others cannot read it (the secrets are elsewhere, but sites name hosts in it).
    nobody = subprocess.run(["runuser", "-u", "nobody", "--", f"{root}/opt/mma/.venv/bin/mma",
                             "config", "check"],
                            env=unit_env(env, root), text=True, capture_output=True,
                            check=False)
    assert nobody.returncode == 2 and "not searchable by this user (nobody)" in nobody.stderr


@pytest.mark.daemon
def test_the_old_root_only_directory_is_a_clear_error(
        service_user: pwd.struct_passwd, root: Path, env: dict[str, str]) -> None:
    """``install -d -m 0750 /etc/mma`` (root:root) as the issue's user did: exit 2, the fix."""
    etc = root / "etc" / "mma"
    subprocess.run(["install", "-d", "-m", "0750", str(etc)], check=True)
    subprocess.run([MMA, "config", "init", "-o", str(etc / "mma.toml")], env=env, check=True,
                   capture_output=True)
    check = _as_user(root, ["config", "check"], unit_env(env, root))
    assert check.returncode == 2
    assert "Traceback" not in check.stderr and "PermissionError" not in check.stderr
    assert f"{etc}/mma.toml: cannot read the configuration: {etc} is not searchable by " \
           f"this user ({USER})" in check.stderr
    assert "chgrp mma /etc/mma && chmod 0750 /etc/mma" in check.stderr
    # The directory fixed but the file root-only: the file is named.
    os.chown(etc, 0, service_user.pw_gid)
    run = _as_user(root, ["run"], unit_env(env, root))
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert f"{etc}/mma.toml: cannot read the configuration file: permission denied for " \
           f"this user ({USER})" in run.stderr


@pytest.mark.daemon
@pytest.mark.slow
def test_the_check_with_the_service_secrets(service_user: pwd.struct_passwd, root: Path,
                                            env: dict[str, str]) -> None:
    """Section 6's command: the env file's secrets reach the check run as the service user."""
    run_doc("2.", root, env)
    run_doc("3.", root, env)
    toml = root / "etc/mma/mma.toml"
    toml.write_text(toml.read_text().replace("#notice_topics = [\"lvk:igwn.gwalert\",",
                                             "notice_topics = [\"lvk:igwn.gwalert\"]\n#"))
    run_doc("4.", root, env)
    envfile = root / "etc/mma/mma.env"
    assert _owner(envfile) == ("root", "root", 0o600)
    line = localised(next(c for c in doc_commands("6.") if "config check" in c), root)
    without = subprocess.run(["bash", "-c", line], env=unit_env(env, root), text=True,
                             capture_output=True, check=False)
    assert without.returncode == 2
    assert "secret gcn_client_id is not set" in without.stderr.replace("\\n", "\n")
    with envfile.open("a") as out:
        out.write("MMA_GCN_CLIENT_ID=abc\nMMA_GCN_CLIENT_SECRET=def\n")
    with_secrets = subprocess.run(["bash", "-c", line], env=unit_env(env, root), text=True,
                                  capture_output=True, check=False)
    assert with_secrets.returncode == 0, with_secrets.stderr
    assert "configuration OK" in with_secrets.stdout


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file as section → [(key, value)] in order (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
            continue
        key, _, value = line.partition("=")
        sections[current].append((key.strip(), value.strip()))
    return sections


def _one(unit: dict[str, list[tuple[str, str]]], key: str) -> str:
    values = [v for k, v in unit["Service"] if k == key]
    assert len(values) == 1, f"{key}: {values}"
    return values[0]


@pytest.mark.parametrize("name", sorted(UNITS))
def test_units_agree_with_the_page(name: str) -> None:
    unit = parse_unit(UNITS[name])
    instance = name == "mma@.service"
    assert _one(unit, "ExecStart") == "/opt/mma/.venv/bin/mma run"
    assert "bash /opt/mma/scripts/bootstrap.sh" in DOC  # which makes /opt/mma/.venv
    assert (_one(unit, "User"), _one(unit, "Group")) == ("mma", "mma")
    assert _one(unit, "Type") == "notify" and _one(unit, "WatchdogSec")
    # /etc/mma: the unit's mode is the one the page installs, with group mma.
    assert _one(unit, "ConfigurationDirectory") == "mma"
    mode = _one(unit, "ConfigurationDirectoryMode")
    assert f"install -d -m {mode} -o root -g mma /etc/mma" in doc_commands("2.")
    state_mode = _one(unit, "StateDirectoryMode")
    assert state_mode == _one(unit, "CacheDirectoryMode")
    assert f"install -d -m {state_mode} -o mma -g mma /var/lib/mma /var/cache/mma" \
        in doc_commands("2.")
    assert _one(unit, "StateDirectory") == ("mma/%i" if instance else "mma")
    config = "/etc/mma/%i.toml" if instance else "/etc/mma/mma.toml"
    environment = [v for k, v in unit["Service"] if k == "Environment"]
    assert f"MMA_CONFIG={config}" in environment
    assert ("`/etc/mma/NAME.toml`" if instance else "`/etc/mma/mma.toml`") in DOC
    env_files = [v for k, v in unit["Service"] if k == "EnvironmentFile"]
    assert "-/etc/mma/mma.env" in env_files
    assert "/etc/mma/mma.env" in " ".join(doc_commands("4."))
    # The install comment at the top of the unit runs the page's directory commands.
    comment = UNITS[name].read_text()
    assert "#   install -d -m 0750 -o root -g mma /etc/mma" in comment
    assert "docs/service.md" in comment


def test_units_verify(tmp_path: Path) -> None:
    """``systemd-analyze verify`` (systemd 252 on Debian 12) finds nothing to say."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (Debian: apt-get install systemd)"
    for name, path in UNITS.items():
        copy = tmp_path / name
        copy.write_text(path.read_text().replace("/opt/mma/.venv/bin/mma", MMA))
        target = copy if name == "mma.service" else tmp_path / "mma@site1.service"
        result = subprocess.run([analyze, "verify", str(target)], cwd=tmp_path, text=True,
                                capture_output=True, timeout=60, check=False)
        assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    # It does speak up: an unknown key is reported.
    broken = tmp_path / "broken" / "mma.service"
    broken.parent.mkdir()
    broken.write_text((tmp_path / "mma.service").read_text().replace(
        "User=mma", "User=mma\nConfigDirectory=mma"))
    result = subprocess.run([analyze, "verify", str(broken)], text=True, capture_output=True,
                            timeout=60, check=False)
    assert "Unknown key" in result.stderr


@pytest.mark.postgres
@pytest.mark.daemon
def test_the_role_owning_the_database_migrates(postgres_server, tmp_path: Path,
                                               env: dict[str, str]) -> None:
    """Section 5: ``createuser mma``, ``createdb --owner=mma mma``, ``mma db upgrade`` as
    the role: every table belongs to it, and read-only commands work as it."""
    admin = create_engine(postgres_server.admin_url, isolation_level="AUTOCOMMIT")
    role = f"mma_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))  # createuser: no privileges
        conn.execute(text(f'CREATE DATABASE "{role}" OWNER "{role}"'))  # createdb --owner
    url = make_url(str(postgres_server.admin_url)).set(username=role, database=role)
    db = url.render_as_string(hide_password=False)
    try:
        status = subprocess.run([MMA, "status", "--db", db], env=env, text=True,
                                capture_output=True, check=False)
        assert status.returncode == 1  # not migrated: a usage error, nothing created
        upgrade = subprocess.run([MMA, "db", "upgrade", "--db", db], env=env, text=True,
                                 capture_output=True, check=False)
        assert upgrade.returncode == 0, upgrade.stderr
        engine = create_engine(url)
        with engine.connect() as conn:
            owners = set(conn.execute(text(
                "SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")).scalars())
        engine.dispose()
        assert owners == {role}
        status = subprocess.run([MMA, "status", "--db", db], env=env, text=True,
                                capture_output=True, check=False)
        assert status.returncode == 0, status.stderr
        # The page's URL form: the database by name, the server by its socket directory
        # (the harness's server has its own directory and port).
        socket_dir = getattr(postgres_server, "workdir", None)
        if socket_dir is not None:
            local = f"postgresql+psycopg://{role}@/{role}?host={socket_dir}" \
                    f"&port={postgres_server.port}"
            status = subprocess.run([MMA, "status", "--db", local], env=env, text=True,
                                    capture_output=True, check=False)
            assert status.returncode == 0, status.stderr
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{role}" WITH (FORCE)'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()
