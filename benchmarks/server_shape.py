"""Which server shape serves more Predict calls: sync grpc.server or grpc.aio?

Each shape serves the shipped `digits` model through the same Guard core in its own process
pinned to core 0; a grpc.aio client pinned to core 1 keeps a fixed number of calls in flight
for a fixed time. Prints requests per second and the ratio to the sync server measured in
the same run (the machines are shared and noisy: compare ratios, not absolute figures).

    .venv/bin/python benchmarks/server_shape.py [--seconds 10] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]
SHAPES = ("sync", "aio")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(shape: str, port: int) -> None:
    """Serve digits with the given shape until killed (runs in the child process)."""
    os.sched_setaffinity(0, {0})
    from smallguard.server.assembly import build_guard, create_server
    from smallguard.server.settings import Settings

    settings = Settings(host="127.0.0.1", port=port)
    if shape == "sync":
        server = create_server(settings)
        server.start()
        print("ready", flush=True)
        server.wait()
        return
    guard = build_guard(settings)  # the same core, behind an aio transport
    from smallguard.server.transport import converters
    from smallguard.v1 import guard_pb2 as pb

    async def predict(raw: bytes, context: grpc.aio.ServicerContext) -> pb.PredictResponse:
        return converters.predict_response(guard.predict(converters.predict_call(pb.PredictRequest.FromString(raw))))

    async def main() -> None:
        aio = grpc.aio.server()
        aio.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("smallguard.v1.Guard", {
            "Predict": grpc.unary_unary_rpc_method_handler(
                predict, response_serializer=pb.PredictResponse.SerializeToString)}),))
        aio.add_insecure_port(f"127.0.0.1:{port}")
        await aio.start()
        print("ready", flush=True)
        await aio.wait_for_termination()

    asyncio.run(main())


async def load(port: int, seconds: float, concurrency: int) -> float:
    from smallguard.v1 import guard_pb2 as pb
    from smallguard.v1 import guard_pb2_grpc

    request = pb.PredictRequest(model="digits", inputs=[pb.Tensor(name="pixels", dtype=pb.FLOAT32, shape=[64])])
    request.inputs[0].contents.float_contents.extend([4.0] * 64)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = guard_pb2_grpc.GuardStub(channel)
        for _ in range(200):  # warm-up
            await stub.Predict(request)
        done = 0
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await stub.Predict(request)
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - started)


def measure(shape: str, seconds: float, concurrency: int) -> float:
    port = _free_port()
    child = subprocess.Popen([sys.executable, __file__, "--serve", shape, "--port", str(port)],
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready", "server did not start"
        return asyncio.run(load(port, seconds, concurrency))
    finally:
        child.terminate()
        child.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--serve", choices=SHAPES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {1})
    results = {shape: measure(shape, args.seconds, args.concurrency) for shape in SHAPES}
    print(f"Predict on digits, server on one core, {args.concurrency} calls in flight, {args.seconds:g}s each")
    print(f"{'shape':<6} {'req/s':>9} {'vs sync':>8}")
    for shape, rate in results.items():
        print(f"{shape:<6} {rate:>9.0f} {rate / results['sync']:>7.2f}x")


if __name__ == "__main__":
    main()
