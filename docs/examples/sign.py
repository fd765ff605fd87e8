#!/usr/bin/env python3
"""Sign a message through the shim as an authenticated client (ES-HMAC-SHA256).

Standard library only. The scheme is in docs/protocol.md, "Authenticated
sign requests"; this is it in a few lines, for clients not written in Go.

    sign.py ENDPOINT CLIENT_ID SECRET_FILE KEY_ID MESSAGE [AUDIENCE]

ENDPOINT is the shim's URL (http://127.0.0.1:8080). SECRET_FILE holds the
client's 32-byte secret as 64 hex digits (signer keyring new writes it).
Without AUDIENCE the one GET /v1/status reports is used. It prints the
shim's JSON answer, and exits 1 on an error answer.
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

SCHEME = "ES-HMAC-SHA256"


def authorization(secret, audience, client, method, path, body, ts=None, nonce=None):
    """The Authorization header value for one request."""
    ts = int(time.time()) if ts is None else ts
    nonce = os.urandom(16).hex() if nonce is None else nonce
    mac_input = "\n".join([
        SCHEME, audience, client, str(ts), nonce, method, path,
        hashlib.sha256(body).hexdigest(),
    ]).encode()
    mac = hmac.new(secret, mac_input, hashlib.sha256).hexdigest()
    return f"{SCHEME} client={client}, ts={ts}, nonce={nonce}, mac={mac}"


def audience_of(endpoint):
    """The audience of the loaded keyrings, from GET /v1/status."""
    with urllib.request.urlopen(endpoint + "/v1/status", timeout=10) as r:
        auds = json.load(r).get("auth", {}).get("audiences", [])
    if len(auds) != 1:
        sys.exit(f"the enclave reports audiences {auds}: pass the one of your client's keyring")
    return auds[0]


def sign(endpoint, client, secret, key_id, message, audience):
    path = "/v1/keys/" + urllib.parse.quote(key_id, safe="") + "/sign"
    body = json.dumps({"message": base64.b64encode(message).decode()}).encode()
    req = urllib.request.Request(endpoint + path, data=body, method="POST", headers={
        "Content-Type": "application/json",
        "Authorization": authorization(secret, audience, client, "POST", path, body),
    })
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def main(argv):
    if len(argv) not in (6, 7):
        sys.exit(__doc__)
    endpoint, client, secret_file, key_id, message = argv[1:6]
    endpoint = endpoint.rstrip("/")
    with open(secret_file) as f:
        secret = bytes.fromhex(f.read().strip())
    audience = argv[6] if len(argv) == 7 else audience_of(endpoint)
    status, answer = sign(endpoint, client, secret, key_id, message.encode(), audience)
    print(answer, end="")
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
