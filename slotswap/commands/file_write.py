"""Pure: the shell scripts that write a file on a server from a command's stdin (never over
SFTP: an sftp-server session breaks on any line the login shell's start-up files print).
`slotswap.remote.server` runs them."""

from __future__ import annotations

# Fixed scripts; folder, file names and mode come as arguments, the content on stdin.
WRITE_FILE_SCRIPT = ('mkdir -p -- "$1" && cat > "$2" && chmod "$4" -- "$2" && '
                     'mv -f -- "$2" "$3"')
# The folder is closed (0700) before the file is made, and umask 077 makes the file 0600
# from its first byte; noclobber (set -C) creates it with O_EXCL.
WRITE_PRIVATE_FILE_SCRIPT = (
    'mkdir -p -m 700 -- "$1" && chmod 700 -- "$1" && umask 077 && set -C && '
    '{ cat > "$2" && mv -f -- "$2" "$3"; } || { status=$?; rm -f -- "$2"; exit "$status"; }'
)


def write_file_command(directory: str, temporary: str, path: str, mode: int) -> list[str]:
    return ["sh", "-c", WRITE_FILE_SCRIPT, "sh", directory, temporary, path, f"{mode:o}"]


def write_private_file_command(directory: str, temporary: str, path: str) -> list[str]:
    return ["sh", "-c", WRITE_PRIVATE_FILE_SCRIPT, "sh", directory, temporary, path]

