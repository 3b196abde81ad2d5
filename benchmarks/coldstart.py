"""One Lambda cold start, as a whole process: ``python benchmarks/coldstart.py VARIANT ACTION``.

run.py starts this script many times per variant, alternating variants, and times each
process from spawn to exit. Every variant is the same file, so they differ only in what
the variant adds:

    bare              a handler that imports nothing; one invocation
    bare+import       ... plus ``import lambdaguard``
    bare+activate     ... plus ``@guard(...)`` with every policy on and the operation allowed
    bare+guarded      ... plus one violation reported in that invocation (the full cost)
    typical           boto3 and the powertools Logger imported, one log call
    typical+guarded   ... plus lambdaguard: import, decorate, one violation reported

Every variant attempts the same operation (ACTION: ``open`` writes
a file under /tmp, ``connect`` connects to a closed loopback port), so the baseline pays
for the operation itself and the guarded run pays for allowing or refusing it.
``span_ms=N`` on stderr is the time from after the typical imports (boto3, powertools) to
the end of the first invocation, measured inside the process.
The peak resident set size goes to stderr as ``maxrss_kib=N``: VmHWM from /proc, because
on Linux ``getrusage().ru_maxrss`` keeps the high-water mark of the parent that forked
the process (it survives exec), which would hide small differences behind run.py's size.
"""

import resource
import sys
import time

VARIANT = sys.argv[1]
# Not an environment variable: lambdaguard refuses unknown LAMBDAGUARD_* names, on purpose.
ACTION = sys.argv[2] if len(sys.argv) > 2 else "open"
TARGET = "/tmp/lambdaguard-bench-cold.txt"
GUARDED = VARIANT in ("bare+activate", "bare+guarded", "typical+guarded")

if VARIANT.startswith("typical"):
    import boto3  # noqa: F401
    from aws_lambda_powertools import Logger

    logger = Logger(service="bench")
else:
    logger = None

# From here on is what the handler module itself does, after the imports a typical handler
# has anyway: timed inside the process, it shows lambdaguard's part without the 250-350 ms
# of boto3 and powertools, whose run-to-run noise drowns it in the whole-process figure.
SPAN_START = time.perf_counter()

if VARIANT != "bare" and VARIANT != "typical":
    import lambdaguard


def attempt():
    # Hostile code swallows the refusal and carries on; so does this handler.
    if ACTION == "open":
        try:
            with open(TARGET, "w") as f:
                f.write("x")
        except PermissionError:
            pass
    else:
        import socket

        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.connect(("127.0.0.1", 9))
        except (OSError, Exception):  # ConnectionRefusedError, or the Violation
            pass
        finally:
            s.close()


def handler(event, context):
    if logger is not None:
        logger.info("handling")
    attempt()
    return {"statusCode": 200}


if VARIANT == "bare+activate":
    handler = lambdaguard.guard(
        network=lambdaguard.Network("block", allow=["127.0.0.1"]),
        tmp=lambdaguard.Tmp("block", allow=[TARGET]),
        subprocess="block",
        handler_source="block",
    )(handler)
elif GUARDED:
    handler = lambdaguard.guard(
        network="block", tmp="block", subprocess="block", handler_source="block"
    )(handler)



def peak_rss_kib():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


handler({}, None)
print(f"span_ms={(time.perf_counter() - SPAN_START) * 1000:.3f}", file=sys.stderr)
print(f"maxrss_kib={peak_rss_kib()}", file=sys.stderr)
