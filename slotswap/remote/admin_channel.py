"""HAProxy's admin socket, reached over the deploy login's SSH connection.

The socket is a unix socket in a folder of the server that only the deploy login (and root)
may open, mounted into HAProxy's container alone: nothing on any network, app containers
included, can reach it. The kit opens it with OpenSSH's `direct-streamlocal@openssh.com`
channel (what `ssh -L /local:/remote/socket` uses): sshd connects to the socket as the login,
so the file's permissions decide, and nothing needs to be installed on the server.
paramiko has no call for that channel type; open_streamlocal_channel builds its request.

One channel per server stays open in HAProxy's `prompt` mode: every command's answer ends
with the prompt `> `, so many commands share one channel (one round trip each, no channel
set-up). A channel found closed (HAProxy ends idle sessions after its `stats timeout`, and a
reload ends the old worker's) is reopened once; every command has a deadline.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable

import paramiko
from paramiko.common import cMSG_CHANNEL_OPEN

STREAMLOCAL_KIND = "direct-streamlocal@openssh.com"
PROMPT = b"\n> "
PROMPT_MODE_COMMAND = b"prompt\n"
OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED = 1


class _QuietChannelRefusals(logging.Filter):
    """paramiko logs every refused channel as an error on stderr; the kit reports it itself,
    in one line (a refusal is expected while HAProxy starts)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "open FAILED" not in record.getMessage()


logging.getLogger("paramiko.transport").addFilter(_QuietChannelRefusals())


class AdminChannelClosed(EOFError):
    """The channel ended before HAProxy's whole answer came."""


class AdminChannelTimeout(TimeoutError):
    """HAProxy did not answer within the deadline."""


def streamlocal_open_message(channel_id: int, window_size: int, max_packet_size: int,
                             socket_path: str) -> paramiko.Message:
    """SSH_MSG_CHANNEL_OPEN for a unix socket on the server (OpenSSH's PROTOCOL, 2.4)."""
    message = paramiko.Message()
    message.add_byte(cMSG_CHANNEL_OPEN)
    message.add_string(STREAMLOCAL_KIND)
    message.add_int(channel_id)
    message.add_int(window_size)
    message.add_int(max_packet_size)
    message.add_string(socket_path)
    message.add_string("")  # reserved
    message.add_int(0)  # reserved
    return message


def open_streamlocal_channel(transport: paramiko.Transport, socket_path: str,
                             timeout: float) -> paramiko.Channel:
    """Transport.open_channel for `direct-streamlocal@openssh.com`: the same bookkeeping,
    with the request that channel type needs (open_channel adds no fields for it).

    Raises paramiko.ChannelException when the server refuses (its code and text say why),
    SSHException when the connection ends or no answer comes within `timeout`."""
    if not transport.active:
        raise paramiko.SSHException("SSH session not active")
    with transport.lock:
        window_size = transport._sanitize_window_size(None)
        max_packet_size = transport._sanitize_packet_size(None)
        channel_id = transport._next_channel()
        message = streamlocal_open_message(channel_id, window_size, max_packet_size,
                                           socket_path)
        channel = paramiko.Channel(channel_id)
        transport._channels.put(channel_id, channel)
        transport.channel_events[channel_id] = event = threading.Event()
        transport.channels_seen[channel_id] = True
        channel._set_transport(transport)
        channel._set_window(window_size, max_packet_size)
    transport._send_user_message(message)
    deadline = time.monotonic() + timeout
    while not event.wait(0.1):
        if not transport.active:
            raise transport.get_exception() or paramiko.SSHException("Unable to open channel.")
        if time.monotonic() > deadline:
            raise paramiko.SSHException(f"no answer to the channel request within {timeout}s")
    opened = transport._channels.get(channel_id)
    if opened is None:
        raise transport.get_exception() or paramiko.SSHException("Unable to open channel.")
    return opened


def command_count(line: str) -> int:
    """How many commands HAProxy runs for one line: `a; b` is two, each answered with its
    own prompt."""
    return len([part for part in line.split(";") if part.strip()]) or 1


def complete_answer(received: bytes, commands: int) -> str | None:
    """The answer to `commands` commands once all of it has come (each command's output,
    then the prompt), else None. Given as HAProxy's non-interactive mode gives it: each
    command's output, each ending with an empty line."""
    if not received.endswith(PROMPT) or received.count(PROMPT) < commands:
        return None
    # A command with a payload (`set ssl cert FILE <<`) gets a `+ ` prompt per payload line
    # before its answer.
    received = re.sub(rb"^(?:\+ )+", b"", received)
    return received.replace(PROMPT, b"\n").decode(errors="replace")


