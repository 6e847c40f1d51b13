"""Supacrypt bench: ES256 signs/s through sm-kms's gRPC API with the grpcio client (C core).

Called by bench/supacrypt.ts with one JSON object on stdin: address, PEM files, the encoded
SignRequest (hex), seconds, concurrency, channels. Prints signs/s. A closed loop like the
other rows: `concurrency` calls in flight over `channels` HTTP/2 connections.
"""
import asyncio
import json
import sys
import time

import grpc


async def main() -> None:
    cfg = json.load(sys.stdin)
    read = lambda p: open(p, "rb").read()
    creds = grpc.ssl_channel_credentials(read(cfg["ca_file"]), read(cfg["key_file"]), read(cfg["cert_file"]))
    options = [("grpc.ssl_target_name_override", "localhost"), ("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.secure_channel(cfg["address"], creds, options=options) for _ in range(cfg["channels"])]
    request = bytes.fromhex(cfg["request_hex"])
    signs = [c.unary_unary("/supacrypt.v1.KeyService/Sign", request_serializer=None, response_deserializer=None) for c in channels]

    async def closed_loop(seconds: float) -> float:
        deadline = time.monotonic() + seconds
        done = 0

        async def worker(i: int) -> None:
            nonlocal done
            sign = signs[i % len(signs)]
            while time.monotonic() < deadline:
                response = await sign(request)
                if len(response) == 0:
                    raise RuntimeError("empty SignResponse")
                done += 1

        t0 = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(cfg["concurrency"])))
        return done / (time.monotonic() - t0)

    await closed_loop(1.0)  # connections and the service's caches
    print(f"{await closed_loop(cfg['seconds']):.1f}")
    for c in channels:
        await c.close()


asyncio.run(main())
