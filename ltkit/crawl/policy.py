"""What the downloader may fetch: http(s) only, public unicast addresses only (checked on IP literals
and on every DNS answer), and what a server says about use (`X-Robots-Tag`) and about waiting
(`Retry-After`)."""
from __future__ import annotations

import ipaddress
import socket
import time
from email.utils import parsedate_to_datetime
from typing import Container

from aiohttp.abc import AbstractResolver
from aiohttp.resolver import ThreadedResolver
from yarl import URL


class Failure(Exception):
    """A URL that ends here: status (failed | refused) and a short reason."""

    def __init__(self, status: str, reason: str, http_status: int | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.http_status = status, reason, http_status


class AddressRefused(OSError):
    """Every address a name resolves to is one the settings forbid."""


def split_hostport(text: str) -> tuple[str, int] | None:
    """'ip:port' (IPv6 in brackets) -> (ip, port), or None if it is not one."""
    host, _, port = text.rpartition(":")
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host.strip("[]"), int(port)
    except ValueError:
        return None


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known NAT64 prefix: the last 32 bits are an IPv4 address
_COMPAT = ipaddress.ip_network("::/96")        # deprecated IPv4-compatible addresses
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # local-use NAT64 (RFC 8215): a private network by definition


def _ipv4_part(part: str) -> int | None:
    """One part of a legacy IPv4 literal as inet_aton reads it: 0x.. hex, 0.. octal, else decimal."""
    p = part.lower()
    base, digits = (16, p[2:]) if p.startswith("0x") else (8, p[1:]) if len(p) > 1 and p[0] == "0" else (10, p)
    if not p.isascii() or (base != 16 and not digits.isdigit()) or (digits and not all(
            c in "0123456789abcdef"[:base] for c in digits)) or (base == 10 and not digits):
        return None
    return int(digits, base) if digits else 0


def legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The address of a numeric host in the forms inet_aton and browsers accept: `2130706433`, `127.1`,
    `0177.0.0.1`, `0x7f.1`, `0`, a trailing dot; None if the host is not one (a name)."""
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts = parts[:-1]  # "127.0.0.1." is 127.0.0.1
    if not 1 <= len(parts) <= 4:
        return None
    values = [_ipv4_part(p) for p in parts]
    if any(v is None for v in values) or any(v > 255 for v in values[:-1]) or values[-1] >= 256 ** (5 - len(parts)):
        return None
    n = values[-1]
    for i, v in enumerate(values[:-1]):
        n += v << (8 * (3 - i))
    return ipaddress.IPv4Address(n)


def parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names if it is an IP literal in any form the HTTP client accepts, else None."""
    host = host.strip("[]").split("%")[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return legacy_ipv4(host)


def address_allowed(ip: str, allow_loopback: bool = False) -> bool:
    """Public unicast only; loopback if allowed (only by True itself: a truthy string or number is not True).
    An IPv6 address that carries an IPv4 one (mapped, NAT64, 6to4, IPv4-compatible) is judged as that IPv4
    address: a translator or relay may connect to it. A host that is no IP literal is not allowed."""
    a = parse_ip(ip)
    if a is None:
        return False
    if isinstance(a, ipaddress.IPv6Address) and not a.is_loopback:
        if a in _NAT64_LOCAL or a.is_site_local:
            return False
        embedded = ipaddress.IPv4Address(int(a) & 0xFFFF_FFFF) if a in _NAT64 or a in _COMPAT else None
        a = a.ipv4_mapped or a.sixtofour or embedded or a
    if a.is_loopback:
        return allow_loopback is True
    return bool(a.is_global and not a.is_multicast)


def check_url(url: str, allow_loopback: bool = False, mapped: Container[str] = ()) -> URL:
    """The parsed URL, or a Failure: refused for another scheme or a forbidden IP literal (`mapped` hosts pass)."""
    try:
        u = URL(url)
    except (ValueError, TypeError):
        raise Failure("failed", "bad_url") from None
    if u.scheme not in ("http", "https"):
        raise Failure("refused", "bad_scheme")
    if not u.host:
        raise Failure("failed", "bad_url")
    host = u.host.lower()
    if host not in mapped and parse_ip(host) is not None and not address_allowed(host, allow_loopback):
        raise Failure("refused", "disallowed_address")
    return u


class GuardedResolver(AbstractResolver):
    """DNS that only answers with allowed addresses (and maps `resolve` hosts to their ip:port)."""

    def __init__(self, allow_loopback: bool = False, resolve: dict[str, str] | None = None) -> None:
        self._inner = ThreadedResolver()
        self._map = {h.lower(): split_hostport(t) for h, t in (resolve or {}).items()}
        self._loopback = allow_loopback

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list:
        if host.lower() in self._map:
            ip, port = self._map[host.lower()]
            fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
            found = [{"hostname": host, "host": ip, "port": port, "family": fam, "proto": 0, "flags": 0}]
        else:
            found = await self._inner.resolve(host, port, family)
        ok = [r for r in found if address_allowed(r["host"], self._loopback)]
        if not ok:
            raise AddressRefused(f"{host} resolves to {', '.join(r['host'] for r in found)} only")
        return ok

    async def close(self) -> None:
        await self._inner.close()


def robots_forbid(values: list[str], directives: tuple[str, ...], token: str = "ltkit") -> bool:
    """X-Robots-Tag as img2dataset reads it: `noai`, or `<agent>: noai` for our agent token."""
    for value in values:
        agent, sep, rest = value.partition(":")
        agent = agent.strip().lower()
        if sep and " " not in agent:  # "<agent>: directives" ("a, b: c" is a list, not an agent)
            if agent != token:
                continue  # addressed to another crawler
            value = rest
        if {w.strip().lower() for w in value.split(",")} & set(directives):
            return True
    return False


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit also accepts '²', which float() refuses
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - (now or time.time()))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