def after_marker_line(received: bytes, marker: bytes) -> bytes | None:
    """What came after the marker's line, once it has come, else None. Before it: what the
    login's start-up files printed (a motd-style `echo` in ~/.bashrc), never HAProxy's."""
    _, found, rest = received.partition(marker + b"\n")
    return rest if found else None


def skip_to_marker(channel: paramiko.Channel, marker: bytes, timeout: float) -> None:
    """Read a command channel's output up to the marker's line, which the command prints
    before it starts talking to HAProxy. HAProxy speaks only when spoken to, so nothing may
    follow the marker yet."""
    deadline = time.monotonic() + timeout
    received = bytearray()
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AdminChannelTimeout(
                    f"the command to the admin socket did not start within {timeout:g}s")
            channel.settimeout(left)
            chunk = channel.recv(65536)
            if not chunk:
                raise AdminChannelClosed("the command to the admin socket ended before it "
                                         "started (the login's shell could not run it)")
            received.extend(chunk)
            rest = after_marker_line(bytes(received), marker)
            if rest:
                raise AdminChannelClosed("unexpected output before HAProxy was asked "
                                         f"anything: {rest[:80]!r}")
            if rest is not None:
                return
    except TimeoutError as error:  # socket.timeout from recv
        if isinstance(error, AdminChannelTimeout):
            raise
        raise AdminChannelTimeout(
            f"the command to the admin socket did not start within {timeout:g}s") from error


Opener = Callable[[], paramiko.Channel]


class PromptSession:
    """One channel to HAProxy's CLI in prompt mode; ask() sends a line and returns the
    answer. Not thread-safe by itself: the Server serialises its callers."""

    def __init__(self, opener: Opener, timeout: float):
        self._open, self.timeout = opener, timeout
        self._channel: paramiko.Channel | None = None
        self.opened = 0  # channels opened so far (for tests and measurements)

    def close(self) -> None:
        """Never raises: closing sends a message, and on a cut connection paramiko raises a
        bare EOFError for it; the channel is gone all the same."""
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(paramiko.SSHException, EOFError, OSError):
                channel.close()

    def _usable(self) -> paramiko.Channel:
        channel = self._channel
        if channel is not None and (channel.closed or channel.eof_received):
            self.close()  # ended while idle (HAProxy's stats timeout, a reload)
            channel = None
        if channel is None:
            channel = self._open()
            self.opened += 1
            self._channel = channel
            try:
                self._exchange(channel, PROMPT_MODE_COMMAND, 1)
            except BaseException:
                self.close()
                raise
        return channel

    def ask(self, line: str) -> str:
        """Send one line; on a channel that ends before the answer, reopen once and send it
        again (the kit's commands set absolute states or only read, so a repeat is harmless)."""
        payload = line.encode() + b"\n"
        commands = command_count(line)
        try:
            return self._exchange(self._usable(), payload, commands)
        except AdminChannelClosed:
            self.close()
        except BaseException:
            # A timeout or an interrupt: an answer may still come, and would be read as the
            # next command's; that channel is never used again.
            self.close()
            raise
        try:
            return self._exchange(self._usable(), payload, commands)
        except BaseException:
            self.close()
            raise

    def _exchange(self, channel: paramiko.Channel, payload: bytes, commands: int) -> str:
        deadline = time.monotonic() + self.timeout
        received = bytearray()

        def remaining() -> float:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AdminChannelTimeout(f"no answer from HAProxy within {self.timeout:g}s")
            return left

        try:
            channel.settimeout(remaining())
            channel.sendall(payload)
            while True:
                channel.settimeout(remaining())
                chunk = channel.recv(65536)
                if not chunk:
                    raise AdminChannelClosed("HAProxy closed the admin session")
                received.extend(chunk)
                answer = complete_answer(bytes(received), commands)
                if answer is not None:
                    return answer
        except TimeoutError as error:  # socket.timeout from recv/sendall
            if isinstance(error, AdminChannelTimeout):
                raise
            raise AdminChannelTimeout(
                f"no answer from HAProxy within {self.timeout:g}s") from error
        except OSError as error:
            # sendall on a channel the other side closed
            raise AdminChannelClosed(str(error) or "the admin session closed") from error
