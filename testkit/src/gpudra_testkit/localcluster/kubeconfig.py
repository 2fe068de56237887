"""Render the admin kubeconfig of the local cluster (pure; written by the launcher).

Credentials are embedded (``*-data`` fields), so the file stays valid when copied and does not
depend on the PKI directory.  JSON is valid YAML, so kubectl, client-go and the Python client all
read it and no YAML library is needed.
"""

from __future__ import annotations

import base64
import json

DEFAULT_NAME = "gpudra-local"


def _b64(pem: bytes) -> str:
    return base64.b64encode(pem).decode("ascii")


def render(
    *,
    server: str,
    ca_pem: bytes,
    client_cert_pem: bytes,
    client_key_pem: bytes,
    name: str = DEFAULT_NAME,
    namespace: str = "default",
) -> str:
    """A kubeconfig with one cluster, one user (client certificate) and one current context."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": f"{name}-admin",
                "user": {
                    "client-certificate-data": _b64(client_cert_pem),
                    "client-key-data": _b64(client_key_pem),
                },
            }
        ],
        "contexts": [
            {
                "name": name,
                "context": {"cluster": name, "user": f"{name}-admin", "namespace": namespace},
            }
        ],
        "current-context": name,
        "preferences": {},
    }
    return json.dumps(config, indent=2) + "\n"
