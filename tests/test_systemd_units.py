"""The files in systemd/, checked by the programs that will read them on a host.

* ``systemd-sysusers`` creates the ``dnsfw`` user and group from ``dnsfw.sysusers`` in a copy of
  this machine's /etc (``--root``);
* ``systemd-analyze verify`` loads ``dnsfw.service`` and ``dnsfw.socket``: it fails on a
  missing ExecStart= binary, so ``/opt/dnsfw`` is this test run's virtualenv (a tmpfs over
  /opt with a link, in a private mount namespace). It exits 0 on unknown keys and bad values
  (it only prints them), so any output at all is a failure here;
* ``systemd-analyze security --offline`` keeps the unit's exposure score at 2.0 or below;
* ``nft -c -f dnsfw-egress.nft``: nft resolves ``skuid "dnsfw"`` with getpwnam() when it parses,
  and ``-c`` sends the whole batch to the kernel, which validates it and discards it; that needs
  CAP_NET_ADMIN. It runs in private mount and network namespaces (``unshare -mn``), with the
  passwd file made by systemd-sysusers bound over /etc/passwd, so no host state is read or
  changed and no real ``dnsfw`` user is needed;
* ``logrotate -d`` (debug: nothing is rotated) reads ``dnsfw.logrotate``; it too exits 0 on
  errors, which it prints as ``error:`` lines.

Namespaces come from ``unshare`` (util-linux): as root directly, otherwise with a user namespace
(``-r``). A missing tool or namespace support skips a test, except in CI (``CI=true``), where it
fails: .ci/run installs the Debian packages systemd, nftables and logrotate.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kit.tools import need_tool, unavailable

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "systemd"
PACKAGES = {
    "systemd-analyze": "systemd",
    "systemd-sysusers": "systemd",
    "nft": "nftables",
    "logrotate": "logrotate",
    "unshare": "util-linux",
}
MAX_EXPOSURE = 20  # systemd-analyze security on its 0-100 scale (it prints 2.0 for 20)


def tool(name: str) -> str:
    return need_tool(name, PACKAGES[name])


def in_namespace(script: str, *, network: bool = False) -> subprocess.CompletedProcess:
    """``sh -c script`` in a private mount (and network) namespace."""
    unshare = tool("unshare")
    flags = "-m" + ("n" if network else "") + ("" if os.geteuid() == 0 else "r")
    probe = subprocess.run([unshare, flags, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        unavailable(f"cannot create namespaces with `unshare {flags}`: {probe.stderr.strip()}")
    return subprocess.run(
        [unshare, flags, "sh", "-euc", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def q(path: object) -> str:
    return shlex.quote(str(path))


@pytest.fixture(scope="module")
def accounts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of /etc with the user and group that dnsfw.sysusers declares."""
    sysusers = tool("systemd-sysusers")
    root = tmp_path_factory.mktemp("sysroot")
    (root / "etc").mkdir()
    for name in ("passwd", "group"):
        shutil.copy(f"/etc/{name}", root / "etc" / name)
    done = in_namespace(f"{q(sysusers)} --root={q(root)} - < {q(UNITS / 'dnsfw.sysusers')}")
    assert done.returncode == 0, done.stderr
    assert "Failed" not in done.stderr, done.stderr
    passwd = (root / "etc" / "passwd").read_text().splitlines()
    group = (root / "etc" / "group").read_text().splitlines()
    assert [line for line in passwd if line.startswith("dnsfw:")], passwd
    assert [line for line in group if line.startswith("dnsfw:")], group
    return root / "etc"


def with_opt_dnsfw(command: str, tmp_path: Path) -> str:
    """``command`` with /opt/dnsfw being this interpreter's virtualenv (where ExecStart= points)."""
    venv = Path(sys.prefix)
    if not (venv / "bin" / "dnsfw").exists():
        pytest.fail(f"{venv}/bin/dnsfw missing: run the tests from dnsfw's virtualenv (make test)")
    # bound elsewhere first: the venv itself may live under /opt
    mount = tmp_path / "venv"
    mount.mkdir()
    return (
        f"mount --bind {q(venv)} {q(mount)}; mount -t tmpfs tmpfs /opt; "
        f"ln -s {q(mount)} /opt/dnsfw; {command}"
    )


