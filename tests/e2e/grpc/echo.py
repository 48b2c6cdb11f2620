"""A real gRPC server and client for the e2e tests (grpcio, generic handlers
over raw bytes: no .proto, no protoc).

    echo.py serve            prints "port N" once listening on 127.0.0.1:N (h2c)
    echo.py call TARGET AUTHORITY KIND [ARG] [--timeout S] [--caller NAME]
                             one call, printed as one JSON line

Service `test.Echo`:
  Unary(b)        -> b"echo:" + b; trailing metadata x-echo-trailer: unary.
                     b"fail" aborts with NOT_FOUND "no such thing"
                     (trailers-only); b"sleep:MS" sleeps MS ms first and
                     returns the deadline the server saw.
  Serve(n)        -> n messages b"msg-0".., each sent as soon as made, 50 ms
                     apart; trailing metadata x-echo-trailer: serve.
  Collect(stream) -> b"got:<count>:<total bytes>".
  Chat(stream)    -> each message back as b"re:" + m, as it arrives.
"""
import json
import sys
import time
from concurrent import futures

import grpc


def unary(request, context):
    if request == b"fail":
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
    if request.startswith(b"sleep:"):
        seen = context.time_remaining()
        time.sleep(int(request[6:]) / 1000)
        return ("slept; deadline seen: %s" % (None if seen is None else round(seen, 3))).encode()
    context.set_trailing_metadata((("x-echo-trailer", "unary"),))
    return b"echo:" + request


def serve_stream(request, context):
    context.set_trailing_metadata((("x-echo-trailer", "serve"),))
    for i in range(int(request or b"3")):
        yield b"msg-%d" % i
        time.sleep(0.05)


def collect(request_iterator, context):
    count = total = 0
    for m in request_iterator:
        count += 1
        total += len(m)
    context.set_trailing_metadata((("x-echo-trailer", "collect"),))
    return b"got:%d:%d" % (count, total)


def chat(request_iterator, context):
    context.set_trailing_metadata((("x-echo-trailer", "chat"),))
    for m in request_iterator:
        yield b"re:" + m


def serve():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    handler = grpc.method_handlers_generic_handler(
        "test.Echo",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Serve": grpc.unary_stream_rpc_method_handler(serve_stream),
            "Collect": grpc.stream_unary_rpc_method_handler(collect),
            "Chat": grpc.stream_stream_rpc_method_handler(chat),
        },
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print("port %d" % port, flush=True)
    # Ends when the test kills it, or when its stdin closes (the test died).
    sys.stdin.read()
    server.stop(0)


def call(target, authority, kind, arg, timeout, caller):
    options = [("grpc.default_authority", authority), ("grpc.enable_retries", 0)]
    metadata = (("x-fp-caller", caller),) if caller else None
    out = {"kind": kind}
    started = time.monotonic()
    with grpc.insecure_channel(target, options=options) as ch:
        try:
            if kind == "unary":
                fn = ch.unary_unary("/test.Echo/Unary")
                resp, c = fn.with_call(arg.encode(), timeout=timeout, metadata=metadata)
                out["responses"] = [resp.decode()]
            elif kind == "serve":
                fn = ch.unary_stream("/test.Echo/Serve")
                c = fn(arg.encode(), timeout=timeout, metadata=metadata)
                out["responses"] = []
                out["arrivals"] = []
                for m in c:
                    out["responses"].append(m.decode())
                    out["arrivals"].append(round(time.monotonic() - started, 3))
            elif kind == "collect":
                fn = ch.stream_unary("/test.Echo/Collect")
                msgs = [("part-%d" % i).encode() * (1 + i) for i in range(int(arg or "5"))]
                resp, c = fn.with_call(iter(msgs), timeout=timeout, metadata=metadata)
                out["responses"] = [resp.decode()]
            elif kind == "chat":
                # One message at a time: each answer must come back before the
                # next is sent, so the call only completes if the stream flows
                # record by record in both directions.
                import queue

                q = queue.Queue()

                def requests():
                    for i in range(int(arg or "3")):
                        yield ("hello-%d" % i).encode()
                        q.get(timeout=10)

                fn = ch.stream_stream("/test.Echo/Chat")
                c = fn(requests(), timeout=timeout, metadata=metadata)
                out["responses"] = []
                for m in c:
                    out["responses"].append(m.decode())
                    q.put(1)
            else:
                raise SystemExit("unknown kind " + kind)
            out["code"] = c.code().name
            out["details"] = c.details()
            out["trailers"] = dict(c.trailing_metadata() or ())
            out["initial"] = dict(c.initial_metadata() or ())
        except grpc.RpcError as e:
            out["code"] = e.code().name
            out["details"] = e.details()
            out["trailers"] = dict(e.trailing_metadata() or ())
            out["initial"] = dict(e.initial_metadata() or ())
    out["elapsed"] = round(time.monotonic() - started, 3)
    print(json.dumps(out), flush=True)


def main():
    if sys.argv[1] == "serve":
        serve()
        return
    args = sys.argv[2:]
    timeout = None
    caller = None
    if "--caller" in args:
        i = args.index("--caller")
        caller = args[i + 1]
        del args[i : i + 2]
    if "--timeout" in args:
        i = args.index("--timeout")
        timeout = float(args[i + 1])
        del args[i : i + 2]
    target, authority, kind = args[:3]
    arg = args[3] if len(args) > 3 else ""
    call(target, authority, kind, arg, timeout, caller)


if __name__ == "__main__":
    main()
