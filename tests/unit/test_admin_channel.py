"""slotswap.remote.admin_channel: the channel request paramiko cannot build, and
HAProxy's prompt mode."""

from __future__ import annotations

import paramiko
import pytest

from slotswap.remote.admin_channel import (
    AdminChannelClosed,
    AdminChannelTimeout,
    PromptSession,
    after_marker_line,
    command_count,
    complete_answer,
    skip_to_marker,
    streamlocal_open_message,
)


def test_streamlocal_open_message_bytes() -> None:
    """OpenSSH's PROTOCOL 2.4: kind, sender channel, window, max packet, socket path, then a
    reserved string and a reserved uint32."""
    message = streamlocal_open_message(7, 2097152, 32768, "/etc/slotswap/a/admin.sock")
    kind = b"direct-streamlocal@openssh.com"
    path = b"/etc/slotswap/a/admin.sock"
    assert message.asbytes() == (
        bytes([90])  # SSH_MSG_CHANNEL_OPEN
        + len(kind).to_bytes(4, "big") + kind
        + (7).to_bytes(4, "big")
        + (2097152).to_bytes(4, "big")
        + (32768).to_bytes(4, "big")
        + len(path).to_bytes(4, "big") + path
        + (0).to_bytes(4, "big")  # reserved: the empty string
        + (0).to_bytes(4, "big")  # reserved uint32
    )


def test_streamlocal_open_message_reads_back_like_openssh_parses_it() -> None:
    message = paramiko.Message(streamlocal_open_message(3, 100, 200, "/x/y.sock").asbytes())
    assert message.get_byte() == bytes([90])
    assert message.get_text() == "direct-streamlocal@openssh.com"
    assert [message.get_int() for _ in range(3)] == [3, 100, 200]
    assert message.get_text() == "/x/y.sock"
    assert message.get_text() == ""
    assert message.get_int() == 0
    assert message.get_remainder() == b""


@pytest.mark.parametrize(("line", "count"), [
    ("show info", 1),
    ("set server webapp/web2 state ready; set server webapp/web1 state drain", 2),
    ("a; b; c", 3),
    ("show stat;", 1),
])
def test_command_count(line: str, count: int) -> None:
    assert command_count(line) == count


# Recorded from HAProxy 2.6 in prompt mode (a unix socket, `prompt` sent first).
SET_ANSWER = b"\n> "
TWO_SETS_ANSWER = b"\n> \n> "
ERROR_ANSWER = b"No such server.\n\n> "
INFO_ANSWER = b"Name: HAProxy\nVersion: 2.6.12-1+deb12u4\nPid: 8\n\n> "


@pytest.mark.parametrize(("received", "commands", "answer"), [
    (SET_ANSWER, 1, "\n"),
    (TWO_SETS_ANSWER, 2, "\n\n"),
    (ERROR_ANSWER, 1, "No such server.\n\n"),
    (INFO_ANSWER, 1, "Name: HAProxy\nVersion: 2.6.12-1+deb12u4\nPid: 8\n\n"),
])
def test_complete_answer(received: bytes, commands: int, answer: str) -> None:
    assert complete_answer(received, commands) == answer


@pytest.mark.parametrize(("received", "commands"), [
    (b"", 1),
    (b"Name: HAProxy\nVer", 1),
    (b"Name: HAProxy\n", 1),
    (b"\n> ", 2),  # the first of two commands answered
    (b"\n> \n", 2),
    (b"No such server.\n\n>", 1),
])
def test_incomplete_answer(received: bytes, commands: int) -> None:
    assert complete_answer(received, commands) is None


class FakeChannel:
    """A channel that answers like HAProxy in prompt mode, in chunks, or not at all."""

    def __init__(self, answers: dict[bytes, list[bytes]], *, eof_after: int | None = None):
        self.answers, self.eof_after = answers, eof_after
        self.sent: list[bytes] = []
        self.pending: list[bytes] = []
        self.closed = self.eof_received = False
        self.timeout: float | None = None

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    def sendall(self, data: bytes) -> None:
        if self.closed:
            raise OSError("Socket is closed")
        self.sent.append(data)
        if self.eof_after is not None and len(self.sent) > self.eof_after:
            self.eof_received = True
            return
        self.pending.extend(self.answers.get(data, [b"\n> "]))

    def recv(self, size: int) -> bytes:
        if self.pending:
            return self.pending.pop(0)
        if self.eof_received:
            return b""
        raise TimeoutError("timed out")

    def close(self) -> None:
        self.closed = True


def test_a_session_enters_prompt_mode_once_and_keeps_its_channel() -> None:
    channels: list[FakeChannel] = []

    def opener() -> FakeChannel:
        channels.append(FakeChannel({b"show info\n": [INFO_ANSWER[:10], INFO_ANSWER[10:]]}))
        return channels[-1]

    session = PromptSession(opener, timeout=1)  # type: ignore[arg-type]
    assert session.ask("show info").startswith("Name: HAProxy\n")
    assert session.ask("show info").endswith("Pid: 8\n\n")
    assert len(channels) == 1
    assert channels[0].sent == [b"prompt\n", b"show info\n", b"show info\n"]


