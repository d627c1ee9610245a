"""HTTP calls to a tracking server as a given login (or none), and the command lines of a server's processes."""

from __future__ import annotations

import base64
import json as jsonlib
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path


def call(
    uri: str,
    method: str,
    path: str,
    login: tuple[str, str] | None = None,
    json: dict | None = None,
    data: bytes | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, bytes]:
    """(status, body) of one request; an HTTP error is an answer too."""
    if json is not None:
        data = jsonlib.dumps(json).encode()
    request = urllib.request.Request(uri + path, data=data, method=method)
    if json is not None:
        request.add_header("Content-Type", "application/json")
    if login:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(login).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=60, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def command_lines(group: int) -> list[str]:
    """The command line of every process in process group `group` (a server and its workers)."""
    lines = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and os.getpgid(int(proc.name)) == group:
                lines.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, ProcessLookupError):
            pass  # gone meanwhile
    return lines
