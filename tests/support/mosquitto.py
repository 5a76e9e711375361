"""A real mosquitto broker for the tests: started on a free loopback port, stopped, restarted.

The broker gets a generated config in its own directory: anonymous by default, or with a
password file, plus optionally a second listener with TLS (a test CA, server and client
certificates made offline, by the ``cryptography`` package when installed, else by the
``openssl`` command). Its log is read by a thread, so tests can await a log line instead
of sleeping; ``start()`` returns once the broker says it is running. ``save()`` writes the
persistence file now (SIGUSR1), so a broker killed afterwards (``kill()``: SIGKILL, no save)
comes back with the sessions and retained messages it had then.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiomqtt

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_SUB = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"


def available() -> bool:
    """Return whether the broker and ``mosquitto_sub`` are installed (scripts/system-deps)."""
    return os.access(MOSQUITTO, os.X_OK) and os.access(MOSQUITTO_SUB, os.X_OK)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def password_line(user: str, password: str) -> str:
    """Return a mosquitto password-file line (``$6$``: salted SHA-512, as mosquitto_passwd)."""
    salt = secrets.token_bytes(12)
    digest = hashlib.sha512(password.encode() + salt).digest()
    return f"{user}:$6${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


@dataclass(frozen=True)
class TlsFiles:
    """A test CA and the server and client certificates it signed (PEM files)."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """Make a CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(*(directory / name for name in (
        "ca.crt", "ca.key", "server.crt", "server.key", "client.crt", "client.key")))  # fmt: skip
    try:
        import cryptography  # noqa: F401
    except ImportError:
        _openssl_files(files)
    else:
        _cryptography_files(files)
    return files


def _openssl_files(f: TlsFiles) -> None:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run("req", "-x509", *ec, "-days", "3650", "-subj", "/CN=pairwatch test CA",
        "-keyout", str(f.ca_key), "-out", str(f.ca_cert))  # fmt: skip
    for cert, key, cn, usage, alt in (
        (f.server_cert, f.server_key, "localhost", "serverAuth",
         "subjectAltName=IP:127.0.0.1,DNS:localhost\n"),
        (f.client_cert, f.client_key, "pairwatch test client", "clientAuth", ""),
    ):  # fmt: skip
        csr, ext = cert.with_suffix(".csr"), cert.with_suffix(".ext")
        ext.write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage={usage}\nsubjectKeyIdentifier=hash\n"
            f"authorityKeyIdentifier=keyid,issuer\n{alt}"
        )
        run("req", *ec, "-subj", f"/CN={cn}", "-keyout", str(key), "-out", str(csr))
        ca = ("-CA", str(f.ca_cert), "-CAkey", str(f.ca_key), "-CAcreateserial")
        run("x509", "-req", "-in", str(csr), *ca, "-days", "3650", "-extfile", str(ext),
            "-out", str(cert))  # fmt: skip


def _cryptography_files(f: TlsFiles) -> None:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
        pem, pkcs8 = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
        path.write_bytes(key.private_bytes(pem, pkcs8, serialization.NoEncryption()))

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("pairwatch test CA"))
        .issuer_name(name("pairwatch test CA")).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    write_key(ca_key, f.ca_key)
    f.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server_alt = x509.SubjectAlternativeName(
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    )
    for cert_path, key_path, cn, usage, alt in (
        (f.server_cert, f.server_key, "localhost", ExtendedKeyUsageOID.SERVER_AUTH, server_alt),
        (f.client_cert, f.client_key, "pairwatch test client", ExtendedKeyUsageOID.CLIENT_AUTH,
         None),
    ):  # fmt: skip
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
        )  # fmt: skip
        if alt is not None:
            builder = builder.add_extension(alt, critical=False)
        write_key(key, key_path)
        cert_path.write_bytes(
            builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        )