def test_a_channel_closed_while_idle_is_reopened() -> None:
    channels: list[FakeChannel] = []

    def opener() -> FakeChannel:
        channels.append(FakeChannel({}))
        return channels[-1]

    session = PromptSession(opener, timeout=1)  # type: ignore[arg-type]
    session.ask("set server b/s state drain")
    channels[0].eof_received = True  # HAProxy's stats timeout ended it
    session.ask("set server b/s state ready")
    assert len(channels) == 2
    assert channels[1].sent == [b"prompt\n", b"set server b/s state ready\n"]


def test_a_channel_that_ends_during_a_command_is_reopened_once_and_the_line_sent_again() -> None:
    channels: list[FakeChannel] = []

    def opener() -> FakeChannel:
        # The first channel ends after `prompt`: the command gets no answer there.
        channels.append(FakeChannel({}, eof_after=1 if not channels else None))
        return channels[-1]

    session = PromptSession(opener, timeout=1)  # type: ignore[arg-type]
    assert session.ask("set server b/s state drain") == "\n"
    assert len(channels) == 2
    assert channels[1].sent == [b"prompt\n", b"set server b/s state drain\n"]


def test_closing_a_session_on_a_cut_connection_raises_nothing_and_the_next_ask_reopens() -> None:
    channels: list[FakeChannel] = []

    def opener() -> FakeChannel:
        channels.append(FakeChannel({}))
        return channels[-1]

    session = PromptSession(opener, timeout=1)  # type: ignore[arg-type]
    session.ask("show info")

    def cut() -> None:
        raise EOFError()  # paramiko's, sending the close on a shut socket

    channels[0].close = cut  # type: ignore[method-assign]
    session.close()
    session.ask("show info")
    assert len(channels) == 2

def test_only_once() -> None:
    def opener() -> FakeChannel:
        return FakeChannel({}, eof_after=1)

    session = PromptSession(opener, timeout=1)  # type: ignore[arg-type]
    with pytest.raises(EOFError, match="HAProxy closed the admin session"):
        session.ask("show info")


def test_a_silent_haproxy_hits_the_deadline() -> None:
    channel = FakeChannel({b"show info\n": []})
    session = PromptSession(lambda: channel, timeout=0.05)  # type: ignore[arg-type, return-value]
    with pytest.raises(AdminChannelTimeout, match=r"no answer from HAProxy within 0\.05s"):
        session.ask("show info")
    assert channel.closed  # never reused: a late answer would be read as the next one's


def test_a_payload_s_continuation_prompts_are_not_part_of_the_answer() -> None:
    # Recorded from HAProxy 2.6: `set ssl cert FILE <<` and a 16-line PEM, in prompt mode.
    received = (b"+ + + + + + + + + + + + + + + + Transaction created for certificate "
                b"/tmp/hx/site.pem!\n\n> ")
    assert complete_answer(received, 1) == (
        "Transaction created for certificate /tmp/hx/site.pem!\n\n")


# -- the admin socket through socat (sshd refuses the channel) -----------------------------
# What the socat command's channel sends before HAProxy is asked anything: the login's
# start-up files (the sandbox's chatty ~/.bashrc, its last line without a newline), then the
# marker the command prints before it becomes socat.
MARKER = b"slotswap-output-starts-0123456789abcdef"
BANNER = b"Welcome to s1! Last backup: never.\nno newline at the end"


@pytest.mark.parametrize(("received", "rest"), [
    (BANNER + MARKER + b"\n", b""),
    (MARKER + b"\n", b""),
    (BANNER + MARKER + b"\nName: HAProxy\n", b"Name: HAProxy\n"),
    (BANNER, None),
    (BANNER + MARKER, None),  # its newline not come yet
    (b"> \n" + MARKER[:-1], None),
])
def test_after_marker_line(received: bytes, rest: bytes | None) -> None:
    assert after_marker_line(received, MARKER) == rest


def test_a_banner_before_socat_never_reaches_an_answer() -> None:
    """The banner and the marker come in chunks that split the marker; the first answer is
    HAProxy's alone."""
    output = BANNER + MARKER + b"\n"
    channel = FakeChannel({b"show info\n": [INFO_ANSWER]})
    channel.pending = [output[:20], output[20:-10], output[-10:]]
    skip_to_marker(channel, MARKER, timeout=1)  # type: ignore[arg-type]
    session = PromptSession(lambda: channel, timeout=1)  # type: ignore[arg-type, return-value]
    assert session.ask("show info") == "Name: HAProxy\nVersion: 2.6.12-1+deb12u4\nPid: 8\n\n"
    assert channel.sent == [b"prompt\n", b"show info\n"]


def test_a_command_that_ends_before_its_marker_is_a_closed_channel() -> None:
    channel = FakeChannel({})
    channel.pending, channel.eof_received = [BANNER], True
    with pytest.raises(AdminChannelClosed, match="ended before it started"):
        skip_to_marker(channel, MARKER, timeout=1)  # type: ignore[arg-type]


def test_a_command_that_never_prints_its_marker_hits_the_deadline() -> None:
    channel = FakeChannel({})
    channel.pending = [BANNER]
    with pytest.raises(AdminChannelTimeout, match=r"did not start within 0\.05s"):
        skip_to_marker(channel, MARKER, timeout=0.05)  # type: ignore[arg-type]


def test_output_after_the_marker_before_any_question_is_refused() -> None:
    channel = FakeChannel({})
    channel.pending = [MARKER + b"\nsomething\n"]
    with pytest.raises(AdminChannelClosed, match="unexpected output"):
        skip_to_marker(channel, MARKER, timeout=1)  # type: ignore[arg-type]
