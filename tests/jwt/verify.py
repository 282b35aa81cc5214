"""Verifies a JWT Weir minted, with PyJWT and `cryptography`: what an upstream written in Python would accept.

Reads {"token", "public_pem", "alg", "audience"?, "issuer"?} on stdin and writes
{"header": {...}, "claims": {...}} to stdout, or {"error": "<PyJWT's reason>"} for a token it refuses.
"""

import json
import sys

import jwt


def main():
    request = json.load(sys.stdin)
    token = request["token"]
    try:
        claims = jwt.decode(
            token,
            request["public_pem"],
            algorithms=[request["alg"]],
            audience=request.get("audience"),
            issuer=request.get("issuer"),
            options={"require": ["exp", "iat"]},
        )
    except jwt.PyJWTError as e:
        json.dump({"error": f"{type(e).__name__}: {e}"}, sys.stdout)
        return
    json.dump({"header": jwt.get_unverified_header(token), "claims": claims}, sys.stdout)


if __name__ == "__main__":
    main()