class Mosquitto:
    """One mosquitto process with a generated config in ``directory`` (see the module doc).

    ``port`` is the plain listener; ``tls_port`` the TLS one when ``tls`` is given (with
    ``require_certificate`` it asks clients for a certificate signed by the test CA).
    ``users`` (name → password) turns anonymous access off. ``persistence`` keeps
    retained messages and persistent sessions across ``restart()`` (saved on stop).
    ``extra`` lines are added to the config as they are (e.g. ``set_tcp_nodelay true``).
    """

    def __init__(
        self,
        directory: Path,
        *,
        users: dict[str, str] | None = None,
        tls: TlsFiles | None = None,
        require_certificate: bool = False,
        persistence: bool = False,
        extra: Sequence[str] = (),
    ) -> None:
        self.directory = directory
        self.extra = list(extra)
        self.port = free_port()
        self.tls = tls
        self.tls_port = free_port() if tls is not None else None
        self.users = users
        self.process: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader: threading.Thread | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self.config = directory / "mosquitto.conf"
        self.config.write_text(self._config_text(require_certificate, persistence))

    def _config_text(self, require_certificate: bool, persistence: bool) -> str:
        lines = [
            f"user {pwd.getpwuid(os.getuid()).pw_name}",  # as root: do not drop privileges
            "per_listener_settings false",
            f"listener {self.port} 127.0.0.1",
            "log_dest stderr",
            *(
                f"log_type {kind}"
                for kind in ("error", "warning", "notice", "information", "subscribe")
            ),
            "connection_messages true",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {self.directory}/",
            "autosave_interval 0",
            *self.extra,
        ]
        if self.users is None:
            lines.append("allow_anonymous true")
        else:
            passwords = self.directory / "passwords"
            passwords.write_text("".join(password_line(u, p) + "\n" for u, p in self.users.items()))
            passwords.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        if self.tls is not None:
            lines += [
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {self.tls.ca_cert}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                f"require_certificate {'true' if require_certificate else 'false'}",
            ]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 15.0) -> None:
        """Start the broker; return once it is running (raise with its log if it is not)."""
        assert self.process is None or self.process.poll() is not None, "already running"
        if self._reader is not None:  # the last run's "<exited>" goes before the mark
            self._reader.join(timeout)
        mark = len(self.lines)
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, args=(self.process,), daemon=True)
        self._reader.start()
        try:
            self.wait_for_log(" running", timeout, since=mark)
            self._probe(timeout)
        except (AssertionError, OSError):
            self.kill()
            raise

    def _probe(self, timeout: float) -> None:
        """Connect and wait for the CONNACK: the main loop runs (and will heed a SIGTERM).

        mosquitto logs "running" just before it enters its loop, and a SIGTERM arriving in
        between is forgotten; an answered CONNECT proves the loop is there.
        """
        client_id = b"startup-probe"
        body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2) + client_id
        with socket.create_connection(("127.0.0.1", self.port), timeout) as sock:
            sock.sendall(bytes([0x10, len(body)]) + body)
            connack = sock.recv(4)
        if connack[:2] != b"\x20\x02":
            raise AssertionError(f"mosquitto answered {connack!r} to a CONNECT")

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        with process.stderr:
            for line in process.stderr:
                with self._changed:
                    self.lines.append(line.rstrip("\n"))
                    self._changed.notify_all()
        with self._changed:
            self.lines.append("<exited>")
            self._changed.notify_all()

    def wait_for_log(self, text: str, timeout: float = 10.0, *, since: int = 0) -> str:
        """Return the first log line (from index ``since``) containing ``text``, waiting for it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[since:]:
                    if text in line:
                        return line
                    if line == "<exited>" and text != "<exited>":
                        raise AssertionError("mosquitto exited:\n" + "\n".join(self.lines))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {text!r} in the mosquitto log:\n" +
                                         "\n".join(self.lines))  # fmt: skip
                self._changed.wait(left)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the broker cleanly (SIGTERM: it saves its persistence file) and wait."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def save(self, timeout: float = 10.0) -> None:
        """Write the persistence file now (SIGUSR1); return once it is written.

        For a broker killed later (``kill()`` saves nothing): it restarts with the sessions
        (subscriptions of clients without a clean session) and retained messages of now.
        """
        process = self.process
        assert process is not None, "not started"
        assert process.poll() is None, "not running"
        mark = len(self.lines)
        process.send_signal(signal.SIGUSR1)
        self.wait_for_log("Saving in-memory database", timeout, since=mark)
        # The save runs on the broker's only thread, after that line: a CONNACK comes after it.
        self._probe(timeout)
        errors = [line for line in self.lines[mark:] if "Error saving" in line]
        assert not errors, f"mosquitto could not save its database: {errors}"

    def kill(self) -> None:
        """Kill the broker at once (SIGKILL)."""
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(15)

    def restart(self) -> None:
        """Stop and start again on the same port(s)."""
        self.stop()
        self.start()

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()


class Subscriber:
    """An aiomqtt client that collects every message on ``topics`` (an async context manager).

    ``persistent`` uses a fixed client id and no clean session, and reconnects after the
    broker went away: with a broker that keeps sessions, nothing published meanwhile is
    missed (at QoS ≥ 1). ``arrivals[i]`` is the connection (1, 2, …) ``messages[i]`` came on.
    """

    def __init__(
        self,
        port: int,
        topics: Sequence[str],
        *,
        qos: int = 1,
        client_id: str | None = None,
        persistent: bool = False,
        **client_options: object,
    ) -> None:
        self.port = port
        self.topics = list(topics)
        self.qos = qos
        self.client_id = client_id
        self.persistent = persistent
        self.options = client_options
        self.messages: list[aiomqtt.Message] = []
        self.arrivals: list[int] = []
        self.subscribed = asyncio.Event()
        self.connections = 0
        self._new = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Subscriber:
        self._task = asyncio.create_task(self._run())
        async with asyncio.timeout(10):
            await asyncio.wait(
                [self._task, asyncio.ensure_future(self.subscribed.wait())],
                return_when=asyncio.FIRST_COMPLETED,
            )
        if self._task.done():
            self._task.result()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.port, identifier=self.client_id,
                    clean_session=not self.persistent, **self.options,  # type: ignore[arg-type]
                ) as client:  # fmt: skip
                    for topic in self.topics:
                        await client.subscribe(topic, qos=self.qos)
                    self.connections += 1
                    self.subscribed.set()
                    self._new.set()  # wait_for may wait for a connection too
                    async for message in client.messages:
                        self.messages.append(message)
                        self.arrivals.append(self.connections)
                        self._new.set()
            except aiomqtt.MqttError:
                self.subscribed.clear()
                if not self.persistent:
                    raise
                await asyncio.sleep(0.05)  # the broker is restarting: try again soon

    def on(self, topic: str) -> list[aiomqtt.Message]:
        """Return the messages received on ``topic`` so far."""
        return [m for m in self.messages if m.topic.value == topic]

    async def wait_for(
        self,
        done: Callable[[list[aiomqtt.Message]], bool],
        timeout: float = 15.0,  # noqa: ASYNC109
    ) -> list[aiomqtt.Message]:
        """Wait until ``done(messages)`` holds (checked on every message and connection)."""
        async with asyncio.timeout(timeout):
            while not done(self.messages):
                self._new.clear()
                await self._new.wait()
        return self.messages

    async def wait_on(
        self,
        topic: str,
        count: int = 1,
        timeout: float = 15.0,  # noqa: ASYNC109
    ) -> list[bytes]:
        """Wait for ``count`` messages on ``topic``; return their payloads."""
        await self.wait_for(lambda _: len(self.on(topic)) >= count, timeout)
        return [bytes(m.payload) for m in self.on(topic)]  # type: ignore[arg-type]
