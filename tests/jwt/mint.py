"""Keys and tokens for the JWT tests, made with PyJWT and `cryptography`: libraries Weir did not write; and
PyJWT's verdict on the tokens Weir makes.

Reads a JSON request on stdin:
  {"keys":   {"<name>": "rsa" | "ec256" | "ec384" | "ed25519" | "hmac"},
   "tokens": {"<name>": {"key": "<key name>", "alg": "RS256", "claims": {...}, "headers": {...},
                         "raw_payload": "<text signed as is instead of claims>",
                         "forge_hmac_with_public_pem": true}}}
and writes {"keys": {"<name>": {"public_pem", "public_pkcs1_pem", "private_pem", "jwk", "secret"}},
            "tokens": {"<name>": "<compact JWS>"}} to stdout.

The request may also hold password hashes to make (tests/jwt_login.rs: argon2-cffi's PasswordHasher params
or bcrypt's `rounds`) and tokens to verify as an upstream in Python would, `exp`, `iat` and `sub` required
(tests/jwt_login.rs, tests/upstream_jwt.rs):
  {"password_hashes": {"<name>": {"scheme": "argon2id" | "bcrypt", "password": "…", "params": {...}}},
   "verify": {"<name>": {"token": "…", "key": "<public PEM or secret>", "algorithms": ["HS256"],
                         "audience": "…", "issuer": "…"}}}
answered with
  {"password_hashes": {"<name>": "<PHC string>"},
   "verified": {"<name>": {"header": {...}, "claims": {...}} | {"error": "<PyJWT's exception>"}}}.
"""

import base64
import hashlib
import hmac
import json
import secrets
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, HMACAlgorithm, OKPAlgorithm, RSAAlgorithm

PEM = serialization.Encoding.PEM


def make_key(kind):
    if kind == "hmac":
        secret = secrets.token_urlsafe(64)
        return {"secret": secret, "jwk": json.loads(HMACAlgorithm.to_jwk(secret.encode()))}, secret
    if kind == "rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(private.public_key())
    elif kind in ("ec256", "ec384"):
        private = ec.generate_private_key(ec.SECP256R1() if kind == "ec256" else ec.SECP384R1())
        jwk = ECAlgorithm.to_jwk(private.public_key())
    elif kind == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
        jwk = OKPAlgorithm.to_jwk(private.public_key())
    else:
        raise SystemExit(f"unknown key kind {kind}")
    public = private.public_key()
    out = {
        "public_pem": public.public_bytes(PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        "private_pem": private.private_bytes(
            PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        "jwk": json.loads(jwk),
    }
    if kind == "rsa":
        out["public_pkcs1_pem"] = public.public_bytes(PEM, serialization.PublicFormat.PKCS1).decode()
    return out, private


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge_hmac(public_pem, spec):
    """The algorithm-confusion attack: HS256 keyed with the RSA public key's PEM, which PyJWT refuses to do."""
    header = {"alg": "HS256", "typ": "JWT", **spec.get("headers", {})}
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(spec["claims"]).encode())
    mac = hmac.new(public_pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(mac)


def password_hash(spec):
    """A PHC string from the reference libraries (imported here: only the login tests need them)."""
    params = spec.get("params", {})
    if spec["scheme"] == "argon2id":
        import argon2

        return argon2.PasswordHasher(**params).hash(spec["password"])
    if spec["scheme"] == "bcrypt":
        import bcrypt

        salt = bcrypt.gensalt(rounds=params.get("rounds", 12))
        return bcrypt.hashpw(spec["password"].encode(), salt).decode()
    raise SystemExit(f"unknown password hash scheme {spec['scheme']}")


def verify(spec):
    """PyJWT's reading of a token: its header and claims, or why it refuses it."""
    try:
        claims = jwt.decode(
            spec["token"],
            spec["key"],
            algorithms=spec["algorithms"],
            audience=spec.get("audience"),
            issuer=spec.get("issuer"),
            options={"require": ["exp", "iat", "sub"]},
        )
    except jwt.PyJWTError as e:
        return {"error": f"{type(e).__name__}: {e}"}
    return {"header": jwt.get_unverified_header(spec["token"]), "claims": claims}


def main():
    request = json.load(sys.stdin)
    keys, signing = {}, {}
    for name, kind in request.get("keys", {}).items():
        keys[name], signing[name] = make_key(kind)
    tokens = {}
    for name, spec in request.get("tokens", {}).items():
        key = spec["key"]
        if spec.get("forge_hmac_with_public_pem"):
            tokens[name] = forge_hmac(keys[key]["public_pem"], spec)
            continue
        material = signing[key] if spec["alg"] != "none" else None
        headers = spec.get("headers")
        if "raw_payload" in spec:
            tokens[name] = jwt.api_jws.encode(
                spec["raw_payload"].encode(), material, algorithm=spec["alg"], headers=headers
            )
        else:
            tokens[name] = jwt.encode(spec["claims"], material, algorithm=spec["alg"], headers=headers)
    out = {"keys": keys, "tokens": tokens}
    if "password_hashes" in request:
        out["password_hashes"] = {
            name: password_hash(spec) for name, spec in request["password_hashes"].items()
        }
    if "verify" in request:
        out["verified"] = {name: verify(spec) for name, spec in request["verify"].items()}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
