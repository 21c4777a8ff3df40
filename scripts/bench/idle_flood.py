"""Opens N idle TCP connections to the MCP server, then times one legitimate tool call.

Usage: idle_flood.py HOST PORT N ISSUER MCP_URL (see BENCHMARKS.md).
"""
import pathlib, socket, subprocess, sys, time

LATENCY = pathlib.Path(__file__).with_name("keepalive_latency.py")
host, port, n, issuer, mcp_url = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
idle = []
for _ in range(n):
    s = socket.socket(); s.settimeout(5)
    try:
        s.connect((host, port)); idle.append(s)
    except OSError as e:
        print("connect failed after", len(idle), e); break
print(f"{len(idle)} idle connections open")
t = time.perf_counter()
try:
    out = subprocess.run([sys.executable, str(LATENCY), issuer, mcp_url, "1"], capture_output=True, text=True, timeout=60)
    print(f"legitimate initialize + tool call: {time.perf_counter() - t:.2f} s", out.stdout.strip(), out.stderr.strip()[-200:])
except subprocess.TimeoutExpired:
    print(f"legitimate initialize + tool call: no answer within 60 s")
# how many idle connections did the server close?
closed = 0
for s in idle:
    s.setblocking(False)
    try:
        if s.recv(1) == b"": closed += 1
    except BlockingIOError: pass
    except OSError: closed += 1
print(f"{closed} of {len(idle)} idle connections closed by the server after {time.perf_counter() - t:.1f} s")
