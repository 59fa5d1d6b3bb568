"""Which network addresses URL inputs may reach (SSRF policy).

gifsent is meant to be embeddable behind a web app that scores URLs its users type. Such a
service must not become a proxy into its own network: by default only public (globally
routable, unicast) addresses are fetched. Loopback (127.0.0.0/8, ::1), private (10/8,
172.16/12, 192.168/16, fc00::/7, 100.64/10), link-local (169.254/16 - the cloud metadata
service 169.254.169.254 lives there - and fe80::/10), multicast, unspecified and reserved
addresses are refused. The check runs on the addresses a host name resolves to, before
connecting, and again on every redirect hop; the connection then goes to the very address
that was checked, so DNS cannot answer differently the second time (rebinding).

`--allow-private-urls` / `Scorer(allow_private_urls=True)` lifts the policy (a local test
server, an intranet).
"""

from __future__ import annotations

import ipaddress

ALLOW_HINT = "pass --allow-private-urls (Scorer(allow_private_urls=True)) to allow it"

_KINDS = (
    ("is_unspecified", "unspecified"),
    ("is_loopback", "loopback"),
    ("is_link_local", "link-local"),
    ("is_multicast", "multicast"),
    ("is_reserved", "reserved"),  # before private: Python counts 240/4 as both
    ("is_private", "private"),
    ("is_site_local", "site-local"),
)


def address_refusal(address: str) -> str | None:
    """Why `address` (an IPv4/IPv6 literal) may not be fetched by default, or None when it is
    a public unicast address. E.g. "169.254.169.254 is a link-local address"."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return f"{address!r} is not an IP address"
    shown = str(ip)
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:  # ::ffff:127.0.0.1 reaches 127.0.0.1
            ip = mapped
        elif ip.teredo is not None:
            ip = ip.teredo[1]
    for attr, kind in _KINDS:
        if getattr(ip, attr, False):
            return f"{shown} is a {kind} address"
    if not ip.is_global:
        return f"{shown} is not a public address"
    return None