def test_systemd_analyze_verify_is_silent(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    units = " ".join(q(UNITS / name) for name in ("dnsfw.service", "dnsfw.socket"))
    done = in_namespace(with_opt_dnsfw(f"{q(analyze)} verify --man=no {units}", tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == ""


def test_systemd_analyze_verify_reports_a_broken_unit(tmp_path: Path) -> None:
    # the check above can fail: an unknown key is reported (with exit status 0)
    analyze = tool("systemd-analyze")
    broken = tmp_path / "dnsfw.service"
    text = (UNITS / "dnsfw.service").read_text()
    broken.write_text(text.replace("ProtectHome=yes", "ProtectHomee=yes"))
    done = in_namespace(with_opt_dnsfw(f"{q(analyze)} verify --man=no {q(broken)}", tmp_path))
    assert "Unknown key" in done.stderr and "ProtectHomee" in done.stderr


def test_service_exposure_stays_low(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    command = (
        f"{q(analyze)} security --offline=yes --threshold={MAX_EXPOSURE} --no-pager "
        f"{q(UNITS / 'dnsfw.service')}"
    )
    done = in_namespace(with_opt_dnsfw(command, tmp_path))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr


def test_nft_accepts_the_egress_table(accounts: Path) -> None:
    nft = tool("nft")
    script = (
        f"mount --bind {q(accounts / 'passwd')} /etc/passwd; "
        f"{q(nft)} -c -f {q(UNITS / 'dnsfw-egress.nft')}"
    )
    done = in_namespace(script, network=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == ""


def test_nft_needs_the_dnsfw_user(tmp_path: Path) -> None:
    # why the check above binds a passwd file: without the user, the table does not load
    nft = tool("nft")
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/sh\n")
    script = f"mount --bind {q(passwd)} /etc/passwd; {q(nft)} -c -f {q(UNITS / 'dnsfw-egress.nft')}"
    done = in_namespace(script, network=True)
    assert done.returncode != 0
    assert "User does not exist" in done.stderr


def test_logrotate_reads_the_config(accounts: Path, tmp_path: Path) -> None:
    logrotate = tool("logrotate")
    if os.geteuid() != 0:
        # `su dnsfw dnsfw` switches to the dnsfw uid: a user namespace maps only ours
        unavailable("logrotate -d with `su` needs root")
    # logrotate ignores a config not owned by root: a copy is ours (root inside `unshare -r`)
    config = tmp_path / "dnsfw"
    shutil.copy(UNITS / "dnsfw.logrotate", config)
    script = (
        f"mount --bind {q(accounts / 'passwd')} /etc/passwd; "
        f"mount --bind {q(accounts / 'group')} /etc/group; "
        f"{q(logrotate)} -d -s {q(tmp_path / 'state')} {q(config)}"
    )
    done = in_namespace(script)
    assert done.returncode == 0, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.lower().startswith("error")]
    assert errors == []
    assert "rotating pattern: /var/log/dnsfw/*.log" in done.stderr


# --- what the issue asks of the units, read from the files themselves ------------------------


def unit(name: str) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file: key -> every value given (a key may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in (UNITS / name).read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            sections[section] = {}
            continue
        key, _, value = line.partition("=")
        sections[section].setdefault(key, []).append(value)
    return sections


def test_service_is_notify_type_with_one_capability() -> None:
    service = unit("dnsfw.service")["Service"]
    assert service["Type"] == ["notify"]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert service["ExecStart"][0].startswith("/opt/dnsfw/bin/dnsfw run -conf /etc/dnsfw/")
    assert service["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert service["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert service["User"] == ["dnsfw"]
    assert service["Restart"] == ["on-failure"]
    assert int(service["LimitNOFILE"][0]) >= 8192


def test_service_hardening() -> None:
    service = unit("dnsfw.service")["Service"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "MemoryDenyWriteExecute": "yes",
        "StateDirectory": "dnsfw",
        "LogsDirectory": "dnsfw",
        "ConfigurationDirectory": "dnsfw",
    }.items():
        assert service[key] == [value], key
    assert "@system-service" in service["SystemCallFilter"]
    families = set(service["RestrictAddressFamilies"][0].split())
    assert families <= {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}


def test_socket_unit_passes_udp_and_tcp_pairs() -> None:
    socket_unit = unit("dnsfw.socket")["Socket"]
    assert sorted(socket_unit["ListenDatagram"]) == sorted(socket_unit["ListenStream"])
    assert socket_unit["Service"] == ["dnsfw.service"]


def test_egress_table_redirects_other_users_and_exempts_dnsfw(
    accounts: Path, tmp_path: Path
) -> None:
    """Loaded in a private network namespace: dnsfw (whoami) on 127.0.0.1:53, a bridge as uplink.

    root's query to an outside server is answered by dnsfw (redirected); the dnsfw user's query
    leaves the host (and is lost on the dummy link); DoT from anyone else is refused at once.
    """
    nft, dig = tool("nft"), shutil.which("dig")
    if dig is None:
        unavailable("dig not found (Debian package bind9-dnsutils)")
    if os.geteuid() != 0:
        unavailable("switching to the dnsfw user needs root")
    uid = next(
        line.split(":")[2]
        for line in (accounts / "passwd").read_text().splitlines()
        if line.startswith("dnsfw:")
    )
    conf = tmp_path / "Corefile"
    conf.write_text(".:53 {\n    bind 127.0.0.1\n    whoami\n}\n")
    outside = "198.51.100.1"
    query = f"{q(dig)} +tries=1 +time=2 @{outside}"
    script = f"""
ip link set lo up
ip link add uplink type bridge && ip addr add 192.0.2.10/24 dev uplink && ip link set uplink up
ip route add default dev uplink
mount --bind {q(accounts / "passwd")} /etc/passwd
{q(nft)} -f {q(UNITS / "dnsfw-egress.nft")}
{q(sys.executable)} -m proxy.cli run -conf {q(conf)} 2>{q(tmp_path / "dnsfw.err")} &
trap 'kill $!' EXIT
for i in $(seq 100); do {q(dig)} +short +tries=1 +time=1 @127.0.0.1 ready.example >/dev/null && break; sleep 0.1; done
echo "udp: $({query} +noall +additional redirected.example A | grep -w A)"
echo "tcp: $({query} +tcp +noall +additional redirected.example A | grep -w A)"
echo "dnsfw-user: $(setpriv --reuid={uid} --regid={uid} --clear-groups {query} +short leaves.example A | head -1)"
echo "dot: $({query} -p 853 +tcp +short dot.example A | head -1)"
"""
    done = in_namespace(script, network=True)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    # whoami's answer names the client: dnsfw got the query, from the uplink's address
    assert lines["udp"].split()[-1] == "192.0.2.10", lines["udp"]
    assert lines["tcp"].split()[-1] == "192.0.2.10", lines["tcp"]
    assert "timed out" in lines["dnsfw-user"] or "no servers" in lines["dnsfw-user"]
    assert "refused" in lines["dot"]
