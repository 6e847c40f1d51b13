"""A Python gRPC client of sm-kms's KeyService (Debian python3-grpcio), driven by grpc.test.ts.

The message classes come from keys.proto, compiled at run time into a temporary folder with
grpc_tools.protoc (Debian python3-grpc-tools); nothing generated is kept.

usage: grpc_client.py PROTO_ROOT ADDRESS CA_FILE CERT_A KEY_A CERT_B KEY_B FOREIGN_CERT FOREIGN_KEY
Prints one JSON object with what each step saw; the test asserts on it.
"""
import base64
import importlib
import json
import sys
import tempfile

import grpc
from grpc_tools import protoc


def load(proto_root):
    out = tempfile.mkdtemp(prefix="supacrypt-py-")
    rc = protoc.main(["protoc", f"-I{proto_root}", f"--python_out={out}", "supacrypt/v1/keys.proto"])
    if rc != 0:
        raise SystemExit(f"protoc failed: {rc}")
    sys.path.insert(0, out)
    return importlib.import_module("supacrypt.v1.keys_pb2")


def stub(pb, address, ca, cert=None, key=None):
    creds = grpc.ssl_channel_credentials(
        root_certificates=open(ca, "rb").read(),
        private_key=open(key, "rb").read() if key else None,
        certificate_chain=open(cert, "rb").read() if cert else None,
    )
    channel = grpc.secure_channel(address, creds)

    def call(method, request, response_cls):
        fn = channel.unary_unary(
            f"/supacrypt.v1.KeyService/{method}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_cls.FromString,
        )
        return fn(request, timeout=60)

    return call


def error_of(e):
    trailers = dict(e.trailing_metadata() or ())
    return {"status": e.code().name, "code": trailers.get("cryptoutil-error-code"), "details": e.details()}


def attempt(fn):
    try:
        fn()
        return {"status": "OK"}
    except grpc.RpcError as e:
        return error_of(e)


def main():
    proto_root, address, ca, cert_a, key_a, cert_b, key_b, foreign_cert, foreign_key = sys.argv[1:10]
    pb = load(proto_root)
    a = stub(pb, address, ca, cert_a, key_a)
    b = stub(pb, address, ca, cert_b, key_b)
    seen = {}

    signer = a("GenerateKey", pb.GenerateKeyRequest(name="py-signer", algorithm="ES256", tags=["py"]), pb.Key)
    seen["generate"] = {"algorithm": signer.algorithm, "purpose": signer.purpose, "version": signer.current_version}
    listed = a("ListKeys", pb.ListKeysRequest(tag="py"), pb.ListKeysResponse)
    seen["list"] = [k.name for k in listed.keys]
    pub = a("GetPublicKey", pb.GetPublicKeyRequest(key_id=signer.id), pb.PublicKey)
    seen["public_key"] = {"kid": pub.kid, "jwk": json.loads(pub.jwk_json), "spki": base64.b64encode(pub.spki).decode()}
    signed = a("Sign", pb.SignRequest(key_id=signer.id, payload=b"hello from python"), pb.SignResponse)
    seen["sign"] = {"kid": signed.kid, "jws": signed.jws, "signature_len": len(signed.signature)}
    ok = a("Verify", pb.VerifyRequest(key_id=signer.id, jws=signed.jws), pb.VerifyResponse)
    seen["verify"] = ok.valid
    tampered = signed.jws[:-4] + ("AAAA" if not signed.jws.endswith("AAAA") else "BBBB")
    seen["verify_tampered"] = attempt(lambda: a("Verify", pb.VerifyRequest(key_id=signer.id, jws=tampered), pb.VerifyResponse))

    imported = a("ImportKey", pb.ImportKeyRequest(name="py-imported", algorithm="ES256", jwk_json=json.dumps(seen["public_key"]["jwk"])), pb.Key)
    seen["import"] = {"algorithm": imported.algorithm, "import_allowed": imported.import_allowed}

    box = a("GenerateKey", pb.GenerateKeyRequest(name="py-box", algorithm="A256GCM"), pb.Key)
    ctx = [pb.ContextEntry(key="order", value="42")]
    enc = a("Encrypt", pb.EncryptRequest(key_id=box.id, plaintext=b"secret", context=ctx), pb.EncryptResponse)
    dec = a("Decrypt", pb.DecryptRequest(key_id=box.id, jwe=enc.jwe, context=ctx), pb.DecryptResponse)
    seen["decrypt"] = dec.plaintext.decode()
    seen["decrypt_wrong_context"] = attempt(
        lambda: a("Decrypt", pb.DecryptRequest(key_id=box.id, jwe=enc.jwe, context=[pb.ContextEntry(key="order", value="43")]), pb.DecryptResponse)
    )

    kek = a("GenerateKey", pb.GenerateKeyRequest(name="py-kek", algorithm="A256KW"), pb.Key)
    wrapped = a("Wrap", pb.WrapRequest(key_id=kek.id, key_material=bytes(range(32))), pb.WrapResponse)
    unwrapped = a("Unwrap", pb.UnwrapRequest(key_id=kek.id, wrapped_key=wrapped.wrapped_key), pb.UnwrapResponse)
    seen["unwrap"] = list(unwrapped.key_material) == list(range(32))
    seen["random_len"] = len(a("Random", pb.RandomRequest(bytes=48), pb.RandomResponse).random)

    # Tenant B cannot see, sign with or list tenant A's keys.
    seen["b_sign_a"] = attempt(lambda: b("Sign", pb.SignRequest(key_id=signer.id, payload=b"x"), pb.SignResponse))
    seen["b_public_key_a"] = attempt(lambda: b("GetPublicKey", pb.GetPublicKeyRequest(key_id=signer.id), pb.PublicKey))
    seen["b_list"] = [k.name for k in b("ListKeys", pb.ListKeysRequest(), pb.ListKeysResponse).keys]

    # No client certificate, and one from another CA: the handshake refuses both.
    seen["no_cert"] = attempt(lambda: stub(pb, address, ca)("Random", pb.RandomRequest(bytes=8), pb.RandomResponse))
    seen["foreign_cert"] = attempt(lambda: stub(pb, address, ca, foreign_cert, foreign_key)("Random", pb.RandomRequest(bytes=8), pb.RandomResponse))
    seen["bad_request"] = attempt(lambda: a("Random", pb.RandomRequest(bytes=5000), pb.RandomResponse))
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
