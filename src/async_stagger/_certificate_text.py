"""A server certificate written for people, as ``curl -v`` writes it, and as
JSON for ``--json``, from what :meth:`ssl.SSLSocket.getpeercert` gives."""

from __future__ import annotations

import ssl
import time
from typing import Any


def _name_text(name: Any) -> str:
    """An X.509 name as ``getpeercert`` gives it, written ``CN=x, O=y``."""
    short = {
        "commonName": "CN",
        "organizationName": "O",
        "organizationalUnitName": "OU",
        "countryName": "C",
        "stateOrProvinceName": "ST",
        "localityName": "L",
    }
    parts = []
    for rdn in name or ():
        for key, value in rdn:
            parts.append(f"{short.get(key, key)}={value}")
    return ", ".join(parts) or "?"


def _certificate_json(cert: dict[str, Any] | None) -> dict[str, Any] | None:
    if not cert:
        return None  # not verified (--insecure): the ssl module tells nothing
    return {
        "subject": _name_text(cert.get("subject")),
        "issuer": _name_text(cert.get("issuer")),
        "subject_alt_names": [
            f"{kind}:{value}" for kind, value in cert.get("subjectAltName", ())
        ],
        "not_before": cert.get("notBefore"),
        "not_after": cert.get("notAfter"),
    }


def _certificate_lines(cert: dict[str, Any] | None) -> list[str]:
    """The server certificate, as ``curl -v`` shows it."""
    data = _certificate_json(cert)
    if data is None:
        return ["server certificate: not verified (--insecure), details not read"]
    lines = [
        "server certificate:",
        f"  subject: {data['subject']}",
        f"  issuer: {data['issuer']}",
        f"  subjectAltName: {', '.join(data['subject_alt_names']) or 'none'}",
        f"  start date: {data['not_before']}",
    ]
    expiry = f"  expire date: {data['not_after']}"
    try:
        left = ssl.cert_time_to_seconds(data["not_after"]) - time.time()
    except (TypeError, ValueError):
        pass
    else:
        days = int(left // 86400)
        expiry += " (expired)" if left < 0 else f" (in {days} days)"
    lines.append(expiry)
    return lines
